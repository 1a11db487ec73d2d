//! Data operations on whole workspaces: retention (archiving, deleting, compacting by policy)
//! and erasure (right to be forgotten). Built on `domain` and `store` only; authorization is in
//! `service`, scheduling in `service`'s job handlers.

pub mod erasure;
pub mod retention;
