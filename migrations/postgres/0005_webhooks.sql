-- Outbound webhooks: the endpoints partners registered and every delivery attempt.
CREATE TABLE webhook_endpoints (
    id                   uuid PRIMARY KEY,
    workspace_id         uuid NOT NULL REFERENCES workspaces (id),
    url                  text NOT NULL,
    description          text,
    event_types          text NOT NULL,          -- JSON array of event types
    secret_sealed        text NOT NULL,
    secret_last4         text NOT NULL,
    enabled              bigint NOT NULL,
    disabled_reason      text,
    disabled_at          timestamptz,
    consecutive_failures bigint NOT NULL DEFAULT 0,
    cursor               bigint NOT NULL,        -- newest event number queued for delivery
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL
);
CREATE INDEX webhook_endpoints_by_workspace ON webhook_endpoints (workspace_id, created_at);

CREATE TABLE webhook_deliveries (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id  uuid NOT NULL,
    endpoint_id   uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_seq     bigint NOT NULL,
    event_type    text NOT NULL,
    attempt       bigint NOT NULL,
    status        bigint,
    response_body text,
    error         text,
    duration_ms   bigint NOT NULL,
    succeeded     bigint NOT NULL,
    created_at    timestamptz NOT NULL
);
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, id);
CREATE INDEX webhook_deliveries_by_time ON webhook_deliveries (created_at);
