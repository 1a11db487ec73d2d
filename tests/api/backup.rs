//! Backup and restore: a backup taken under concurrent writes restores to one consistent
//! snapshot; a restore into either backend answers the API like the source; damaged files and
//! unsuitable targets are refused with the target untouched; scheduled backups keep the newest
//! K files; and every column maps to the same portable type on both backends.

use crate::helpers::*;
use leadgate::crypto::KeySealer;
use leadgate::domain::{ArchivedFilter, JobScope, JobState, LeadFilter, NewJob, ProviderKind, Role};
use leadgate::ops::backup::{self, BackupError, Summary};
use leadgate::store::{PoolOptions, Store};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

async fn open(url: &str) -> Store {
    Store::connect(url, &PoolOptions { max_connections: 4 })
        .await
        .unwrap_or_else(|e| panic!("cannot open {url}: {e}"))
}

/// A fresh, migrated, empty store of `backend`, its URL and the guard of a SQLite file.
async fn empty_target(backend: Backend) -> (Store, String, Option<tempfile::TempDir>) {
    let (url, guard) = fresh_database(backend).await;
    (open(&url).await, url, guard)
}

async fn take_backup(store: &Store, dir: &Path, name: &str) -> (PathBuf, Summary) {
    let path = dir.join(name);
    let summary = backup::backup(store, &path, |_, _| {})
        .await
        .unwrap_or_else(|e| panic!("backup failed: {e}"));
    (path, summary)
}

fn rows_of(summary: &Summary, table: &str) -> u64 {
    summary
        .tables
        .iter()
        .find(|t| t.name == table)
        .map_or(0, |t| t.rows)
}

/// Whether every workspace's maintained counts equal its leads as counted.
async fn counts_hold(store: &Store) -> bool {
    for ws in store.list_workspaces().await.unwrap() {
        let counts = store.lead_counts(ws.id).await.unwrap();
        let active = store
            .count_leads(ws.id, &LeadFilter::default(), u64::MAX)
            .await
            .unwrap();
        let archived_filter = LeadFilter {
            archived: ArchivedFilter::Only,
            ..LeadFilter::default()
        };
        let archived = store
            .count_leads(ws.id, &archived_filter, u64::MAX)
            .await
            .unwrap();
        if (counts.active, counts.archived) != (active, archived) {
            return false;
        }
    }
    true
}

#[tokio::test]
async fn a_backup_taken_under_concurrent_writes_restores_one_consistent_snapshot() {
    for backend in backends() {
        let app = Arc::new(spawn_app(backend).await);
        let store = app.services.store.clone();
        leadgate::bulk::seed(&store, &app.workspace, 20_000, 7, |_| {})
            .await
            .unwrap();
        // writers create and archive leads through the API until told to stop
        let stop = Arc::new(AtomicBool::new(false));
        let writes = Arc::new(AtomicU64::new(0));
        let mut writers = Vec::new();
        // each committed write is also announced, for the backup's progress callback below
        let (committed_tx, committed_rx) = std::sync::mpsc::channel::<()>();
        for w in 0..2 {
            let (app, stop, writes) = (app.clone(), stop.clone(), writes.clone());
            let committed = committed_tx.clone();
            writers.push(tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let lead = app
                        .create_lead(json!({"email": format!("w{w}-{n}@acme.example"), "lastName": "Writer"}))
                        .await;
                    if n % 2 == 0 {
                        let data = app
                            .gql(
                                Role::Member,
                                "mutation($id: ID!) { archiveLead(input: {id: $id}) { lead { id } } }",
                                json!({"id": lead["id"]}),
                            )
                            .await;
                        assert!(data["archiveLead"]["lead"]["id"].is_string(), "{data}");
                    }
                    n += 1;
                    writes.fetch_add(1, Ordering::Relaxed);
                    let _ = committed.send(());
                }
            }));
        }
        poll_until(Duration::from_secs(20), "writers to start", || async {
            (writes.load(Ordering::Relaxed) >= 3).then_some(())
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        // the backup's writer blocks at its first progress report (the snapshot is open by
        // then) until three more writes have committed, so writes overlap it on any machine
        let before = writes.load(Ordering::Relaxed);
        drop(committed_tx);
        let committed_rx = std::sync::Mutex::new(committed_rx);
        let watched = writes.clone();
        let file = dir.path().join("live.lgbackup");
        let taken = backup::backup(&store, &file, move |done, _| {
            if done == 0 {
                let rx = committed_rx.lock().unwrap();
                while watched.load(Ordering::Relaxed) < before + 3 {
                    rx.recv_timeout(Duration::from_secs(30))
                        .expect("writers commit while the snapshot is open");
                }
            }
        })
        .await
        .unwrap_or_else(|e| panic!("{backend:?}: backup failed: {e}"));
        let during = writes.load(Ordering::Relaxed) - before;
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.await.unwrap();
        }
        assert!(during > 0, "{backend:?}: no write overlapped the backup");
        let in_source_now = store.lead_counts(app.workspace.id).await.unwrap();
        assert!(
            rows_of(&taken, "leads") < in_source_now.active + in_source_now.archived,
            "{backend:?}: writes after the snapshot are not in it"
        );

        for target_backend in backends() {
            let (target, _url, _guard) = empty_target(target_backend).await;
            let restored = backup::restore(&file, &target, |_, _| {})
                .await
                .unwrap_or_else(|e| panic!("{backend:?} → {target_backend:?}: {e}"));
            assert_eq!(restored.tables, taken.tables, "{backend:?} → {target_backend:?}");
            // a backup of the restored store is the same, table by table
            let (_, again) = take_backup(&target, dir.path(), "again.lgbackup").await;
            assert_eq!(again.tables, taken.tables, "{backend:?} → {target_backend:?}");
            assert!(
                counts_hold(&target).await,
                "{backend:?} → {target_backend:?}: maintained lead counts differ from the leads"
            );
            target.close().await;
        }
    }
}

const PAGE: &str = "query($first: Int, $after: String, $order: LeadOrder) {
  leads(first: $first, after: $after, orderBy: $order) {
    totalCount
    edges { cursor node { id email firstName lastName companyName score status tags createdAt updatedAt } }
    pageInfo { hasNextPage endCursor }
  }
}";

/// The answers the comparison looks at, as seen by `app`.
async fn answers(app: &TestApp, enriched: &Value, after_event: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for order in [
        json!({"field": "CREATED_AT", "direction": "ASC"}),
        json!({"field": "LAST_NAME", "direction": "DESC"}),
        json!({"field": "SCORE", "direction": "ASC"}),
        json!({"field": "COMPANY_NAME", "direction": "ASC"}),
    ] {
        let first = app
            .gql(Role::Viewer, PAGE, json!({"first": 7, "order": order}))
            .await;
        let after = first["leads"]["pageInfo"]["endCursor"].clone();
        let second = app
            .gql(
                Role::Viewer,
                PAGE,
                json!({"first": 7, "after": after, "order": order}),
            )
            .await;
        out.push(first);
        out.push(second);
    }
    out.push(
        app.gql(
            Role::Viewer,
            "query($id: ID!) { lead(id: $id) { id email lastName person(policy: CACHE_ONLY) { fullName title } } }",
            json!({"id": enriched}),
        )
        .await,
    );
    out.push(
        app.gql(
            Role::Admin,
            "{ webhookEndpoints { id url eventTypes enabled secretLast4 } }",
            json!({}),
        )
        .await,
    );
    out.push(
        app.gql(
            Role::Admin,
            "{ providers { name enabled hasApiKey apiKeyLast4 } }",
            json!({}),
        )
        .await,
    );
    // the event log resumes after a cursor of the source
    let mut client = app.ws_ready(Protocol::TransportWs, Role::Partner).await;
    client
        .start(
            "e",
            "subscription($after: EventCursor) { events(after: $after) { cursor type leadId } }",
            json!({"after": after_event}),
        )
        .await;
    for _ in 0..3 {
        let message = client.recv().await;
        out.push(message["payload"]["data"]["events"].clone());
    }
    client.close().await;
    out
}

#[tokio::test]
async fn a_restore_into_either_backend_answers_like_the_source() {
    for source_backend in backends() {
        let source = spawn_app(source_backend).await;
        let head =
            source.gql(Role::Viewer, "{ latestEventCursor }", json!({})).await["latestEventCursor"].clone();
        let leads: Vec<Value> = (0..20)
            .map(|i| {
                let last = ["Zed", "Adams", "Moreau", ""][i % 4];
                let company = ["Initech", "", "Globex", "Acme"][i % 4];
                json!({
                    "email": format!("p{i}@acme.example"),
                    "firstName": format!("First{i}"),
                    "lastName": last,
                    "companyName": company,
                    "score": (i * 37) % 100,
                    "tags": ["vip", format!("t{}", i % 3)],
                })
            })
            .collect();
        let ids = source.create_leads(leads).await;
        source
            .configure_provider(json!({
                "provider": "SANDBOX",
                "options": {"latencyMs": 0, "missRate": 0.0, "creditsPerHit": 1},
            }))
            .await;
        source.set_waterfall("PERSON", &["SANDBOX"]).await;
        let enriched = source
            .gql(
                Role::Viewer,
                "query($id: ID!) { lead(id: $id) { person(policy: FETCH_IF_MISSING) { fullName } } }",
                json!({"id": ids[3]}),
            )
            .await;
        assert!(enriched["lead"]["person"]["fullName"].is_string(), "{enriched}");
        source
            .configure_provider(json!({"provider": "HUNTER", "apiKey": "hunter-secret-key-7781"}))
            .await;
        crate::webhooks::register(&source, "https://hooks.partner.example/in", &["LEAD_CREATED"]).await;
        let dir = tempfile::tempdir().unwrap();
        let (file, _) = take_backup(&source.services.store, dir.path(), "move.lgbackup").await;
        let id = json!(ids[3]);
        let expected = answers(&source, &id, &head).await;

        for target_backend in backends() {
            let (target, url, guard) = empty_target(target_backend).await;
            backup::restore(&file, &target, |_, _| {}).await.unwrap();
            target.close().await;
            let restored = spawn_app_on(target_backend, url, guard).await;
            assert_eq!(restored.workspace.id, source.workspace.id);
            let got = answers(&restored, &id, &head).await;
            for (want, got) in expected.iter().zip(&got) {
                assert_eq!(want, got, "{source_backend:?} → {target_backend:?}");
            }
            // the provider key still opens with the same master key
            let sealer = KeySealer::new(&SecretString::from(MASTER_KEY)).unwrap();
            let configs = restored
                .services
                .store
                .provider_configs(restored.workspace.id)
                .await
                .unwrap();
            let hunter = configs
                .iter()
                .find(|c| c.provider == ProviderKind::Hunter)
                .expect("hunter");
            let key = sealer
                .open(
                    restored.workspace.id,
                    ProviderKind::Hunter,
                    hunter.key.as_ref().expect("a key"),
                )
                .unwrap();
            assert_eq!(key.expose_secret(), "hunter-secret-key-7781");
        }
    }
}

/// The backup's JSON lines, changed by `edit`, written again as a well-formed backup file
/// (only the checksums can tell).
fn rewrite(file: &Path, out: &Path, edit: impl Fn(String) -> String) {
    let raw = std::fs::read(file).unwrap();
    let mut text = String::new();
    zstd::Decoder::new(&raw[9..])
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    let text = edit(text);
    let mut encoder = zstd::Encoder::new(Vec::new(), 1).unwrap();
    encoder.write_all(text.as_bytes()).unwrap();
    let mut bytes = raw[..9].to_vec();
    bytes.extend(encoder.finish().unwrap());
    std::fs::write(out, bytes).unwrap();
}

async fn refused(file: &Path, target: &Store) -> String {
    let err: BackupError = backup::restore(file, target, |_, _| {})
        .await
        .expect_err("the restore must be refused");
    assert!(
        target.tables_with_rows().await.unwrap().is_empty(),
        "a refused restore wrote something: {err}"
    );
    err.to_string()
}

#[tokio::test]
async fn damaged_files_and_unsuitable_targets_are_refused_and_nothing_is_written() {
    let source = spawn_app(Backend::Sqlite).await;
    source
        .create_leads(
            (0..50)
                .map(|i| json!({"email": format!("d{i}@acme.example")}))
                .collect(),
        )
        .await;
    let dir = tempfile::tempdir().unwrap();
    let (good, _) = take_backup(&source.services.store, dir.path(), "good.lgbackup").await;
    let bytes = std::fs::read(&good).unwrap();

    let wrong_magic = dir.path().join("magic.lgbackup");
    std::fs::write(&wrong_magic, b"PK\x03\x04 not a backup at all").unwrap();
    let corrupt_byte = dir.path().join("byte.lgbackup");
    let mut flipped = bytes.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x5a;
    std::fs::write(&corrupt_byte, flipped).unwrap();
    let truncated = dir.path().join("short.lgbackup");
    std::fs::write(&truncated, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let tampered = dir.path().join("tampered.lgbackup");
    rewrite(&good, &tampered, |t| {
        t.replacen("d7@acme.example", "x7@acme.example", 1)
    });
    let no_trailer = dir.path().join("no-trailer.lgbackup");
    rewrite(&good, &no_trailer, |t| {
        let end = t.trim_end().rfind('\n').unwrap();
        t[..=end].to_owned()
    });
    let older_schema = dir.path().join("older.lgbackup");
    let version = backup::manifest(&good).unwrap().schema_version;
    rewrite(&good, &older_schema, |t| {
        t.replacen(
            &format!("\"schema_version\":{version}"),
            &format!("\"schema_version\":{}", version - 1),
            1,
        )
    });

    for backend in backends() {
        let (target, _url, _guard) = empty_target(backend).await;
        let message = refused(&wrong_magic, &target).await;
        assert!(
            message.contains("not a leadgate backup"),
            "{backend:?}: {message}"
        );
        let message = refused(&corrupt_byte, &target).await;
        assert!(
            message.contains("corrupt") || message.contains("truncated"),
            "{backend:?}: {message}"
        );
        let message = refused(&truncated, &target).await;
        assert!(message.contains("truncated"), "{backend:?}: {message}");
        let message = refused(&tampered, &target).await;
        assert!(message.contains("fails its checksum"), "{backend:?}: {message}");
        let message = refused(&no_trailer, &target).await;
        assert!(message.contains("truncated"), "{backend:?}: {message}");
        let message = refused(&older_schema, &target).await;
        assert!(
            message.contains(&format!("schema version {}", version - 1)),
            "{backend:?}: {message}"
        );

        // after all that the target is still usable: the good file restores
        backup::restore(&good, &target, |_, _| {}).await.unwrap();
        // and now that it holds data, a second restore is refused and changes nothing
        let ws = target.workspace_by_slug("acme").await.unwrap().unwrap();
        let before = target.lead_counts(ws.id).await.unwrap();
        let err = backup::restore(&good, &target, |_, _| {})
            .await
            .expect_err("not empty");
        assert!(err.to_string().contains("not empty"), "{backend:?}: {err}");
        assert!(err.to_string().contains("leads"), "{backend:?}: {err}");
        assert_eq!(target.lead_counts(ws.id).await.unwrap(), before);
        target.close().await;
    }
}

fn backup_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn scheduled_backups_keep_the_newest_k_files() {
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let backups = dir.path().join("backups");
        let app = spawn_app_with(backend, |s| {
            s.backup_schedule = Some("0 3 * * *".into());
            s.backup_dir = backups.clone();
            s.backup_keep = 2;
        })
        .await;
        std::fs::create_dir_all(&backups).unwrap();
        // files that only look similar are never touched
        for other in ["notes.txt", "leadgate-latest.lgbackup"] {
            std::fs::write(backups.join(other), b"keep me").unwrap();
        }
        let store = &app.services.store;
        // in the past, so that the job run below (stamped now) writes the newest file
        let base = chrono::DateTime::from_timestamp(1_600_000_000, 0).unwrap();
        let mut written = Vec::new();
        for i in 0..4 {
            let at = base + chrono::TimeDelta::hours(i);
            let outcome = backup::scheduled::run_once(store, &backups, 2, at).await.unwrap();
            written.push(outcome.file);
        }
        let mut expected = vec![
            "leadgate-latest.lgbackup".to_owned(),
            written[2].clone(),
            written[3].clone(),
            "notes.txt".to_owned(),
        ];
        expected.sort();
        assert_eq!(backup_files(&backups), expected, "{backend:?}");

        // the job itself, through the queue: one more file, still two kept, outcome recorded
        let queued = app
            .services
            .jobs
            .queue()
            .enqueue(NewJob::new(backup::scheduled::KIND, json!({})))
            .await
            .unwrap();
        let job = poll_until(Duration::from_secs(30), "the backup job to succeed", || async {
            let job = store.job(JobScope::AllWorkspaces, queued.id).await.unwrap()?;
            (job.state == JobState::Succeeded).then_some(job)
        })
        .await;
        let outcome = job.progress.expect("the outcome is recorded");
        let file = outcome["file"].as_str().expect("file").to_owned();
        assert!(outcome["rows"].as_u64().unwrap() > 0, "{outcome}");
        let names = backup_files(&backups);
        assert!(names.contains(&file), "{names:?}");
        assert!(
            names.contains(&written[3]) && !names.contains(&written[2]),
            "{names:?}"
        );
        assert_eq!(names.len(), 4, "{names:?}");
    }
}

/// Portability depends on every column meaning the same on both backends; a column added to
/// one migration with another type (or a SQLite column whose name misleads the type rule)
/// fails here.
#[tokio::test]
async fn every_column_has_the_same_portable_type_on_both_backends() {
    let (sqlite, _guard) = fresh_store(Backend::Sqlite).await;
    let lite = sqlite
        .catalog()
        .await
        .expect("every SQLite column has a portable type");
    assert!(lite.tables.iter().any(|t| t.name == "leads"));
    assert!(!lite.tables.iter().any(|t| t.name.starts_with("_sqlx")));
    if crate::helpers::postgres_url_or_skip().is_some() {
        let (pg, _none) = fresh_store(Backend::Postgres).await;
        let pg = pg
            .catalog()
            .await
            .expect("every PostgreSQL column has a portable type");
        assert_eq!(lite.schema_version, pg.schema_version);
        let names = |c: &leadgate::store::backup::Catalog| {
            c.tables.iter().map(|t| t.name.clone()).collect::<Vec<_>>()
        };
        assert_eq!(names(&lite), names(&pg));
        for (a, b) in lite.tables.iter().zip(&pg.tables) {
            assert_eq!(a, b, "table {} differs between the backends", a.name);
        }
    }
}
