//! The job queue benchmark: single-enqueue latency (p50/p99) through `jobs::Queue`, then the
//! throughput of trivial `noop` jobs run by release `leadgate worker` processes on the same
//! database. See bench/README.md, section "Job queue"; run it through `bench/jobs.sh`.
//!
//! Throughput is measured from the moment the workers are started on a queue holding `--jobs`
//! due jobs until the last one is recorded as succeeded (worker start-up included).

use anyhow::{Context, bail};
use clap::Parser;
use leadgate::domain::{JobScope, JobState, NewJob};
use leadgate::jobs::Queue;
use leadgate::jobs::test_kinds::NOOP;
use leadgate::store::{PoolOptions, Store};
use serde_json::json;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

#[derive(Parser, Debug)]
struct Args {
    /// Database URL (a fresh or disposable database: the benchmark's jobs are left in it).
    #[arg(long)]
    database_url: String,
    /// The release `leadgate` binary.
    #[arg(long)]
    bin: std::path::PathBuf,
    /// Worker processes.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Concurrency of each worker process.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Jobs for the throughput run.
    #[arg(long, default_value_t = 20_000)]
    jobs: u64,
    /// Single enqueues timed for the latency figures.
    #[arg(long, default_value_t = 2_000)]
    samples: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let store = Store::connect(&args.database_url, &PoolOptions { max_connections: 8 })
        .await
        .context("cannot open the database")?;
    let queue = Queue::new(store.clone());

    let (p50, p99) = enqueue_latency(&queue, args.samples).await?;
    println!(
        "enqueue latency: p50 {p50:.3} ms, p99 {p99:.3} ms ({} samples)",
        args.samples
    );

    fill(&queue, args.jobs.saturating_sub(args.samples as u64)).await?;
    let total = queued(&store).await?;
    let started = Instant::now();
    let mut children = Vec::new();
    for _ in 0..args.workers {
        children.push(start_worker(&args).await?);
    }
    wait_until_drained(&store).await?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "throughput: {total} noop jobs in {secs:.2} s with {} worker process(es) x {} = {:.0} jobs/s ({})",
        args.workers,
        args.concurrency,
        total as f64 / secs,
        store.backend()
    );
    for mut child in children {
        let _ = child.kill().await;
    }
    Ok(())
}

/// Times `n` single enqueues, one after another; returns (p50, p99) in milliseconds.
async fn enqueue_latency(queue: &Queue, n: usize) -> anyhow::Result<(f64, f64)> {
    let mut took = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        queue.enqueue(NewJob::new(NOOP, json!({ "i": i }))).await?;
        took.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    if took.is_empty() {
        bail!("no samples");
    }
    took.sort_by(f64::total_cmp);
    let at = |q: f64| took[((took.len() as f64 * q) as usize).min(took.len() - 1)];
    Ok((at(0.50), at(0.99)))
}

/// Enqueues `n` more jobs from 8 concurrent tasks.
async fn fill(queue: &Queue, n: u64) -> anyhow::Result<()> {
    let tasks: Vec<_> = (0..8u64)
        .map(|t| {
            let queue = queue.clone();
            tokio::spawn(async move {
                for i in (t..n).step_by(8) {
                    queue.enqueue(NewJob::new(NOOP, json!({ "i": i }))).await?;
                }
                Ok::<_, anyhow::Error>(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok(())
}

async fn queued(store: &Store) -> anyhow::Result<u64> {
    let stats = store.job_stats(JobScope::AllWorkspaces).await?;
    Ok(stats
        .iter()
        .filter(|s| s.state == JobState::Queued)
        .map(|s| s.count)
        .sum())
}

async fn start_worker(args: &Args) -> anyhow::Result<Child> {
    let mut child = Command::new(&args.bin)
        .arg("worker")
        .env("LEADGATE_DATABASE_URL", &args.database_url)
        .env("LEADGATE_JOB_TEST_KINDS", "true")
        .env("LEADGATE_WORKER_CONCURRENCY", args.concurrency.to_string())
        .env("LEADGATE_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start leadgate worker")?;
    let stdout = child.stdout.take().context("worker stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    match lines.next_line().await? {
        Some(line) if line.contains("worker running") => Ok(child),
        other => bail!("worker did not start: {other:?}"),
    }
}

async fn wait_until_drained(store: &Store) -> anyhow::Result<()> {
    let give_up = Instant::now() + Duration::from_secs(600);
    loop {
        let stats = store.job_stats(JobScope::AllWorkspaces).await?;
        let left: u64 = stats
            .iter()
            .filter(|s| matches!(s.state, JobState::Queued | JobState::Running))
            .map(|s| s.count)
            .sum();
        if left == 0 {
            return Ok(());
        }
        if Instant::now() > give_up {
            bail!("{left} jobs still pending after 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
