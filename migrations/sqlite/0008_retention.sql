-- Retention (per-workspace policy and the record of each run) and the erasure audit log.
-- Every policy field is optional: NULL means "do not do this".
CREATE TABLE retention_policies (
    workspace_id               BLOB PRIMARY KEY REFERENCES workspaces (id),
    archive_after_days         INTEGER,
    delete_archived_after_days INTEGER,
    compact_enrichment         INTEGER NOT NULL DEFAULT 0,
    event_ttl_days             INTEGER,
    updated_at                 INTEGER NOT NULL
);

CREATE TABLE retention_runs (
    id                    BLOB PRIMARY KEY,
    workspace_id         BLOB NOT NULL REFERENCES workspaces (id),
    -- 'schedule' or 'manual'
    trigger_kind         TEXT NOT NULL,
    dry_run              INTEGER NOT NULL,
    started_at           INTEGER NOT NULL,
    finished_at          INTEGER,
    archived             INTEGER NOT NULL DEFAULT 0,
    deleted              INTEGER NOT NULL DEFAULT 0,
    enrichment_compacted INTEGER NOT NULL DEFAULT 0,
    events_compacted     INTEGER NOT NULL DEFAULT 0,
    error                TEXT
);
CREATE INDEX retention_runs_by_workspace ON retention_runs (workspace_id, id);

-- Who erased which lead and what went with it. No email, no name: the lead id is all that
-- links a record to the (now deleted) person.
CREATE TABLE erasures (
    id                  BLOB PRIMARY KEY,
    workspace_id       BLOB NOT NULL REFERENCES workspaces (id),
    lead_id            BLOB NOT NULL,
    actor_subject      TEXT NOT NULL,
    reason             TEXT,
    erased_at          INTEGER NOT NULL,
    enrichment_records INTEGER NOT NULL,
    events_scrubbed    INTEGER NOT NULL,
    deliveries_scrubbed INTEGER NOT NULL,
    jobs_scrubbed      INTEGER NOT NULL,
    rows_by_email_hash INTEGER NOT NULL
);
CREATE INDEX erasures_by_workspace ON erasures (workspace_id, id);
-- compaction finds a workspace's expired records (leads by age use leads_updated/leads_archived)
CREATE INDEX enrichment_records_ws_expiry ON enrichment_records (workspace_id, expires_at);
