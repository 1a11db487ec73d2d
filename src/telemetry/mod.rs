//! Tracing set-up, done once at start-up: text or JSON logs to stderr, filtered by `log`, and,
//! when `sentry_dsn` is set, server errors to Sentry (`sentry`: what is reported and what is
//! scrubbed). Spans carry ids, never emails or phone numbers. The bulk commands (seed, import,
//! export, backup, restore) log `quietly`: library warnings such as sqlx's "slow statement" (an
//! index build or a bulk insert is slow by design) would break up their progress bar, so sqlx
//! logs only errors unless the filter names `sqlx` itself (`LEADGATE_LOG=info,sqlx=warn`).

pub mod sentry;

use crate::config::LogFormat;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Installs the global subscriber; a second call is a no-op (tests build many apps). The log
/// filter applies to the log lines only: with `errors`, Sentry sees errors (as events) and
/// warnings and info (as breadcrumbs) whatever the filter.
pub fn init(filter: &str, format: LogFormat, quiet: bool, errors: Option<&sentry::ErrorReporting>) {
    let filter = EnvFilter::try_new(directives(filter, quiet)).unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = match format {
        LogFormat::Json => logs.json().flatten_event(true).boxed(),
        LogFormat::Text => logs.boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(errors.map(|_| sentry::layer()))
        .try_init();
}

/// The filter's directives; when `quiet`, sqlx is held to errors unless the filter says
/// otherwise about it.
fn directives(filter: &str, quiet: bool) -> String {
    let names_sqlx = filter.split(',').any(|d| d.trim().starts_with("sqlx"));
    match (quiet, names_sqlx, filter.trim()) {
        (true, false, "") => "info,sqlx=error".to_owned(),
        (true, false, f) => format!("{f},sqlx=error"),
        _ => filter.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::directives;

    #[test]
    fn quiet_commands_hold_sqlx_to_errors_unless_the_filter_names_it() {
        assert_eq!(directives("info", true), "info,sqlx=error");
        assert_eq!(directives("debug", false), "debug");
        assert_eq!(directives("info,sqlx=warn", true), "info,sqlx=warn");
        assert_eq!(directives("sqlx::query=debug", true), "sqlx::query=debug");
        assert_eq!(directives("", true), "info,sqlx=error");
    }
}
