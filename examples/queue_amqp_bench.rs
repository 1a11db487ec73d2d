//! The RabbitMQ job delivery benchmark: end-to-end throughput of trivial `noop` jobs delivered
//! by RabbitMQ (`queue_url`) against the database queue, on the same machine and database. See
//! bench/README.md, section "Job delivery on RabbitMQ"; run it through `bench/queue_amqp.sh`.
//!
//! Per mode, on a fresh database: release `leadgate worker` processes are started and have
//! said how they run jobs; then producers in this process enqueue `--jobs` jobs in batches of
//! `--batch` (one transaction each, through `jobs::Queue`, with the broker attached in the
//! RabbitMQ mode, as `serve` enqueues) while the workers run them. The time counts from the
//! first enqueue until the last job is recorded as succeeded; jobs/s is jobs over that time.
//! Worker CPU comes from /proc. Figures are printed and written to
//! bench/results/<stamp>-queue-amqp-<backend>.json.

mod common;

use anyhow::{Context, bail};
use clap::Parser;
use leadgate::domain::{JobScope, JobState, NewJob};
use leadgate::jobs::Queue;
use leadgate::jobs::amqp::testing::delete_topology;
use leadgate::jobs::amqp::{Broker, BrokerOptions, Status};
use leadgate::jobs::test_kinds::NOOP;
use leadgate::store::{PoolOptions, Store};
use serde_json::json;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

#[derive(Parser, Debug)]
struct Args {
    /// `sqlite` (a file under bench/results) or `postgres` (a database on the local server).
    #[arg(long, default_value = "sqlite")]
    backend: String,
    /// The broker.
    #[arg(
        long,
        env = "LEADGATE_BENCH_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    amqp_url: String,
    /// The release `leadgate` binary (default: the target directory's).
    #[arg(long)]
    bin: Option<PathBuf>,
    /// Worker processes.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Concurrency of each worker process.
    #[arg(long, default_value_t = 128)]
    concurrency: usize,
    /// Prefetch of each worker process on RabbitMQ.
    #[arg(long, default_value_t = 512)]
    prefetch: u16,
    /// Jobs per mode.
    #[arg(long, default_value_t = 50_000)]
    jobs: u64,
    /// Jobs per enqueue transaction.
    #[arg(long, default_value_t = 200)]
    batch: u64,
    /// Concurrent producers.
    #[arg(long, default_value_t = 4)]
    producers: u64,
    /// Modes to run, in order: `database`, `rabbitmq`.
    #[arg(long, value_delimiter = ',', default_value = "database,rabbitmq")]
    modes: Vec<String>,
}

struct Run {
    mode: String,
    jobs: u64,
    enqueue_secs: f64,
    total_secs: f64,
    worker_cpu_secs: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let results = common::results_dir()?;
    let bin = common::release_bin(args.bin.clone());
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let mut runs = Vec::new();
    for mode in &args.modes {
        if !["database", "rabbitmq"].contains(&mode.as_str()) {
            bail!("--modes takes database and rabbitmq, not {mode}");
        }
        let database_url = common::fresh_database(&results, &args.backend, "amqp").await?;
        let prefix = format!("bench.{stamp}.{mode}");
        eprintln!("== {mode} on {}", args.backend);
        let run = run_mode(&args, &bin, mode, &database_url, &prefix).await?;
        println!(
            "{mode:>8}: {} noop jobs in {:.2} s = {:.0} jobs/s end to end (enqueued in {:.2} s = {:.0} jobs/s; workers' CPU {:.1} s, {:.0} µs per job)",
            run.jobs,
            run.total_secs,
            run.jobs as f64 / run.total_secs,
            run.enqueue_secs,
            run.jobs as f64 / run.enqueue_secs,
            run.worker_cpu_secs,
            run.worker_cpu_secs * 1e6 / run.jobs as f64
        );
        if mode == "rabbitmq" {
            let _ = delete_topology(&args.amqp_url, &prefix).await;
        }
        runs.push(run);
    }
    let mut rows = Vec::new();
    for r in &runs {
        let rate = r.jobs as f64 / r.total_secs;
        let (target, met) = if r.mode == "rabbitmq" {
            ("≥ 5,000", Some(rate >= 5_000.0))
        } else {
            ("", None)
        };
        rows.push(common::row(
            "end to end",
            &format!("{} jobs/s ({} × {})", r.mode, args.workers, args.concurrency),
            format!("{rate:.0}"),
            target,
            met,
        ));
        rows.push(common::row(
            "enqueue",
            &format!("{} jobs/s", r.mode),
            format!("{:.0}", r.jobs as f64 / r.enqueue_secs),
            "",
            None,
        ));
        rows.push(common::row(
            "cost",
            &format!("{} worker CPU µs per job", r.mode),
            format!("{:.0}", r.worker_cpu_secs * 1e6 / r.jobs as f64),
            "",
            None,
        ));
    }
    println!("\n{}", common::table(&rows));
    let out = results.join(format!("{stamp}-queue-amqp-{}.json", args.backend));
    let body = json!({
        "stamp": stamp,
        "backend": args.backend,
        "args": {
            "workers": args.workers, "concurrency": args.concurrency, "prefetch": args.prefetch,
            "jobs": args.jobs, "batch": args.batch, "producers": args.producers,
        },
        "runs": runs.iter().map(|r| json!({
            "mode": r.mode,
            "jobs": r.jobs,
            "enqueue_secs": common::round3(r.enqueue_secs),
            "total_secs": common::round3(r.total_secs),
            "jobs_per_s": (r.jobs as f64 / r.total_secs).round(),
            "enqueued_per_s": (r.jobs as f64 / r.enqueue_secs).round(),
            "worker_cpu_secs": common::round2(r.worker_cpu_secs),
            "worker_cpu_us_per_job": (r.worker_cpu_secs * 1e6 / r.jobs as f64).round(),
        })).collect::<Vec<_>>(),
        "markdown": common::markdown(&rows),
    });
    std::fs::write(&out, serde_json::to_string_pretty(&body)?).context("write results")?;
    eprintln!("== results: {}", out.display());
    Ok(())
}

async fn run_mode(
    args: &Args,
    bin: &PathBuf,
    mode: &str,
    database_url: &str,
    prefix: &str,
) -> anyhow::Result<Run> {
    let store = Store::connect(database_url, &PoolOptions { max_connections: 8 })
        .await
        .context("cannot open the database")?;
    let queue = Queue::new(store.clone());
    if mode == "rabbitmq" {
        let broker = Broker::start(
            BrokerOptions {
                url: args.amqp_url.clone(),
                prefix: prefix.to_owned(),
                prefetch: args.prefetch,
                connect_timeout: Duration::from_secs(5),
                connection_name: "leadgate benchmark".into(),
            },
            store.clone(),
            queue.metrics().clone(),
        )
        .map_err(anyhow::Error::msg)?;
        if broker.settled(Duration::from_secs(10)).await != Status::Up {
            bail!("RabbitMQ at {} does not answer", broker.describe());
        }
        queue.attach(broker);
    }
    let mut workers = Vec::new();
    for _ in 0..args.workers {
        workers.push(start_worker(args, bin, mode, database_url, prefix).await?);
    }
    let pids: Vec<String> = workers
        .iter()
        .filter_map(|w| w.id())
        .map(|p| p.to_string())
        .collect();
    let ticks_before: u64 = pids.iter().map(|p| common::cpu_ticks(p)).sum();

    let started = Instant::now();
    let producers: Vec<_> = (0..args.producers)
        .map(|p| {
            let queue = queue.clone();
            let (jobs, batch, producers) = (args.jobs, args.batch, args.producers);
            tokio::spawn(async move {
                let mine: Vec<u64> = (p..jobs).step_by(producers as usize).collect();
                for chunk in mine.chunks(batch as usize) {
                    let batch = chunk
                        .iter()
                        .map(|i| NewJob::new(NOOP, json!({ "i": i })))
                        .collect();
                    queue.enqueue_many(batch).await?;
                }
                Ok::<_, anyhow::Error>(())
            })
        })
        .collect();
    for p in producers {
        p.await??;
    }
    let enqueue_secs = started.elapsed().as_secs_f64();
    wait_until_done(&store, args.jobs).await?;
    let total_secs = started.elapsed().as_secs_f64();
    let ticks_after: u64 = pids.iter().map(|p| common::cpu_ticks(p)).sum();
    let worker_cpu_secs = (ticks_after - ticks_before) as f64 / common::clk_tck();
    for mut w in workers {
        if let Some(pid) = w.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(20), w.wait()).await;
        let _ = w.kill().await;
    }
    if let Some(broker) = queue.broker() {
        broker.close().await;
    }
    store.close().await;
    Ok(Run {
        mode: mode.to_owned(),
        jobs: args.jobs,
        enqueue_secs,
        total_secs,
        worker_cpu_secs,
    })
}

async fn start_worker(
    args: &Args,
    bin: &PathBuf,
    mode: &str,
    database_url: &str,
    prefix: &str,
) -> anyhow::Result<Child> {
    let mut cmd = Command::new(bin);
    cmd.arg("worker")
        .env("LEADGATE_DATABASE_URL", database_url)
        .env("LEADGATE_JOB_TEST_KINDS", "true")
        .env("LEADGATE_WORKER_CONCURRENCY", args.concurrency.to_string())
        .env("LEADGATE_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    if mode == "rabbitmq" {
        cmd.env("LEADGATE_QUEUE_URL", &args.amqp_url)
            .env("LEADGATE_QUEUE_PREFIX", prefix)
            .env("LEADGATE_QUEUE_PREFETCH", args.prefetch.to_string());
    }
    let mut child = cmd.spawn().context("cannot start leadgate worker")?;
    let stdout = child.stdout.take().context("worker stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut banner = Vec::new();
    for _ in 0..3 {
        match lines.next_line().await? {
            Some(line) => banner.push(line),
            None => bail!("worker ended before its banner: {banner:?}"),
        }
    }
    let expected = if mode == "rabbitmq" {
        "delivered by RabbitMQ"
    } else {
        "on the database queue"
    };
    if !banner[0].contains("worker running") || !banner[2].contains(expected) {
        bail!("worker did not start as expected ({expected}): {banner:?}");
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(child)
}

/// Polls until `jobs` jobs have succeeded (at most ten minutes).
async fn wait_until_done(store: &Store, jobs: u64) -> anyhow::Result<()> {
    let give_up = Instant::now() + Duration::from_secs(600);
    loop {
        let stats = store.job_stats(JobScope::AllWorkspaces).await?;
        let done: u64 = stats
            .iter()
            .filter(|s| s.state == JobState::Succeeded && s.kind == "noop")
            .map(|s| s.count)
            .sum();
        if done >= jobs {
            return Ok(());
        }
        if Instant::now() > give_up {
            bail!("{done} of {jobs} jobs done after ten minutes");
        }
        // a count over the table: not so often that it competes with the workers
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
