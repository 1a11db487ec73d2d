-- The durable job queue and its recurring schedules.
--
-- A job is claimed by setting a lease (token and expiry); whoever holds the token may
-- heartbeat, complete or fail it. Dead jobs stay until an admin replays or discards them.

CREATE TABLE jobs (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind         text NOT NULL,
    -- no foreign key: system jobs have none, and a job outlives nothing it points at
    workspace_id uuid,
    payload      text NOT NULL,
    priority     smallint NOT NULL DEFAULT 0,
    run_at       timestamptz NOT NULL,
    state        text NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'dead')),
    attempts     integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL,
    unique_key   text,
    lease_token  text,
    lease_until  timestamptz,
    -- [{"attempt": 1, "at": "...", "error": "..."}, ...]
    errors       text NOT NULL DEFAULT '[]',
    progress     text,
    result       text,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    finished_at  timestamptz
);
CREATE INDEX jobs_claim ON jobs (priority DESC, run_at, id) WHERE state = 'queued';
CREATE UNIQUE INDEX jobs_unique_key ON jobs (unique_key) WHERE state IN ('queued', 'running');
CREATE INDEX jobs_leases ON jobs (lease_until) WHERE state = 'running';
CREATE INDEX jobs_dead ON jobs (workspace_id, id) WHERE state = 'dead';
CREATE INDEX jobs_succeeded ON jobs (finished_at) WHERE state = 'succeeded';

CREATE TABLE schedules (
    name        text PRIMARY KEY,
    cron        text NOT NULL,
    tz          text NOT NULL,
    kind        text NOT NULL,
    payload     text NOT NULL,
    next_run_at timestamptz NOT NULL,
    last_run_at timestamptz,
    enabled     bigint NOT NULL DEFAULT 1
);
