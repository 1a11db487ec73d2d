-- Erasure (right to be forgotten). A tombstone keeps only a salted hash of the erased email
-- (see `EmailHash`), so imports and lead creation can refuse to bring the person back.
CREATE TABLE erasure_tombstones (
    workspace_id UUID NOT NULL REFERENCES workspaces (id),
    email_hash   TEXT NOT NULL,
    erased_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (workspace_id, email_hash)
);
