//! The integration suite: one binary, each module a capability, every test run against
//! SQLite and (when configured) PostgreSQL.

mod auth;
mod cli;
mod contracts;
mod helpers;
mod http_protocol;
mod limits;
mod mutations;
mod relay;
mod store_contract;
mod tenancy;
