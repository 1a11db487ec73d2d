//! The enrichment half of the repository contract, run against every backend's `Store`
//! directly: records round-trip with their provenance and are dropped with their lead,
//! settings and provider configs round-trip (keys only sealed), and events append in order
//! per workspace.

use crate::helpers::{backends, fresh_store};
use leadgate::domain::{
    CompanyData, EnrichmentRecord, EnrichmentSettings, Group, GroupData, LEAD_ENRICHED, Lead, NewEvent,
    Policy, ProviderConfig, ProviderKind, SealedKey, Source, Workspace, WorkspaceId, WorkspaceSlug, now,
};
use leadgate::store::Store;
use serde_json::json;

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

async fn lead(store: &Store, ws: &Workspace) -> Lead {
    let lead = Lead::new(ws.id, now());
    store.insert_lead(&lead).await.unwrap();
    lead
}

fn record(lead: &Lead) -> EnrichmentRecord {
    let at = now();
    let mut r = EnrichmentRecord::empty(lead.id, Group::Company, "fp".into(), at);
    let fields = GroupData::Company(CompanyData {
        name: Some("Acme".into()),
        employee_count: Some(120),
        technologies: vec!["Stripe".into()],
        ..Default::default()
    })
    .into_fields();
    let source = Source {
        provider: "pdl".into(),
        fetched_at: at,
        expires_at: at + chrono::Duration::days(30),
        confidence: 0.8,
        credits: 1,
        fields: vec![],
    };
    r.merge("pdl", fields, source);
    r.note_miss("apollo");
    r.expires_at = at + chrono::Duration::days(30);
    r
}

#[tokio::test]
async fn records_round_trip_and_follow_their_lead() {
    for backend in backends() {
        let (store, _guard) = fresh_store(backend).await;
        let ws = workspace(&store, "acme").await;
        let other = workspace(&store, "globex").await;
        let a = lead(&store, &ws).await;
        let b = lead(&store, &ws).await;
        let saved = vec![record(&a), record(&b)];
        store.save_enrichment(ws.id, &saved, &[]).await.unwrap();

        let mut read = store
            .enrichment_records(ws.id, &[a.id, b.id], &[Group::Company, Group::Person])
            .await
            .unwrap();
        read.sort_by_key(|r| r.lead_id);
        let mut expected = saved.clone();
        expected.sort_by_key(|r| r.lead_id);
        assert_eq!(read, expected, "{backend:?}");

        // another workspace sees none of it, and cannot write for a foreign lead
        assert!(
            store
                .enrichment_records(other.id, &[a.id], &[Group::Company])
                .await
                .unwrap()
                .is_empty()
        );
        store.save_enrichment(other.id, &[record(&a)], &[]).await.unwrap();
        assert!(
            store
                .enrichment_records(other.id, &[a.id], &[Group::Company])
                .await
                .unwrap()
                .is_empty()
        );

        // an upsert replaces the record
        let mut changed = record(&a);
        changed.tried.push("clearbit".into());
        store
            .save_enrichment(ws.id, std::slice::from_ref(&changed), &[])
            .await
            .unwrap();
        let again = store
            .enrichment_records(ws.id, &[a.id], &[Group::Company])
            .await
            .unwrap();
        assert_eq!(again, vec![changed], "{backend:?}");
    }
}

#[tokio::test]
async fn records_of_a_lead_that_is_gone_are_dropped_not_failed() {
    for backend in backends() {
        let (store, _guard) = fresh_store(backend).await;
        let ws = workspace(&store, "acme").await;
        let kept = lead(&store, &ws).await;
        let never_stored = Lead::new(ws.id, now());
        store
            .save_enrichment(ws.id, &[record(&kept), record(&never_stored)], &[])
            .await
            .unwrap();
        let read = store
            .enrichment_records(ws.id, &[kept.id, never_stored.id], &[Group::Company])
            .await
            .unwrap();
        assert_eq!(read.len(), 1, "{backend:?}");
        assert_eq!(read[0].lead_id, kept.id);
    }
}

#[tokio::test]
async fn settings_and_provider_configs_round_trip() {
    for backend in backends() {
        let (store, _guard) = fresh_store(backend).await;
        let ws = workspace(&store, "acme").await;
        assert_eq!(store.enrichment_settings(ws.id).await.unwrap(), None);
        let mut settings = EnrichmentSettings {
            default_policy: Policy::CacheOnly,
            ..Default::default()
        };
        settings.waterfalls.insert(
            Group::Person,
            vec![ProviderKind::PeopleDataLabs, ProviderKind::Sandbox],
        );
        store
            .save_enrichment_settings(ws.id, &settings, now())
            .await
            .unwrap();
        assert_eq!(store.enrichment_settings(ws.id).await.unwrap(), Some(settings));

        let config = ProviderConfig {
            enabled: false,
            key: Some(SealedKey {
                sealed: "bm9uY2UtYW5kLWNpcGhlcnRleHQ=".into(),
                last4: "wxyz".into(),
            }),
            daily_credit_cap: Some(500),
            monthly_credit_cap: Some(10_000),
            rate_per_second: Some(5),
            timeout_ms: Some(1500),
            options: json!({"note": "kept as JSON"}),
            disabled_reason: Some("rejected".into()),
            ..ProviderConfig::new(ProviderKind::Hunter, now())
        };
        store.save_provider_config(ws.id, &config).await.unwrap();
        assert_eq!(
            store.provider_configs(ws.id).await.unwrap(),
            vec![config.clone()],
            "{backend:?}"
        );
        assert_eq!(store.count_sealed_keys().await.unwrap(), 1);

        store
            .disable_provider(ws.id, ProviderKind::Hunter, "key rejected", now())
            .await
            .unwrap();
        let after = store.provider_configs(ws.id).await.unwrap();
        assert!(!after[0].enabled);
        assert_eq!(after[0].disabled_reason.as_deref(), Some("key rejected"));
    }
}

#[tokio::test]
async fn events_append_in_order_per_workspace() {
    for backend in backends() {
        let (store, _guard) = fresh_store(backend).await;
        let ws = workspace(&store, "acme").await;
        let other = workspace(&store, "globex").await;
        let a = lead(&store, &ws).await;
        let event = |w: &Workspace, n: u32| NewEvent {
            workspace_id: w.id,
            kind: LEAD_ENRICHED,
            subject_id: Some(a.id.as_uuid()),
            payload: json!({"n": n}),
            at: now(),
        };
        store
            .save_enrichment(ws.id, &[record(&a)], &[event(&ws, 1)])
            .await
            .unwrap();
        store
            .append_events(&[event(&other, 2), event(&ws, 3)])
            .await
            .unwrap();
        let mine: Vec<_> = store
            .events_after(ws.id, 0, 10)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == LEAD_ENRICHED)
            .collect();
        assert_eq!(
            mine.iter()
                .map(|e| e.payload["n"].as_u64().unwrap())
                .collect::<Vec<_>>(),
            vec![1, 3]
        );
        assert!(mine[0].seq < mine[1].seq);
        assert_eq!(mine[0].kind, LEAD_ENRICHED);
        assert_eq!(mine[0].subject_id, Some(a.id.as_uuid()));
        let later = store.events_after(ws.id, mine[0].seq, 10).await.unwrap();
        assert_eq!(later.len(), 1);
        assert_eq!(
            store.events_after(other.id, 0, 10).await.unwrap().len(),
            1,
            "{backend:?}"
        );
    }
}
