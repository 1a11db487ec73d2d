-- Campaigns: the definition, one enrollment per (campaign, lead) that is also the lead's
-- scheduled step (its due time), the activity timeline, every message with its idempotency
-- key, send counters for the throttles, suppressions and inbound mail events (dedupe).
ALTER TABLE leads ADD COLUMN time_zone text COLLATE "C";

CREATE TABLE campaigns (
    id            uuid PRIMARY KEY,
    workspace_id  uuid NOT NULL REFERENCES workspaces (id),
    name          text NOT NULL,
    state         text NOT NULL,                 -- draft | active | paused | completed | archived
    definition    text NOT NULL,                 -- JSON: segment, steps, senders, window, throttles, stop rules
    stop_statuses text NOT NULL,                 -- ',CUSTOMER,QUALIFIED,': the claim checks it in SQL
    version       bigint NOT NULL,
    segment_at    timestamptz,                       -- when the segment was last evaluated
    event_cursor  bigint NOT NULL DEFAULT 0,    -- newest lead event looked at for entries
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    activated_at  timestamptz,
    paused_at     timestamptz
);
CREATE INDEX campaigns_by_workspace ON campaigns (workspace_id, created_at, id);

CREATE TABLE campaign_enrollments (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id  uuid NOT NULL,
    campaign_id   uuid NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    lead_id       uuid NOT NULL,
    state         text NOT NULL,                 -- active | completed | exited
    step          bigint NOT NULL,              -- index of the step to run next
    entry         bigint NOT NULL,              -- 1 for the first entry, 2 after a re-entry, …
    due_at        timestamptz,                       -- when the next step is due (null: not scheduled)
    lease_token   text,                          -- the step job that holds it
    lease_until   timestamptz,
    waiting_for   text,                          -- reply | click | field:<name> while a waitFor step waits
    matched       bigint NOT NULL DEFAULT 0,    -- the awaited event came
    failures      bigint NOT NULL DEFAULT 0,
    exit_reason   text,
    entered_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    finished_at   timestamptz
);
CREATE UNIQUE INDEX campaign_enrollments_by_lead ON campaign_enrollments (campaign_id, lead_id);
CREATE INDEX campaign_enrollments_due ON campaign_enrollments (due_at) WHERE state = 'active' AND due_at IS NOT NULL;
CREATE INDEX campaign_enrollments_of_lead ON campaign_enrollments (lead_id);

CREATE TABLE campaign_activity (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id  uuid NOT NULL,
    campaign_id   uuid NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    lead_id       uuid NOT NULL,
    entry         bigint NOT NULL,
    step          bigint NOT NULL,              -- -1 for what is not a step (entry, stop)
    kind          text NOT NULL,                 -- entered | email | wait | … | exited | stopped
    outcome       text NOT NULL,
    variant       bigint,
    detail        text,                          -- our own words, no message body
    occurred_at   timestamptz NOT NULL
);
CREATE INDEX campaign_activity_of_lead ON campaign_activity (lead_id, id);
CREATE INDEX campaign_activity_of_campaign ON campaign_activity (campaign_id, kind, outcome);

CREATE TABLE campaign_messages (
    message_id     text PRIMARY KEY,             -- the Message-ID, derived from the idempotency key
    workspace_id   uuid NOT NULL,
    campaign_id    uuid NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    lead_id        uuid NOT NULL,
    entry          bigint NOT NULL,
    step           bigint NOT NULL,
    variant        bigint NOT NULL,
    mailbox        text NOT NULL,
    recipient      text,                         -- null once the lead is erased
    state          text NOT NULL,                -- sending | sent | unconfirmed | deferred | rejected
    attempts       bigint NOT NULL,
    detail         text,
    created_at     timestamptz NOT NULL,
    sent_at        timestamptz,
    delivered_at   timestamptz,
    bounced_at     timestamptz,
    replied_at     timestamptz,
    clicked_at     timestamptz,
    unsubscribed_at timestamptz,
    updated_at     timestamptz NOT NULL
);
CREATE UNIQUE INDEX campaign_messages_by_step ON campaign_messages (campaign_id, lead_id, entry, step);
CREATE INDEX campaign_messages_of_campaign ON campaign_messages (campaign_id, variant);

CREATE TABLE send_counters (
    scope         text NOT NULL,                 -- c:<campaign>:h | c:<campaign>:d | m:<mailbox>:d | r:<domain>:h
    window_start  timestamptz NOT NULL,
    used          bigint NOT NULL,
    PRIMARY KEY (scope, window_start)
);

CREATE TABLE mail_suppressions (
    workspace_id  uuid NOT NULL,
    email_hash    text NOT NULL,                 -- SHA-256 of the normalised address: survives erasure
    email         text,                          -- shown to admins; null once the lead is erased
    reason        text NOT NULL,                 -- unsubscribed | bounced | complained | manual
    created_at    timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, email_hash)
);

CREATE TABLE mail_events (
    provider      text NOT NULL,
    event_id      text NOT NULL,
    received_at   timestamptz NOT NULL,
    PRIMARY KEY (provider, event_id)
);
CREATE INDEX mail_events_by_time ON mail_events (received_at);
