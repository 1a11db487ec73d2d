//! Events for partners: the bus that tells readers of the event log (subscriptions, webhook
//! dispatch) that something new was committed, the resumable reader they use, and outbound
//! webhooks (`webhooks`).
//!
//! The log in the store is the truth; the bus only carries copies and wake-ups. A reader keeps
//! its own cursor (the workspace's event number it saw last) and reads the log whenever the
//! bus shows it a gap, so a slow or late reader catches up instead of losing events, and
//! nobody sees an event twice.

mod bus;
pub mod delivery;
pub mod webhooks;

pub use bus::{Bus, BusOptions, ReadError};
