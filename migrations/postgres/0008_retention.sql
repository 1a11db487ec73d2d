-- Retention (per-workspace policy and the record of each run) and the erasure audit log.
-- Every policy field is optional: NULL means "do not do this".
CREATE TABLE retention_policies (
    workspace_id               UUID PRIMARY KEY REFERENCES workspaces (id),
    archive_after_days         BIGINT,
    delete_archived_after_days BIGINT,
    compact_enrichment         BIGINT NOT NULL DEFAULT 0,
    event_ttl_days             BIGINT,
    updated_at                 TIMESTAMPTZ NOT NULL
);

CREATE TABLE retention_runs (
    id                    UUID PRIMARY KEY,
    workspace_id         UUID NOT NULL REFERENCES workspaces (id),
    -- 'schedule' or 'manual'
    trigger_kind         TEXT NOT NULL,
    dry_run              BIGINT NOT NULL,
    started_at           TIMESTAMPTZ NOT NULL,
    finished_at          TIMESTAMPTZ,
    archived             BIGINT NOT NULL DEFAULT 0,
    deleted              BIGINT NOT NULL DEFAULT 0,
    enrichment_compacted BIGINT NOT NULL DEFAULT 0,
    events_compacted     BIGINT NOT NULL DEFAULT 0,
    error                TEXT
);
CREATE INDEX retention_runs_by_workspace ON retention_runs (workspace_id, id);

-- Who erased which lead and what went with it. No email, no name: the lead id is all that
-- links a record to the (now deleted) person.
CREATE TABLE erasures (
    id                  UUID PRIMARY KEY,
    workspace_id       UUID NOT NULL REFERENCES workspaces (id),
    lead_id            UUID NOT NULL,
    actor_subject      TEXT NOT NULL,
    reason             TEXT,
    erased_at          TIMESTAMPTZ NOT NULL,
    enrichment_records BIGINT NOT NULL,
    events_scrubbed    BIGINT NOT NULL,
    deliveries_scrubbed BIGINT NOT NULL,
    jobs_scrubbed      BIGINT NOT NULL,
    rows_by_email_hash BIGINT NOT NULL
);
CREATE INDEX erasures_by_workspace ON erasures (workspace_id, id);
-- compaction finds a workspace's expired records (leads by age use leads_updated/leads_archived)
CREATE INDEX enrichment_records_ws_expiry ON enrichment_records (workspace_id, expires_at);
