-- Enrichment: resolved records per (lead, group), provider settings per workspace, usage
-- counters for quotas, and the event log (outbox) that enrichment results are written to.

CREATE TABLE enrichment_records (
    workspace_id BLOB NOT NULL REFERENCES workspaces (id),
    lead_id      BLOB NOT NULL REFERENCES leads (id) ON DELETE CASCADE,
    grp          TEXT NOT NULL,
    -- canonical values, their sources and the providers asked, as JSON
    fields       TEXT NOT NULL,
    sources      TEXT NOT NULL,
    tried        TEXT NOT NULL,
    subject_hash TEXT NOT NULL,
    fetched_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, lead_id, grp)
);
CREATE INDEX enrichment_records_lead ON enrichment_records (lead_id);
CREATE INDEX enrichment_records_expiry ON enrichment_records (expires_at);

CREATE TABLE enrichment_settings (
    workspace_id   BLOB PRIMARY KEY REFERENCES workspaces (id),
    default_policy TEXT NOT NULL,
    -- {"person": ["sandbox", "pdl"], ...}
    waterfalls     TEXT NOT NULL,
    updated_at     INTEGER NOT NULL
);

CREATE TABLE provider_configs (
    workspace_id       BLOB NOT NULL REFERENCES workspaces (id),
    provider           TEXT NOT NULL,
    enabled            INTEGER NOT NULL,
    -- base64 of nonce || XChaCha20-Poly1305 ciphertext; the last four characters in clear
    api_key_sealed     TEXT,
    api_key_last4      TEXT,
    daily_credit_cap   INTEGER,
    monthly_credit_cap INTEGER,
    rate_per_second    INTEGER,
    timeout_ms         INTEGER,
    options            TEXT NOT NULL,
    disabled_reason    TEXT,
    updated_at         INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, provider)
);

-- One row per (workspace, provider, period kind); `period_start` rolls forward, so the table
-- stays small. `used` is credits for day/month and calls for second.
CREATE TABLE provider_usage (
    workspace_id BLOB NOT NULL,
    provider     TEXT NOT NULL,
    period       TEXT NOT NULL,
    period_start INTEGER NOT NULL,
    used         INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, provider, period)
);

CREATE TABLE events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace_id BLOB NOT NULL,
    type         TEXT NOT NULL,
    subject_id   BLOB,
    payload      TEXT NOT NULL,
    created_at   INTEGER NOT NULL
);
CREATE INDEX events_by_workspace ON events (workspace_id, id);
