-- API keys: long-lived credentials of partners and services, per workspace. Only the SHA-256
-- digest of a secret is kept; `previous_hash` is the secret a rotation replaced, accepted until
-- `previous_until`. `version` grows with every create, rotation and revocation, so instances
-- notice a change by polling SUM(version) and reload their key rings.
CREATE TABLE api_keys (
    id             BLOB PRIMARY KEY,
    workspace_id   BLOB NOT NULL REFERENCES workspaces (id),
    name           TEXT NOT NULL,
    prefix         TEXT NOT NULL,          -- the secret's first 12 characters, for display
    secret_hash    TEXT NOT NULL,          -- hex SHA-256 of the secret
    previous_hash  TEXT,
    previous_until INTEGER,
    role           TEXT NOT NULL,          -- admin | member | viewer | partner
    scopes         TEXT NOT NULL,          -- leads:read,leads:write,subscribe,bulk,admin
    rate_limit     TEXT,                   -- e.g. 600/min
    created_at     INTEGER NOT NULL,
    created_by     TEXT NOT NULL,          -- the creator's subject
    last_used_at   INTEGER,
    expires_at     INTEGER,
    revoked_at     INTEGER,
    version        INTEGER NOT NULL
);
CREATE INDEX api_keys_by_workspace ON api_keys (workspace_id, id);
