-- Imports of lead files (CSV, NDJSON). An import row is the checkpoint of a resumable run:
-- `rows_done` data rows are committed, spanning the first `byte_offset` bytes of the input,
-- whose SHA-256 is `prefix_sha256`; counters and checkpoint move in the transaction that
-- commits each chunk of leads.
CREATE TABLE imports (
    id                 UUID PRIMARY KEY,
    workspace_id       UUID NOT NULL REFERENCES workspaces (id),
    status             TEXT NOT NULL
        CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'interrupted')),
    format             TEXT NOT NULL,
    -- {"onDuplicate", "dryRun", "mapping": [{"column", "field"}], "defaultRegion"}
    options            TEXT NOT NULL,
    source_name        TEXT NOT NULL,
    rows_done          BIGINT NOT NULL DEFAULT 0,
    byte_offset        BIGINT NOT NULL DEFAULT 0,
    prefix_sha256      TEXT NOT NULL DEFAULT '',
    created            BIGINT NOT NULL DEFAULT 0,
    updated            BIGINT NOT NULL DEFAULT 0,
    unchanged          BIGINT NOT NULL DEFAULT 0,
    skipped_existing   BIGINT NOT NULL DEFAULT 0,
    duplicates_in_file BIGINT NOT NULL DEFAULT 0,
    invalid            BIGINT NOT NULL DEFAULT 0,
    blocked            BIGINT NOT NULL DEFAULT 0,
    job_id             BIGINT,
    error              TEXT,
    created_at         TIMESTAMPTZ NOT NULL,
    updated_at         TIMESTAMPTZ NOT NULL,
    started_at         TIMESTAMPTZ,
    finished_at        TIMESTAMPTZ
);
CREATE INDEX imports_by_workspace ON imports (workspace_id, id);

-- The error report: one row per (data row, problem). Reasons never contain an email; the
-- salted hash of the row's email lets erasure delete the rows of an erased person.
CREATE TABLE import_errors (
    workspace_id UUID NOT NULL,
    import_id    UUID NOT NULL REFERENCES imports (id) ON DELETE CASCADE,
    row_number   BIGINT NOT NULL,
    seq          INTEGER NOT NULL,
    column_name  TEXT,
    reason       TEXT NOT NULL,
    email_hash   TEXT,
    PRIMARY KEY (import_id, row_number, seq)
);
CREATE INDEX import_errors_email ON import_errors (workspace_id, email_hash)
    WHERE email_hash IS NOT NULL;

-- An uploaded file in 1 MiB chunks, read back by the `leads.import` job; deleted when the
-- import finishes.
CREATE TABLE import_uploads (
    import_id UUID NOT NULL REFERENCES imports (id) ON DELETE CASCADE,
    seq       INTEGER NOT NULL,
    data      BYTEA NOT NULL,
    PRIMARY KEY (import_id, seq)
);
