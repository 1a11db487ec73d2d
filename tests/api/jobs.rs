//! The durable job queue end to end: unique keys, retries with backoff, dead jobs kept until
//! an admin replays or discards them, the admin GraphQL API and its tenancy, cron ticks fired
//! once across schedulers, and real `leadgate worker` processes (a killed worker's job is
//! finished by another after its lease expires; two workers fire a cron tick once).

use crate::helpers::{
    Backend, TestApp, backends, first_code, fresh_database, poll_until, spawn_app_with_test_jobs,
};
use leadgate::domain::{Duplicate, Job, JobId, JobKind, JobScope, JobState, NewJob, Role, Schedule, now};
use leadgate::jobs::Queue;
use leadgate::jobs::schedule::{ScheduleSpec, Scheduler};
use leadgate::jobs::test_kinds::{FLAKY, NOOP, SLEEP};
use leadgate::store::{PoolOptions, Store};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::process::{Child, Command};

async fn app(backend: Backend) -> TestApp {
    spawn_app_with_test_jobs(backend).await
}

fn queue(app: &TestApp) -> &Queue {
    app.services.jobs.queue()
}

async fn enqueue(app: &TestApp, kind: JobKind, payload: Value) -> JobId {
    let job = NewJob::new(kind, payload).in_workspace(app.workspace.id);
    queue(app).enqueue(job).await.unwrap().id
}

async fn stored(app: &TestApp, id: JobId) -> Job {
    app.services
        .store
        .job(JobScope::AllWorkspaces, id)
        .await
        .unwrap()
        .expect("job")
}

async fn until_state(app: &TestApp, id: JobId, state: JobState) -> Job {
    poll_until(
        Duration::from_secs(15),
        &format!("job {id} to be {state:?}"),
        || async move {
            let job = stored(app, id).await;
            (job.state == state).then_some(job)
        },
    )
    .await
}

const DEAD: &str = "query($first: Int!, $after: String, $kind: String) { jobQueue { dead(first: $first, after: $after, kind: $kind) { edges { cursor node { id kind attempts maxAttempts errors { attempt at error } payload createdAt failedAt } } pageInfo { hasNextPage endCursor } } } }";
const STATS: &str = "{ jobQueue { stats { kind state count oldestAgeSeconds } } }";
const REPLAY: &str = "mutation($ids: [ID!], $kind: String) { replayJobs(ids: $ids, kind: $kind) { count userErrors { field message code } } }";
const DISCARD: &str = "mutation($ids: [ID!], $kind: String) { discardJobs(ids: $ids, kind: $kind) { count userErrors { field message code } } }";

fn dead_nodes(data: &Value) -> Vec<Value> {
    data["jobQueue"]["dead"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| e["node"].clone())
        .collect()
}

#[tokio::test]
async fn unique_keys_dedupe_and_debounce() {
    for backend in backends() {
        let app = app(backend).await;
        let later = now() + chrono::TimeDelta::hours(1);
        let mut first = NewJob::new(NOOP, json!({"v": 1})).unique("sync:42", Duplicate::Keep);
        first.run_at = Some(later);
        let a = queue(&app).enqueue(first.clone()).await.unwrap();
        let b = queue(&app).enqueue(first).await.unwrap();
        assert!(a.created && !b.created && a.id == b.id, "{backend:?}");

        let mut debounce = NewJob::new(NOOP, json!({"v": 2})).unique("sync:42", Duplicate::Replace);
        debounce.run_at = Some(now());
        let c = queue(&app).enqueue(debounce).await.unwrap();
        assert_eq!((c.id, c.created), (a.id, false));
        let done = until_state(&app, a.id, JobState::Succeeded).await;
        assert_eq!(
            done.payload,
            json!({"v": 2}),
            "{backend:?}: ran with the latest payload"
        );
        assert_eq!(done.max_attempts, 3, "the kind's policy");
    }
}

#[tokio::test]
async fn a_transiently_failing_job_retries_with_backoff_and_succeeds() {
    for backend in backends() {
        let app = app(backend).await;
        let id = enqueue(&app, FLAKY, json!({"failures": 2})).await;
        let job = until_state(&app, id, JobState::Succeeded).await;
        assert_eq!(job.attempts, 3, "{backend:?}");
        let errors: Vec<u32> = job.errors.iter().map(|e| e.attempt).collect();
        assert_eq!(errors, vec![1, 2]);
        // Backoff: equal jitter of 20 ms, then 40 ms. The third attempt was scheduled (not
        // measured) at the second failure plus half to all of 40 ms.
        let scheduled = job.run_at - job.errors[1].at;
        assert!(
            scheduled >= chrono::TimeDelta::milliseconds(20)
                && scheduled <= chrono::TimeDelta::milliseconds(40),
            "{backend:?}: {scheduled:?}"
        );
        let metrics = app.metrics().await;
        assert!(
            metrics.contains(r#"leadgate_jobs_failed_total{kind="flaky"} 2"#),
            "{metrics}"
        );
        assert!(
            metrics.contains(r#"leadgate_jobs_completed_total{kind="flaky"} 1"#),
            "{metrics}"
        );
    }
}

#[tokio::test]
async fn a_failing_job_is_dead_with_its_history_until_replayed() {
    for backend in backends() {
        let app = app(backend).await;
        let id = enqueue(&app, FLAKY, json!({"failures": 3})).await;
        let dead = until_state(&app, id, JobState::Dead).await;
        assert_eq!((dead.attempts, dead.errors.len()), (3, 3), "{backend:?}");

        let data = app
            .gql(Role::Admin, DEAD, json!({"first": 10, "kind": "flaky"}))
            .await;
        let nodes = dead_nodes(&data);
        assert_eq!(nodes.len(), 1, "{data}");
        let node = &nodes[0];
        assert_eq!(node["kind"], "flaky");
        assert_eq!(
            (node["attempts"].clone(), node["maxAttempts"].clone()),
            (json!(3), json!(3))
        );
        assert_eq!(node["errors"].as_array().unwrap().len(), 3);
        assert_eq!(node["errors"][2]["error"], "flaky: attempt 3 fails");
        assert_eq!(node["payload"], json!({"failures": 3}));
        assert!(node["failedAt"].is_string());
        let events = app.services.store.clone();
        let logged = events.events_after(app.workspace.id, 0, 10).await.unwrap();
        assert!(
            logged.iter().any(|e| e.kind == "job.dead"),
            "{backend:?}: {logged:?}"
        );

        // Still dead after the workers had every chance to touch it again.
        let data = app.gql(Role::Admin, STATS, json!({})).await;
        let stats = data["jobQueue"]["stats"].as_array().unwrap().clone();
        assert!(
            stats.contains(&json!({"kind": "flaky", "state": "DEAD", "count": 1, "oldestAgeSeconds": null})),
            "{stats:?}"
        );
        assert_eq!(stored(&app, id).await.state, JobState::Dead);

        let data = app
            .gql(Role::Admin, REPLAY, json!({"ids": [node["id"].clone()]}))
            .await;
        assert_eq!(data["replayJobs"], json!({"count": 1, "userErrors": []}));
        let done = until_state(&app, id, JobState::Succeeded).await;
        assert_eq!(done.attempts, 1, "{backend:?}: fresh attempts");
        assert_eq!(done.errors.len(), 3, "history kept");
        let data = app.gql(Role::Admin, DEAD, json!({"first": 10})).await;
        assert!(dead_nodes(&data).is_empty());
    }
}

#[tokio::test]
async fn discard_jobs_deletes_dead_jobs_by_id_or_kind() {
    for backend in backends() {
        let app = app(backend).await;
        let a = enqueue(&app, FLAKY, json!({"permanent": true})).await;
        let b = enqueue(&app, FLAKY, json!({"permanent": true})).await;
        let dead = until_state(&app, a, JobState::Dead).await;
        assert_eq!(dead.attempts, 1, "{backend:?}: permanent errors are not retried");
        until_state(&app, b, JobState::Dead).await;

        let data = app.gql(Role::Admin, DEAD, json!({"first": 1})).await;
        assert_eq!(data["jobQueue"]["dead"]["pageInfo"]["hasNextPage"], true);
        let newest = dead_nodes(&data)[0]["id"].clone();
        let cursor = data["jobQueue"]["dead"]["pageInfo"]["endCursor"].clone();
        let next = app
            .gql(Role::Admin, DEAD, json!({"first": 1, "after": cursor}))
            .await;
        assert_eq!(next["jobQueue"]["dead"]["pageInfo"]["hasNextPage"], false);
        assert_ne!(dead_nodes(&next)[0]["id"], newest);

        let data = app.gql(Role::Admin, DISCARD, json!({"ids": [newest]})).await;
        assert_eq!(data["discardJobs"]["count"], 1, "{backend:?}");
        let data = app.gql(Role::Admin, DISCARD, json!({"kind": "flaky"})).await;
        assert_eq!(data["discardJobs"]["count"], 1);
        let data = app.gql(Role::Admin, DEAD, json!({"first": 10})).await;
        assert!(dead_nodes(&data).is_empty());
        assert!(
            app.services
                .store
                .job(JobScope::AllWorkspaces, a)
                .await
                .unwrap()
                .is_none()
        );
    }
}

#[tokio::test]
async fn job_queue_is_for_admins_and_shows_only_the_callers_workspace() {
    for backend in backends() {
        let app = app(backend).await;
        for role in [Role::Member, Role::Viewer] {
            let body = app.gql_err(role, STATS, json!({})).await;
            assert_eq!(first_code(&body), "FORBIDDEN", "{role:?}: {body}");
            let body = app.gql_err(role, REPLAY, json!({"kind": "flaky"})).await;
            assert_eq!(first_code(&body), "FORBIDDEN", "{role:?}: {body}");
        }
        let theirs = queue(&app)
            .enqueue(NewJob::new(FLAKY, json!({"permanent": true})).in_workspace(app.other.id))
            .await
            .unwrap()
            .id;
        let mine = enqueue(&app, FLAKY, json!({"permanent": true})).await;
        until_state(&app, theirs, JobState::Dead).await;
        until_state(&app, mine, JobState::Dead).await;

        let data = app.gql(Role::Admin, DEAD, json!({"first": 10})).await;
        let nodes = dead_nodes(&data);
        assert_eq!(nodes.len(), 1, "{backend:?}: {data}");
        let data = app.gql(Role::Admin, STATS, json!({})).await;
        let dead: i64 = data["jobQueue"]["stats"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["state"] == "DEAD")
            .map(|s| s["count"].as_i64().unwrap())
            .sum();
        assert_eq!(dead, 1, "{data}");

        // The other workspace's job cannot be replayed or discarded from here.
        let (_, body) = app
            .post(
                Some(&app.token_in(&app.other, Role::Admin)),
                json!({"query": DEAD, "variables": {"first": 10}}),
            )
            .await;
        let foreign = dead_nodes(&body["data"])[0]["id"].clone();
        let data = app.gql(Role::Admin, REPLAY, json!({"ids": [foreign]})).await;
        assert_eq!(data["replayJobs"]["count"], 0);
        let data = app.gql(Role::Admin, DISCARD, json!({"ids": [foreign]})).await;
        assert_eq!(data["discardJobs"]["count"], 0);
        assert_eq!(stored(&app, theirs).await.state, JobState::Dead);
    }
}

#[tokio::test]
async fn malformed_job_inputs_get_clear_errors() {
    for backend in backends() {
        let app = app(backend).await;
        for bad in ["42", "not-a-job", "TGVhZDox"] {
            let body = app.gql_err(Role::Admin, REPLAY, json!({"ids": [bad]})).await;
            assert_eq!(first_code(&body), "BAD_USER_INPUT", "{backend:?} {bad}: {body}");
            assert!(
                body["errors"][0]["message"].as_str().unwrap().contains("job id"),
                "{body}"
            );
        }
        let data = app
            .gql(Role::Admin, REPLAY, json!({"kind": "no.such.kind"}))
            .await;
        let err = &data["replayJobs"]["userErrors"][0];
        assert_eq!(
            (err["field"].clone(), err["code"].clone()),
            (json!(["kind"]), json!("INVALID")),
            "{data}"
        );
        assert!(err["message"].as_str().unwrap().contains("no.such.kind"));
        let data = app.gql(Role::Admin, DISCARD, json!({})).await;
        assert_eq!(data["discardJobs"]["userErrors"][0]["code"], "REQUIRED", "{data}");
        for first in [101, -1] {
            let body = app.gql_err(Role::Admin, DEAD, json!({"first": first})).await;
            assert_eq!(first_code(&body), "BAD_USER_INPUT", "{first}: {body}");
        }
        // as on every connection, `first: 0` is an empty page
        let data = app.gql(Role::Admin, DEAD, json!({"first": 0})).await;
        assert_eq!(data["jobQueue"]["dead"]["edges"], json!([]), "{data}");
        let body = app
            .gql_err(Role::Admin, DEAD, json!({"first": 5, "after": "garbage"}))
            .await;
        assert_eq!(first_code(&body), "BAD_USER_INPUT", "{body}");
        let body = app
            .gql_err(Role::Admin, DEAD, json!({"first": 5, "kind": "nope"}))
            .await;
        assert!(
            body["errors"][0]["message"].as_str().unwrap().contains("nope"),
            "{body}"
        );

        let spec = |cron: &str, tz: &str| ScheduleSpec {
            name: "nightly".into(),
            cron: cron.into(),
            tz: tz.into(),
            kind: NOOP,
            payload: json!({}),
        };
        let q = queue(&app).clone();
        let err = Scheduler::new(q.clone(), &[spec("0 3 * *", "UTC")])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("five-field") && err.contains("nightly"), "{err}");
        let err = Scheduler::new(q.clone(), &[spec("0 3 * * *", "Moon/Base")])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("Moon/Base"), "{err}");
        let mut registry = leadgate::jobs::Registry::new();
        let err = registry
            .schedule(spec("0 3 * * *", "UTC"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("noop"), "unknown kind: {err}");
    }
}

/// `app::registry` registers what `app::JOB_KINDS` lists, each handler under its line's kind
/// (it refuses a mismatch), with the line's schedule; the test kinds and the backup schedule
/// only when their settings are on.
#[tokio::test]
async fn the_registry_is_the_job_kind_list() {
    use leadgate::app::{JOB_KINDS, registry};
    // registration reads no table: one backend is enough
    let app = app(Backend::Sqlite).await;
    let mut settings = leadgate::config::Settings {
        job_test_kinds: true,
        backup_schedule: Some("0 2 * * *".into()),
        ..leadgate::config::Settings::default()
    };
    let all = registry(&settings, &app.services).unwrap();
    let mut listed: Vec<&str> = JOB_KINDS.iter().map(|l| l.kind.as_str()).collect();
    listed.sort_unstable();
    assert_eq!(all.kinds(), listed);
    let mut scheduled: Vec<(String, String)> = all
        .schedules()
        .iter()
        .map(|s| (s.name.clone(), s.cron.clone()))
        .collect();
    scheduled.sort();
    let expected = [
        ("campaign.segments", "*/15 * * * *"),
        ("campaign.tick", "* * * * *"),
        ("crm.poll_due", "* * * * *"),
        ("events.prune", "23 3 * * *"),
        ("jobs.prune", "17 * * * *"),
        ("ops.backup", "0 2 * * *"),
        ("retention.schedule", "30 3 * * *"),
    ];
    assert_eq!(scheduled, expected.map(|(n, c)| (n.to_owned(), c.to_owned())));
    assert!(
        all.schedules()
            .iter()
            .all(|s| s.kind.as_str() == s.name && s.tz == "UTC")
    );

    settings.job_test_kinds = false;
    settings.backup_schedule = None;
    let default = registry(&settings, &app.services).unwrap();
    let without: Vec<&str> = listed
        .iter()
        .copied()
        .filter(|k| !["noop", "sleep", "flaky", "panic"].contains(k))
        .collect();
    assert_eq!(default.kinds(), without);
    assert!(
        default.kinds().contains(&"ops.backup"),
        "a backup queued by hand still runs"
    );
    assert!(!default.schedules().iter().any(|s| s.name == "ops.backup"));
}

/// `Scheduler`s on one database, each with its own connection pool, as instances are.
async fn schedulers(url: &str, n: usize, spec: &ScheduleSpec) -> Vec<Scheduler> {
    let mut list = Vec::new();
    for _ in 0..n {
        let store = Store::connect(url, &PoolOptions { max_connections: 2 })
            .await
            .unwrap();
        list.push(Scheduler::new(Queue::new(store), std::slice::from_ref(spec)).unwrap());
    }
    list
}

#[tokio::test]
async fn cron_fires_once_per_tick_with_schedulers_racing() {
    use chrono::TimeZone;
    for backend in backends() {
        let (url, _guard) = fresh_database(backend).await;
        let spec = ScheduleSpec {
            name: "every-5".into(),
            cron: "*/5 * * * *".into(),
            tz: "Europe/Berlin".into(),
            kind: NOOP,
            payload: json!({"from": "cron"}),
        };
        let racers = schedulers(&url, 2, &spec).await;
        let at = |h, m, s| chrono::Utc.with_ymd_and_hms(2030, 1, 7, h, m, s).unwrap();
        for r in &racers {
            r.register(at(10, 0, 30)).await.unwrap();
        }
        let mut fired_per_tick = Vec::new();
        for now in [
            at(10, 4, 59),
            at(10, 5, 0),
            at(10, 7, 0),
            at(10, 10, 1),
            at(10, 31, 0),
            at(10, 31, 30),
        ] {
            let ticks = futures_util::future::join_all(racers.iter().map(|r| r.tick(now))).await;
            fired_per_tick.push(ticks.into_iter().map(|t| t.unwrap()).sum::<u32>());
        }
        // 10:05 and 10:10 fire once each; the missed 10:15–10:30 fire once, at 10:31.
        assert_eq!(fired_per_tick, vec![0, 1, 0, 1, 1, 0], "{backend:?}");
        let store = Store::connect(&url, &PoolOptions { max_connections: 2 })
            .await
            .unwrap();
        let schedule: Schedule = store.schedules().await.unwrap().remove(0);
        assert_eq!(schedule.next_run_at, at(10, 35, 0));
        assert_eq!(
            schedule.last_run_at,
            Some(at(10, 15, 0)),
            "the missed ticks fired as one"
        );
        let stats = store.job_stats(JobScope::AllWorkspaces).await.unwrap();
        assert_eq!(
            stats.iter().map(|s| s.count).sum::<u64>(),
            3,
            "{backend:?}: {stats:?}"
        );
    }
}

// ---- real worker processes ----

const BIN: &str = env!("CARGO_BIN_EXE_leadgate");

/// `leadgate worker` on `url` with the test kinds and a one-second lease.
async fn start_worker(url: &str) -> Child {
    start_worker_with(url, &[]).await.0
}

/// `start_worker` with `env` on top; returns the worker and its banner lines, read to its last
/// (`Errors: …`): the line that says the workers run, the Redis line, the jobs line, the
/// metrics line, the errors line.
pub(crate) async fn start_worker_with(url: &str, env: &[(&str, &str)]) -> (Child, Vec<String>) {
    let mut cmd = Command::new(BIN);
    cmd.arg("worker").env("LEADGATE_LOG", "warn");
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("LEADGATE_")) {
        cmd.env_remove(k);
    }
    cmd.env("LEADGATE_DATABASE_URL", url)
        .env("LEADGATE_JOB_TEST_KINDS", "true")
        .env("LEADGATE_JOB_VISIBILITY_TIMEOUT_SECS", "1")
        .env("LEADGATE_JOB_POLL_INTERVAL_MS", "50")
        .env("LEADGATE_JOB_MAINTENANCE_INTERVAL_MS", "100")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("spawn leadgate worker");
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut banner = Vec::new();
    let read = async {
        while let Some(line) = lines.next_line().await.expect("worker stdout") {
            let last = line.starts_with("Errors: ");
            banner.push(line);
            if last {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("worker started in time");
    assert!(banner[0].starts_with("leadgate worker running"), "{banner:?}");
    // keep reading, so the pipe never fills
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, banner)
}

/// Stops a worker process as an operator would (SIGTERM) and waits until it has exited.
async fn stop_worker(mut child: tokio::process::Child) {
    let pid = child.id().expect("the worker is running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the worker stops after SIGTERM")
        .expect("wait for the worker");
}

async fn open(url: &str) -> Store {
    Store::connect(url, &PoolOptions { max_connections: 2 })
        .await
        .unwrap()
}

#[tokio::test]
async fn a_killed_workers_job_is_finished_by_another_after_its_lease_expires() {
    for backend in backends() {
        let (url, _guard) = fresh_database(backend).await;
        let store = open(&url).await;
        let job = NewJob::new(SLEEP, json!({"ms": 600_000, "firstAttemptOnly": true}));
        let id = store.enqueue_job(&job, 3, now()).await.unwrap().id;

        let mut first = start_worker(&url).await;
        poll_until(
            Duration::from_secs(15),
            "the first worker to take the job",
            || {
                let store = &store;
                async move {
                    let job = store.job(JobScope::AllWorkspaces, id).await.unwrap()?;
                    (job.state == JobState::Running).then_some(())
                }
            },
        )
        .await;
        first.kill().await.expect("SIGKILL the first worker");

        let _second = start_worker(&url).await;
        let done = poll_until(
            Duration::from_secs(20),
            "the second worker to finish the job",
            || {
                let store = &store;
                async move {
                    let job = store.job(JobScope::AllWorkspaces, id).await.unwrap()?;
                    (job.state == JobState::Succeeded).then_some(job)
                }
            },
        )
        .await;
        assert_eq!(done.attempts, 2, "{backend:?}");
        assert_eq!(done.errors.len(), 1);
        assert_eq!(done.errors[0].error, "lease expired");
    }
}

#[tokio::test]
async fn two_worker_processes_fire_a_cron_tick_once() {
    for backend in backends() {
        let (url, _guard) = fresh_database(backend).await;
        let store = open(&url).await;
        let due = now() - chrono::TimeDelta::seconds(1);
        store
            .upsert_schedule(&Schedule {
                name: "test.every-minute".into(),
                cron: "* * * * *".into(),
                tz: "UTC".into(),
                kind: "noop".into(),
                payload: json!({}),
                next_run_at: due,
                last_run_at: None,
                enabled: true,
            })
            .await
            .unwrap();
        let (a, b) = tokio::join!(start_worker(&url), start_worker(&url));
        poll_until(Duration::from_secs(15), "the tick's job to run", || {
            let store = &store;
            async move {
                let stats = store.job_stats(JobScope::AllWorkspaces).await.unwrap();
                stats
                    .iter()
                    .any(|s| s.kind == "noop" && s.state == JobState::Succeeded)
                    .then_some(())
            }
        })
        .await;
        // Both workers have checked the schedule at least once (the tick fired); stopping them
        // ends every check in flight, so a second firing would be in the table by now.
        tokio::join!(stop_worker(a), stop_worker(b));
        let schedule = store
            .schedules()
            .await
            .unwrap()
            .into_iter()
            .find(|s| s.name == "test.every-minute")
            .expect("the schedule");
        let stats = store.job_stats(JobScope::AllWorkspaces).await.unwrap();
        let noop: u64 = stats.iter().filter(|s| s.kind == "noop").map(|s| s.count).sum();
        // One job per tick: the due one, plus the next minute's if the test crossed it.
        let ticks = if schedule.last_run_at == Some(due) { 1 } else { 2 };
        assert_eq!(noop, ticks, "{backend:?}: {stats:?}");
    }
}
