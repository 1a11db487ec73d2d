//! What counting a request into the console's per-minute history (`service::History`) costs on
//! the request path: `History::request` plus `History::credits` timed over many calls, on one
//! workspace and spread over many, from one thread and from several at once (they share the
//! workspace map and, on one workspace, its lock). See bench/README.md, section "Operator
//! console"; run it through `bench/console.sh`.

use clap::Parser;
use leadgate::domain::WorkspaceId;
use leadgate::service::History;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
struct Args {
    /// Requests counted per thread and case.
    #[arg(long, default_value_t = 2_000_000)]
    calls: u64,
    /// Threads counting at once in the contended cases.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

fn workspaces(n: u128) -> Vec<WorkspaceId> {
    (1..=n)
        .map(|i| WorkspaceId::from_uuid(uuid::Uuid::from_u128(i)))
        .collect()
}

/// Nanoseconds per counted request as each thread sees it: each thread counts `calls`
/// requests, round-robin over `spaces`.
fn run(history: &History, spaces: &[WorkspaceId], calls: u64, threads: usize) -> f64 {
    let started = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..threads {
            scope.spawn(move || {
                for i in 0..calls {
                    let ws = spaces[(i as usize + t) % spaces.len()];
                    let took = Duration::from_micros(200 + (i % 5_000));
                    history.request(ws, took, i % 100 == 0);
                    history.credits(ws, i % 3);
                }
            });
        }
    });
    // each thread counts its requests one after another, all threads at once: the time one
    // call takes as a request sees it
    started.elapsed().as_nanos() as f64 / calls as f64
}

fn main() {
    let args = Args::parse();
    println!(
        "history: {} calls per thread and case; ns per counted request as each thread sees it",
        args.calls
    );
    for (label, spaces) in [
        ("1 workspace", workspaces(1)),
        ("1,000 workspaces", workspaces(1_000)),
    ] {
        for threads in [1, args.threads] {
            let history = History::default();
            // warm: the workspaces' rings exist, as they do on a running server
            run(&history, &spaces, 10_000, 1);
            let ns = run(&history, &spaces, args.calls, threads);
            println!("history: {label}, {threads} thread(s): {ns:.0} ns per request");
        }
    }
}
