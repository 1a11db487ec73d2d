//! Erasure tombstones, shared by both backends and stamped out per backend by
//! `impl_erasure_repo!` like `repo::impl_repos!`.

macro_rules! impl_erasure_repo {
    ($store:ty) => {
        pub(super) mod erasure_repo {
            use sqlx::Row as _;
            use $crate::domain::{EmailHash, WorkspaceId};
            use $crate::store::repo::interpret;
            use $crate::store::sql::SqlBuilder;
            use $crate::store::{ErasureRepo, StoreResult};

            type Qb = sqlx::QueryBuilder<super::Db>;

            /// Hashes per lookup statement, well under either backend's parameter limit.
            const LOOKUP_CHUNK: usize = 5_000;

            impl ErasureRepo for $store {
                async fn tombstoned(
                    &self,
                    ws: WorkspaceId,
                    hashes: &[EmailHash],
                ) -> StoreResult<Vec<EmailHash>> {
                    let mut found = Vec::new();
                    for chunk in hashes.chunks(LOOKUP_CHUNK) {
                        let mut qb =
                            Qb::new("SELECT email_hash FROM erasure_tombstones WHERE workspace_id = ");
                        qb.push_uuid(ws.as_uuid());
                        qb.push(" AND email_hash IN (");
                        for (i, h) in chunk.iter().enumerate() {
                            if i > 0 {
                                qb.push(", ");
                            }
                            qb.push_text(h.as_str().to_owned());
                        }
                        qb.push(")");
                        let rows = qb.build().fetch_all(&self.read).await.map_err(interpret)?;
                        for r in rows {
                            found.push(EmailHash::from_trusted(r.try_get(0).map_err(interpret)?));
                        }
                    }
                    Ok(found)
                }
            }
        }
    };
}

pub(crate) use impl_erasure_repo;
