-- Outbound webhooks: the endpoints partners registered and every delivery attempt.
CREATE TABLE webhook_endpoints (
    id                   BLOB PRIMARY KEY,
    workspace_id         BLOB NOT NULL REFERENCES workspaces (id),
    url                  TEXT NOT NULL,
    description          TEXT,
    event_types          TEXT NOT NULL,          -- JSON array of event types
    secret_sealed        TEXT NOT NULL,
    secret_last4         TEXT NOT NULL,
    enabled              INTEGER NOT NULL,
    disabled_reason      TEXT,
    disabled_at          INTEGER,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    cursor               INTEGER NOT NULL,       -- newest event number queued for delivery
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL
);
CREATE INDEX webhook_endpoints_by_workspace ON webhook_endpoints (workspace_id, created_at);

CREATE TABLE webhook_deliveries (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace_id  BLOB NOT NULL,
    endpoint_id   BLOB NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_seq     INTEGER NOT NULL,
    event_type    TEXT NOT NULL,
    attempt       INTEGER NOT NULL,
    status        INTEGER,
    response_body TEXT,
    error         TEXT,
    duration_ms   INTEGER NOT NULL,
    succeeded     INTEGER NOT NULL,
    created_at    INTEGER NOT NULL
);
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, id);
CREATE INDEX webhook_deliveries_by_time ON webhook_deliveries (created_at);
