//! The integration suite: one binary, each module a capability, every test run against
//! SQLite and (when configured) PostgreSQL.

mod cli;
mod contracts;
mod helpers;
mod relay;
