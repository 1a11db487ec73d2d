//! The integration suite: one binary, each module a capability, every test run against
//! SQLite and (when configured) PostgreSQL.

mod api_keys;
mod auth;
mod backup;
mod campaigns;
mod cli;
mod contracts;
mod crm;
mod enrichment;
mod enrichment_store;
mod erasure;
mod exports;
mod fake_crm;
mod fakes;
mod helpers;
mod http_protocol;
mod imports;
mod imports_graphql;
mod jobs;
mod limits;
mod mutations;
mod persisted_queries;
mod provider_controls;
mod rabbitmq;
mod rate_limits;
mod reference;
mod relay;
mod retention;
mod scale_out;
mod security;
mod shared_cache;
mod store_contract;
mod subscriptions;
mod tenancy;
mod webhooks;
mod ws_protocol;
