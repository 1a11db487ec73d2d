-- API keys: long-lived credentials of partners and services, per workspace. Only the SHA-256
-- digest of a secret is kept; `previous_hash` is the secret a rotation replaced, accepted until
-- `previous_until`. `version` grows with every create, rotation and revocation, so instances
-- notice a change by polling SUM(version) and reload their key rings.
CREATE TABLE api_keys (
    id             uuid PRIMARY KEY,
    workspace_id   uuid NOT NULL REFERENCES workspaces (id),
    name           text NOT NULL,
    prefix         text NOT NULL,          -- the secret's first 12 characters, for display
    secret_hash    text NOT NULL,          -- hex SHA-256 of the secret
    previous_hash  text,
    previous_until timestamptz,
    role           text NOT NULL,          -- admin | member | viewer | partner
    scopes         text NOT NULL,          -- leads:read,leads:write,subscribe,bulk,admin
    rate_limit     text,                   -- e.g. 600/min
    created_at     timestamptz NOT NULL,
    created_by     text NOT NULL,          -- the creator's subject
    last_used_at   timestamptz,
    expires_at     timestamptz,
    revoked_at     timestamptz,
    version        bigint NOT NULL
);
CREATE INDEX api_keys_by_workspace ON api_keys (workspace_id, id);
