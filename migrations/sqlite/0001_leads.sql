-- Workspaces, settings and leads. Timestamps are INTEGER microseconds since the Unix epoch;
-- ids are 16-byte UUID blobs; absent names and companies are stored as '' so they sort and
-- page like any other key.

CREATE TABLE workspaces (
    id                  BLOB PRIMARY KEY,
    slug                TEXT NOT NULL UNIQUE,
    name                TEXT NOT NULL,
    created_at          INTEGER NOT NULL,
    -- maintained by every write to leads, so an unfiltered totalCount needs no count(*)
    lead_count          INTEGER NOT NULL DEFAULT 0,
    archived_lead_count INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE leads (
    id             BLOB PRIMARY KEY,
    workspace_id   BLOB NOT NULL REFERENCES workspaces (id),
    email          TEXT,
    first_name     TEXT,
    last_name      TEXT NOT NULL DEFAULT '',
    title          TEXT,
    company_name   TEXT NOT NULL DEFAULT '',
    company_domain TEXT,
    phone          TEXT,
    linkedin_url   TEXT,
    country        TEXT,
    source         TEXT,
    status         TEXT NOT NULL,
    owner          TEXT,
    score          INTEGER NOT NULL DEFAULT 0,
    tags           TEXT NOT NULL DEFAULT '[]',
    custom_fields  TEXT NOT NULL DEFAULT '{}',
    -- lower-cased names, email and company, for `search`
    search_text    TEXT NOT NULL DEFAULT '',
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    archived_at    INTEGER,
    version        INTEGER NOT NULL DEFAULT 1
);

-- One index per offered sort, over the leads listings show by default (not archived), each
-- ending in the id tiebreaker. Status and country ride along so that the common filters on
-- them are checked in the index while it is walked in order, without reading rows.
CREATE INDEX leads_created ON leads (workspace_id, created_at, id, status, country) WHERE archived_at IS NULL;
CREATE INDEX leads_updated ON leads (workspace_id, updated_at, id, status, country) WHERE archived_at IS NULL;
CREATE INDEX leads_last_name ON leads (workspace_id, last_name, id, status, country) WHERE archived_at IS NULL;
CREATE INDEX leads_company_name ON leads (workspace_id, company_name, id, status, country) WHERE archived_at IS NULL;
CREATE INDEX leads_score ON leads (workspace_id, score, id, status, country) WHERE archived_at IS NULL;
-- filters
CREATE UNIQUE INDEX leads_email ON leads (workspace_id, email) WHERE email IS NOT NULL;
CREATE INDEX leads_owner ON leads (workspace_id, owner) WHERE owner IS NOT NULL;
CREATE INDEX leads_source ON leads (workspace_id, source) WHERE source IS NOT NULL;
-- archived leads are few and listed rarely: found by this index, then sorted
CREATE INDEX leads_archived ON leads (workspace_id, archived_at) WHERE archived_at IS NOT NULL;

CREATE TABLE lead_tags (
    workspace_id BLOB NOT NULL,
    tag          TEXT NOT NULL,
    lead_id      BLOB NOT NULL REFERENCES leads (id) ON DELETE CASCADE,
    PRIMARY KEY (workspace_id, tag, lead_id)
) WITHOUT ROWID;
CREATE INDEX lead_tags_lead ON lead_tags (lead_id);
