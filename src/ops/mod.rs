//! Operations on the data as a whole: retention (archiving, deleting, compacting by policy),
//! erasure (right to be forgotten), and backup and restore. Built on `domain` and `store`;
//! authorization is in `service`, and the scheduled runs are job handlers. No SQL here.

pub mod backup;
pub mod erasure;
pub mod retention;
