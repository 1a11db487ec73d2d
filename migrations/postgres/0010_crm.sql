-- CRM connections per workspace, the link of each lead to its CRM record, sync runs, and what
-- inbound webhooks delivered (for idempotence and the record of refused requests).
CREATE TABLE crm_connections (
    id                  uuid PRIMARY KEY,
    workspace_id        uuid NOT NULL REFERENCES workspaces (id),
    kind                text NOT NULL,          -- hubspot | salesforce | pipedrive
    name                text NOT NULL,
    api_base_url        text NOT NULL,
    token_url           text,
    credentials_sealed  text NOT NULL,          -- JSON of the credentials, sealed
    credentials_hint    text NOT NULL,          -- which credentials are set, no values
    field_mapping       text NOT NULL,          -- JSON
    push_on_change      bigint NOT NULL,
    poll_interval_secs  bigint,
    on_deletion         text NOT NULL,          -- archive | unlink
    event_cursor        bigint NOT NULL,       -- newest event number looked at for pushes
    poll_cursor         text,                   -- the CRM's own cursor of the last poll
    polled_at           timestamptz,
    blocked_until       timestamptz,                -- no request before this (429, Retry-After)
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL
);
CREATE INDEX crm_connections_by_workspace ON crm_connections (workspace_id, created_at);

CREATE TABLE crm_links (
    workspace_id   uuid NOT NULL,
    connection_id  uuid NOT NULL REFERENCES crm_connections (id) ON DELETE CASCADE,
    lead_id        uuid NOT NULL,
    external_id    text,
    status         text NOT NULL,               -- synced | pending | failed
    generation     bigint NOT NULL,            -- bumped by every change marked for push
    synced_hash    text,                        -- digest of the mapped values both sides agree on
    remote_clock   text NOT NULL,               -- JSON: property -> newest occurredAt applied (ms)
    last_synced_at timestamptz,
    last_error     text,
    pending_since  timestamptz,
    PRIMARY KEY (connection_id, lead_id)
);
CREATE INDEX crm_links_pending ON crm_links (connection_id, status, lead_id);
CREATE INDEX crm_links_by_lead ON crm_links (lead_id);
CREATE UNIQUE INDEX crm_links_by_external ON crm_links (connection_id, external_id);

CREATE TABLE crm_sync_runs (
    id            uuid PRIMARY KEY,
    workspace_id  uuid NOT NULL,
    connection_id uuid NOT NULL REFERENCES crm_connections (id) ON DELETE CASCADE,
    trigger_kind  text NOT NULL,                -- push | poll | webhook | manual
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz,
    pushed        bigint NOT NULL DEFAULT 0,
    pulled        bigint NOT NULL DEFAULT 0,
    failed        bigint NOT NULL DEFAULT 0,
    skipped       bigint NOT NULL DEFAULT 0
);
CREATE INDEX crm_sync_runs_by_connection ON crm_sync_runs (workspace_id, id);

CREATE TABLE crm_inbound_events (
    connection_id uuid NOT NULL REFERENCES crm_connections (id) ON DELETE CASCADE,
    event_id      text NOT NULL,
    received_at   timestamptz NOT NULL,
    PRIMARY KEY (connection_id, event_id)
);
CREATE INDEX crm_inbound_events_by_time ON crm_inbound_events (received_at);

CREATE TABLE crm_webhook_receipts (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id  uuid NOT NULL,
    connection_id uuid NOT NULL REFERENCES crm_connections (id) ON DELETE CASCADE,
    status        bigint NOT NULL,             -- the HTTP status answered
    outcome       text NOT NULL,                -- applied | duplicate | bad_signature | malformed
    detail        text,                         -- our own words: no value from the body
    events        bigint NOT NULL,
    received_at   timestamptz NOT NULL
);
CREATE INDEX crm_webhook_receipts_by_connection ON crm_webhook_receipts (connection_id, id);
