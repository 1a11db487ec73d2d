//! What instances share through Redis: one `Redis` handle per process, used by the rate limiter
//! (`limits`), the enrichment L2 cache and single-flight (`enrich`) and the persisted-query
//! store (`graphql`). Nothing else names the `redis` crate.
//!
//! Redis is optional and never load-bearing: every caller has an in-process fallback, so an
//! unreachable, slow or flushed Redis degrades sharing, never serving. Each command is bounded
//! by `RedisOptions::timeout`; a failure marks Redis down (one warning in the log, the
//! `leadgate_redis_up` gauge at 0) and for `retry_after` every caller goes straight to its
//! fallback instead of paying the timeout again; then one command probes, and its success brings
//! Redis back (one info line). The connection is redis-rs's `ConnectionManager`, created lazily
//! so a server that starts before Redis does not fail, multiplexed (one TCP connection carries
//! every concurrent command) and reconnecting on its own. `rediss://` URLs use rustls with the
//! platform's roots, as hosted TLS-only Redis services need.

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, ToRedisArgs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use redis::Script;

/// How commands are bounded and how long a failure is believed.
#[derive(Clone, Debug)]
pub struct RedisOptions {
    /// The most one command (with its round trip) may take before it counts as a failure.
    pub timeout: Duration,
    /// How long after a failure callers use their fallback without trying Redis.
    pub retry_after: Duration,
    /// Prepended to every key, so several deployments can share one Redis.
    pub prefix: String,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_millis(250),
            retry_after: Duration::from_secs(1),
            prefix: "leadgate:".into(),
        }
    }
}

/// Why a command gave no answer: Redis is down (or was, a moment ago), too slow, or refused.
/// Callers use their in-process fallback.
#[derive(Debug, thiserror::Error)]
#[error("redis unavailable: {0}")]
pub struct Unavailable(String);

/// A shared handle on the Redis of this deployment; cheap to clone.
#[derive(Clone)]
pub struct Redis {
    inner: Arc<Inner>,
}

struct Inner {
    manager: ConnectionManager,
    options: RedisOptions,
    shown: String,
    started: Instant,
    up: AtomicBool,
    /// Milliseconds since `started` before which no command is tried after a failure.
    quiet_until: AtomicU64,
    errors: AtomicU64,
    commands: AtomicU64,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis").field("url", &self.inner.shown).finish()
    }
}

impl Redis {
    /// A handle on the Redis at `url` (`redis://` or `rediss://`, with `user:password@` and a
    /// `/db` if needed). Connects lazily: an unreachable Redis is not an error here, only a
    /// malformed URL is.
    pub fn open(url: &str, options: RedisOptions) -> Result<Self, String> {
        let shown = redact(url);
        let client = redis::Client::open(url).map_err(|e| format!("`{shown}` is not a Redis URL: {e}"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.timeout))
            .set_response_timeout(Some(options.timeout))
            .set_number_of_retries(1)
            .set_max_delay(options.retry_after);
        let manager = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| format!("cannot use Redis at `{shown}`: {e}"))?;
        Ok(Self {
            inner: Arc::new(Inner {
                manager,
                options,
                shown,
                started: Instant::now(),
                up: AtomicBool::new(true),
                quiet_until: AtomicU64::new(0),
                errors: AtomicU64::new(0),
                commands: AtomicU64::new(0),
            }),
        })
    }

    /// The URL without its password, for logs and banners.
    pub fn describe(&self) -> &str {
        &self.inner.shown
    }

    /// Whether the last command succeeded.
    pub fn is_up(&self) -> bool {
        self.inner.up.load(Ordering::Relaxed)
    }

    /// `prefix` + `key`.
    pub fn key(&self, key: &str) -> String {
        format!("{}{key}", self.inner.options.prefix)
    }

    /// Sends one `PING` and reports whether Redis answered (at start-up, for the banner).
    pub async fn ping(&self) -> bool {
        self.query::<String>(redis::cmd("PING")).await.is_ok()
    }

    /// Runs `cmd`, bounded by the timeout.
    pub async fn query<T: FromRedisValue + Send>(&self, cmd: redis::Cmd) -> Result<T, Unavailable> {
        let mut conn = self.connection()?;
        self.finish(tokio::time::timeout(self.inner.options.timeout, cmd.query_async(&mut conn)).await)
    }

    /// Runs a Lua script (`EVALSHA`, loading it after a `NOSCRIPT` such as a flush causes).
    pub async fn script<T: FromRedisValue + Send>(
        &self,
        script: &Script,
        keys: &[String],
        args: &[impl ToRedisArgs + Sync],
    ) -> Result<T, Unavailable> {
        let mut conn = self.connection()?;
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(key);
        }
        for arg in args {
            invocation.arg(arg);
        }
        let call = invocation.invoke_async(&mut conn);
        self.finish(tokio::time::timeout(self.inner.options.timeout, call).await)
    }

    /// The value at `key`.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Unavailable> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(key);
        self.query(cmd).await
    }

    /// Sets `key` to `value` for `ttl` (at least a millisecond).
    pub async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), Unavailable> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value).arg("PX").arg(millis(ttl));
        self.query::<()>(cmd).await
    }

    /// Sets `key` only if it does not exist; whether it was set.
    pub async fn set_new(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, Unavailable> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value).arg("NX").arg("PX").arg(millis(ttl));
        Ok(self.query::<Option<String>>(cmd).await?.is_some())
    }

    /// The values at `keys`, in order, in one round trip (`MGET`).
    pub async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, Unavailable> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("MGET");
        cmd.arg(keys);
        self.query(cmd).await
    }

    /// Sets each `(key, value, ttl)` in one round trip (a pipeline of `SET … PX`).
    pub async fn set_many(&self, entries: &[(String, Vec<u8>, Duration)]) -> Result<(), Unavailable> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (key, value, ttl) in entries {
            pipe.cmd("SET")
                .arg(key)
                .arg(value.as_slice())
                .arg("PX")
                .arg(millis(*ttl))
                .ignore();
        }
        self.pipeline::<()>(pipe).await
    }

    /// `set_new` for each of `keys` in one round trip; whether each was set, in order.
    pub async fn set_new_many(
        &self,
        keys: &[String],
        value: &[u8],
        ttl: Duration,
    ) -> Result<Vec<bool>, Unavailable> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.cmd("SET")
                .arg(key)
                .arg(value)
                .arg("NX")
                .arg("PX")
                .arg(millis(ttl));
        }
        let set: Vec<Option<String>> = self.pipeline(pipe).await?;
        Ok(set.into_iter().map(|s| s.is_some()).collect())
    }

    /// Deletes `keys`.
    pub async fn delete(&self, keys: &[String]) -> Result<(), Unavailable> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::cmd("DEL");
        cmd.arg(keys);
        self.query::<()>(cmd).await
    }

    /// Runs `pipe` as one round trip, bounded by the timeout.
    async fn pipeline<T: FromRedisValue + Send>(&self, pipe: redis::Pipeline) -> Result<T, Unavailable> {
        let mut conn = self.connection()?;
        self.finish(tokio::time::timeout(self.inner.options.timeout, pipe.query_async(&mut conn)).await)
    }

    /// The Prometheus text of the link's health.
    pub fn render_metrics(&self) -> String {
        format!(
            "# HELP leadgate_redis_up Whether the last Redis command succeeded (0: in-process fallbacks in use).\n\
             # TYPE leadgate_redis_up gauge\nleadgate_redis_up {}\n\
             # HELP leadgate_redis_commands_total Redis commands sent.\n\
             # TYPE leadgate_redis_commands_total counter\nleadgate_redis_commands_total {}\n\
             # HELP leadgate_redis_errors_total Redis commands that failed or timed out.\n\
             # TYPE leadgate_redis_errors_total counter\nleadgate_redis_errors_total {}\n",
            u8::from(self.is_up()),
            self.inner.commands.load(Ordering::Relaxed),
            self.inner.errors.load(Ordering::Relaxed),
        )
    }

    fn now_ms(&self) -> u64 {
        self.inner.started.elapsed().as_millis() as u64
    }

    /// The connection, unless a recent failure says to use the fallback now.
    fn connection(&self) -> Result<impl ConnectionLike + Send, Unavailable> {
        if !self.is_up() && self.now_ms() < self.inner.quiet_until.load(Ordering::Relaxed) {
            return Err(Unavailable("down; retrying shortly".into()));
        }
        self.inner.commands.fetch_add(1, Ordering::Relaxed);
        Ok(self.inner.manager.clone())
    }

    fn finish<T>(
        &self,
        outcome: Result<redis::RedisResult<T>, tokio::time::error::Elapsed>,
    ) -> Result<T, Unavailable> {
        let error = match outcome {
            Ok(Ok(value)) => {
                if !self.inner.up.swap(true, Ordering::Relaxed) {
                    tracing::info!(redis = %self.inner.shown, "Redis is reachable again; shared limits and caches resume");
                }
                return Ok(value);
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {:?}", self.inner.options.timeout),
        };
        self.inner.errors.fetch_add(1, Ordering::Relaxed);
        let retry = self.now_ms() + self.inner.options.retry_after.as_millis() as u64;
        self.inner.quiet_until.store(retry, Ordering::Relaxed);
        if self.inner.up.swap(false, Ordering::Relaxed) {
            tracing::warn!(redis = %self.inner.shown, error = %error,
                "Redis is unreachable; rate limits and caches fall back to this process until it answers");
        }
        Err(Unavailable(error))
    }
}

fn millis(d: Duration) -> u64 {
    (d.as_millis() as u64).max(1)
}

/// `redis://user:secret@host` → `redis://user:***@host`.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "(unparsable URL)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_the_description() {
        assert_eq!(
            redact("rediss://default:hunter2@eu1.example.io:6379"),
            "rediss://default:***@eu1.example.io:6379"
        );
        assert_eq!(redact("redis://127.0.0.1:6379/2"), "redis://127.0.0.1:6379/2");
    }

    #[tokio::test]
    async fn a_malformed_url_is_refused_and_an_unreachable_one_is_not() {
        let err = Redis::open("http://nope", RedisOptions::default()).expect_err("not redis");
        assert!(err.contains("not a Redis URL"), "{err}");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let redis =
            Redis::open(&format!("redis://127.0.0.1:{port}"), RedisOptions::default()).expect("opens lazily");
        assert!(!redis.ping().await, "nothing listens there");
        assert!(!redis.is_up());
        // within the quiet period no command is even tried
        let before = redis.inner.commands.load(Ordering::Relaxed);
        assert!(redis.get("k").await.is_err());
        assert_eq!(redis.inner.commands.load(Ordering::Relaxed), before);
    }
}
