-- Enrichment: resolved records per (lead, group), provider settings per workspace, usage
-- counters for quotas, and the event log (outbox) that enrichment results are written to.

CREATE TABLE enrichment_records (
    workspace_id uuid NOT NULL REFERENCES workspaces (id),
    lead_id      uuid NOT NULL REFERENCES leads (id) ON DELETE CASCADE,
    grp          text NOT NULL,
    -- canonical values, their sources and the providers asked, as JSON
    fields       text NOT NULL,
    sources      text NOT NULL,
    tried        text NOT NULL,
    subject_hash text NOT NULL,
    fetched_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, lead_id, grp)
);
CREATE INDEX enrichment_records_lead ON enrichment_records (lead_id);
CREATE INDEX enrichment_records_expiry ON enrichment_records (expires_at);

CREATE TABLE enrichment_settings (
    workspace_id   uuid PRIMARY KEY REFERENCES workspaces (id),
    default_policy text NOT NULL,
    -- {"person": ["sandbox", "pdl"], ...}
    waterfalls     text NOT NULL,
    updated_at     timestamptz NOT NULL
);

CREATE TABLE provider_configs (
    workspace_id       uuid NOT NULL REFERENCES workspaces (id),
    provider           text NOT NULL,
    -- 1 or 0, as on SQLite
    enabled            bigint NOT NULL,
    -- base64 of nonce || XChaCha20-Poly1305 ciphertext; the last four characters in clear
    api_key_sealed     text,
    api_key_last4      text,
    daily_credit_cap   bigint,
    monthly_credit_cap bigint,
    rate_per_second    bigint,
    timeout_ms         bigint,
    options            text NOT NULL,
    disabled_reason    text,
    updated_at         timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, provider)
);

-- One row per (workspace, provider, period kind); `period_start` rolls forward, so the table
-- stays small. `used` is credits for day/month and calls for second.
CREATE TABLE provider_usage (
    workspace_id uuid NOT NULL,
    provider     text NOT NULL,
    period       text NOT NULL,
    period_start timestamptz NOT NULL,
    used         bigint NOT NULL,
    PRIMARY KEY (workspace_id, provider, period)
);

CREATE TABLE events (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id uuid NOT NULL,
    type         text NOT NULL,
    subject_id   uuid,
    payload      text NOT NULL,
    created_at   timestamptz NOT NULL
);
CREATE INDEX events_by_workspace ON events (workspace_id, id);
