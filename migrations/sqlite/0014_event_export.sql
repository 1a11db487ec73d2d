-- Publishing the event log to a topic exchange on the broker (`queue_events`). One process at a
-- time publishes: the one holding the `event-export` lease. `event_exports` keeps, per
-- workspace, the number of the newest event the broker confirmed; a workspace without a row
-- is published from its first event.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE event_exports (
    workspace_id BLOB PRIMARY KEY REFERENCES workspaces (id),
    cursor       INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
