//! Shared subscription execution: subscriptions with the same workspace, role, document,
//! variables and operation name run once, and each result is serialised once into an
//! `Arc<str>` that every member's connection wraps with its own id when writing.
//!
//! Only subscriptions whose root fields take no `after` cursor are shared (a resumed
//! subscription replays from its own cursor). A group ends when its stream ends or its last
//! member leaves. Delivery never waits: a member whose connection queue is full is dropped
//! from the group and its operation ends with `SLOW_CONSUMER`, so it cannot stall the others.
//!
//! **Shared subscriptions**: subscriptions with the same (workspace, role, document, variables,
//! operation name) run as one execution in `ws::Hub`, and each result is serialised once into an
//! `Arc<str>` that each connection wraps with its own id when it writes. Only documents whose root
//! fields take no `after` argument are shared (a resumed subscription replays from its own cursor,
//! so it runs alone). The hub never waits for a member: one whose connection queue
//! (`ws_send_queue` frames) is full leaves the group and its operation ends with an `error` whose
//! `extensions.code` is `SLOW_CONSUMER`. A group ends with its stream or its last member.
//! Operations over the socket pass the same parse, alias, depth and complexity checks as
//! `/graphql`.

use super::session::{Done, Ending};
use super::{Outbound, result_json};
use crate::domain::{Role, Scopes, WorkspaceId};
use async_graphql::Response;
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::task::AbortHandle;

/// What makes two subscriptions the same execution.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub(super) struct GroupKey {
    pub workspace: WorkspaceId,
    pub role: Role,
    /// An API key's scopes (`None` for a token): a key joins only executions its scopes
    /// were checked for.
    pub scopes: Option<Scopes>,
    pub query: String,
    /// The variables as canonical JSON (keys sorted).
    pub variables: String,
    pub operation_name: Option<String>,
}

/// One subscriber of a group: where its results go and how its end is reported.
pub(super) struct Member {
    /// The operation id as the client sent it.
    pub id: Arc<str>,
    /// The same id as a JSON string literal.
    pub id_json: Arc<str>,
    /// Tells this operation apart from a later one reusing the id.
    pub seq: u64,
    /// `next` or `data`.
    pub kind: &'static str,
    pub out: mpsc::Sender<Outbound>,
    pub done: mpsc::UnboundedSender<Done>,
}

impl Member {
    fn end(&self, ending: Ending) {
        // the session may be gone already; then nobody is waiting for the ending
        let _ = self.done.send(Done {
            id: self.id.clone(),
            seq: self.seq,
            ending,
        });
    }
}

#[derive(Default)]
struct GroupState {
    members: HashMap<u64, Member>,
    /// Set once the stream ended or the last member left; a closed group takes no members.
    closed: bool,
}

#[derive(Default)]
struct Group {
    state: Mutex<GroupState>,
    task: OnceLock<AbortHandle>,
}

impl Group {
    fn lock(&self) -> MutexGuard<'_, GroupState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands one result to every member without waiting on any of them.
    fn broadcast(&self, payload: &Arc<str>) {
        let mut state = self.lock();
        state.members.retain(|_, member| {
            let frame = Outbound::Result {
                kind: member.kind,
                id: member.id_json.clone(),
                payload: payload.clone(),
            };
            match member.out.try_send(frame) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    member.end(Ending::SlowConsumer);
                    false
                }
                Err(TrySendError::Closed(_)) => false,
            }
        });
    }
}

type Groups = Arc<Mutex<HashMap<Arc<GroupKey>, Arc<Group>>>>;

/// The running shared subscriptions of one server.
#[derive(Clone, Default)]
pub struct Hub {
    groups: Groups,
    next_member: Arc<AtomicU64>,
}

/// A member's place in a group; dropping it leaves the group.
pub(super) struct Membership {
    groups: Groups,
    key: Arc<GroupKey>,
    group: Arc<Group>,
    member: u64,
}

impl Hub {
    /// An empty hub.
    pub fn new() -> Self {
        Self::default()
    }

    /// Running groups and their member counts (for tests and diagnostics).
    pub fn group_sizes(&self) -> Vec<usize> {
        let groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        groups.values().map(|g| g.lock().members.len()).collect()
    }

    /// Adds `member` to the group for `key`, starting the group's execution with `start`
    /// when there is none.
    pub(super) fn join(
        &self,
        key: GroupKey,
        member: Member,
        start: impl FnOnce() -> BoxStream<'static, Response>,
    ) -> Membership {
        let member_key = self.next_member.fetch_add(1, Ordering::Relaxed);
        let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((key, group)) = groups.get_key_value(&key) {
            let mut state = group.lock();
            if !state.closed {
                state.members.insert(member_key, member);
                drop(state);
                return Membership {
                    groups: self.groups.clone(),
                    key: key.clone(),
                    group: group.clone(),
                    member: member_key,
                };
            }
        }
        let key = Arc::new(key);
        let group = Arc::new(Group::default());
        group.lock().members.insert(member_key, member);
        let task = tokio::spawn(run_group(
            self.groups.clone(),
            key.clone(),
            group.clone(),
            start(),
        ));
        let _ = group.task.set(task.abort_handle());
        groups.insert(key.clone(), group.clone());
        Membership {
            groups: self.groups.clone(),
            key,
            group,
            member: member_key,
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        let now_empty = {
            let mut state = self.group.lock();
            state.members.remove(&self.member);
            state.members.is_empty() && !state.closed
        };
        if !now_empty {
            return;
        }
        let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        let mut state = self.group.lock();
        // someone may have joined between the two locks
        if !state.members.is_empty() || state.closed {
            return;
        }
        state.closed = true;
        if groups.get(&self.key).is_some_and(|g| Arc::ptr_eq(g, &self.group)) {
            groups.remove(&self.key);
        }
        if let Some(task) = self.group.task.get() {
            task.abort();
        }
    }
}

/// Polls the group's stream, serialising each result once, until it ends.
async fn run_group(
    groups: Groups,
    key: Arc<GroupKey>,
    group: Arc<Group>,
    mut stream: BoxStream<'static, Response>,
) {
    let mut first = true;
    let ending = loop {
        let Some(response) = stream.next().await else {
            break Ending::Complete;
        };
        if first && super::super::is_request_error(&response) {
            break Ending::Errors(response.errors);
        }
        first = false;
        group.broadcast(&result_json(&response));
    };
    let members: Vec<Member> = {
        let mut state = group.lock();
        state.closed = true;
        state.members.drain().map(|(_, m)| m).collect()
    };
    {
        let mut groups = groups.lock().unwrap_or_else(PoisonError::into_inner);
        if groups.get(&key).is_some_and(|g| Arc::ptr_eq(g, &group)) {
            groups.remove(&key);
        }
    }
    for member in members {
        member.end(ending.clone());
    }
}

/// Whether the root fields of a subscription may be shared: none takes an `after` argument
/// (inline fragments are looked into; fragment spreads make it private, which is always safe).
pub(super) fn is_shareable(doc: &ExecutableDocument, operation_name: Option<&str>) -> bool {
    fn root_fields_shareable(set: &SelectionSet, depth: usize) -> bool {
        depth < 8
            && set.items.iter().all(|item| match &item.node {
                Selection::Field(f) => f
                    .node
                    .arguments
                    .iter()
                    .all(|(name, _)| name.node.as_str() != "after"),
                Selection::InlineFragment(f) => root_fields_shareable(&f.node.selection_set.node, depth + 1),
                Selection::FragmentSpread(_) => false,
            })
    }
    super::super::selected_operation(doc, operation_name)
        .is_some_and(|op| root_fields_shareable(&op.node.selection_set.node, 0))
}
