//! API keys: their rows (digests of secrets, never secrets), the listing, revocation and
//! rotation, the whole table for the key rings, the change marker they poll, and last-use
//! times flushed in one statement.
//!
//! Every create, rotation and revocation raises the row's `version`, and rows are never
//! deleted, so `SUM(version)` grows with every committed change whatever the commit order:
//! one aggregate over a small table tells an instance whether to reload.

use super::dialect::Row;
use super::keyset::KeyOrder;
use super::{Store, StoreError, StoreResult};
use crate::domain::{
    ApiKey, ApiKeyId, KeyDigest, KeysetPage, Paged, RateLimit, Role, Scopes, Timestamp, WorkspaceId,
};

const KEY_COLUMNS: &str = "SELECT id, workspace_id, name, prefix, secret_hash, previous_hash, previous_until, \
     role, scopes, rate_limit, created_at, created_by, last_used_at, expires_at, revoked_at FROM api_keys WHERE ";

fn digest(raw: &str) -> StoreResult<KeyDigest> {
    KeyDigest::from_hex(raw).ok_or_else(|| StoreError::corrupt("api_keys: a digest is not hex SHA-256"))
}

fn key_from_row(r: &Row) -> StoreResult<ApiKey> {
    let role: String = r.get(7)?;
    let scopes: String = r.get(8)?;
    let previous = match (r.get::<Option<String>>(5)?, r.get::<Option<Timestamp>>(6)?) {
        (Some(hash), Some(until)) => Some((digest(&hash)?, until)),
        _ => None,
    };
    Ok(ApiKey {
        id: ApiKeyId::from_uuid(r.get(0)?),
        workspace_id: WorkspaceId::from_uuid(r.get(1)?),
        name: r.get(2)?,
        prefix: r.get(3)?,
        digest: digest(&r.get::<String>(4)?)?,
        previous,
        role: Role::parse(&role).ok_or_else(|| StoreError::corrupt(format!("api_keys: role {role}")))?,
        scopes: Scopes::from_stored(&scopes)
            .ok_or_else(|| StoreError::corrupt(format!("api_keys: scopes {scopes}")))?,
        rate_limit: r
            .get::<Option<String>>(9)?
            .map(|raw| RateLimit::parse(&raw).map_err(StoreError::corrupt))
            .transpose()?,
        created_at: r.get(10)?,
        created_by: r.get(11)?,
        last_used_at: r.get(12)?,
        expires_at: r.get(13)?,
        revoked_at: r.get(14)?,
    })
}

impl Store {
    pub async fn insert_api_key(&self, key: &ApiKey) -> StoreResult<()> {
        let mut qb = self.sql(
            "INSERT INTO api_keys (id, workspace_id, name, prefix, secret_hash, previous_hash, previous_until, \
             role, scopes, rate_limit, created_at, created_by, last_used_at, expires_at, revoked_at, version) \
             VALUES (",
        );
        let (previous_hash, previous_until) = key.previous.map(|(d, t)| (d.to_hex(), t)).unzip();
        qb.bind_list([
            key.id.into(),
            key.workspace_id.into(),
            key.name.clone().into(),
            key.prefix.clone().into(),
            key.digest.to_hex().into(),
            previous_hash.into(),
            previous_until.into(),
            key.role.as_str().to_owned().into(),
            key.scopes.to_string().into(),
            key.rate_limit.map(|r| r.to_string()).into(),
            key.created_at.into(),
            key.created_by.clone().into(),
            key.last_used_at.into(),
            key.expires_at.into(),
            key.revoked_at.into(),
            crate::domain::Value::Integer(1),
        ]);
        qb.push(")");
        self.execute(qb).await?;
        Ok(())
    }

    /// A page of the workspace's keys, newest first.
    pub async fn api_keys(&self, ws: WorkspaceId, page: &KeysetPage<ApiKeyId>) -> StoreResult<Paged<ApiKey>> {
        let mut qb = self.sql(KEY_COLUMNS);
        qb.push("workspace_id = ");
        qb.bind(ws);
        self.keyset_page(qb, KeyOrder::NEWEST_FIRST, page, key_from_row)
            .await
    }

    pub async fn api_key(&self, ws: WorkspaceId, id: ApiKeyId) -> StoreResult<Option<ApiKey>> {
        let mut qb = self.sql(KEY_COLUMNS);
        qb.push("workspace_id = ");
        qb.bind(ws);
        qb.push(" AND id = ");
        qb.bind(id);
        let row = self.fetch_optional(qb).await?;
        row.as_ref().map(key_from_row).transpose()
    }

    /// The workspace a key belongs to.
    pub async fn api_key_workspace(&self, id: ApiKeyId) -> StoreResult<Option<WorkspaceId>> {
        let mut qb = self.sql("SELECT workspace_id FROM api_keys WHERE id = ");
        qb.bind(id);
        let row = self.fetch_optional(qb).await?;
        row.map(|r| r.get(0).map(WorkspaceId::from_uuid)).transpose()
    }

    /// Every key of every workspace, revoked and expired ones included (so that they are
    /// refused with their reason).
    pub async fn all_api_keys(&self) -> StoreResult<Vec<ApiKey>> {
        let qb = self.sql(format!("{KEY_COLUMNS}1 = 1 ORDER BY id"));
        let rows = self.fetch_all(qb).await?;
        rows.iter().map(key_from_row).collect()
    }

    /// Grows with every create, rotation and revocation.
    pub async fn api_keys_marker(&self) -> StoreResult<i64> {
        let qb = self.sql("SELECT CAST(COALESCE(SUM(version), 0) AS BIGINT) FROM api_keys");
        self.fetch_one(qb).await?.get(0)
    }

    /// Revokes a key that is not revoked yet; false when there is none such.
    pub async fn revoke_api_key(&self, ws: WorkspaceId, id: ApiKeyId, at: Timestamp) -> StoreResult<bool> {
        let mut qb = self.sql("UPDATE api_keys SET version = version + 1, revoked_at = ");
        qb.bind(at);
        qb.push(" WHERE workspace_id = ");
        qb.bind(ws);
        qb.push(" AND id = ");
        qb.bind(id);
        qb.push(" AND revoked_at IS NULL");
        Ok(self.execute(qb).await? > 0)
    }

    /// Gives an unrevoked key a new secret; the one it had stays valid until `old_until`.
    /// False when there is no such key.
    pub async fn rotate_api_key(
        &self,
        ws: WorkspaceId,
        id: ApiKeyId,
        digest: KeyDigest,
        prefix: &str,
        old_until: Timestamp,
    ) -> StoreResult<bool> {
        // the right-hand sides read the row as it was, so the old secret moves to previous_hash
        let mut qb = self
            .sql("UPDATE api_keys SET version = version + 1, previous_hash = secret_hash, previous_until = ");
        qb.bind(old_until);
        qb.push(", secret_hash = ");
        qb.bind(digest.to_hex());
        qb.push(", prefix = ");
        qb.bind(prefix.to_owned());
        qb.push(" WHERE workspace_id = ");
        qb.bind(ws);
        qb.push(" AND id = ");
        qb.bind(id);
        qb.push(" AND revoked_at IS NULL");
        Ok(self.execute(qb).await? > 0)
    }

    /// Records when keys were last used, in one statement; never moves a time back.
    pub async fn touch_api_keys(&self, uses: &[(ApiKeyId, Timestamp)]) -> StoreResult<()> {
        for chunk in uses.chunks(self.dialect().max_binds() / 3) {
            let mut qb = self.sql("UPDATE api_keys SET last_used_at = CASE id");
            for (id, at) in chunk {
                qb.push(" WHEN ");
                qb.bind(*id);
                qb.push(" THEN ");
                qb.bind(*at);
            }
            qb.push(" END WHERE id IN (");
            qb.bind_list(chunk.iter().map(|(id, _)| *id));
            qb.push(")");
            self.execute(qb).await?;
        }
        Ok(())
    }
}
