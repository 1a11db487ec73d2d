//! Many instances: graceful shutdown of one instance (in process), and two `leadgate serve`
//! processes with a `leadgate worker` on one PostgreSQL and one Redis — a subscription on one
//! instance sees a mutation made on the other, one rate limit holds across both, no job runs
//! twice, and a rolling restart under load loses no request.

use crate::helpers::{
    Backend, MASTER_KEY, Protocol, SECRET, backends, fresh_database, poll_until, postgres_url_or_skip,
    spawn_app_with,
};
use crate::rate_limits::{fresh_prefix, redis_url_or_skip};
use leadgate::domain::{JobScope, JobState, NewJob, Role, now};
use leadgate::store::{PoolOptions, Store};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

#[tokio::test]
async fn draining_turns_readyz_unready_closes_websockets_with_1012_and_still_answers_scrapes() {
    for backend in backends() {
        let app = spawn_app_with(backend, |_| {}).await;
        let ready = app.client.get(app.url("/readyz")).send().await.expect("readyz");
        assert_eq!(ready.status(), 200);
        let mut sockets = Vec::new();
        for protocol in Protocol::ALL {
            let mut ws = app.ws_ready(protocol, Role::Member).await;
            ws.start("1", "subscription { leadChanged { lead { id } } }", json!({}))
                .await;
            ws.sync("ready").await;
            sockets.push(ws);
        }
        app.drain.start();
        let unready = app.client.get(app.url("/readyz")).send().await.expect("readyz");
        assert_eq!(unready.status(), 503, "the listener still answers, unready");
        let body: Value = unready.json().await.expect("JSON");
        assert_eq!(body["reason"], "shutting down");
        for mut ws in sockets {
            let (code, reason) = ws.closed().await;
            assert_eq!(code, 1012, "{reason}");
        }
        // requests still in flight or arriving before the listener closes are served
        let (status, _) = app
            .post(Some(&app.token(Role::Viewer)), json!({"query": "{ __typename }"}))
            .await;
        assert_eq!(status, 200);
        // Prometheus scraping a draining instance still gets its figures, counted up to now
        let scraped = app.metrics().await;
        assert!(
            scraped.contains("leadgate_http_requests_total{") && scraped.contains("leadgate_build_info{"),
            "{backend:?}: a scrape while draining lost the families"
        );
    }
}

const BIN: &str = env!("CARGO_BIN_EXE_leadgate");

/// One `leadgate` process with its environment cleared of the caller's settings.
fn command(args: &[&str], env: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env("LEADGATE_LOG", "warn");
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("LEADGATE_")) {
        cmd.env_remove(k);
    }
    cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true);
    cmd
}

/// Starts `leadgate serve` on a free port (read from its banner).
async fn start_serve(env: &[(&str, String)], workers: bool) -> (Child, String) {
    let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
    if !workers {
        args.push("--no-workers");
    }
    let mut child = command(&args, env).spawn().expect("spawn leadgate serve");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let base = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.expect("stdout") {
            if let Some(rest) = line.strip_prefix("leadgate is serving on ") {
                return rest.split_whitespace().next().expect("address").to_owned();
            }
        }
        panic!("serve ended before it said where it listens");
    })
    .await
    .expect("serve started in time");
    // keep reading, so the banner's pipe never fills
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, base)
}

async fn start_worker(env: &[(&str, String)]) -> Child {
    let mut child = command(&["worker"], env).spawn().expect("spawn leadgate worker");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("worker started in time")
        .expect("stdout")
        .expect("a line");
    assert!(line.contains("leadgate worker running"), "{line}");
    child
}

pub(crate) fn sigterm(child: &Child) {
    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
}

pub(crate) async fn exited(mut child: Child) {
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the process stops after SIGTERM")
        .expect("wait");
    assert!(status.success(), "{status}");
}

async fn post(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    body: Value,
) -> reqwest::Result<(u16, Value)> {
    let res = client
        .post(format!("{base}/graphql"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await?;
    let status = res.status().as_u16();
    Ok((status, res.json().await?))
}

async fn ready(client: &reqwest::Client, base: &str) -> bool {
    client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
}

/// A load balancer's view: the instances in rotation, each dropped when its `/readyz` says
/// it is unready (checked every 50 ms), added when it says ready.
struct Balancer {
    backends: Arc<std::sync::Mutex<Vec<(String, bool)>>>,
    next: AtomicU64,
}

impl Balancer {
    fn pick(&self) -> Option<String> {
        let list = self.backends.lock().expect("lock");
        let ready: Vec<&String> = list.iter().filter(|(_, up)| *up).map(|(b, _)| b).collect();
        if ready.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) as usize % ready.len();
        Some(ready[i].clone())
    }

    fn set(&self, list: Vec<String>) {
        *self.backends.lock().expect("lock") = list.into_iter().map(|b| (b, true)).collect();
    }
}

#[tokio::test]
async fn two_instances_and_a_worker_share_subscriptions_limits_and_jobs_and_restart_without_losing_a_request()
{
    let (Some(_), Some(redis)) = (postgres_url_or_skip(), redis_url_or_skip()) else {
        return;
    };
    let (url, _guard) = fresh_database(Backend::Postgres).await;
    let store = Store::connect(&url, &PoolOptions { max_connections: 2 })
        .await
        .expect("store");
    let services = {
        let settings = leadgate::config::Settings {
            database_url: url.clone(),
            ..Default::default()
        };
        leadgate::app::services(&settings, store.clone()).expect("services")
    };
    let ws = services
        .workspaces
        .create("acme", Some("Acme"))
        .await
        .expect("workspace");
    let auth = leadgate::auth::Authenticator::new(&leadgate::auth::AuthConfig {
        hs256_secret: Some(secrecy::SecretString::from(SECRET)),
        public_keys: Vec::new(),
        issuer: "leadgate".into(),
        audience: "leadgate".into(),
        leeway_secs: 30,
    })
    .expect("authenticator");
    let token = |who: &str, role: Role| {
        auth.mint(who, ws.id, role, Duration::from_secs(3600))
            .expect("mint")
    };
    let env: Vec<(&str, String)> = vec![
        ("LEADGATE_DATABASE_URL", url.clone()),
        ("LEADGATE_JWT_SECRET", SECRET.into()),
        ("LEADGATE_MASTER_KEY", MASTER_KEY.into()),
        ("LEADGATE_REDIS_URL", redis.clone()),
        ("LEADGATE_REDIS_PREFIX", fresh_prefix()),
        ("LEADGATE_RATE_LIMIT", "off".into()),
        ("LEADGATE_RATE_LIMIT_ROLES", "viewer=8/hour".into()),
        ("LEADGATE_SHUTDOWN_DELAY_MS", "600".into()),
        ("LEADGATE_JOB_TEST_KINDS", "true".into()),
        ("LEADGATE_JOB_POLL_INTERVAL_MS", "50".into()),
        ("LEADGATE_EVENT_POLL_MS", "100".into()),
    ];
    let (a, base_a) = start_serve(&env, true).await;
    let (b, base_b) = start_serve(&env, false).await;
    let worker = start_worker(&env).await;
    let client = reqwest::Client::new();
    let member = token("member", Role::Member);

    // a subscription on A sees a mutation made on B, on both subprotocols
    let mut sockets = Vec::new();
    for protocol in Protocol::ALL {
        let mut socket = crate::helpers::WsClient::connect(&base_a, protocol).await;
        socket.init(&member).await;
        socket
            .start(
                "s",
                "subscription { leadChanged { type lead { email } } }",
                json!({}),
            )
            .await;
        socket.sync("ready").await;
        sockets.push(socket);
    }
    let (status, body) = post(
        &client,
        &base_b,
        &member,
        json!({"query": "mutation { createLead(input: {email: \"cross@example.com\"}) { lead { id } } }"}),
    )
    .await
    .expect("create on B");
    assert_eq!(status, 200, "{body}");
    assert!(body.get("errors").is_none(), "{body}");
    for socket in &mut sockets {
        let event = socket.recv().await;
        assert_eq!(
            event["payload"]["data"]["leadChanged"]["lead"]["email"], "cross@example.com",
            "{event}"
        );
    }

    // one limit across both instances: 8 per hour for viewers
    let viewer = token("viewer", Role::Viewer);
    let mut admitted = 0;
    for i in 0..14 {
        let base = if i % 2 == 0 { &base_a } else { &base_b };
        let (status, _) = post(&client, base, &viewer, json!({"query": "{ __typename }"}))
            .await
            .expect("request");
        match status {
            200 => admitted += 1,
            429 => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(admitted, 8);

    // an API key revoked on B is refused on A within a second (bounded wait, no sleep)
    let admin = token("admin", Role::Admin);
    let (_, created) = post(
        &client,
        &base_a,
        &admin,
        json!({"query": "mutation { createApiKey(input: {name: \"partner\", role: PARTNER, scopes: [READ_LEADS]}) { apiKey { id } secret } }"}),
    )
    .await
    .expect("create a key");
    let secret = created["data"]["createApiKey"]["secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    let key_id = created["data"]["createApiKey"]["apiKey"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    for base in [&base_a, &base_b] {
        poll_until(
            Duration::from_secs(5),
            "the new key to work on every instance",
            || {
                let (client, secret) = (client.clone(), secret.clone());
                async move {
                    let (status, _) = post(
                        &client,
                        base,
                        &secret,
                        json!({"query": "{ leads(first: 1) { totalCount } }"}),
                    )
                    .await
                    .ok()?;
                    (status == 200).then_some(())
                }
            },
        )
        .await;
    }
    let (status, body) = post(
        &client,
        &base_b,
        &admin,
        json!({"query": "mutation($id: ID!) { revokeApiKey(id: $id) { apiKey { revokedAt } } }", "variables": {"id": key_id}}),
    )
    .await
    .expect("revoke on B");
    assert_eq!(status, 200, "{body}");
    poll_until(Duration::from_secs(5), "A to refuse the revoked key", || {
        let (client, secret) = (client.clone(), secret.clone());
        let base = base_a.clone();
        async move {
            let (status, body) = post(&client, &base, &secret, json!({"query": "{ __typename }"}))
                .await
                .ok()?;
            (status == 401 && body.to_string().contains("revoked")).then_some(())
        }
    })
    .await;

    // no job runs twice: A's workers and the worker process take 40 jobs between them
    let mut ids = Vec::new();
    for _ in 0..40 {
        let job = NewJob::new(leadgate::jobs::test_kinds::NOOP, json!({}));
        ids.push(store.enqueue_job(&job, 3, now()).await.expect("enqueue").id);
    }
    for id in ids {
        let job = poll_until(Duration::from_secs(30), "every job to finish", || {
            let store = &store;
            async move {
                let job = store.job(JobScope::AllWorkspaces, id).await.expect("job")?;
                (job.state == JobState::Succeeded).then_some(job)
            }
        })
        .await;
        assert_eq!(job.attempts, 1, "job {id:?} ran once");
    }

    // a rolling restart under load: the balancer follows /readyz; every request must succeed
    let balancer = Arc::new(Balancer {
        backends: Arc::new(std::sync::Mutex::new(Vec::new())),
        next: AtomicU64::new(0),
    });
    balancer.set(vec![base_a.clone(), base_b.clone()]);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let health = {
        let (balancer, stop, client) = (balancer.clone(), stop.clone(), client.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let list: Vec<String> = balancer
                    .backends
                    .lock()
                    .expect("lock")
                    .iter()
                    .map(|(b, _)| b.clone())
                    .collect();
                for base in list {
                    let up = ready(&client, &base).await;
                    if let Some(entry) = balancer
                        .backends
                        .lock()
                        .expect("lock")
                        .iter_mut()
                        .find(|(b, _)| *b == base)
                    {
                        entry.1 = up;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let served = Arc::new(AtomicU64::new(0));
    let load = {
        let (balancer, stop, client, served, member) = (
            balancer.clone(),
            stop.clone(),
            client.clone(),
            served.clone(),
            member.clone(),
        );
        tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let Some(base) = balancer.pick() else {
                    tokio::task::yield_now().await;
                    continue;
                };
                match post(
                    &client,
                    &base,
                    &member,
                    json!({"query": "{ leads(first: 5) { totalCount } }"}),
                )
                .await
                {
                    Ok((200, body)) if body.get("errors").is_none() => {
                        served.fetch_add(1, Ordering::Relaxed);
                    }
                    other => failures.push(format!("{base}: {other:?}")),
                }
            }
            failures
        })
    };
    let wait_served = |n: u64| {
        let served = served.clone();
        async move {
            let target = served.load(Ordering::Relaxed) + n;
            poll_until(Duration::from_secs(30), "requests to be served", || {
                let served = served.clone();
                async move { (served.load(Ordering::Relaxed) >= target).then_some(()) }
            })
            .await;
        }
    };
    wait_served(50).await;

    // a request in flight on A when SIGTERM arrives: half its body sent before, half after
    let body = json!({"query": "{ leads(first: 1) { totalCount } }"}).to_string();
    let address = base_a.trim_start_matches("http://").to_owned();
    let mut inflight = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect to A");
    let head = format!(
        "POST /graphql HTTP/1.1\r\nhost: {address}\r\nauthorization: Bearer {member}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    inflight.write_all(head.as_bytes()).await.expect("head");
    inflight
        .write_all(&body.as_bytes()[..10])
        .await
        .expect("half the body");
    sigterm(&a);
    poll_until(Duration::from_secs(10), "A to turn unready", || {
        let client = client.clone();
        let base = base_a.clone();
        async move {
            let res = client.get(format!("{base}/readyz")).send().await.ok()?;
            (res.status() == 503).then_some(())
        }
    })
    .await;
    inflight
        .write_all(&body.as_bytes()[10..])
        .await
        .expect("the rest of the body");
    let mut answer = String::new();
    use tokio::io::AsyncReadExt;
    inflight.read_to_string(&mut answer).await.expect("answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    exited(a).await;
    wait_served(50).await;

    // A comes back, then B restarts the same way
    let (a2, base_a2) = start_serve(&env, true).await;
    balancer.set(vec![base_a2.clone(), base_b.clone()]);
    wait_served(50).await;
    sigterm(&b);
    exited(b).await;
    wait_served(50).await;

    stop.store(true, Ordering::Relaxed);
    let failures = load.await.expect("load");
    health.await.expect("health");
    assert!(failures.is_empty(), "lost requests: {failures:#?}");
    assert!(served.load(Ordering::Relaxed) >= 200);
    sigterm(&a2);
    exited(a2).await;
    sigterm(&worker);
    exited(worker).await;
}
