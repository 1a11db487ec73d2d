-- Workspaces, settings and leads. Text that is sorted or compared uses the "C" collation so
-- that ordering and cursors agree byte for byte with the SQLite backend.

CREATE TABLE workspaces (
    id                  uuid PRIMARY KEY,
    slug                text NOT NULL UNIQUE,
    name                text NOT NULL,
    created_at          timestamptz NOT NULL,
    -- maintained by every write to leads, so an unfiltered totalCount needs no count(*)
    lead_count          bigint NOT NULL DEFAULT 0,
    archived_lead_count bigint NOT NULL DEFAULT 0
);

CREATE TABLE settings (
    key   text PRIMARY KEY,
    value text NOT NULL
);

CREATE TABLE leads (
    id             uuid PRIMARY KEY,
    workspace_id   uuid NOT NULL REFERENCES workspaces (id),
    email          text COLLATE "C",
    first_name     text,
    last_name      text COLLATE "C" NOT NULL DEFAULT '',
    title          text,
    company_name   text COLLATE "C" NOT NULL DEFAULT '',
    company_domain text,
    phone          text,
    linkedin_url   text,
    country        text COLLATE "C",
    source         text COLLATE "C",
    status         text COLLATE "C" NOT NULL,
    owner          text COLLATE "C",
    score          integer NOT NULL DEFAULT 0,
    tags           text NOT NULL DEFAULT '[]',
    custom_fields  text NOT NULL DEFAULT '{}',
    -- lower-cased names, email and company, for `search`
    search_text    text COLLATE "C" NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    archived_at    timestamptz,
    version        bigint NOT NULL DEFAULT 1
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
    workspace_id uuid NOT NULL,
    tag          text COLLATE "C" NOT NULL,
    lead_id      uuid NOT NULL REFERENCES leads (id) ON DELETE CASCADE,
    PRIMARY KEY (workspace_id, tag, lead_id)
);
CREATE INDEX lead_tags_lead ON lead_tags (lead_id);
