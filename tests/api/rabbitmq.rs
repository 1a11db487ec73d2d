//! Job delivery through RabbitMQ (`jobs::amqp`) against the real broker at
//! `LEADGATE_TEST_AMQP_URL`, on both database backends: many jobs on several workers run once
//! each; a worker process killed mid-job has its job redelivered and finished once; a cut
//! connection and a broker that refuses connections for a while lose nothing; poison goes to
//! the dead-letter queue while the worker keeps running; retries wait in delay queues; a dead
//! job replayed through GraphQL runs on RabbitMQ; and a broker that is down at start is said in
//! the banner while jobs run on the database queue.
//!
//! Each test has its own exchange and queue prefix, deleted at its end.

use crate::helpers::{
    Backend, Mode, Proxy, TestApp, amqp_url_or_skip, backends, fresh_database, metric, poll_until,
    spawn_app_with, spawn_instance_with, spawn_second_app,
};
use crate::jobs::start_worker_with;
use leadgate::config::Settings;
use leadgate::domain::{Job, JobId, JobScope, JobState, NewJob, Role, now};
use leadgate::jobs::amqp::testing::{
    Received, bind_events, delete_queue, delete_topology, publish_raw, queue_depth, take,
};
use leadgate::jobs::amqp::{Names, Status};
use leadgate::jobs::test_kinds::{FLAKY, NOOP, SLEEP};
use leadgate::store::{PoolOptions, Store};
use secrecy::SecretString;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::process::Child;

const WAIT: Duration = Duration::from_secs(30);

/// A prefix no other test uses.
fn fresh_prefix() -> String {
    format!("lgt.{}", uuid::Uuid::now_v7().simple())
}

/// Settings on RabbitMQ at `url` under `prefix`, with the test kinds and quick polling.
fn on_rabbitmq(s: &mut Settings, url: &str, prefix: &str) {
    s.queue_url = Some(SecretString::from(url.to_owned()));
    s.queue_prefix = prefix.to_owned();
    s.job_test_kinds = true;
    s.job_poll_interval_ms = 50;
    s.job_maintenance_interval_ms = 100;
    s.worker_concurrency = 16;
}

/// An app with workers on RabbitMQ under a fresh prefix, connected; and the prefix.
async fn connected_app(backend: Backend, url: &str) -> (TestApp, String) {
    let prefix = fresh_prefix();
    let app = spawn_app_with(backend, |s| on_rabbitmq(s, url, &prefix)).await;
    connected(&app).await;
    (app, prefix)
}

/// Waits until the app's broker connection is up.
async fn connected(app: &TestApp) {
    let broker = app.services.jobs.queue().broker().expect("a broker");
    poll_until(WAIT, "the broker connection", || async move {
        (broker.status() == Status::Up).then_some(())
    })
    .await;
}

async fn enqueue(app: &TestApp, job: NewJob) -> JobId {
    app.services.jobs.queue().enqueue(job).await.unwrap().id
}

async fn stored(store: &Store, id: JobId) -> Job {
    store
        .job(JobScope::AllWorkspaces, id)
        .await
        .unwrap()
        .expect("job")
}

/// Waits until every job in `ids` has succeeded; returns them. On giving up it says which
/// are not, and how they stand.
async fn all_succeeded(store: &Store, ids: &[JobId]) -> Vec<Job> {
    let give_up = tokio::time::Instant::now() + WAIT;
    loop {
        let mut jobs = Vec::with_capacity(ids.len());
        for id in ids {
            jobs.push(stored(store, *id).await);
        }
        let waiting: Vec<&Job> = jobs.iter().filter(|j| j.state != JobState::Succeeded).collect();
        if waiting.is_empty() {
            return jobs;
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "gave up after {WAIT:?} waiting for {} of {} jobs to succeed, e.g. {:?}",
            waiting.len(),
            ids.len(),
            &waiting[..waiting.len().min(3)]
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn until_state(store: &Store, id: JobId, state: JobState) -> Job {
    poll_until(WAIT, &format!("job {id} to be {state:?}"), || async move {
        let job = stored(store, id).await;
        (job.state == state).then_some(job)
    })
    .await
}

/// Each job ran exactly once: one attempt, no failure recorded.
fn ran_once(jobs: &[Job], backend: Backend) {
    for job in jobs {
        assert_eq!(
            (job.attempts, job.errors.len()),
            (1, 0),
            "{backend:?}: job {} ran more than once: {job:?}",
            job.id
        );
    }
}

async fn sample(app: &TestApp, name: &str) -> f64 {
    metric(&app.metrics().await, name)
}

async fn clean_up(url: &str, prefix: &str) {
    delete_topology(url, prefix)
        .await
        .expect("delete the test's queues");
}

#[tokio::test]
async fn many_jobs_on_several_workers_run_once_each_through_rabbitmq() {
    let Some(url) = amqp_url_or_skip() else { return };
    for backend in backends() {
        let (first, prefix) = connected_app(backend, &url).await;
        let second = spawn_second_app(&first).await;
        let third = spawn_second_app(&first).await;
        for app in [&second, &third] {
            connected(app).await;
        }
        let queue = first.services.jobs.queue();
        let mut ids = Vec::new();
        for chunk in 0..4 {
            let jobs = (0..100)
                .map(|i| NewJob::new(NOOP, json!({ "i": chunk * 100 + i })))
                .collect();
            ids.extend(queue.enqueue_many(jobs).await.unwrap().into_iter().map(|e| e.id));
        }
        for i in 0..50 {
            ids.push(enqueue(&second, NewJob::new(SLEEP, json!({ "ms": 5, "i": i }))).await);
        }
        let jobs = all_succeeded(&first.services.store, &ids).await;
        ran_once(&jobs, backend);

        let mut consumed = 0.0;
        let mut completed = 0.0;
        for app in [&first, &second, &third] {
            consumed += sample(app, "leadgate_queue_messages_consumed_total").await;
            completed += sample(app, r#"leadgate_jobs_completed_total{kind="noop"}"#).await;
            completed += sample(app, r#"leadgate_jobs_completed_total{kind="sleep"}"#).await;
            assert_eq!(
                sample(app, "leadgate_queue_broker_connected").await,
                1.0,
                "{backend:?}"
            );
        }
        assert_eq!(
            completed,
            ids.len() as f64,
            "{backend:?}: each job completed once"
        );
        assert!(
            consumed >= ids.len() as f64,
            "{backend:?}: delivered by RabbitMQ ({consumed} messages for {} jobs)",
            ids.len()
        );
        assert!(
            sample(&first, r#"leadgate_queue_messages_published_total{route="work"}"#).await >= 400.0,
            "{backend:?}"
        );
        // every delivery is settled with the broker (cumulative acks included), none held back
        let apps = [&first, &second, &third];
        let want = ids.len() as f64;
        let acked = poll_until(WAIT, "every delivery to be acked", || async move {
            let mut acked = 0.0;
            for app in apps {
                acked += sample(app, "leadgate_queue_messages_acked_total").await;
            }
            (acked >= want).then_some(acked)
        })
        .await;
        assert!(
            acked <= consumed,
            "{backend:?}: {acked} acks for {consumed} deliveries"
        );
        clean_up(&url, &prefix).await;
    }
}

#[tokio::test]
async fn a_job_due_later_waits_in_a_delay_queue_and_runs_after_its_time() {
    let Some(url) = amqp_url_or_skip() else { return };
    for backend in backends() {
        let (app, prefix) = connected_app(backend, &url).await;
        let mut later = NewJob::new(NOOP, json!({}));
        later.run_at = Some(now() + chrono::TimeDelta::milliseconds(300));
        let id = enqueue(&app, later).await;
        let job = until_state(&app.services.store, id, JobState::Succeeded).await;
        assert!(
            job.finished_at.expect("finished") >= job.run_at,
            "{backend:?}: ran before it was due: {job:?}"
        );
        assert!(
            sample(&app, r#"leadgate_queue_messages_published_total{route="delay"}"#).await >= 1.0,
            "{backend:?}"
        );
        clean_up(&url, &prefix).await;
    }
}

#[tokio::test]
async fn retries_wait_in_delay_queues_and_the_last_failure_is_dead_lettered() {
    let Some(url) = amqp_url_or_skip() else { return };
    for backend in backends() {
        let (app, prefix) = connected_app(backend, &url).await;
        let store = &app.services.store;
        // retries asked for after 400 ms: each waits in a delay queue
        let payload = json!({ "failures": 2, "retryAfterMs": 400 });
        let recovers = enqueue(&app, NewJob::new(FLAKY, payload)).await;
        let job = until_state(store, recovers, JobState::Succeeded).await;
        assert_eq!(job.attempts, 3, "{backend:?}");
        let failed_at: Vec<u32> = job.errors.iter().map(|e| e.attempt).collect();
        assert_eq!(failed_at, vec![1, 2]);
        // the last retry was due 400 ms after the second failure, and ran after that (claims
        // take only due rows)
        assert_eq!(
            job.run_at - job.errors[1].at,
            chrono::TimeDelta::milliseconds(400)
        );
        assert!(job.finished_at.expect("finished") >= job.run_at, "{job:?}");
        assert!(
            sample(&app, r#"leadgate_queue_messages_published_total{route="delay"}"#).await >= 2.0,
            "{backend:?}: both retries went through a delay queue"
        );
        // with the kind's own backoff (20 to 40 ms) too
        let quick = enqueue(&app, NewJob::new(FLAKY, json!({ "failures": 2 }))).await;
        let job = until_state(store, quick, JobState::Succeeded).await;
        assert_eq!((job.attempts, job.errors.len()), (3, 2), "{backend:?}");
        assert!(job.finished_at.expect("finished") >= job.run_at, "{job:?}");

        let dies = enqueue(&app, NewJob::new(FLAKY, json!({ "failures": 3 }))).await;
        let dead = until_state(store, dies, JobState::Dead).await;
        assert_eq!((dead.attempts, dead.errors.len()), (3, 3), "{backend:?}");
        let names = Names::new(&prefix);
        poll_until(WAIT, "the dead job's message in the dead-letter queue", || {
            let (url, dead) = (&url, &names.dead);
            async move { (queue_depth(url, dead).await.unwrap() == 1).then_some(()) }
        })
        .await;
        assert_eq!(
            sample(
                &app,
                r#"leadgate_queue_messages_dead_lettered_total{reason="dead"}"#
            )
            .await,
            1.0
        );
        clean_up(&url, &prefix).await;
    }
}

#[tokio::test]
async fn poison_messages_are_dead_lettered_at_once_and_the_worker_keeps_running() {
    let Some(url) = amqp_url_or_skip() else { return };
    for backend in backends() {
        let (app, prefix) = connected_app(backend, &url).await;
        publish_raw(&url, &prefix, b"not json at all").await.unwrap();
        publish_raw(&url, &prefix, br#"{"id": 987654321, "kind": "noop", "due": 0}"#)
            .await
            .unwrap();
        let names = Names::new(&prefix);
        poll_until(WAIT, "both poison messages in the dead-letter queue", || {
            let (url, dead) = (&url, &names.dead);
            async move { (queue_depth(url, dead).await.unwrap() == 2).then_some(()) }
        })
        .await;
        let metrics = app.metrics().await;
        assert_eq!(
            metric(
                &metrics,
                r#"leadgate_queue_messages_dead_lettered_total{reason="poison"}"#
            ),
            1.0,
            "{metrics}"
        );
        assert_eq!(
            metric(
                &metrics,
                r#"leadgate_queue_messages_dead_lettered_total{reason="unknown"}"#
            ),
            1.0
        );
        assert_eq!(queue_depth(&url, &names.work).await.unwrap(), 0, "nothing loops");

        let id = enqueue(&app, NewJob::new(NOOP, json!({}))).await;
        let job = until_state(&app.services.store, id, JobState::Succeeded).await;
        assert_eq!(job.attempts, 1, "{backend:?}: the worker still runs jobs");
        clean_up(&url, &prefix).await;
    }
}

const DEAD: &str = "query($first: Int!) { jobQueue { dead(first: $first) { edges { node { id kind } } } } }";
const REPLAY: &str = "mutation($ids: [ID!]) { replayJobs(ids: $ids) { count userErrors { message } } }";

#[tokio::test]
async fn a_dead_job_replayed_through_graphql_runs_on_rabbitmq() {
    let Some(url) = amqp_url_or_skip() else { return };
    for backend in backends() {
        let (app, prefix) = connected_app(backend, &url).await;
        let store = &app.services.store;
        let job = NewJob::new(FLAKY, json!({ "failures": 3 })).in_workspace(app.workspace.id);
        let id = enqueue(&app, job).await;
        until_state(store, id, JobState::Dead).await;
        let data = app.gql(Role::Admin, DEAD, json!({ "first": 10 })).await;
        let node: Value = data["jobQueue"]["dead"]["edges"][0]["node"].clone();
        assert_eq!(node["kind"], "flaky", "{data}");
        let consumed = sample(&app, "leadgate_queue_messages_consumed_total").await;

        let data = app.gql(Role::Admin, REPLAY, json!({ "ids": [node["id"]] })).await;
        assert_eq!(data["replayJobs"], json!({ "count": 1, "userErrors": [] }));
        let done = until_state(store, id, JobState::Succeeded).await;
        assert_eq!(done.attempts, 1, "{backend:?}: fresh attempts");
        assert_eq!(done.errors.len(), 3, "history kept");
        assert!(
            sample(&app, "leadgate_queue_messages_consumed_total").await > consumed,
            "{backend:?}: the replay was delivered by RabbitMQ"
        );
        clean_up(&url, &prefix).await;
    }
}

/// `host:port` of an AMQP URL.
fn host_port(url: &str) -> String {
    let parsed = url::Url::parse(url).expect("AMQP URL");
    format!(
        "{}:{}",
        parsed.host_str().unwrap_or("127.0.0.1"),
        parsed.port().unwrap_or(5672)
    )
}

/// `url` with its host and port replaced by `addr`.
fn through(url: &str, addr: &str) -> String {
    let mut parsed = url::Url::parse(url).expect("AMQP URL");
    let (host, port) = addr.split_once(':').expect("host:port");
    parsed.set_host(Some(host)).expect("host");
    parsed.set_port(Some(port.parse().expect("port"))).expect("port");
    parsed.to_string()
}

#[tokio::test]
async fn a_connection_cut_mid_run_loses_nothing_and_runs_every_job_once() {
    let Some(url) = amqp_url_or_skip() else { return };
    for backend in backends() {
        let proxy = Proxy::start(host_port(&url)).await;
        let (app, prefix) = connected_app(backend, &through(&url, &proxy.addr())).await;
        let queue = app.services.jobs.queue();
        let jobs = (0..300)
            .map(|i| NewJob::new(SLEEP, json!({ "ms": 10, "i": i })))
            .collect();
        let mut ids: Vec<JobId> = queue
            .enqueue_many(jobs)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        // cut every connection once some jobs are done and many are not
        let store = &app.services.store;
        poll_until(WAIT, "a few jobs to be done", || async move {
            let stats = store.job_stats(JobScope::AllWorkspaces).await.unwrap();
            let done: u64 = stats
                .iter()
                .filter(|s| s.state == JobState::Succeeded)
                .map(|s| s.count)
                .sum();
            (done >= 20).then_some(())
        })
        .await;
        proxy.set(Mode::Pass);
        for i in 0..50 {
            ids.push(enqueue(&app, NewJob::new(NOOP, json!({ "after": i }))).await);
        }
        let jobs = all_succeeded(store, &ids).await;
        ran_once(&jobs, backend);
        connected(&app).await;
        clean_up(&url, &prefix).await;
    }
}

#[tokio::test]
async fn a_broker_that_refuses_connections_for_a_while_loses_nothing() {
    let Some(url) = amqp_url_or_skip() else { return };
    for backend in backends() {
        let prefix = fresh_prefix();
        let proxy = Proxy::start(host_port(&url)).await;
        let via_proxy = through(&url, &proxy.addr());
        // one instance enqueues without workers; the other runs them
        let front = spawn_app_with(backend, |s| {
            on_rabbitmq(s, &via_proxy, &prefix);
            s.workers = false;
        })
        .await;
        let mut settings = front.settings.clone();
        settings.workers = true;
        let worker = spawn_instance_with(&front, settings).await;
        connected(&front).await;
        connected(&worker).await;
        let before: Vec<JobId> = front
            .services
            .jobs
            .queue()
            .enqueue_many((0..50).map(|i| NewJob::new(NOOP, json!({ "i": i }))).collect())
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        let store = &front.services.store;
        all_succeeded(store, &before).await;

        // the broker "restarts": every connection drops and new ones are refused
        proxy.set(Mode::Refuse);
        for app in [&front, &worker] {
            let broker = app.services.jobs.queue().broker().unwrap();
            poll_until(WAIT, "the broker to be down", || async move {
                broker.is_down().then_some(())
            })
            .await;
        }
        let mut during = Vec::new();
        for i in 0..40 {
            during.push(enqueue(&front, NewJob::new(NOOP, json!({ "during": i }))).await);
        }
        // enqueueing went on, and the worker claims from the database meanwhile
        let jobs = all_succeeded(store, &during).await;
        ran_once(&jobs, backend);

        proxy.set(Mode::Pass);
        connected(&front).await;
        connected(&worker).await;
        let mut after = Vec::new();
        for i in 0..40 {
            after.push(enqueue(&front, NewJob::new(NOOP, json!({ "after": i }))).await);
        }
        let jobs = all_succeeded(store, &after).await;
        ran_once(&jobs, backend);
        assert_eq!(
            sample(&worker, "leadgate_queue_broker_connected").await,
            1.0,
            "{backend:?}"
        );
        clean_up(&url, &prefix).await;
    }
}

#[tokio::test]
async fn jobs_enqueued_while_the_broker_is_down_are_published_by_the_relay_once_it_is_back() {
    let Some(url) = amqp_url_or_skip() else { return };
    for backend in backends() {
        let prefix = fresh_prefix();
        let proxy = Proxy::start(host_port(&url)).await;
        proxy.set(Mode::Refuse);
        let via_proxy = through(&url, &proxy.addr());
        // enqueues through a broker that does not answer; no workers here
        let front = spawn_app_with(backend, |s| {
            on_rabbitmq(s, &via_proxy, &prefix);
            s.workers = false;
        })
        .await;
        let broker = front.services.jobs.queue().broker().unwrap();
        assert!(matches!(broker.settled(WAIT).await, Status::Down(_)));
        let mut ids = Vec::new();
        for i in 0..30 {
            ids.push(enqueue(&front, NewJob::new(NOOP, json!({ "i": i }))).await);
        }
        // a worker on the real broker: its relay publishes what waited, its consumer runs it
        let mut settings = front.settings.clone();
        settings.workers = true;
        settings.queue_url = Some(SecretString::from(url.clone()));
        let worker = spawn_instance_with(&front, settings).await;
        connected(&worker).await;
        let jobs = all_succeeded(&front.services.store, &ids).await;
        ran_once(&jobs, backend);
        assert!(
            sample(&worker, "leadgate_queue_messages_relayed_total").await >= ids.len() as f64,
            "{backend:?}: the relay published them"
        );
        assert!(
            sample(&worker, "leadgate_queue_messages_consumed_total").await >= ids.len() as f64,
            "{backend:?}: and RabbitMQ delivered them"
        );
        clean_up(&url, &prefix).await;
    }
}

// ---- real worker processes ----

/// `leadgate worker` (see `jobs::start_worker_with`) on `db` and RabbitMQ at `amqp`.
async fn start_worker(db: &str, amqp: &str, prefix: &str) -> (Child, Vec<String>) {
    start_worker_with(
        db,
        &[("LEADGATE_QUEUE_URL", amqp), ("LEADGATE_QUEUE_PREFIX", prefix)],
    )
    .await
}

async fn open(url: &str) -> Store {
    Store::connect(url, &PoolOptions { max_connections: 2 })
        .await
        .unwrap()
}

#[tokio::test]
async fn a_worker_killed_mid_job_has_its_job_redelivered_and_finished_once() {
    let Some(amqp) = amqp_url_or_skip() else { return };
    for backend in backends() {
        let prefix = fresh_prefix();
        let (db, _guard) = fresh_database(backend).await;
        let store = open(&db).await;
        let (mut first, banner) = start_worker(&db, &amqp, &prefix).await;
        assert!(banner[2].contains("delivered by RabbitMQ"), "{banner:?}");
        // enqueued through a queue with the same broker, as `serve` would
        let app = spawn_app_with(backend, |s| {
            on_rabbitmq(s, &amqp, &prefix);
            s.database_url = db.clone();
            s.workers = false;
        })
        .await;
        connected(&app).await;
        let job = NewJob::new(SLEEP, json!({ "ms": 600_000, "firstAttemptOnly": true }));
        let id = enqueue(&app, job).await;
        until_state(&store, id, JobState::Running).await;
        first.kill().await.expect("SIGKILL the first worker");

        let (_second, _) = start_worker(&db, &amqp, &prefix).await;
        let done = until_state(&store, id, JobState::Succeeded).await;
        assert_eq!(done.attempts, 2, "{backend:?}: {done:?}");
        assert_eq!(done.errors.len(), 1);
        assert_eq!(done.errors[0].error, "lease expired");
        clean_up(&amqp, &prefix).await;
    }
}

#[tokio::test]
async fn a_broker_down_at_start_is_said_and_jobs_run_on_the_database_queue() {
    // no broker needed: the point is that there is none at this address
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let nowhere = format!("amqp://guest:guest@127.0.0.1:{closed}/%2f");
    for backend in backends() {
        let prefix = fresh_prefix();
        let (db, _guard) = fresh_database(backend).await;
        let store = open(&db).await;
        let (_worker, banner) = start_worker(&db, &nowhere, &prefix).await;
        assert!(
            banner[2].contains(&format!(
                "RabbitMQ at amqp://127.0.0.1:{closed}/%2f is not reachable"
            )) && banner[2].contains("database queue")
                && !banner[2].contains("guest"),
            "{banner:?}"
        );
        let id = store
            .enqueue_job(&NewJob::new(NOOP, json!({})), 3, now())
            .await
            .unwrap()
            .id;
        let job = until_state(&store, id, JobState::Succeeded).await;
        assert_eq!(job.attempts, 1, "{backend:?}");
    }
}

// ---- domain events on the topic exchange ----

/// An app with workers on RabbitMQ that publishes domain events, connected; and the prefix.
async fn publishing_app(backend: Backend, url: &str) -> (TestApp, String) {
    let prefix = fresh_prefix();
    let app = spawn_app_with(backend, |s| {
        on_rabbitmq(s, url, &prefix);
        s.queue_events = true;
    })
    .await;
    connected(&app).await;
    exporting(&app).await;
    (app, prefix)
}

/// Waits until the exporter has switched on (its first pass starts every workspace at its
/// newest event, so an event committed before that is never published).
async fn exporting(app: &TestApp) {
    let store = &app.services.store;
    let ws = app.workspace.id;
    poll_until(WAIT, "the event exporter to switch on", || async move {
        let positions = store.event_export_positions().await.expect("export positions");
        positions.iter().any(|(w, _)| *w == ws).then_some(())
    })
    .await;
}

async fn received(url: &str, queue: &str, n: usize) -> Vec<Received> {
    take(url, queue, n, WAIT).await.expect("events from the broker")
}

/// `(type, sequence)` of each message, checking that its routing key, message id, type property
/// and body agree with each other and name `ws`.
fn described(messages: &[Received], ws: &str) -> Vec<(String, i64)> {
    messages
        .iter()
        .map(|m| {
            let kind = m.body["type"].as_str().expect("type").to_owned();
            let seq = m.body["sequence"].as_i64().expect("sequence");
            assert_eq!(m.routing_key, format!("{kind}.{ws}"), "{m:?}");
            assert_eq!(
                m.message_id.as_deref(),
                Some(format!("{ws}:{seq}").as_str()),
                "{m:?}"
            );
            assert_eq!(m.body["id"], format!("{ws}:{seq}"), "{m:?}");
            assert_eq!(m.kind.as_deref(), Some(kind.as_str()), "{m:?}");
            assert_eq!(m.body["workspaceId"], ws, "{m:?}");
            (kind, seq)
        })
        .collect()
}

/// The sequence numbers of the next `n` messages of `queue`, checked as `described` does.
async fn sequences(url: &str, queue: &str, n: usize, ws: &str) -> Vec<i64> {
    described(&received(url, queue, n).await, ws)
        .into_iter()
        .map(|(_, seq)| seq)
        .collect()
}

#[tokio::test]
async fn domain_events_reach_the_topic_exchange_in_order_routed_by_type_and_workspace() {
    let Some(url) = amqp_url_or_skip() else { return };
    for backend in backends() {
        let (app, prefix) = publishing_app(backend, &url).await;
        let ws = app.workspace.id.to_string();
        let leads = bind_events(&url, &prefix, "lead.#").await.unwrap();
        let acme = bind_events(&url, &prefix, &format!("#.{ws}")).await.unwrap();
        let other = bind_events(&url, &prefix, &format!("#.{}", app.other.id))
            .await
            .unwrap();

        let first = app
            .create_lead(json!({"email": "ada@engines.example", "firstName": "Ada"}))
            .await;
        app.create_lead(json!({"email": "grace@navy.example"})).await;
        let updated = app
            .gql(
                Role::Member,
                "mutation($id: ID!) { updateLead(input: {id: $id, companyName: \"Engines\"}) { userErrors { code } } }",
                json!({ "id": first["id"] }),
            )
            .await;
        assert_eq!(updated["updateLead"]["userErrors"], json!([]), "{updated}");
        // a job of the workspace that fails for good: a `job.dead` event, no lead in it
        let dead = enqueue(
            &app,
            NewJob::new(FLAKY, json!({ "permanent": true })).in_workspace(app.workspace.id),
        )
        .await;
        until_state(&app.services.store, dead, JobState::Dead).await;

        let lead_events = received(&url, &leads, 3).await;
        assert_eq!(
            described(&lead_events, &ws),
            vec![
                ("lead.created".to_owned(), 1),
                ("lead.created".to_owned(), 2),
                ("lead.updated".to_owned(), 3)
            ],
            "{backend:?}"
        );
        assert_eq!(
            lead_events[0].body["data"]["lead"]["email"],
            "ada@engines.example"
        );
        assert_eq!(
            lead_events[2].body["data"]["changedFields"],
            json!(["companyName"])
        );
        let all = received(&url, &acme, 4).await;
        let kinds: Vec<String> = described(&all, &ws).into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            kinds,
            ["lead.created", "lead.created", "lead.updated", "job.dead"],
            "{backend:?}"
        );
        // the other workspace's binding got nothing: a lead there arrives first
        let theirs = app
            .post(
                Some(&app.token_in(&app.other, Role::Member)),
                json!({"query": "mutation { createLead(input: {email: \"x@globex.example\"}) { userErrors { code } } }"}),
            )
            .await;
        assert_eq!(theirs.0, 200, "{theirs:?}");
        let other_events = received(&url, &other, 1).await;
        assert_eq!(
            described(&other_events, &app.other.id.to_string()),
            vec![("lead.created".to_owned(), 1)]
        );
        // the counter moves when the broker's confirm arrives, which can be after a consumer
        // already holds the message
        poll_until(
            Duration::from_secs(15),
            "five confirmed event publications",
            || async { (sample(&app, "leadgate_queue_events_published_total").await >= 5.0).then_some(()) },
        )
        .await;
        for q in [leads, acme, other] {
            delete_queue(&url, &q).await.unwrap();
        }
        clean_up(&url, &prefix).await;
    }
}

#[tokio::test]
async fn events_committed_while_the_broker_is_down_are_published_in_order_once_it_is_back() {
    let Some(url) = amqp_url_or_skip() else { return };
    for backend in backends() {
        let proxy = Proxy::start(host_port(&url)).await;
        let (app, prefix) = publishing_app(backend, &through(&url, &proxy.addr())).await;
        let ws = app.workspace.id.to_string();
        let queue = bind_events(&url, &prefix, "#").await.unwrap();
        app.create_lead(json!({"email": "before@down.example"})).await;
        assert_eq!(
            described(&received(&url, &queue, 1).await, &ws),
            vec![("lead.created".to_owned(), 1)]
        );

        proxy.set(Mode::Refuse);
        let broker = app.services.jobs.queue().broker().unwrap();
        poll_until(WAIT, "the broker to be down", || async move {
            broker.is_down().then_some(())
        })
        .await;
        for i in 0..12 {
            app.create_lead(json!({ "email": format!("during{i}@down.example") }))
                .await;
        }
        proxy.set(Mode::Pass);
        connected(&app).await;
        app.create_lead(json!({"email": "after@down.example"})).await;
        // every event once, in order: the 13 after the first, and nothing before the last
        let seqs = sequences(&url, &queue, 13, &ws).await;
        assert_eq!(seqs, (2..=14).collect::<Vec<_>>(), "{backend:?}");
        delete_queue(&url, &queue).await.unwrap();
        clean_up(&url, &prefix).await;
    }
}

#[tokio::test]
async fn one_process_publishes_at_a_time_and_another_takes_over_when_it_stops() {
    let Some(url) = amqp_url_or_skip() else { return };
    for backend in backends() {
        let (first, prefix) = publishing_app(backend, &url).await;
        let second = spawn_second_app(&first).await;
        connected(&second).await;
        let ws = first.workspace.id.to_string();
        let queue = bind_events(&url, &prefix, "#").await.unwrap();
        for i in 0..20 {
            let app = if i % 2 == 0 { &first } else { &second };
            app.create_lead(json!({ "email": format!("lead{i}@both.example") }))
                .await;
        }
        // in order and each once: a single publisher keeps the order, so 1..=20 with no repeat
        let seqs = sequences(&url, &queue, 20, &ws).await;
        assert_eq!(seqs, (1..=20).collect::<Vec<_>>(), "{backend:?}");
        let published = sample(&first, "leadgate_queue_events_published_total").await
            + sample(&second, "leadgate_queue_events_published_total").await;
        assert_eq!(published, 20.0, "{backend:?}: one of them published, once");

        // whichever published stops; the other takes over at once (the lease is given up)
        let (stopping, staying) = if sample(&first, "leadgate_queue_events_published_total").await > 0.0 {
            (first, second)
        } else {
            (second, first)
        };
        stopping.shutdown_workers().await;
        for i in 20..25 {
            staying
                .create_lead(json!({ "email": format!("lead{i}@both.example") }))
                .await;
        }
        let seqs = sequences(&url, &queue, 5, &ws).await;
        assert_eq!(seqs, (21..=25).collect::<Vec<_>>(), "{backend:?}");
        delete_queue(&url, &queue).await.unwrap();
        clean_up(&url, &prefix).await;
    }
}
