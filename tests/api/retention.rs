//! Retention: a run archives and deletes exactly the rows past its cut-offs (checked at the
//! cut-off minus one microsecond, at it, and plus one), in batches, with counts and events kept
//! right; archived leads stay queryable until deleted; a dry run changes nothing; runs are
//! recorded and listed through GraphQL; the daily tick queues one run per workspace with a
//! policy; bad days, cursors and roles are refused.

use crate::helpers::{TestApp, backends, first_code, poll_until, spawn_app};
use chrono::TimeDelta;
use leadgate::domain::{
    EnrichmentRecord, Group, LEAD_ARCHIVED, Lead, LeadId, NewEvent, RetentionCounts, RetentionDays,
    RetentionPolicy, RetentionRun, RetentionRunId, Role, RunTrigger, Tags, Timestamp, now,
};

use serde_json::{Value, json};
use std::time::Duration;

const SET_POLICY: &str = "mutation($input: RetentionPolicyInput!) { setRetentionPolicy(input: $input) { \
     archiveAfterDays deleteArchivedAfterDays compactEnrichment eventTtlDays } }";
const POLICY: &str =
    "{ retentionPolicy { archiveAfterDays deleteArchivedAfterDays compactEnrichment eventTtlDays } }";
const RUNS: &str = "query($first: Int, $after: String) { retentionRuns(first: $first, after: $after) { edges { cursor node { \
     id trigger dryRun startedAt finishedAt archived deleted enrichmentCompacted eventsCompacted error } } \
     pageInfo { hasNextPage endCursor } } }";

fn days(n: i64) -> RetentionDays {
    RetentionDays::parse("days", n).unwrap()
}

fn micros(n: i64) -> TimeDelta {
    TimeDelta::microseconds(n)
}

/// A lead of the test workspace last updated at `updated`, archived at `archived`.
fn lead_at(app: &TestApp, updated: Timestamp, archived: Option<Timestamp>, tag: &str) -> Lead {
    let mut lead = Lead::new(app.workspace.id, updated - TimeDelta::days(400));
    lead.updated_at = updated;
    lead.archived_at = archived;
    lead.last_name = Some(tag.to_owned());
    lead.tags = Tags::parse("tags", &[tag.to_owned()]).unwrap();
    lead
}

fn run_at(app: &TestApp, at: Timestamp, dry_run: bool) -> RetentionRun {
    RetentionRun {
        id: RetentionRunId::new(),
        workspace_id: app.workspace.id,
        trigger: RunTrigger::Manual,
        dry_run,
        started_at: at,
        finished_at: None,
        counts: RetentionCounts::default(),
        error: None,
    }
}

async fn ids_of(app: &TestApp, archived: bool) -> Vec<String> {
    let data = app
        .gql(
            Role::Member,
            "query($archived: Boolean) { leads(first: 100, filter: {archived: $archived}) { totalCount edges { node { lastName } } } }",
            json!({"archived": archived}),
        )
        .await;
    let mut names: Vec<String> = data["leads"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["lastName"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    assert_eq!(
        data["leads"]["totalCount"],
        names.len(),
        "maintained count: {data}"
    );
    names
}

#[tokio::test]
async fn a_run_archives_and_deletes_exactly_past_the_cutoffs_in_batches() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let store = &app.services.store;
        let ws = app.workspace.id;
        let t = now();
        let archive_cut = t - TimeDelta::days(30);
        let delete_cut = t - TimeDelta::days(90);
        let mut leads = vec![
            // active: archived iff updated_at < t - 30 days
            lead_at(&app, archive_cut - micros(1), None, "a-stale-1"),
            lead_at(&app, archive_cut - micros(1), None, "a-stale-2"),
            lead_at(&app, archive_cut - TimeDelta::days(300), None, "a-stale-3"),
            lead_at(&app, archive_cut, None, "a-at-cutoff"),
            lead_at(&app, archive_cut + micros(1), None, "a-fresh"),
            // archived: deleted iff archived_at < t - 90 days
            lead_at(
                &app,
                delete_cut - TimeDelta::days(1),
                Some(delete_cut - micros(1)),
                "d-old-1",
            ),
            lead_at(
                &app,
                delete_cut - TimeDelta::days(1),
                Some(delete_cut - micros(1)),
                "d-old-2",
            ),
            lead_at(
                &app,
                delete_cut - TimeDelta::days(1),
                Some(delete_cut - TimeDelta::days(9)),
                "d-old-3",
            ),
            lead_at(
                &app,
                delete_cut - TimeDelta::days(1),
                Some(delete_cut),
                "d-at-cutoff",
            ),
            lead_at(
                &app,
                delete_cut - TimeDelta::days(1),
                Some(delete_cut + micros(1)),
                "d-recent",
            ),
        ];
        leads.iter_mut().for_each(|l| l.email = None);
        store.insert_leads_bulk(ws, &leads).await.unwrap();
        let doomed: LeadId = leads[5].id;
        let kept: LeadId = leads[8].id;
        // enrichment: an expired record on a lead that stays, a fresh one, and one on a doomed lead
        let record = |lead: LeadId, group: Group, expires: Timestamp| {
            let mut r = EnrichmentRecord::empty(lead, group, "fp".into(), t - TimeDelta::days(1));
            r.expires_at = expires;
            r
        };
        store
            .save_enrichment(
                ws,
                &[
                    record(kept, Group::Person, t - micros(1)),
                    record(kept, Group::Company, t),
                    record(doomed, Group::Person, t + TimeDelta::days(5)),
                ],
                &[],
            )
            .await
            .unwrap();
        // events: one just older than the TTL, one exactly at it
        let event_cut = t - TimeDelta::days(10);
        let ev = |at: Timestamp| NewEvent {
            workspace_id: ws,
            kind: "job.dead",
            subject_id: None,
            payload: json!({"test": true}),
            at,
        };
        store
            .append_events(&[ev(event_cut - micros(1)), ev(event_cut)])
            .await
            .unwrap();
        let head_before = store.event_head(ws).await.unwrap();

        let policy = RetentionPolicy {
            archive_after_days: Some(days(30)),
            delete_archived_after_days: Some(days(90)),
            compact_enrichment: true,
            event_ttl_days: Some(days(10)),
        };
        store.save_retention_policy(ws, &policy, t).await.unwrap();

        // a dry run counts and changes nothing
        let mut dry = run_at(&app, t, true);
        store.save_retention_run(&dry).await.unwrap();
        leadgate::ops::retention::run(store, &mut dry, &policy, 2, |_| {})
            .await
            .unwrap();
        let expected = RetentionCounts {
            archived: 3,
            deleted: 3,
            enrichment_compacted: 1,
            events_compacted: 1,
        };
        assert_eq!(dry.counts, expected, "{backend:?}");
        let counts = store.lead_counts(ws).await.unwrap();
        assert_eq!(
            (counts.active, counts.archived),
            (5, 5),
            "{backend:?}: dry run changed counts"
        );
        assert_eq!(ids_of(&app, false).await.len(), 5);
        assert_eq!(store.event_head(ws).await.unwrap(), head_before);

        // the real run, two rows per transaction
        let mut run = run_at(&app, t, false);
        store.save_retention_run(&run).await.unwrap();
        let published = std::sync::Mutex::new(Vec::new());
        leadgate::ops::retention::run(store, &mut run, &policy, 2, |events| {
            published.lock().unwrap().extend(events)
        })
        .await
        .unwrap();
        let published = published.into_inner().unwrap();
        assert_eq!(run.counts, expected, "{backend:?}");
        assert!(run.finished_at.is_some());

        assert_eq!(
            ids_of(&app, false).await,
            vec!["a-at-cutoff", "a-fresh"],
            "{backend:?}"
        );
        // archived leads stay queryable with `archived: true` until deleted
        assert_eq!(
            ids_of(&app, true).await,
            vec!["a-stale-1", "a-stale-2", "a-stale-3", "d-at-cutoff", "d-recent"],
            "{backend:?}"
        );
        let counts = store.lead_counts(ws).await.unwrap();
        assert_eq!((counts.active, counts.archived), (2, 5), "{backend:?}");

        // each archived lead has its lead.archived event, written and published
        assert_eq!(published.len(), 3, "{backend:?}");
        let log = store.events_after(ws, head_before, 100).await.unwrap();
        let archived_events: Vec<_> = log.iter().filter(|e| e.kind == LEAD_ARCHIVED).collect();
        assert_eq!(archived_events.len(), 3, "{backend:?}");
        for e in &archived_events {
            let change = e.lead_change().unwrap();
            assert!(change.lead.archived_at.is_some());
            assert_eq!(change.changed_fields, vec!["archivedAt"]);
        }

        // deleted leads took their enrichment and tags with them; the expired record went too
        assert!(store.lead(ws, doomed).await.unwrap().is_none());
        let left = store
            .enrichment_records(ws, &[doomed, kept], &Group::ALL)
            .await
            .unwrap();
        assert_eq!(left.len(), 1, "{backend:?}: {left:?}");
        assert_eq!((left[0].lead_id, left[0].group), (kept, Group::Company));
        let tagged = app
            .gql(
                Role::Member,
                "{ leads(first: 10, filter: {archived: true, tags: {anyOf: [\"d-old-1\", \"d-old-2\", \"d-old-3\"]}}) { totalCount } }",
                json!({}),
            )
            .await;
        assert_eq!(tagged["leads"]["totalCount"], 0, "{backend:?}");
        // the event just older than the TTL is gone, the one at it stays
        let old = store.events_after(ws, 0, 100).await.unwrap();
        assert!(old.iter().all(|e| e.at >= event_cut), "{backend:?}");
        assert!(old.iter().any(|e| e.at == event_cut), "{backend:?}");

        // both runs are recorded and listed, newest first
        let data = app.gql(Role::Member, RUNS, json!({"first": 10})).await;
        let edges = data["retentionRuns"]["edges"].as_array().unwrap();
        assert_eq!(edges.len(), 2, "{backend:?}: {data}");
        let (newest, oldest) = (&edges[0]["node"], &edges[1]["node"]);
        assert_eq!(newest["dryRun"], false);
        assert_eq!(newest["trigger"], "MANUAL");
        assert_eq!(
            (
                &newest["archived"],
                &newest["deleted"],
                &newest["enrichmentCompacted"],
                &newest["eventsCompacted"]
            ),
            (&json!(3), &json!(3), &json!(1), &json!(1))
        );
        assert!(newest["finishedAt"].is_string());
        assert_eq!(oldest["dryRun"], true);
        // paging by cursor
        let first = app.gql(Role::Member, RUNS, json!({"first": 1})).await;
        assert_eq!(first["retentionRuns"]["pageInfo"]["hasNextPage"], true);
        let after = first["retentionRuns"]["pageInfo"]["endCursor"].clone();
        let second = app
            .gql(Role::Member, RUNS, json!({"first": 1, "after": after}))
            .await;
        assert_eq!(second["retentionRuns"]["edges"][0]["node"]["id"], oldest["id"]);
        assert_eq!(second["retentionRuns"]["pageInfo"]["hasNextPage"], false);

        // a second run at the same instant finds nothing more to do
        let mut again = run_at(&app, t, false);
        store.save_retention_run(&again).await.unwrap();
        leadgate::ops::retention::run(store, &mut again, &policy, 2, |_| {})
            .await
            .unwrap();
        assert_eq!(again.counts, RetentionCounts::default(), "{backend:?}");
    }
}

#[tokio::test]
async fn run_retention_queues_a_job_the_workers_carry_out() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let store = &app.services.store;
        let t = now();
        let stale = lead_at(&app, t - TimeDelta::days(8), None, "stale");
        let fresh = lead_at(&app, t - TimeDelta::days(6), None, "fresh");
        store
            .insert_leads_bulk(app.workspace.id, &[stale, fresh])
            .await
            .unwrap();
        let set = app
            .gql(Role::Admin, SET_POLICY, json!({"input": {"archiveAfterDays": 7}}))
            .await;
        assert_eq!(
            set["setRetentionPolicy"],
            json!({"archiveAfterDays": 7, "deleteArchivedAfterDays": null, "compactEnrichment": false, "eventTtlDays": null})
        );
        assert_eq!(
            app.gql(Role::Member, POLICY, json!({})).await["retentionPolicy"],
            set["setRetentionPolicy"]
        );

        let dry = app
            .gql(
                Role::Admin,
                "mutation { runRetention(dryRun: true) { id dryRun trigger } }",
                json!({}),
            )
            .await;
        assert_eq!(dry["runRetention"]["dryRun"], true);
        let finished = |id: Value| {
            let app = &app;
            async move {
                poll_until(Duration::from_secs(20), "the run to finish", || async {
                    let data = app.gql(Role::Admin, RUNS, json!({"first": 10})).await;
                    data["retentionRuns"]["edges"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|e| e["node"].clone())
                        .find(|n| n["id"] == id && n["finishedAt"].is_string())
                })
                .await
            }
        };
        let dry_done = finished(dry["runRetention"]["id"].clone()).await;
        assert_eq!(dry_done["archived"], 1, "{backend:?}: {dry_done}");
        assert_eq!(
            ids_of(&app, true).await,
            Vec::<String>::new(),
            "{backend:?}: a dry run archived"
        );

        let queued = app
            .gql(
                Role::Admin,
                "mutation { runRetention { id dryRun trigger finishedAt } }",
                json!({}),
            )
            .await;
        assert_eq!(queued["runRetention"]["trigger"], "MANUAL");
        assert_eq!(queued["runRetention"]["dryRun"], false);
        let real = finished(queued["runRetention"]["id"].clone()).await;
        assert_eq!(real["archived"], 1, "{backend:?}: {real}");
        assert_eq!(real["error"], Value::Null);
        assert_eq!(ids_of(&app, true).await, vec!["stale"], "{backend:?}");
        assert_eq!(ids_of(&app, false).await, vec!["fresh"], "{backend:?}");
    }
}

#[tokio::test]
async fn the_daily_tick_queues_a_run_per_workspace_with_a_policy() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let store = app.services.store.clone();
        // acme has a policy that does something; globex one that does nothing
        store
            .save_retention_policy(
                app.workspace.id,
                &RetentionPolicy {
                    compact_enrichment: true,
                    ..Default::default()
                },
                now(),
            )
            .await
            .unwrap();
        store
            .save_retention_policy(app.other.id, &RetentionPolicy::default(), now())
            .await
            .unwrap();
        let tick = leadgate::service::RetentionScheduleHandler {
            store: store.clone(),
            queue: app.services.jobs.queue().clone(),
        };
        assert_eq!(tick.fire().await.unwrap(), 1, "{backend:?}");
        let runs = poll_until(Duration::from_secs(20), "the scheduled run to finish", || async {
            let runs = store
                .retention_runs(app.workspace.id, &leadgate::domain::KeysetPage::first(10))
                .await
                .unwrap()
                .items;
            runs.iter().all(|r| r.finished_at.is_some()).then_some(runs)
        })
        .await;
        assert_eq!(runs.len(), 1, "{backend:?}");
        assert_eq!(runs[0].trigger, RunTrigger::Schedule);
        assert!(!runs[0].dry_run);
        assert!(
            store
                .retention_runs(app.other.id, &leadgate::domain::KeysetPage::first(10))
                .await
                .unwrap()
                .items
                .is_empty()
        );
        let listed = app.gql(Role::Admin, RUNS, json!({})).await;
        assert_eq!(listed["retentionRuns"]["edges"][0]["node"]["trigger"], "SCHEDULE");
        // the schedule itself is registered with the default cron, in UTC
        let schedules = app
            .gql(
                Role::Admin,
                "{ jobQueue { schedules { name cron timeZone kind } } }",
                json!({}),
            )
            .await;
        let ours = schedules["jobQueue"]["schedules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "retention.schedule")
            .cloned();
        assert_eq!(
            ours,
            Some(
                json!({"name": "retention.schedule", "cron": "30 3 * * *", "timeZone": "UTC", "kind": "retention.schedule"})
            ),
            "{backend:?}: {schedules}"
        );
    }
}

#[tokio::test]
async fn bad_days_cursors_and_roles_are_refused_and_nothing_changes() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.gql(
            Role::Admin,
            SET_POLICY,
            json!({"input": {"archiveAfterDays": 30, "eventTtlDays": 36500}}),
        )
        .await;
        for (field, value) in [
            ("archiveAfterDays", json!(0)),
            ("archiveAfterDays", json!(-1)),
            ("deleteArchivedAfterDays", json!(36501)),
            ("eventTtlDays", json!(9_999_999_999_i64)),
        ] {
            let body = app
                .gql_err(Role::Admin, SET_POLICY, json!({"input": {field: value}}))
                .await;
            assert_eq!(
                first_code(&body),
                "BAD_USER_INPUT",
                "{backend:?} {field}={value}: {body}"
            );
            assert!(body.to_string().contains(field), "{body}");
        }
        let body = app
            .gql_err(
                Role::Admin,
                SET_POLICY,
                json!({"input": {"archiveAfterDays": "thirty"}}),
            )
            .await;
        assert!(!first_code(&body).is_empty(), "{body}");
        for role in [Role::Member, Role::Viewer, Role::Partner] {
            let body = app
                .gql_err(role, SET_POLICY, json!({"input": {"archiveAfterDays": 1}}))
                .await;
            assert_eq!(first_code(&body), "FORBIDDEN", "{backend:?} {role:?}");
            let body = app
                .gql_err(role, "mutation { runRetention { id } }", json!({}))
                .await;
            assert_eq!(first_code(&body), "FORBIDDEN", "{backend:?} {role:?}");
        }
        for role in [Role::Viewer, Role::Partner] {
            let body = app.gql_err(role, POLICY, json!({})).await;
            assert_eq!(first_code(&body), "FORBIDDEN", "{backend:?} {role:?}");
            let body = app.gql_err(role, RUNS, json!({})).await;
            assert_eq!(first_code(&body), "FORBIDDEN", "{backend:?} {role:?}");
        }
        // the policy is as it was
        assert_eq!(
            app.gql(Role::Member, POLICY, json!({})).await["retentionPolicy"],
            json!({"archiveAfterDays": 30, "deleteArchivedAfterDays": null, "compactEnrichment": false, "eventTtlDays": 36500})
        );
        let erasure_cursor = {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("er1:{}", uuid::Uuid::now_v7()))
        };
        for (vars, what) in [
            (json!({"first": -1}), "first -1"),
            (json!({"first": 101}), "first 101"),
            (json!({"after": "garbage"}), "bad cursor"),
            (json!({"after": erasure_cursor}), "an erasure cursor"),
        ] {
            let body = app.gql_err(Role::Admin, RUNS, vars).await;
            assert_eq!(first_code(&body), "BAD_USER_INPUT", "{backend:?} {what}: {body}");
        }
        assert!(
            app.services
                .store
                .retention_runs(app.workspace.id, &leadgate::domain::KeysetPage::first(10))
                .await
                .unwrap()
                .items
                .is_empty()
        );
    }
}
