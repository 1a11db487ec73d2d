//! leadgate: a GraphQL gateway for sales leads.
//!
//! The crate is layered; see ARCHITECTURE.md for the map and the invariants. `main.rs` is only
//! the command line; everything else lives here so that tests drive the same code.

pub mod app;
pub mod auth;
pub mod bulk;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod crm;
pub mod crypto;
pub mod domain;
pub mod enrich;
pub mod events;
pub mod graphql;
pub mod http;
pub mod jobs;
pub mod limits;
pub mod mail;
pub mod net;
pub mod ops;
pub mod service;
pub mod store;
pub mod telemetry;
