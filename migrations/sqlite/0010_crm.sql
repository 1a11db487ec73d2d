-- CRM connections per workspace, the link of each lead to its CRM record, sync runs, and what
-- inbound webhooks delivered (for idempotence and the record of refused requests).
CREATE TABLE crm_connections (
    id                  BLOB PRIMARY KEY,
    workspace_id        BLOB NOT NULL REFERENCES workspaces (id),
    kind                TEXT NOT NULL,          -- hubspot | salesforce | pipedrive
    name                TEXT NOT NULL,
    api_base_url        TEXT NOT NULL,
    token_url           TEXT,
    credentials_sealed  TEXT NOT NULL,          -- JSON of the credentials, sealed
    credentials_hint    TEXT NOT NULL,          -- which credentials are set, no values
    field_mapping       TEXT NOT NULL,          -- JSON
    push_on_change      INTEGER NOT NULL,
    poll_interval_secs  INTEGER,
    on_deletion         TEXT NOT NULL,          -- archive | unlink
    event_cursor        INTEGER NOT NULL,       -- newest event number looked at for pushes
    poll_cursor         TEXT,                   -- the CRM's own cursor of the last poll
    polled_at           INTEGER,
    blocked_until       INTEGER,                -- no request before this (429, Retry-After)
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL
);
CREATE INDEX crm_connections_by_workspace ON crm_connections (workspace_id, created_at);

CREATE TABLE crm_links (
    workspace_id   BLOB NOT NULL,
    connection_id  BLOB NOT NULL REFERENCES crm_connections (id) ON DELETE CASCADE,
    lead_id        BLOB NOT NULL,
    external_id    TEXT,
    status         TEXT NOT NULL,               -- synced | pending | failed
    generation     INTEGER NOT NULL,            -- bumped by every change marked for push
    synced_hash    TEXT,                        -- digest of the mapped values both sides agree on
    remote_clock   TEXT NOT NULL,               -- JSON: property -> newest occurredAt applied (ms)
    last_synced_at INTEGER,
    last_error     TEXT,
    pending_since  INTEGER,
    PRIMARY KEY (connection_id, lead_id)
);
CREATE INDEX crm_links_pending ON crm_links (connection_id, status, lead_id);
CREATE INDEX crm_links_by_lead ON crm_links (lead_id);
CREATE UNIQUE INDEX crm_links_by_external ON crm_links (connection_id, external_id);

CREATE TABLE crm_sync_runs (
    id            BLOB PRIMARY KEY,
    workspace_id  BLOB NOT NULL,
    connection_id BLOB NOT NULL REFERENCES crm_connections (id) ON DELETE CASCADE,
    trigger_kind  TEXT NOT NULL,                -- push | poll | webhook | manual
    started_at    INTEGER NOT NULL,
    finished_at   INTEGER,
    pushed        INTEGER NOT NULL DEFAULT 0,
    pulled        INTEGER NOT NULL DEFAULT 0,
    failed        INTEGER NOT NULL DEFAULT 0,
    skipped       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX crm_sync_runs_by_connection ON crm_sync_runs (workspace_id, id);

CREATE TABLE crm_inbound_events (
    connection_id BLOB NOT NULL REFERENCES crm_connections (id) ON DELETE CASCADE,
    event_id      TEXT NOT NULL,
    received_at   INTEGER NOT NULL,
    PRIMARY KEY (connection_id, event_id)
);
CREATE INDEX crm_inbound_events_by_time ON crm_inbound_events (received_at);

CREATE TABLE crm_webhook_receipts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace_id  BLOB NOT NULL,
    connection_id BLOB NOT NULL REFERENCES crm_connections (id) ON DELETE CASCADE,
    status        INTEGER NOT NULL,             -- the HTTP status answered
    outcome       TEXT NOT NULL,                -- applied | duplicate | bad_signature | malformed
    detail        TEXT,                         -- our own words: no value from the body
    events        INTEGER NOT NULL,
    received_at   INTEGER NOT NULL
);
CREATE INDEX crm_webhook_receipts_by_connection ON crm_webhook_receipts (connection_id, id);
