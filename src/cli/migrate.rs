//! `leadgate migrate` (apply pending migrations), and what a build is made of, for scripts:
//! `leadgate schema` (the SDL) and `leadgate job-kinds` (the job kinds it can run).

use crate::app;
use crate::config::Settings;

/// Prints the GraphQL schema (SDL) on stdout.
pub(super) fn schema() {
    print!("{}", crate::graphql::sdl());
}

/// Prints the job kinds this build can run (`app::JOB_KINDS`), one per line, on stdout.
pub(super) fn job_kinds() {
    for line in app::JOB_KINDS {
        println!("{}", line.kind);
    }
}

pub(super) async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let store = app::open_store(settings).await?;
    eprintln!("migrations applied ({})", store.backend());
    store.close().await;
    Ok(())
}
