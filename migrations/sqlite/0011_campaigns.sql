-- Campaigns: the definition, one enrollment per (campaign, lead) that is also the lead's
-- scheduled step (its due time), the activity timeline, every message with its idempotency
-- key, send counters for the throttles, suppressions and inbound mail events (dedupe).
ALTER TABLE leads ADD COLUMN time_zone TEXT;

CREATE TABLE campaigns (
    id            BLOB PRIMARY KEY,
    workspace_id  BLOB NOT NULL REFERENCES workspaces (id),
    name          TEXT NOT NULL,
    state         TEXT NOT NULL,                 -- draft | active | paused | completed | archived
    definition    TEXT NOT NULL,                 -- JSON: segment, steps, senders, window, throttles, stop rules
    stop_statuses TEXT NOT NULL,                 -- ',CUSTOMER,QUALIFIED,': the claim checks it in SQL
    version       INTEGER NOT NULL,
    segment_at    INTEGER,                       -- when the segment was last evaluated
    event_cursor  INTEGER NOT NULL DEFAULT 0,    -- newest lead event looked at for entries
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    activated_at  INTEGER,
    paused_at     INTEGER
);
CREATE INDEX campaigns_by_workspace ON campaigns (workspace_id, created_at, id);

CREATE TABLE campaign_enrollments (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace_id  BLOB NOT NULL,
    campaign_id   BLOB NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    lead_id       BLOB NOT NULL,
    state         TEXT NOT NULL,                 -- active | completed | exited
    step          INTEGER NOT NULL,              -- index of the step to run next
    entry         INTEGER NOT NULL,              -- 1 for the first entry, 2 after a re-entry, …
    due_at        INTEGER,                       -- when the next step is due (null: not scheduled)
    lease_token   TEXT,                          -- the step job that holds it
    lease_until   INTEGER,
    waiting_for   TEXT,                          -- reply | click | field:<name> while a waitFor step waits
    matched       INTEGER NOT NULL DEFAULT 0,    -- the awaited event came
    failures      INTEGER NOT NULL DEFAULT 0,
    exit_reason   TEXT,
    entered_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    finished_at   INTEGER
);
CREATE UNIQUE INDEX campaign_enrollments_by_lead ON campaign_enrollments (campaign_id, lead_id);
CREATE INDEX campaign_enrollments_due ON campaign_enrollments (due_at) WHERE state = 'active' AND due_at IS NOT NULL;
CREATE INDEX campaign_enrollments_of_lead ON campaign_enrollments (lead_id);

CREATE TABLE campaign_activity (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace_id  BLOB NOT NULL,
    campaign_id   BLOB NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    lead_id       BLOB NOT NULL,
    entry         INTEGER NOT NULL,
    step          INTEGER NOT NULL,              -- -1 for what is not a step (entry, stop)
    kind          TEXT NOT NULL,                 -- entered | email | wait | … | exited | stopped
    outcome       TEXT NOT NULL,
    variant       INTEGER,
    detail        TEXT,                          -- our own words, no message body
    occurred_at   INTEGER NOT NULL
);
CREATE INDEX campaign_activity_of_lead ON campaign_activity (lead_id, id);
CREATE INDEX campaign_activity_of_campaign ON campaign_activity (campaign_id, kind, outcome);

CREATE TABLE campaign_messages (
    message_id     TEXT PRIMARY KEY,             -- the Message-ID, derived from the idempotency key
    workspace_id   BLOB NOT NULL,
    campaign_id    BLOB NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    lead_id        BLOB NOT NULL,
    entry          INTEGER NOT NULL,
    step           INTEGER NOT NULL,
    variant        INTEGER NOT NULL,
    mailbox        TEXT NOT NULL,
    recipient      TEXT,                         -- null once the lead is erased
    state          TEXT NOT NULL,                -- sending | sent | unconfirmed | deferred | rejected
    attempts       INTEGER NOT NULL,
    detail         TEXT,
    created_at     INTEGER NOT NULL,
    sent_at        INTEGER,
    delivered_at   INTEGER,
    bounced_at     INTEGER,
    replied_at     INTEGER,
    clicked_at     INTEGER,
    unsubscribed_at INTEGER,
    updated_at     INTEGER NOT NULL
);
CREATE UNIQUE INDEX campaign_messages_by_step ON campaign_messages (campaign_id, lead_id, entry, step);
CREATE INDEX campaign_messages_of_campaign ON campaign_messages (campaign_id, variant);

CREATE TABLE send_counters (
    scope         TEXT NOT NULL,                 -- c:<campaign>:h | c:<campaign>:d | m:<mailbox>:d | r:<domain>:h
    window_start  INTEGER NOT NULL,
    used          INTEGER NOT NULL,
    PRIMARY KEY (scope, window_start)
);

CREATE TABLE mail_suppressions (
    workspace_id  BLOB NOT NULL,
    email_hash    TEXT NOT NULL,                 -- SHA-256 of the normalised address: survives erasure
    email         TEXT,                          -- shown to admins; null once the lead is erased
    reason        TEXT NOT NULL,                 -- unsubscribed | bounced | complained | manual
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, email_hash)
);

CREATE TABLE mail_events (
    provider      TEXT NOT NULL,
    event_id      TEXT NOT NULL,
    received_at   INTEGER NOT NULL,
    PRIMARY KEY (provider, event_id)
);
CREATE INDEX mail_events_by_time ON mail_events (received_at);
