//! Persisted queries: Apollo's automatic persisted queries (APQ) protocol and an allow-list.
//!
//! A client sends `extensions.persistedQuery = {version: 1, sha256Hash}` without `query`; the
//! server answers `PersistedQueryNotFound` (code `PERSISTED_QUERY_NOT_FOUND`) when it does not
//! know the hash, the client sends the hash with the document once, and from then on only the
//! hash. The document text is then found here and handed to the `documents` cache, which holds
//! it parsed: a hit neither receives nor parses the document. With Redis the registrations are
//! shared, so a document registered on one instance is known on all (kept `REDIS_TTL` after its
//! last registration); each instance also keeps what it saw in memory (`LOCAL_CAPACITY_BYTES`).
//!
//! Modes (`persisted_queries`): `auto` (the protocol above), `allowlist` (only the documents of
//! the manifest `persisted_queries_file` run, sent by hash or in full; registering is refused)
//! and `off` (`PersistedQueryNotSupported`). A hash that does not match the document sent with
//! it is refused, so nobody can register a document under another one's hash.

use crate::cluster::Redis;
use async_graphql::{Request, ServerError, Value};
use moka::sync::Cache;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Documents kept in this process, by their size.
const LOCAL_CAPACITY_BYTES: u64 = 8 << 20;

/// How long Redis keeps a registered document after its last registration.
const REDIS_TTL: Duration = Duration::from_secs(30 * 86_400);

/// Longest document that may be registered.
const MAX_DOCUMENT_BYTES: usize = 64 << 10;

pub const NOT_FOUND: &str = "PERSISTED_QUERY_NOT_FOUND";
pub const NOT_SUPPORTED: &str = "PERSISTED_QUERY_NOT_SUPPORTED";
pub const NOT_ALLOWED: &str = "PERSISTED_QUERY_NOT_ALLOWED";
const BAD_USER_INPUT: &str = "BAD_USER_INPUT";

/// What `persisted_queries` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Auto,
    AllowList,
    Off,
}

impl Mode {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "auto" => Some(Mode::Auto),
            "allowlist" => Some(Mode::AllowList),
            "off" => Some(Mode::Off),
            _ => None,
        }
    }
}

/// The persisted-query store of one gateway (see the module header); cheap to clone.
#[derive(Clone)]
pub struct PersistedQueries {
    inner: Arc<Inner>,
}

struct Inner {
    mode: Mode,
    manifest: HashMap<String, Arc<str>>,
    local: Cache<String, Arc<str>>,
    redis: Option<Redis>,
    hits: AtomicU64,
    misses: AtomicU64,
    registered: AtomicU64,
}

impl Default for PersistedQueries {
    fn default() -> Self {
        Self::new(Mode::Auto, HashMap::new(), None)
    }
}

impl PersistedQueries {
    /// A store in `mode` knowing `manifest` (hash → document) from the start.
    pub fn new(mode: Mode, manifest: HashMap<String, Arc<str>>, redis: Option<Redis>) -> Self {
        Self {
            inner: Arc::new(Inner {
                mode,
                manifest,
                local: Cache::builder()
                    .max_capacity(LOCAL_CAPACITY_BYTES)
                    .weigher(|k: &String, v: &Arc<str>| (k.len() + v.len()).try_into().unwrap_or(u32::MAX))
                    .build(),
                redis,
                hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
                registered: AtomicU64::new(0),
            }),
        }
    }

    pub fn mode(&self) -> Mode {
        self.inner.mode
    }

    /// Fills in `request.query` from its `persistedQuery` hash, registers a document sent with
    /// its hash, and enforces the allow-list. The error is the response's only error.
    pub async fn resolve(&self, request: &mut Request) -> Result<(), ServerError> {
        let Some(extension) = request.extensions.get("persistedQuery") else {
            if self.inner.mode == Mode::AllowList
                && !self.inner.manifest.contains_key(&sha256_hex(&request.query))
            {
                return Err(coded(
                    "only registered operations may run here; this document is not in the allow-list",
                    NOT_ALLOWED,
                ));
            }
            return Ok(());
        };
        let hash = parse_extension(extension)?;
        if self.inner.mode == Mode::Off {
            return Err(coded("PersistedQueryNotSupported", NOT_SUPPORTED));
        }
        if request.query.is_empty() {
            let text = self.find(&hash).await.ok_or_else(|| {
                self.inner.misses.fetch_add(1, Ordering::Relaxed);
                coded("PersistedQueryNotFound", NOT_FOUND)
            })?;
            self.inner.hits.fetch_add(1, Ordering::Relaxed);
            request.query = text.to_string();
            return Ok(());
        }
        if sha256_hex(&request.query) != hash {
            return Err(coded("provided sha does not match query", BAD_USER_INPUT));
        }
        match self.inner.mode {
            Mode::AllowList if !self.inner.manifest.contains_key(&hash) => Err(coded(
                "only registered operations may run here; this document is not in the allow-list",
                NOT_ALLOWED,
            )),
            Mode::Auto if request.query.len() <= MAX_DOCUMENT_BYTES => {
                self.register(hash, &request.query).await;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    async fn find(&self, hash: &str) -> Option<Arc<str>> {
        if let Some(text) = self.inner.manifest.get(hash) {
            return Some(text.clone());
        }
        if self.inner.mode != Mode::Auto {
            return None;
        }
        if let Some(text) = self.inner.local.get(hash) {
            return Some(text);
        }
        let redis = self.inner.redis.as_ref()?;
        let bytes = redis.get(&redis.key(&format!("apq:{hash}"))).await.ok()??;
        let text = String::from_utf8(bytes).ok()?;
        // what Redis holds was checked when it was registered, but check again: a Redis
        // shared with something else must not be able to run a document under another's hash
        if sha256_hex(&text) != hash {
            return None;
        }
        let text: Arc<str> = text.into();
        self.inner.local.insert(hash.to_owned(), text.clone());
        Some(text)
    }

    async fn register(&self, hash: String, text: &str) {
        if self.inner.local.contains_key(&hash) {
            return;
        }
        self.inner.registered.fetch_add(1, Ordering::Relaxed);
        if let Some(redis) = &self.inner.redis {
            // best effort: without Redis the document is still known here
            let _ = redis
                .set(&redis.key(&format!("apq:{hash}")), text.as_bytes(), REDIS_TTL)
                .await;
        }
        self.inner.local.insert(hash, text.into());
    }

    /// Prometheus text: hash look-ups found and not found, documents registered.
    pub fn render_metrics(&self) -> String {
        format!(
            "# HELP leadgate_persisted_queries_total Persisted-query look-ups by hash, and registrations.\n\
             # TYPE leadgate_persisted_queries_total counter\n\
             leadgate_persisted_queries_total{{result=\"hit\"}} {}\n\
             leadgate_persisted_queries_total{{result=\"miss\"}} {}\n\
             leadgate_persisted_queries_total{{result=\"registered\"}} {}\n",
            self.inner.hits.load(Ordering::Relaxed),
            self.inner.misses.load(Ordering::Relaxed),
            self.inner.registered.load(Ordering::Relaxed),
        )
    }
}

/// Whether a request names a persisted query (then `query` may be absent).
pub fn names_persisted_query(extensions: &async_graphql::Extensions) -> bool {
    extensions.contains_key("persistedQuery")
}

fn parse_extension(value: &Value) -> Result<String, ServerError> {
    let Value::Object(fields) = value else {
        return Err(coded(
            "`extensions.persistedQuery` must be an object with `version` and `sha256Hash`",
            BAD_USER_INPUT,
        ));
    };
    match fields.get("version") {
        Some(Value::Number(n)) if n.as_u64() == Some(1) => {}
        _ => {
            return Err(coded(
                "PersistedQueryNotSupported: only version 1 is known",
                NOT_SUPPORTED,
            ));
        }
    }
    match fields.get("sha256Hash") {
        Some(Value::String(h)) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(h.to_ascii_lowercase())
        }
        _ => Err(coded(
            "`extensions.persistedQuery.sha256Hash` must be the 64 hex digits of the document's SHA-256",
            BAD_USER_INPUT,
        )),
    }
}

fn coded(message: &str, code: &str) -> ServerError {
    let mut error = ServerError::new(message, None);
    let mut extensions = async_graphql::ErrorExtensionValues::default();
    extensions.set("code", code);
    error.extensions = Some(extensions);
    error
}

/// The lower-case hex SHA-256 of `text`.
pub fn sha256_hex(text: &str) -> String {
    use std::fmt::Write as _;
    let digest = Sha256::digest(text.as_bytes());
    let mut out = String::with_capacity(64);
    for byte in digest {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// Reads a manifest: Apollo's persisted query manifest (`{"format":
/// "apollo-persisted-query-manifest", "version": 1, "operations": [{"id", "body", …}]}`) or a
/// JSON object of SHA-256 → document. Every id must be its document's SHA-256.
pub fn read_manifest(path: &Path) -> Result<HashMap<String, Arc<str>>, String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{shown} is not JSON: {e}"))?;
    let serde_json::Value::Object(map) = json else {
        return Err(format!("{shown} must be a JSON object"));
    };
    let pairs: Vec<(String, String)> =
        if map.get("format").and_then(|f| f.as_str()) == Some("apollo-persisted-query-manifest") {
            let operations = map
                .get("operations")
                .and_then(|o| o.as_array())
                .ok_or_else(|| format!("{shown}: `operations` must be a list"))?;
            operations
                .iter()
                .enumerate()
                .map(|(i, op)| {
                    let field = |name: &str| {
                        op.get(name)
                            .and_then(|v| v.as_str())
                            .map(str::to_owned)
                            .ok_or_else(|| format!("{shown}: operations[{i}] has no string `{name}`"))
                    };
                    Ok((field("id")?, field("body")?))
                })
                .collect::<Result<_, String>>()?
        } else {
            map.into_iter()
                .map(|(id, body)| match body {
                    serde_json::Value::String(body) => Ok((id, body)),
                    _ => Err(format!("{shown}: the document of `{id}` must be a string")),
                })
                .collect::<Result<_, String>>()?
        };
    let mut manifest = HashMap::with_capacity(pairs.len());
    for (id, body) in pairs {
        let hash = sha256_hex(&body);
        if id.to_ascii_lowercase() != hash {
            return Err(format!(
                "{shown}: `{id}` is not the SHA-256 of its document (that is {hash})"
            ));
        }
        manifest.insert(hash, Arc::from(body));
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(query: &str, extension: Option<serde_json::Value>) -> Request {
        let mut r = Request::new(query);
        if let Some(e) = extension {
            r.extensions
                .insert("persistedQuery".into(), Value::from_json(e).expect("value"));
        }
        r
    }

    fn code(e: &ServerError) -> String {
        e.extensions
            .as_ref()
            .and_then(|x| x.get("code"))
            .map(|v| v.to_string())
            .unwrap_or_default()
    }

    const DOC: &str = "{ __typename }";

    #[tokio::test]
    async fn the_apollo_round_trip_not_found_then_registered_then_by_hash() {
        let apq = PersistedQueries::default();
        let hash = sha256_hex(DOC);
        let ext = serde_json::json!({"version": 1, "sha256Hash": hash});
        let err = apq
            .resolve(&mut request("", Some(ext.clone())))
            .await
            .expect_err("unknown");
        assert_eq!(err.message, "PersistedQueryNotFound");
        assert!(code(&err).contains(NOT_FOUND));
        apq.resolve(&mut request(DOC, Some(ext.clone())))
            .await
            .expect("registers");
        let mut by_hash = request("", Some(ext));
        apq.resolve(&mut by_hash).await.expect("found");
        assert_eq!(by_hash.query, DOC);
    }

    #[tokio::test]
    async fn malformed_extensions_and_a_wrong_hash_are_refused() {
        let apq = PersistedQueries::default();
        for (ext, expect) in [
            (serde_json::json!("x"), BAD_USER_INPUT),
            (
                serde_json::json!({"version": 2, "sha256Hash": sha256_hex(DOC)}),
                NOT_SUPPORTED,
            ),
            (
                serde_json::json!({"version": 1, "sha256Hash": "abc"}),
                BAD_USER_INPUT,
            ),
            (serde_json::json!({"version": 1}), BAD_USER_INPUT),
        ] {
            let err = apq
                .resolve(&mut request(DOC, Some(ext.clone())))
                .await
                .expect_err("refused");
            assert!(code(&err).contains(expect), "{ext}: {err:?}");
        }
        let other = serde_json::json!({"version": 1, "sha256Hash": sha256_hex("{ a }")});
        let err = apq
            .resolve(&mut request(DOC, Some(other.clone())))
            .await
            .expect_err("mismatch");
        assert_eq!(err.message, "provided sha does not match query");
        let err = apq
            .resolve(&mut request("", Some(other)))
            .await
            .expect_err("not registered");
        assert_eq!(err.message, "PersistedQueryNotFound");
    }

    #[tokio::test]
    async fn the_allow_list_runs_only_its_documents() {
        let manifest = HashMap::from([(sha256_hex(DOC), Arc::from(DOC))]);
        let apq = PersistedQueries::new(Mode::AllowList, manifest, None);
        let mut by_hash = request(
            "",
            Some(serde_json::json!({"version": 1, "sha256Hash": sha256_hex(DOC)})),
        );
        apq.resolve(&mut by_hash).await.expect("listed");
        assert_eq!(by_hash.query, DOC);
        apq.resolve(&mut request(DOC, None))
            .await
            .expect("listed, sent in full");
        let other = "{ __schema { types { name } } }";
        let err = apq
            .resolve(&mut request(other, None))
            .await
            .expect_err("not listed");
        assert!(code(&err).contains(NOT_ALLOWED));
        let ext = serde_json::json!({"version": 1, "sha256Hash": sha256_hex(other)});
        let err = apq
            .resolve(&mut request(other, Some(ext.clone())))
            .await
            .expect_err("no registering");
        assert!(code(&err).contains(NOT_ALLOWED));
        let err = apq
            .resolve(&mut request("", Some(ext)))
            .await
            .expect_err("unknown");
        assert!(code(&err).contains(NOT_FOUND));
    }

    #[tokio::test]
    async fn off_refuses_the_protocol_but_runs_plain_documents() {
        let apq = PersistedQueries::new(Mode::Off, HashMap::new(), None);
        apq.resolve(&mut request(DOC, None)).await.expect("plain");
        let ext = serde_json::json!({"version": 1, "sha256Hash": sha256_hex(DOC)});
        let err = apq.resolve(&mut request("", Some(ext))).await.expect_err("off");
        assert_eq!(err.message, "PersistedQueryNotSupported");
    }

    #[test]
    fn manifests_are_read_in_both_shapes_and_wrong_ids_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let apollo = dir.path().join("apollo.json");
        let body = "query Leads { leads(first: 1) { totalCount } }";
        std::fs::write(
            &apollo,
            serde_json::json!({"format": "apollo-persisted-query-manifest", "version": 1,
                "operations": [{"id": sha256_hex(body), "body": body, "name": "Leads", "type": "query"}]})
            .to_string(),
        )
        .expect("write");
        assert_eq!(read_manifest(&apollo).expect("read").len(), 1);
        let plain = dir.path().join("plain.json");
        std::fs::write(&plain, serde_json::json!({ sha256_hex(body): body }).to_string()).expect("write");
        assert!(
            read_manifest(&plain)
                .expect("read")
                .contains_key(&sha256_hex(body))
        );
        let wrong = dir.path().join("wrong.json");
        std::fs::write(&wrong, serde_json::json!({ "abc": body }).to_string()).expect("write");
        assert!(
            read_manifest(&wrong)
                .expect_err("wrong id")
                .contains("not the SHA-256")
        );
        std::fs::write(&wrong, "[").expect("write");
        assert!(read_manifest(&wrong).expect_err("not json").contains("not JSON"));
    }
}
