-- Events are numbered per workspace (1, 2, 3, … without gaps). The next number is taken from
-- workspaces.event_seq in the writing transaction, so a workspace's events commit in order.
ALTER TABLE workspaces ADD COLUMN event_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
UPDATE events SET seq = (
    SELECT count(*) FROM events e WHERE e.workspace_id = events.workspace_id AND e.id <= events.id
);
UPDATE workspaces SET event_seq = (
    SELECT coalesce(max(e.seq), 0) FROM events e WHERE e.workspace_id = workspaces.id
);
DROP INDEX events_by_workspace;
CREATE UNIQUE INDEX events_by_seq ON events (workspace_id, seq);
-- retention deletes by age
CREATE INDEX events_by_time ON events (created_at);
