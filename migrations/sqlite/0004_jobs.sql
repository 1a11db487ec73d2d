-- The durable job queue and its recurring schedules.
--
-- A job is claimed by setting a lease (token and expiry); whoever holds the token may
-- heartbeat, complete or fail it. Dead jobs stay until an admin replays or discards them.

CREATE TABLE jobs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    kind         TEXT NOT NULL,
    -- no foreign key: system jobs have none, and a job outlives nothing it points at
    workspace_id BLOB,
    payload      TEXT NOT NULL,
    priority     INTEGER NOT NULL DEFAULT 0,
    run_at       INTEGER NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'dead')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    unique_key   TEXT,
    lease_token  TEXT,
    lease_until  INTEGER,
    -- [{"attempt": 1, "at": "...", "error": "..."}, ...]
    errors       TEXT NOT NULL DEFAULT '[]',
    progress     TEXT,
    result       TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    finished_at  INTEGER
);
CREATE INDEX jobs_claim ON jobs (priority DESC, run_at, id) WHERE state = 'queued';
CREATE UNIQUE INDEX jobs_unique_key ON jobs (unique_key) WHERE state IN ('queued', 'running');
CREATE INDEX jobs_leases ON jobs (lease_until) WHERE state = 'running';
CREATE INDEX jobs_dead ON jobs (workspace_id, id) WHERE state = 'dead';
CREATE INDEX jobs_succeeded ON jobs (finished_at) WHERE state = 'succeeded';

CREATE TABLE schedules (
    name        TEXT PRIMARY KEY,
    cron        TEXT NOT NULL,
    tz          TEXT NOT NULL,
    kind        TEXT NOT NULL,
    payload     TEXT NOT NULL,
    next_run_at INTEGER NOT NULL,
    last_run_at INTEGER,
    enabled     INTEGER NOT NULL DEFAULT 1
);
