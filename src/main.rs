//! The `leadgate` command; see `leadgate --help`.

use clap::Parser;

/// mimalloc: many threads allocate small, short-lived objects per request; glibc's arenas
/// spend a measurable share of each request consolidating them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = leadgate::cli::Cli::parse();
    match leadgate::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
