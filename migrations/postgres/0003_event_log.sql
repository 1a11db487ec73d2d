-- Events are numbered per workspace (1, 2, 3, … without gaps). The next number is taken from
-- workspaces.event_seq in the writing transaction, whose row lock makes a workspace's events
-- commit in order.
ALTER TABLE workspaces ADD COLUMN event_seq bigint NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN seq bigint NOT NULL DEFAULT 0;
UPDATE events SET seq = numbered.seq
FROM (SELECT id, row_number() OVER (PARTITION BY workspace_id ORDER BY id) AS seq FROM events) numbered
WHERE events.id = numbered.id;
UPDATE workspaces SET event_seq = coalesce((SELECT max(e.seq) FROM events e WHERE e.workspace_id = workspaces.id), 0);
DROP INDEX events_by_workspace;
CREATE UNIQUE INDEX events_by_seq ON events (workspace_id, seq);
-- retention deletes by age
CREATE INDEX events_by_time ON events (created_at);
