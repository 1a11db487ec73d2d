//! `leadgate migrate` (apply pending migrations) and `leadgate schema` (print the SDL).

use crate::app;
use crate::config::Settings;

/// Prints the GraphQL schema (SDL) on stdout.
pub(super) fn schema() {
    print!("{}", crate::graphql::sdl());
}

pub(super) async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let store = app::open_store(settings).await?;
    eprintln!("migrations applied ({})", store.backend());
    store.close().await;
    Ok(())
}
