//! Reading the event log as a partner: resumable, workspace-scoped streams of events.

use super::{Actor, ServiceError};
use crate::domain::{Event, FieldErrorCode, Scope};
use crate::events::{Bus, ReadError};
use futures_util::{Stream, StreamExt};
use std::sync::Arc;

#[derive(Clone, Debug)]
pub struct EventService {
    bus: Bus,
}

impl EventService {
    pub fn new(bus: Bus) -> Self {
        Self { bus }
    }

    /// The actor's workspace's events after `after` (an event number from an event's cursor),
    /// or from now on without it: in order, each once. Every role that may read leads may read
    /// their events; an API key needs the SUBSCRIBE scope.
    pub async fn stream(
        &self,
        actor: &Actor,
        after: Option<i64>,
    ) -> Result<impl Stream<Item = Result<Arc<Event>, ServiceError>> + Send + use<>, ServiceError> {
        actor.require_scope(Scope::Subscribe)?;
        let head = self.bus.head(actor.workspace_id).await?;
        let from = match after {
            Some(n) if n < 0 || n > head => {
                return Err(ServiceError::invalid(
                    "after",
                    FieldErrorCode::Invalid,
                    "the cursor does not belong to this workspace's event log",
                ));
            }
            Some(n) => n,
            None => head,
        };
        Ok(self.bus.read_from(actor.workspace_id, from, head).map(|item| {
            item.map_err(|e| match e {
                ReadError::Expired { .. } => {
                    ServiceError::invalid("after", FieldErrorCode::Invalid, e.to_string())
                }
                ReadError::Store(e) => ServiceError::Internal(e),
            })
        }))
    }

    /// The bus the services publish to.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// The number of the newest event in the actor's workspace's log.
    pub async fn head(&self, actor: &Actor) -> Result<i64, ServiceError> {
        actor.require_scope(Scope::Subscribe)?;
        Ok(self.bus.head(actor.workspace_id).await?)
    }

    /// Publishes events committed outside the services (worker jobs) without waiting for the
    /// next poll.
    pub fn publish(&self, events: Vec<Event>) {
        self.bus.publish(events);
    }
}
