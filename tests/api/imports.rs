//! Imports of lead files: the pipeline against both stores (policies, dry run, error report,
//! tombstones) and the `leadgate import` binary (a killed import resumes without duplicates).

use crate::helpers::{Backend, backends, fresh_database, fresh_store, poll_until};
use leadgate::bulk::import::pipeline::{
    self, ERASED_REASON, ImportOutcome, ImportRequest, NOTHING_TO_IDENTIFY,
};
use leadgate::bulk::import::{Format, OnDuplicate};
use leadgate::domain::{
    EmailAddress, EmailHash, ImportCounts, ImportStatus, LeadFilter, LeadOrder, LeadPatch, LeadQuery,
    PageDirection, Patch, Workspace, WorkspaceId, WorkspaceSlug, now,
};
use leadgate::store::{PoolOptions, Store};
use std::io::Cursor;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

async fn workspace(store: &Store, slug: &str) -> Workspace {
    let ws = Workspace {
        id: WorkspaceId::new(),
        slug: WorkspaceSlug::parse(slug).unwrap(),
        name: slug.into(),
        created_at: now(),
    };
    store.create_workspace(&ws).await.unwrap();
    ws
}

fn request(ws: &Workspace, on_duplicate: OnDuplicate, dry_run: bool) -> ImportRequest {
    ImportRequest {
        workspace: ws.id,
        format: Format::Csv,
        on_duplicate,
        dry_run,
        mapping: Vec::new(),
        default_region: None,
        source_name: "leads.csv".into(),
    }
}

async fn import(store: &Store, request: &ImportRequest, data: &str) -> ImportOutcome {
    let record = pipeline::begin(store, request, true).await.unwrap();
    let input = Box::new(Cursor::new(data.as_bytes().to_vec()));
    pipeline::run(store, record, input, |_, _| {}).await.unwrap()
}

fn email(raw: &str) -> EmailAddress {
    EmailAddress::parse("email", raw).unwrap()
}

/// Every (active) lead of the workspace by email.
async fn leads_by_email(
    store: &Store,
    ws: &Workspace,
) -> std::collections::HashMap<String, leadgate::domain::Lead> {
    let query = LeadQuery {
        filter: LeadFilter::default(),
        order: LeadOrder::default(),
        after: None,
        before: None,
        limit: 1000,
        direction: PageDirection::Forward,
    };
    store
        .list_leads(ws.id, &query)
        .await
        .unwrap()
        .into_iter()
        .map(|l| {
            (
                l.email
                    .as_ref()
                    .map(|e| e.as_str().to_owned())
                    .unwrap_or_default(),
                l,
            )
        })
        .collect()
}

async fn existing_lead(store: &Store, ws: &Workspace, address: &str, first: &str, title: Option<&str>) {
    let patch = LeadPatch {
        first_name: Patch::Set(first.into()),
        title: title.map_or(Patch::Keep, |t| Patch::Set(t.into())),
        ..LeadPatch::default()
    };
    store
        .upsert_leads(ws.id, &[(email(address), patch)], now())
        .await
        .unwrap();
}

const SMALL: &str = "email,first_name,title,company_name\n\
ann@acme.io,Anna,CTO,Acme\n\
bob@acme.io,Bobby,,\n\
new@acme.io,Nina,CEO,Acme\n";

#[tokio::test]
async fn each_duplicate_policy_against_existing_leads() {
    for backend in backends() {
        for (policy, expect) in [
            (
                OnDuplicate::Skip,
                ImportCounts {
                    created: 1,
                    skipped_existing: 2,
                    ..ImportCounts::default()
                },
            ),
            (
                OnDuplicate::UpdateEmptyFields,
                ImportCounts {
                    created: 1,
                    updated: 1,
                    unchanged: 1,
                    ..ImportCounts::default()
                },
            ),
            (
                OnDuplicate::Overwrite,
                ImportCounts {
                    created: 1,
                    updated: 2,
                    ..ImportCounts::default()
                },
            ),
        ] {
            let (store, _guard) = fresh_store(backend).await;
            let ws = workspace(&store, "acme").await;
            existing_lead(&store, &ws, "ann@acme.io", "Ann", None).await;
            existing_lead(&store, &ws, "bob@acme.io", "Bob", Some("VP Sales")).await;
            let outcome = import(&store, &request(&ws, policy, false), SMALL).await;
            assert_eq!(outcome.import.counts, expect, "{backend:?} {policy:?}");
            assert_eq!(outcome.import.status, ImportStatus::Succeeded);
            let leads = leads_by_email(&store, &ws).await;
            assert_eq!(leads.len(), 3, "{backend:?} {policy:?}");
            assert_eq!(store.lead_counts(ws.id).await.unwrap().active, 3);
            let (ann, bob) = (&leads["ann@acme.io"], &leads["bob@acme.io"]);
            match policy {
                OnDuplicate::Skip => {
                    assert_eq!(ann.first_name.as_deref(), Some("Ann"));
                    assert_eq!(ann.title, None);
                }
                OnDuplicate::UpdateEmptyFields => {
                    assert_eq!(ann.first_name.as_deref(), Some("Ann"), "a filled field stays");
                    assert_eq!(ann.title.as_deref(), Some("CTO"), "an empty field is filled");
                    assert_eq!(ann.version, 2);
                }
                OnDuplicate::Overwrite => {
                    assert_eq!(ann.first_name.as_deref(), Some("Anna"));
                    assert_eq!(bob.first_name.as_deref(), Some("Bobby"));
                    assert_eq!(
                        bob.title.as_deref(),
                        Some("VP Sales"),
                        "an empty cell never clears"
                    );
                }
            }
            assert_eq!(leads["new@acme.io"].first_name.as_deref(), Some("Nina"));
        }
    }
}

const DIRTY: &str = "email,first_name,phone,company_name\n\
ann@acme.io,Ann,,Acme\n\
not-an-email,Bad,,Acme\n\
ANN@acme.io,Ann again,,Acme\n\
,,,\n\
,Nobody-at-all,,\n\
cat@acme.io,Cat,12,Acme\n\
dan@acme.io,Dan,,\n";

#[tokio::test]
async fn bad_rows_are_reported_while_good_rows_go_in() {
    for backend in backends() {
        let (store, _guard) = fresh_store(backend).await;
        let ws = workspace(&store, "acme").await;
        let outcome = import(&store, &request(&ws, OnDuplicate::Skip, false), DIRTY).await;
        let c = outcome.import.counts;
        assert_eq!(
            c,
            ImportCounts {
                created: 3,
                duplicates_in_file: 1,
                invalid: 3,
                ..ImportCounts::default()
            },
            "{backend:?}"
        );
        assert_eq!(c.total(), 7);
        assert_eq!(outcome.import.checkpoint.rows_done, 7);
        let errors = store
            .import_errors(
                ws.id,
                outcome.import.id,
                &leadgate::domain::KeysetPage::first(100),
            )
            .await
            .unwrap()
            .items;
        let rows: Vec<(u64, Option<&str>)> = errors.iter().map(|e| (e.row, e.column.as_deref())).collect();
        assert_eq!(
            rows,
            vec![(2, Some("email")), (4, None), (6, Some("phone"))],
            "{backend:?}"
        );
        assert_eq!(errors[1].reason, NOTHING_TO_IDENTIFY);
        assert!(
            errors.iter().all(|e| !e.reason.contains("not-an-email")),
            "reasons never echo an email"
        );
        let page = store
            .import_errors(
                ws.id,
                outcome.import.id,
                &leadgate::domain::KeysetPage::after((errors[0].row, errors[0].seq), 1),
            )
            .await
            .unwrap()
            .items;
        assert_eq!(page.len(), 1);
        assert_eq!(page[0].row, 4, "the report pages by (row, seq)");
        let leads = leads_by_email(&store, &ws).await;
        assert_eq!(
            leads["ann@acme.io"].first_name.as_deref(),
            Some("Ann"),
            "the first occurrence wins"
        );
        assert_eq!(leads.len(), 3);
        let other = workspace(&store, "other").await;
        assert!(store.import(other.id, outcome.import.id).await.unwrap().is_none());
        assert!(
            store
                .import_errors(
                    other.id,
                    outcome.import.id,
                    &leadgate::domain::KeysetPage::first(100)
                )
                .await
                .unwrap()
                .items
                .is_empty()
        );
    }
}

#[tokio::test]
async fn a_dry_run_reports_the_same_counts_and_writes_no_lead() {
    for backend in backends() {
        let (store, _guard) = fresh_store(backend).await;
        let ws = workspace(&store, "acme").await;
        existing_lead(&store, &ws, "ann@acme.io", "Ann", None).await;
        let before = leads_by_email(&store, &ws).await;
        let dry = import(&store, &request(&ws, OnDuplicate::Overwrite, true), DIRTY).await;
        assert_eq!(
            leads_by_email(&store, &ws).await,
            before,
            "{backend:?}: nothing changed"
        );
        assert_eq!(store.lead_counts(ws.id).await.unwrap().active, 1);
        assert!(dry.import.dry_run());
        let real = import(&store, &request(&ws, OnDuplicate::Overwrite, false), DIRTY).await;
        assert_eq!(dry.import.counts, real.import.counts, "{backend:?}");
        assert_eq!(real.import.counts.updated, 1);
        let dry_errors = store
            .import_errors(ws.id, dry.import.id, &leadgate::domain::KeysetPage::first(100))
            .await
            .unwrap()
            .items;
        let real_errors = store
            .import_errors(ws.id, real.import.id, &leadgate::domain::KeysetPage::first(100))
            .await
            .unwrap()
            .items;
        assert_eq!(dry_errors, real_errors);
        assert_eq!(store.lead_counts(ws.id).await.unwrap().active, 3);
    }
}

/// Writes a tombstone the way erasure does (there is no import-side API to make one).
async fn tombstone(url: &str, backend: Backend, ws: WorkspaceId, hash: &EmailHash) {
    match backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(url).await.unwrap();
            sqlx::query(
                "INSERT INTO erasure_tombstones (workspace_id, email_hash, erased_at) VALUES ($1, $2, 0)",
            )
            .bind(ws.as_uuid())
            .bind(hash.as_str())
            .execute(&pool)
            .await
            .unwrap();
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            sqlx::query(
                "INSERT INTO erasure_tombstones (workspace_id, email_hash, erased_at) VALUES ($1, $2, now())",
            )
            .bind(ws.as_uuid())
            .bind(hash.as_str())
            .execute(&pool)
            .await
            .unwrap();
        }
    }
}

#[tokio::test]
async fn a_tombstoned_email_is_refused() {
    for backend in backends() {
        let (url, _guard) = fresh_database(backend).await;
        let store = Store::connect(&url, &PoolOptions { max_connections: 4 })
            .await
            .unwrap();
        let ws = workspace(&store, "acme").await;
        let hash = EmailHash::of(ws.id, &email("ann@acme.io"));
        tombstone(&url, backend, ws.id, &hash).await;
        let outcome = import(&store, &request(&ws, OnDuplicate::Skip, false), SMALL).await;
        assert_eq!(outcome.import.counts.blocked, 1, "{backend:?}");
        assert_eq!(outcome.import.counts.created, 2);
        let leads = leads_by_email(&store, &ws).await;
        assert!(
            !leads.contains_key("ann@acme.io"),
            "{backend:?}: the erased person stays out"
        );
        let errors = store
            .import_errors(ws.id, outcome.import.id, &leadgate::domain::KeysetPage::first(10))
            .await
            .unwrap()
            .items;
        assert_eq!(errors.len(), 1);
        assert_eq!((errors[0].row, errors[0].reason.as_str()), (1, ERASED_REASON));
        assert_eq!(
            errors[0].email_hash.as_ref(),
            Some(&hash),
            "erasure can find the row"
        );
    }
}

const BIN: &str = env!("CARGO_BIN_EXE_leadgate");

fn big_csv(rows: usize) -> String {
    let mut out = String::from("email,first_name,company_name\r\n");
    for i in 0..rows {
        // every 10th row repeats an earlier email
        let n = if i % 10 == 9 { i - 5 } else { i };
        out.push_str(&format!(
            "person{n}@example.com,Person {i},Company {}\r\n",
            i % 97
        ));
    }
    out
}

fn import_command(dir: &std::path::Path, url: &str) -> tokio::process::Command {
    import_command_for(dir, url, "-")
}

/// `leadgate import SOURCE --workspace acme` (`-` for stdin) on the database at `url`.
fn import_command_for(dir: &std::path::Path, url: &str, source: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(["import", source, "--workspace", "acme"])
        .current_dir(dir)
        .env("LEADGATE_LOG", "warn")
        .env("LEADGATE_DATABASE_URL", url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("LEADGATE_") && k != "LEADGATE_DATABASE_URL")
    {
        cmd.env_remove(k);
    }
    cmd
}

#[tokio::test]
async fn a_killed_import_resumes_without_duplicates() {
    const ROWS: usize = 30_000;
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let (url, _guard) = fresh_database(backend).await;
        let store = Store::connect(&url, &PoolOptions { max_connections: 4 })
            .await
            .unwrap();
        let ws = workspace(&store, "acme").await;
        let data = big_csv(ROWS);

        // feed two thirds, wait for a committed checkpoint, then SIGKILL
        let mut child = import_command(dir.path(), &url).spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(&data.as_bytes()[..data.len() * 2 / 3])
            .await
            .unwrap();
        stdin.flush().await.unwrap();
        let first = poll_until(Duration::from_secs(60), "a committed checkpoint", || async {
            let imports = stored_imports(&store, &ws).await;
            imports.into_iter().find(|i| i.checkpoint.rows_done > 0)
        })
        .await;
        child.start_kill().unwrap();
        let status = child.wait().await.unwrap();
        assert!(!status.success(), "{backend:?}: killed, not finished");
        let killed = store.import(ws.id, first.id).await.unwrap().unwrap();
        assert_eq!(killed.status, ImportStatus::Running);
        assert!(killed.checkpoint.rows_done < ROWS as u64);
        let committed = store.lead_counts(ws.id).await.unwrap().active;
        assert_eq!(
            committed, killed.counts.created,
            "{backend:?}: leads and checkpoint commit together"
        );

        // the full file again: continues from the checkpoint
        let mut child = import_command(dir.path(), &url).spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let writer = tokio::spawn(async move {
            stdin.write_all(data.as_bytes()).await.unwrap();
        });
        let out = child.wait_with_output().await.unwrap();
        writer.await.unwrap();
        let said = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{backend:?}: {said}");
        assert!(
            said.contains(&format!("resumed after row {}", killed.checkpoint.rows_done)),
            "{said}"
        );
        let done = store.import(ws.id, first.id).await.unwrap().unwrap();
        assert_eq!(
            done.status,
            ImportStatus::Succeeded,
            "{backend:?}: the same import finished"
        );
        let duplicates = (ROWS / 10) as u64;
        assert_eq!(done.counts.created, ROWS as u64 - duplicates, "{backend:?}");
        assert_eq!(done.counts.duplicates_in_file, duplicates);
        assert_eq!(done.counts.total(), ROWS as u64);
        assert_eq!(
            store.lead_counts(ws.id).await.unwrap().active,
            ROWS as u64 - duplicates
        );
        let filter = LeadFilter::default();
        assert_eq!(
            store.count_leads(ws.id, &filter, 1_000_000).await.unwrap(),
            ROWS as u64 - duplicates,
            "{backend:?}: no lead twice (emails are unique, so counting rows counts emails)"
        );
        assert_eq!(stored_imports(&store, &ws).await.len(), 1);

        // a different file does not resume that import
        let mut child = import_command(dir.path(), &url).spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(b"email,first_name\r\nzed@example.com,Zed\r\n")
            .await
            .unwrap();
        drop(stdin);
        let out = child.wait_with_output().await.unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(stored_imports(&store, &ws).await.len(), 2);
    }
}

/// The newest imports of the workspace (at most 10), as stored.
async fn stored_imports(store: &Store, ws: &Workspace) -> Vec<leadgate::domain::Import> {
    store
        .imports(ws.id, &leadgate::domain::KeysetPage::first(10))
        .await
        .unwrap()
        .items
}

/// Every email of the workspace's active leads, each as often as it is stored.
async fn stored_emails(store: &Store, ws: &Workspace) -> Vec<String> {
    let order = LeadOrder::default();
    let mut after = None;
    let mut emails = Vec::new();
    loop {
        let query = LeadQuery {
            filter: LeadFilter::default(),
            order,
            after: after.clone(),
            before: None,
            limit: 5_000,
            direction: PageDirection::Forward,
        };
        let mut page = store.list_leads(ws.id, &query).await.unwrap();
        let more = page.len() > 5_000;
        page.truncate(5_000);
        after = page.last().map(|l| crate::reference::cursor(order, l));
        emails.extend(
            page.iter()
                .filter_map(|l| l.email.as_ref().map(|e| e.as_str().to_owned())),
        );
        if !more {
            break;
        }
    }
    emails.sort();
    emails
}

/// The distinct emails of `big_csv(rows)`, sorted.
fn big_csv_emails(rows: usize) -> Vec<String> {
    let mut emails: Vec<String> = (0..rows)
        .filter(|i| i % 10 != 9)
        .map(|n| format!("person{n}@example.com"))
        .collect();
    emails.sort();
    emails
}

/// Starts an import fed `data` on stdin up to two thirds, waits until it has committed a
/// checkpoint (the imports table says so), SIGKILLs it, and returns the interrupted import.
async fn kill_an_import_midway(
    dir: &std::path::Path,
    url: &str,
    store: &Store,
    ws: &Workspace,
    data: &str,
) -> leadgate::domain::Import {
    let mut child = import_command(dir, url).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(&data.as_bytes()[..data.len() * 2 / 3])
        .await
        .unwrap();
    stdin.flush().await.unwrap();
    let first = poll_until(Duration::from_secs(60), "a committed checkpoint", || async {
        let imports = stored_imports(store, ws).await;
        imports.into_iter().find(|i| i.checkpoint.rows_done > 0)
    })
    .await;
    child.start_kill().unwrap();
    let status = child.wait().await.unwrap();
    assert!(!status.success(), "killed, not finished");
    drop(stdin);
    let killed = store.import(ws.id, first.id).await.unwrap().unwrap();
    assert_eq!(
        killed.status,
        ImportStatus::Running,
        "a killed import stays resumable"
    );
    killed
}

#[tokio::test]
async fn a_killed_file_import_is_resumed_by_the_next_run_with_every_row_once() {
    const ROWS: usize = 30_000;
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let (url, _guard) = fresh_database(backend).await;
        let store = Store::connect(&url, &PoolOptions { max_connections: 4 })
            .await
            .unwrap();
        let ws = workspace(&store, "acme").await;
        let data = big_csv(ROWS);
        let file = dir.path().join("leads.csv");
        std::fs::write(&file, &data).unwrap();
        let killed = kill_an_import_midway(dir.path(), &url, &store, &ws, &data).await;
        assert!(killed.checkpoint.rows_done < ROWS as u64, "{backend:?}");
        assert_eq!(
            store.lead_counts(ws.id).await.unwrap().active,
            killed.counts.created,
            "{backend:?}: leads and checkpoint commit together"
        );

        // the same bytes from the file: the run continues the killed import
        let out = import_command_for(dir.path(), &url, file.to_str().unwrap())
            .output()
            .await
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{backend:?}: {said}");
        assert!(
            said.contains(&format!("resumed after row {}", killed.checkpoint.rows_done)),
            "{backend:?}: {said}"
        );
        let done = store.import(ws.id, killed.id).await.unwrap().unwrap();
        assert_eq!(done.status, ImportStatus::Succeeded, "{backend:?}");
        let emails = big_csv_emails(ROWS);
        assert_eq!(done.counts.created, emails.len() as u64, "{backend:?}");
        assert_eq!(
            stored_emails(&store, &ws).await,
            emails,
            "{backend:?}: every row once"
        );
        assert_eq!(stored_imports(&store, &ws).await.len(), 1, "{backend:?}");
    }
}

#[tokio::test]
async fn two_processes_racing_to_resume_one_import_write_every_row_once() {
    const ROWS: usize = 30_000;
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let (url, _guard) = fresh_database(backend).await;
        let store = Store::connect(&url, &PoolOptions { max_connections: 4 })
            .await
            .unwrap();
        let ws = workspace(&store, "acme").await;
        let data = big_csv(ROWS);
        let file = dir.path().join("leads.csv");
        std::fs::write(&file, &data).unwrap();
        let killed = kill_an_import_midway(dir.path(), &url, &store, &ws, &data).await;

        // two runners start at once on the same file and find the same interrupted import
        let path = file.to_str().unwrap();
        let (a, b) = tokio::join!(
            import_command_for(dir.path(), &url, path).output(),
            import_command_for(dir.path(), &url, path).output()
        );
        let runs = [a.unwrap(), b.unwrap()];
        let said: Vec<String> = runs
            .iter()
            .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            .collect();
        let succeeded = runs.iter().filter(|o| o.status.success()).count();
        eprintln!("{backend:?}: {succeeded} of 2 runners succeeded: {said:?}");
        assert!(succeeded >= 1, "{backend:?}: neither runner finished: {said:?}");
        for (run, text) in runs.iter().zip(&said) {
            if !run.status.success() {
                // the loser's chunks lost the compare-and-set on the checkpoint
                assert!(
                    text.contains(&format!("import {} stopped", killed.id)),
                    "{backend:?}: a runner failed for another reason: {text}"
                );
            }
        }

        // the interrupted import finished, and no row is missing or doubled
        let done = store.import(ws.id, killed.id).await.unwrap().unwrap();
        assert_eq!(done.status, ImportStatus::Succeeded, "{backend:?}: {said:?}");
        let emails = big_csv_emails(ROWS);
        assert_eq!(
            stored_emails(&store, &ws).await,
            emails,
            "{backend:?}: every row exactly once: {said:?}"
        );
        // a runner that came after the import had finished started its own, which found
        // every lead already there and wrote nothing
        let imports = stored_imports(&store, &ws).await;
        for other in imports.iter().filter(|i| i.id != killed.id) {
            assert_eq!(other.status, ImportStatus::Succeeded, "{backend:?}: {other:?}");
            assert_eq!(other.counts.created, 0, "{backend:?}: {other:?}");
            assert_eq!(other.counts.skipped_existing, emails.len() as u64, "{backend:?}");
        }
        assert_eq!(
            store.lead_counts(ws.id).await.unwrap().active,
            emails.len() as u64,
            "{backend:?}: the maintained count follows"
        );
    }
}

#[tokio::test]
async fn a_dirty_generated_file_of_100k_rows_imports_with_the_expected_counts() {
    const ROWS: u64 = 100_000;
    let mut data = Vec::new();
    let expect = leadgate::bulk::synthetic::write_import_csv(&mut data, ROWS, 7, true).unwrap();
    assert!(data.starts_with("\u{feff}".as_bytes()) && data.windows(2).any(|w| w == b"\r\n"));
    for backend in backends() {
        let (store, _guard) = fresh_store(backend).await;
        let ws = workspace(&store, "acme").await;
        let record = pipeline::begin(&store, &request(&ws, OnDuplicate::Skip, false), false)
            .await
            .unwrap();
        let outcome = pipeline::run(&store, record, Box::new(Cursor::new(data.clone())), |_, _| {})
            .await
            .unwrap();
        let c = outcome.import.counts;
        assert_eq!(
            c,
            ImportCounts {
                created: expect.created,
                duplicates_in_file: expect.duplicates_in_file,
                invalid: expect.invalid.len() as u64,
                ..ImportCounts::default()
            },
            "{backend:?}"
        );
        assert_eq!(c.total(), ROWS);
        assert_eq!(outcome.import.checkpoint.rows_done, ROWS);
        assert_eq!(store.lead_counts(ws.id).await.unwrap().active, expect.created);

        // the report names each bad row and the columns at fault, in row order
        let mut reported: Vec<(u64, Vec<String>)> = Vec::new();
        let mut after = None;
        loop {
            let page = store
                .import_errors(
                    ws.id,
                    outcome.import.id,
                    &after.map_or(leadgate::domain::KeysetPage::first(1_000), |k| {
                        leadgate::domain::KeysetPage::after(k, 1_000)
                    }),
                )
                .await
                .unwrap()
                .items;
            let Some(last) = page.last() else { break };
            after = Some((last.row, last.seq));
            for e in page {
                assert!(!e.reason.is_empty() && !e.reason.contains(".at."), "{}", e.reason);
                let column = e.column.unwrap_or_default();
                match reported.last_mut() {
                    Some((row, columns)) if *row == e.row => columns.push(column),
                    _ => reported.push((e.row, vec![column])),
                }
            }
        }
        let expected: Vec<(u64, Vec<String>)> = expect
            .invalid
            .iter()
            .map(|(row, columns)| (*row, columns.iter().map(|c| (*c).to_owned()).collect()))
            .collect();
        assert_eq!(reported.len(), expected.len(), "{backend:?}");
        assert_eq!(reported, expected, "{backend:?}");
    }
}

/// A CRM export, then a file of as many rows of which every third names a lead of the export:
/// updates go through the staged `UPDATE … FROM` (hundreds per chunk) and change every lead
/// they name, its tags included, and no other. The expected values are read from the files
/// with the plain `csv` reader, not the importer's.
#[tokio::test]
async fn a_crm_export_and_a_file_updating_a_third_of_it_import_with_the_expected_counts() {
    use leadgate::bulk::synthetic::crm::{CrmCsv, CrmShape, write_crm_csv};
    let base = CrmCsv::export(3_000, 1, CrmShape::Salesforce);
    let update = base.updating(2, CrmShape::HubSpot);
    let (mut base_csv, mut update_csv) = (Vec::new(), Vec::new());
    let base_expect = write_crm_csv(&mut base_csv, &base).unwrap();
    let update_expect = write_crm_csv(&mut update_csv, &update).unwrap();
    assert!(update_expect.updated >= 900, "{update_expect:?}");
    // (email, title, tags) of every row of the update file, as written
    let written: Vec<(String, String, std::collections::BTreeSet<String>)> =
        csv::Reader::from_reader(update_csv.as_slice())
            .records()
            .map(|r| {
                let r = r.unwrap();
                let tags = r[11].split(';').map(|t| t.trim().to_owned()).collect();
                (r[2].trim().to_lowercase(), r[6].trim().to_owned(), tags)
            })
            .collect();
    for backend in backends() {
        let (store, _guard) = fresh_store(backend).await;
        let ws = workspace(&store, "acme").await;
        let first = import(
            &store,
            &request(&ws, OnDuplicate::Skip, false),
            std::str::from_utf8(&base_csv).unwrap(),
        )
        .await;
        assert_eq!(
            (first.import.counts.created, first.import.counts.invalid),
            (base_expect.created, base_expect.invalid),
            "{backend:?}"
        );
        let second = import(
            &store,
            &request(&ws, OnDuplicate::Overwrite, false),
            std::str::from_utf8(&update_csv).unwrap(),
        )
        .await;
        let c = second.import.counts;
        assert_eq!(
            (c.created, c.updated, c.invalid),
            (
                update_expect.created,
                update_expect.updated,
                update_expect.invalid
            ),
            "{backend:?}"
        );
        assert_eq!(
            store.lead_counts(ws.id).await.unwrap().active,
            base_expect.created + update_expect.created
        );
        let emails: Vec<EmailAddress> = written
            .iter()
            .filter_map(|(e, _, _)| EmailAddress::parse("email", e).ok())
            .collect();
        let stored: std::collections::HashMap<String, leadgate::domain::Lead> = store
            .leads_by_emails(ws.id, &emails)
            .await
            .unwrap()
            .into_iter()
            .map(|l| (l.email.as_ref().unwrap().as_str().to_owned(), l))
            .collect();
        let mut updated = 0;
        for (email, title, tags) in &written {
            let Some(lead) = stored.get(email) else { continue };
            if lead.version == 2 {
                updated += 1;
            } else {
                assert_eq!(lead.version, 1, "{backend:?} {email}");
            }
            assert_eq!(lead.title.as_deref(), Some(title.as_str()), "{backend:?} {email}");
            let got: std::collections::BTreeSet<String> =
                lead.tags.iter().map(|t| t.as_str().to_owned()).collect();
            assert_eq!(&got, tags, "{backend:?} {email}");
        }
        assert_eq!(updated, update_expect.updated, "{backend:?}");
    }
}

/// A staged update whose lead changed since it was read applies nothing of its chunk.
#[tokio::test]
async fn a_chunk_of_staged_updates_with_one_stale_version_applies_none_of_them() {
    use leadgate::store::{ImportChunk, StoreError};
    for backend in backends() {
        let (store, _guard) = fresh_store(backend).await;
        let ws = workspace(&store, "acme").await;
        let rows: Vec<(EmailAddress, LeadPatch)> = (0..100)
            .map(|i| {
                let patch = LeadPatch {
                    first_name: Patch::Set(format!("Before{i}")),
                    ..LeadPatch::default()
                };
                (email(&format!("p{i}@acme.io")), patch)
            })
            .collect();
        store.upsert_leads(ws.id, &rows, now()).await.unwrap();
        let emails: Vec<EmailAddress> = rows.iter().map(|(e, _)| e.clone()).collect();
        let before = store.leads_by_emails(ws.id, &emails).await.unwrap();
        assert_eq!(before.len(), 100);
        let record = pipeline::begin(&store, &request(&ws, OnDuplicate::Overwrite, false), true)
            .await
            .unwrap();
        let changed = |stale: Option<usize>| -> Vec<(leadgate::domain::Lead, i64)> {
            before
                .iter()
                .enumerate()
                .map(|(i, lead)| {
                    let mut next = lead.clone();
                    next.first_name = Some("After".into());
                    next.version += 1;
                    let read_at = if stale == Some(i) {
                        lead.version + 1
                    } else {
                        lead.version
                    };
                    (next, read_at)
                })
                .collect()
        };
        let stale = changed(Some(57));
        let chunk = ImportChunk {
            import: &record,
            previous_rows_done: record.checkpoint.rows_done,
            created: &[],
            updated: &stale,
            errors: &[],
        };
        let err = store.commit_import_chunk(&chunk).await.unwrap_err();
        assert!(matches!(err, StoreError::VersionMismatch), "{backend:?} {err:?}");
        let after = store.leads_by_emails(ws.id, &emails).await.unwrap();
        assert!(
            after
                .iter()
                .all(|l| l.first_name.as_deref() != Some("After") && l.version == 1),
            "{backend:?}"
        );

        let fresh = changed(None);
        let chunk = ImportChunk {
            updated: &fresh,
            ..chunk
        };
        store.commit_import_chunk(&chunk).await.unwrap();
        let after = store.leads_by_emails(ws.id, &emails).await.unwrap();
        assert!(
            after
                .iter()
                .all(|l| l.first_name.as_deref() == Some("After") && l.version == 2),
            "{backend:?}"
        );
    }
}

#[tokio::test]
async fn an_uploaded_file_is_imported_by_a_job_and_its_upload_deleted() {
    use leadgate::domain::Role;
    use leadgate::service::Actor;
    for backend in backends() {
        let app = crate::helpers::spawn_app(backend).await;
        let actor = |role| Actor {
            subject: "test".into(),
            workspace_id: app.workspace.id,
            role,
            key: None,
        };
        let request = request(&app.workspace, OnDuplicate::Skip, false);
        // more than one upload chunk, so the job reads several back
        let mut data = String::from("email,first_name\n");
        let mut n = 0;
        while data.len() <= leadgate::service::UPLOAD_CHUNK + 1000 {
            n += 1;
            data.push_str(&format!(
                "upload{n}@example.com,Person number {n} with a long enough name\n"
            ));
        }
        let viewer = app
            .services
            .imports
            .upload(&actor(Role::Viewer), request.clone(), data.as_bytes())
            .await;
        assert!(matches!(
            viewer,
            Err(leadgate::service::ServiceError::Forbidden(_))
        ));
        assert!(
            app.services
                .imports
                .imports(&actor(Role::Admin), leadgate::domain::KeysetPage::first(10))
                .await
                .unwrap()
                .items
                .is_empty()
        );

        let queued = app
            .services
            .imports
            .upload(&actor(Role::Member), request.clone(), data.as_bytes())
            .await
            .unwrap();
        assert!(queued.job_id.is_some());
        let store = &app.services.store;
        let done = poll_until(Duration::from_secs(60), "the import job to finish", || async {
            let import = store.import(app.workspace.id, queued.id).await.unwrap()?;
            (import.status == ImportStatus::Succeeded).then_some(import)
        })
        .await;
        assert_eq!(done.counts.created, n, "{backend:?}");
        assert_eq!(store.lead_counts(app.workspace.id).await.unwrap().active, n);
        assert!(
            store
                .import_upload(app.workspace.id, queued.id, 0)
                .await
                .unwrap()
                .is_none(),
            "upload deleted"
        );
        let other = Actor {
            workspace_id: app.other.id,
            ..actor(Role::Admin)
        };
        assert!(
            app.services.imports.import(&other, queued.id).await.is_err(),
            "another tenant sees nothing"
        );
    }
}

/// Every lead of the workspace, archived or not, by email.
async fn all_leads_by_email(
    store: &Store,
    ws: &Workspace,
) -> std::collections::BTreeMap<String, leadgate::domain::Lead> {
    let mut all = std::collections::BTreeMap::new();
    for archived in [
        leadgate::domain::ArchivedFilter::Exclude,
        leadgate::domain::ArchivedFilter::Only,
    ] {
        let query = LeadQuery {
            filter: LeadFilter {
                archived,
                ..LeadFilter::default()
            },
            order: LeadOrder::default(),
            after: None,
            before: None,
            limit: 1000,
            direction: PageDirection::Forward,
        };
        for lead in store.list_leads(ws.id, &query).await.unwrap() {
            all.insert(
                lead.email
                    .as_ref()
                    .expect("generated leads have emails")
                    .as_str()
                    .to_owned(),
                lead,
            );
        }
    }
    all
}

/// Export → import keeps every field a client can set: the export's columns are the importer's
/// canonical names, tags and custom fields travel as JSON, `archived_at` is honoured. (Ids and
/// the creation and update times belong to the store that made the lead.)
#[tokio::test]
async fn an_export_imports_back_field_for_field() {
    use futures_util::StreamExt;
    use leadgate::bulk::export::{self, ExportRequest, Extras};
    use leadgate::bulk::synthetic::Generator;
    for backend in backends() {
        let (store, _guard) = fresh_store(backend).await;
        let source = workspace(&store, "source").await;
        let mut generator = Generator::new(11);
        let mut leads: Vec<leadgate::domain::Lead> = (0..300)
            .map(|_| generator.lead(source.id, now()))
            .filter(|l| l.email.is_some())
            .collect();
        for (i, lead) in leads.iter_mut().enumerate() {
            if i % 7 == 0 {
                lead.archived_at = Some(now());
            }
            if i % 5 == 0 {
                lead.title = None;
                lead.phone = None;
            }
            if i % 11 == 0 {
                let mut custom = serde_json::Map::new();
                custom.insert("seats".into(), serde_json::json!(12));
                custom.insert("note".into(), serde_json::json!("line one\nline two, \"quoted\""));
                lead.custom_fields = leadgate::domain::CustomFields::from_trusted(custom);
                lead.tags = leadgate::domain::Tags::parse("tags", &["a;b", "c,d"]).unwrap();
            }
        }
        store.insert_leads_bulk(source.id, &leads).await.unwrap();
        let expected = all_leads_by_email(&store, &source).await;
        assert_eq!(expected.len(), leads.len());

        for format in [Format::Csv, Format::Ndjson] {
            let target = workspace(&store, &format!("target-{}", format.as_str())).await;
            let export_format = match format {
                Format::Csv => export::Format::Csv,
                Format::Ndjson => export::Format::Ndjson,
            };
            for archived in [
                leadgate::domain::ArchivedFilter::Exclude,
                leadgate::domain::ArchivedFilter::Only,
            ] {
                let wanted = ExportRequest {
                    filter: LeadFilter {
                        archived,
                        ..LeadFilter::default()
                    },
                    format: export_format,
                    extras: Extras::default(),
                    batch_size: 64,
                };
                let mut file = Vec::new();
                let mut chunks = Box::pin(export::stream(store.clone(), source.id, wanted));
                while let Some(chunk) = chunks.next().await {
                    file.extend_from_slice(&chunk.unwrap().bytes);
                }
                let text = String::from_utf8(file).unwrap();
                let request = ImportRequest {
                    format,
                    ..request(&target, OnDuplicate::Skip, false)
                };
                let outcome = import(&store, &request, &text).await;
                assert_eq!(outcome.import.counts.invalid, 0, "{backend:?} {format:?}");
            }
            let imported = all_leads_by_email(&store, &target).await;
            assert_eq!(imported.len(), expected.len(), "{backend:?} {format:?}");
            for (email, want) in &expected {
                let got = &imported[email];
                let same = leadgate::domain::Lead {
                    id: want.id,
                    workspace_id: want.workspace_id,
                    created_at: want.created_at,
                    updated_at: want.updated_at,
                    version: want.version,
                    ..got.clone()
                };
                assert_eq!(&same, want, "{backend:?} {format:?} {email}");
            }
        }
    }
}
