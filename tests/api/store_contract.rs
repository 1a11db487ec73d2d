//! One contract for the repository traits, run against every backend's `Store` directly (no
//! HTTP): what each operation promises about conflicts, versions, tenancy, maintained counts
//! and round-tripping, and that listing, counting and existence checks over thousands of rows
//! (fixed filters, and seeded random filters × sorts × page directions and windows) agree with
//! the independent reference model in `reference.rs` — which also checks `LeadFilter::matches`,
//! the in-memory twin of the SQL that subscriptions use.

use crate::helpers::{backends, fresh_store};
use crate::reference;
use leadgate::bulk::synthetic::Generator;
use leadgate::domain::{
    ArchivedFilter, CountryCode, Cursor, CursorSide, CustomFields, Direction, Domain, EmailAddress, Lead,
    LeadFilter, LeadId, LeadOrder, LeadPatch, LeadQuery, LeadStatus, LinkedInUrl, PageDirection, Patch,
    Phone, Score, SortField, SortValue, Tag, TagMatch, Tags, Timestamp, UpsertOutcome, Workspace,
    WorkspaceId, WorkspaceSlug, now,
};
use leadgate::domain::{ColumnRole, ColumnType, LEAD_COLUMNS, Value};
use leadgate::store::{LeadCounts, Store, StoreError};
use rand::Rng as _;
use serde_json::json;
use std::cmp::Ordering;
use std::collections::HashMap;

fn workspace(slug: &str) -> Workspace {
    Workspace {
        id: WorkspaceId::new(),
        slug: WorkspaceSlug::parse(slug).unwrap(),
        name: format!("The {slug} workspace"),
        created_at: now(),
    }
}

async fn created_workspace(store: &Store, slug: &str) -> Workspace {
    let ws = workspace(slug);
    store.create_workspace(&ws).await.unwrap();
    ws
}

fn email(raw: &str) -> EmailAddress {
    EmailAddress::parse("email", raw).unwrap()
}

/// A lead with every field set, timestamps at microsecond precision.
fn full_lead(ws: WorkspaceId, address: &str) -> Lead {
    let at = now();
    Lead {
        id: LeadId::new(),
        workspace_id: ws,
        email: Some(email(address)),
        first_name: Some("Zoë".into()),
        last_name: Some("Müller-O'Brien".into()),
        title: Some("VP Sales".into()),
        company_name: Some("Acme Robotics GmbH".into()),
        company_domain: Some(Domain::parse("companyDomain", "acme-robotics.de").unwrap()),
        phone: Some(Phone::parse("phone", "+49 30 1234 5678").unwrap()),
        linkedin_url: Some(LinkedInUrl::parse("linkedinUrl", "linkedin.com/in/zoe-mueller").unwrap()),
        country: Some(CountryCode::parse("country", "de").unwrap()),
        source: Some("webinar".into()),
        status: LeadStatus::Qualified,
        owner: Some("ana@seller.test".into()),
        score: Score::parse("score", 73).unwrap(),
        tags: Tags::parse("tags", &["zeta", "alpha", "Mid Tier", "ünïcode"]).unwrap(),
        custom_fields: CustomFields::parse(
            "customFields",
            json!({"plan": "enterprise", "seats": 250, "trial": false, "nested": {"a": [1, "two", null]}}),
        )
        .unwrap(),
        created_at: at - chrono::Duration::microseconds(1_234_567),
        updated_at: at,
        ..Lead::new(ws, at)
    }
}

fn counts(active: u64, archived: u64) -> LeadCounts {
    LeadCounts { active, archived }
}

#[tokio::test]
async fn contract_create_workspace_rejects_a_duplicate_slug() {
    for backend in backends() {
        let (store, _guard) = fresh_store(backend).await;
        let first = created_workspace(&store, "acme").await;
        let again = workspace("acme");
        let err = store.create_workspace(&again).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Conflict { field: "slug" }),
            "{backend:?}: {err:?}"
        );
        assert_eq!(store.list_workspaces().await.unwrap(), vec![first.clone()]);
        assert_eq!(store.workspace(again.id).await.unwrap(), None);
        assert_eq!(store.workspace_by_slug("acme").await.unwrap(), Some(first));
    }
}

#[tokio::test]
async fn contract_workspace_lookups_round_trip() {
    for backend in backends() {
        let (store, _guard) = fresh_store(backend).await;
        assert_eq!(store.list_workspaces().await.unwrap(), vec![]);
        let zeta = created_workspace(&store, "zeta").await;
        let alpha = created_workspace(&store, "alpha-2").await;
        let mid = created_workspace(&store, "mid").await;
        assert_eq!(
            store.workspace(mid.id).await.unwrap(),
            Some(mid.clone()),
            "{backend:?}"
        );
        assert_eq!(store.workspace_by_slug("zeta").await.unwrap(), Some(zeta.clone()));
        assert_eq!(store.workspace(WorkspaceId::new()).await.unwrap(), None);
        assert_eq!(store.workspace_by_slug("nope").await.unwrap(), None);
        assert_eq!(store.workspace_by_slug("ZETA").await.unwrap(), None);
        // ordered by slug
        assert_eq!(
            store.list_workspaces().await.unwrap(),
            vec![alpha, mid, zeta.clone()]
        );
        assert_eq!(store.lead_counts(zeta.id).await.unwrap(), counts(0, 0));
    }
}

#[tokio::test]
async fn contract_setting_or_insert_keeps_the_first_value() {
    for backend in backends() {
        let (store, _guard) = fresh_store(backend).await;
        assert_eq!(store.setting("auth.key").await.unwrap(), None);
        assert_eq!(
            store.setting_or_insert("auth.key", "first").await.unwrap(),
            "first"
        );
        assert_eq!(
            store.setting_or_insert("auth.key", "second").await.unwrap(),
            "first",
            "{backend:?}"
        );
        assert_eq!(store.setting("auth.key").await.unwrap().as_deref(), Some("first"));
        assert_eq!(store.setting_or_insert("other", "").await.unwrap(), "");
        assert_eq!(store.setting("other").await.unwrap().as_deref(), Some(""));
        assert_eq!(store.setting("auth.key").await.unwrap().as_deref(), Some("first"));
    }
}

#[tokio::test]
async fn contract_setting_or_insert_agrees_on_one_winner_under_a_race() {
    for backend in backends() {
        let (store, _guard) = fresh_store(backend).await;
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move { store.setting_or_insert("race", &format!("v{i}")).await })
            })
            .collect();
        let mut kept = Vec::new();
        for task in tasks {
            kept.push(task.await.unwrap().unwrap());
        }
        let stored = store.setting("race").await.unwrap().unwrap();
        assert!(
            kept.iter().all(|v| *v == stored),
            "{backend:?}: {kept:?} vs {stored}"
        );
    }
}

#[tokio::test]
async fn contract_insert_lead_rejects_a_duplicate_email_in_the_same_workspace_only() {
    for backend in backends() {
        let (store, _guard) = fresh_store(backend).await;
        let acme = created_workspace(&store, "acme").await;
        let globex = created_workspace(&store, "globex").await;
        let first = full_lead(acme.id, "ann@acme.io");
        store.insert_lead(&first).await.unwrap();

        let duplicate = full_lead(acme.id, "ann@acme.io");
        let err = store.insert_lead(&duplicate).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Conflict { field: "email" }),
            "{backend:?}: {err:?}"
        );
        assert_eq!(store.lead(acme.id, duplicate.id).await.unwrap(), None);
        // the failed insert left the maintained counts alone
        assert_eq!(
            store.lead_counts(acme.id).await.unwrap(),
            counts(1, 0),
            "{backend:?}"
        );

        // the same address in another workspace is a different lead
        let elsewhere = full_lead(globex.id, "ann@acme.io");
        store.insert_lead(&elsewhere).await.unwrap();
        assert_eq!(
            store.lead(globex.id, elsewhere.id).await.unwrap(),
            Some(elsewhere)
        );
        assert_eq!(store.lead_counts(globex.id).await.unwrap(), counts(1, 0));

        // any number of leads may have no email
        for _ in 0..3 {
            let mut anonymous = full_lead(acme.id, "x@acme.io");
            anonymous.email = None;
            store.insert_lead(&anonymous).await.unwrap();
        }
        assert_eq!(store.lead_counts(acme.id).await.unwrap(), counts(4, 0));
    }
}

#[tokio::test]
async fn contract_insert_lead_round_trips_every_field() {
    for backend in backends() {
        let (store, _guard) = fresh_store(backend).await;
        let acme = created_workspace(&store, "acme").await;
        let full = full_lead(acme.id, "ann@acme.io");
        let mut sparse = Lead::new(acme.id, now());
        sparse.status = LeadStatus::Unqualified;
        let mut archived = full_lead(acme.id, "old@acme.io");
        archived.archived_at = Some(archived.updated_at + chrono::Duration::microseconds(1));
        archived.version = 9;
        archived.score = Score::parse("score", 100).unwrap();
        for lead in [&full, &sparse, &archived] {
            store.insert_lead(lead).await.unwrap();
            let back = store.lead(acme.id, lead.id).await.unwrap();
            assert_eq!(back.as_ref(), Some(lead), "{backend:?}");
        }
        assert_eq!(store.lead_counts(acme.id).await.unwrap(), counts(2, 1));
    }
}

#[tokio::test]
async fn contract_lead_lookups_never_cross_workspaces() {
    for backend in backends() {
        let (store, _guard) = fresh_store(backend).await;
        let acme = created_workspace(&store, "acme").await;
        let globex = created_workspace(&store, "globex").await;
        let mine = full_lead(acme.id, "a@acme.io");
        let also_mine = full_lead(acme.id, "b@acme.io");
        let theirs = full_lead(globex.id, "a@acme.io");
        for lead in [&mine, &also_mine, &theirs] {
            store.insert_lead(lead).await.unwrap();
        }
        assert_eq!(store.lead(acme.id, mine.id).await.unwrap(), Some(mine.clone()));
        assert_eq!(store.lead(acme.id, theirs.id).await.unwrap(), None, "{backend:?}");
        assert_eq!(store.lead(globex.id, mine.id).await.unwrap(), None, "{backend:?}");
        assert_eq!(store.lead(acme.id, LeadId::new()).await.unwrap(), None);

        let ids = [theirs.id, mine.id, LeadId::new(), also_mine.id, mine.id];
        let mut found = store.leads_by_ids(acme.id, &ids).await.unwrap();
        found.sort_by_key(|l| l.id);
        let mut expected = vec![mine.clone(), also_mine.clone()];
        expected.sort_by_key(|l| l.id);
        assert_eq!(found, expected, "{backend:?}");
        assert_eq!(
            store.leads_by_ids(globex.id, &ids).await.unwrap(),
            vec![theirs.clone()]
        );
        assert_eq!(store.leads_by_ids(acme.id, &[]).await.unwrap(), vec![]);
        let unknown = store.leads_by_ids(WorkspaceId::new(), &ids).await.unwrap();
        assert_eq!(unknown, vec![]);
    }
}

#[tokio::test]
async fn contract_update_lead_persists_every_field() {
    for backend in backends() {
        let (store, _guard) = fresh_store(backend).await;
        let acme = created_workspace(&store, "acme").await;
        let original = full_lead(acme.id, "ann@acme.io");
        store.insert_lead(&original).await.unwrap();

        // fields added later keep the original's value
        #[allow(clippy::needless_update)]
        let changed = Lead {
            id: original.id,
            workspace_id: acme.id,
            email: Some(email("Ann.Smith@Globex.COM")),
            first_name: Some("Ann".into()),
            last_name: Some("Smith".into()),
            title: Some("CTO".into()),
            company_name: Some("Globex".into()),
            company_domain: Some(Domain::parse("companyDomain", "https://www.globex.com/about").unwrap()),
            phone: Some(Phone::parse("phone", "+1 (415) 555-0100").unwrap()),
            linkedin_url: Some(LinkedInUrl::parse("linkedinUrl", "http://www.linkedin.com/in/ann").unwrap()),
            country: Some(CountryCode::parse("country", "US").unwrap()),
            source: Some("referral".into()),
            status: LeadStatus::Customer,
            owner: Some("ben@seller.test".into()),
            score: Score::parse("score", 5).unwrap(),
            tags: Tags::parse("tags", &["mid tier", "zeta", "beta"]).unwrap(),
            custom_fields: CustomFields::parse("customFields", json!({"seats": -3, "ratio": 0.25})).unwrap(),
            created_at: original.created_at,
            updated_at: original.updated_at + chrono::Duration::microseconds(987_654_321),
            archived_at: None,
            version: original.version + 1,
            ..original.clone()
        };
        store
            .update_lead(&changed, &was(&changed, original.version, false))
            .await
            .unwrap();
        let back = store.lead(acme.id, original.id).await.unwrap();
        assert_eq!(back.as_ref(), Some(&changed), "{backend:?}");

        // and every optional field cleared
        let cleared = Lead {
            email: None,
            first_name: None,
            last_name: None,
            title: None,
            company_name: None,
            company_domain: None,
            phone: None,
            linkedin_url: None,
            country: None,
            source: None,
            owner: None,
            status: LeadStatus::New,
            score: Score::default(),
            tags: Tags::default(),
            custom_fields: CustomFields::default(),
            updated_at: changed.updated_at + chrono::Duration::microseconds(1),
            version: changed.version + 1,
            ..changed.clone()
        };
        store
            .update_lead(&cleared, &was(&cleared, changed.version, false))
            .await
            .unwrap();
        let back = store.lead(acme.id, original.id).await.unwrap();
        assert_eq!(back.as_ref(), Some(&cleared), "{backend:?}");
        // the old email is free again; tag listings follow the new tags
        store
            .insert_lead(&full_lead(acme.id, "ann@acme.io"))
            .await
            .unwrap();
        let tagged = LeadFilter {
            tags: Some((TagMatch::Any, vec![Tag::parse("tags", "zeta").unwrap()])),
            ..Default::default()
        };
        let rows = store
            .list_leads(acme.id, &page(tagged, LeadOrder::default(), 10))
            .await
            .unwrap();
        assert!(rows.iter().all(|l| l.id != original.id), "{backend:?}");
        assert_eq!(rows.len(), 1);
    }
}

#[tokio::test]
async fn contract_update_lead_rejects_a_stale_version() {
    for backend in backends() {
        let (store, _guard) = fresh_store(backend).await;
        let acme = created_workspace(&store, "acme").await;
        let original = full_lead(acme.id, "ann@acme.io");
        store.insert_lead(&original).await.unwrap();
        let mut first = original.clone();
        first.title = Some("First writer".into());
        first.version = 2;
        store.update_lead(&first, &was(&first, 1, false)).await.unwrap();

        // a second writer that also read version 1
        let mut second = original.clone();
        second.title = Some("Second writer".into());
        second.version = 2;
        let err = store
            .update_lead(&second, &was(&second, 1, false))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::VersionMismatch), "{backend:?}: {err:?}");
        // a version from the future is just as stale
        let err = store
            .update_lead(&second, &was(&second, 7, false))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::VersionMismatch), "{backend:?}: {err:?}");
        assert_eq!(
            store.lead(acme.id, original.id).await.unwrap(),
            Some(first),
            "{backend:?}"
        );
    }
}

#[tokio::test]
async fn contract_update_lead_reports_a_missing_lead() {
    for backend in backends() {
        let (store, _guard) = fresh_store(backend).await;
        let acme = created_workspace(&store, "acme").await;
        let globex = created_workspace(&store, "globex").await;
        let never_stored = full_lead(acme.id, "ghost@acme.io");
        let err = store
            .update_lead(&never_stored, &was(&never_stored, 1, false))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound), "{backend:?}: {err:?}");

        // a lead addressed through another workspace does not exist there
        let theirs = full_lead(globex.id, "t@globex.com");
        store.insert_lead(&theirs).await.unwrap();
        let mut hijack = theirs.clone();
        hijack.workspace_id = acme.id;
        hijack.title = Some("Hijacked".into());
        hijack.version = 2;
        let err = store
            .update_lead(&hijack, &was(&hijack, 1, false))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound), "{backend:?}: {err:?}");
        assert_eq!(store.lead(globex.id, theirs.id).await.unwrap(), Some(theirs));
        assert_eq!(store.lead_counts(acme.id).await.unwrap(), counts(0, 0));
        assert_eq!(store.lead_counts(globex.id).await.unwrap(), counts(1, 0));
    }
}

#[tokio::test]
async fn contract_update_lead_archiving_adjusts_lead_counts() {
    for backend in backends() {
        let (store, _guard) = fresh_store(backend).await;
        let acme = created_workspace(&store, "acme").await;
        let mut lead = full_lead(acme.id, "ann@acme.io");
        store.insert_lead(&lead).await.unwrap();
        store
            .insert_lead(&full_lead(acme.id, "bob@acme.io"))
            .await
            .unwrap();
        assert_eq!(store.lead_counts(acme.id).await.unwrap(), counts(2, 0));

        lead.archived_at = Some(now());
        lead.version = 2;
        store.update_lead(&lead, &was(&lead, 1, false)).await.unwrap();
        assert_eq!(
            store.lead_counts(acme.id).await.unwrap(),
            counts(1, 1),
            "{backend:?}"
        );
        assert_eq!(store.lead(acme.id, lead.id).await.unwrap(), Some(lead.clone()));

        // a change to an archived lead that keeps it archived moves nothing
        lead.title = Some("Still archived".into());
        lead.version = 3;
        store.update_lead(&lead, &was(&lead, 2, true)).await.unwrap();
        assert_eq!(
            store.lead_counts(acme.id).await.unwrap(),
            counts(1, 1),
            "{backend:?}"
        );

        // a failed compare-and-set moves nothing either
        let mut stale = lead.clone();
        stale.archived_at = None;
        stale.version = 4;
        assert!(store.update_lead(&stale, &was(&stale, 2, true)).await.is_err());
        assert_eq!(
            store.lead_counts(acme.id).await.unwrap(),
            counts(1, 1),
            "{backend:?}"
        );

        lead.archived_at = None;
        lead.version = 4;
        store.update_lead(&lead, &was(&lead, 3, true)).await.unwrap();
        assert_eq!(
            store.lead_counts(acme.id).await.unwrap(),
            counts(2, 0),
            "{backend:?}"
        );
    }
}

#[tokio::test]
async fn contract_upsert_leads_creates_updates_and_leaves_unchanged() {
    for backend in backends() {
        let (store, _guard) = fresh_store(backend).await;
        let acme = created_workspace(&store, "acme").await;
        let globex = created_workspace(&store, "globex").await;
        let bea = full_lead(acme.id, "bea@acme.io");
        let cy = full_lead(acme.id, "cy@acme.io");
        store.insert_lead(&bea).await.unwrap();
        store.insert_lead(&cy).await.unwrap();

        let at = now() + chrono::Duration::seconds(60);
        let set_first = |name: &str| LeadPatch {
            first_name: Patch::Set(name.to_owned()),
            ..Default::default()
        };
        let items = vec![
            (email("al@acme.io"), set_first("Al")),
            (
                email("bea@acme.io"),
                LeadPatch {
                    score: Some(Score::parse("score", 55).unwrap()),
                    tags: Some(Tags::parse("tags", &["hot"]).unwrap()),
                    ..Default::default()
                },
            ),
            // the values it already has
            (email("cy@acme.io"), set_first(cy.first_name.as_deref().unwrap())),
            // the row created above, seen again in the same call
            (
                email("al@acme.io"),
                LeadPatch {
                    last_name: Patch::Set("Alpha".into()),
                    ..Default::default()
                },
            ),
        ];
        let (outcomes, events) = store.upsert_leads(acme.id, &items, at).await.unwrap();
        assert_eq!(outcomes.len(), 4, "{backend:?}");

        let UpsertOutcome::Created(al) = &outcomes[0] else {
            panic!("{backend:?}: {:?}", outcomes[0]);
        };
        assert_eq!(al.email, Some(email("al@acme.io")));
        assert_eq!(al.first_name.as_deref(), Some("Al"));
        assert_eq!((al.created_at, al.updated_at, al.version), (at, at, 1));

        let UpsertOutcome::Updated(bea_now) = &outcomes[1] else {
            panic!("{backend:?}: {:?}", outcomes[1]);
        };
        let mut expected_bea = bea.clone();
        expected_bea.score = Score::parse("score", 55).unwrap();
        expected_bea.tags = Tags::parse("tags", &["hot"]).unwrap();
        expected_bea.updated_at = at;
        expected_bea.version = 2;
        assert_eq!(bea_now, &expected_bea, "{backend:?}");

        assert_eq!(outcomes[2], UpsertOutcome::Unchanged(cy.clone()), "{backend:?}");

        let UpsertOutcome::Updated(al_again) = &outcomes[3] else {
            panic!("{backend:?}: {:?}", outcomes[3]);
        };
        assert_eq!(al_again.id, al.id);
        assert_eq!(al_again.first_name.as_deref(), Some("Al"));
        assert_eq!(al_again.last_name.as_deref(), Some("Alpha"));
        assert_eq!(al_again.version, 2);

        // one event per write, numbered in order, naming what changed
        let described: Vec<_> = events
            .iter()
            .map(|e| (e.kind.as_str(), e.subject_id, e.payload["changedFields"].clone()))
            .collect();
        assert_eq!(
            described,
            vec![
                ("lead.created", Some(al.id.as_uuid()), json!([])),
                ("lead.updated", Some(bea.id.as_uuid()), json!(["score", "tags"])),
                ("lead.updated", Some(al.id.as_uuid()), json!(["lastName"])),
            ],
            "{backend:?}"
        );
        let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(
            seqs.windows(2).filter(|w| w[1] != w[0] + 1).count(),
            0,
            "{seqs:?}"
        );
        assert_eq!(
            store.events_after(acme.id, 0, 100).await.unwrap().last(),
            events.last()
        );

        // what was reported is what was stored
        assert_eq!(store.lead(acme.id, al.id).await.unwrap().as_ref(), Some(al_again));
        assert_eq!(store.lead(acme.id, bea.id).await.unwrap(), Some(expected_bea));
        assert_eq!(store.lead(acme.id, cy.id).await.unwrap(), Some(cy.clone()));
        assert_eq!(
            store.lead_counts(acme.id).await.unwrap(),
            counts(3, 0),
            "{backend:?}"
        );
        let total = store
            .count_leads(acme.id, &LeadFilter::default(), u64::MAX)
            .await
            .unwrap();
        assert_eq!(total, 3);

        // matching by email is per workspace
        let (outcomes, _) = store
            .upsert_leads(globex.id, &[(email("bea@acme.io"), set_first("Other"))], at)
            .await
            .unwrap();
        let UpsertOutcome::Created(other) = &outcomes[0] else {
            panic!("{backend:?}: {:?}", outcomes[0]);
        };
        assert_ne!(other.id, bea.id);
        assert_eq!(store.lead_counts(globex.id).await.unwrap(), counts(1, 0));
        assert_eq!(store.lead_counts(acme.id).await.unwrap(), counts(3, 0));
        assert_eq!(
            store.upsert_leads(acme.id, &[], at).await.unwrap(),
            (vec![], vec![])
        );
    }
}

#[tokio::test]
async fn contract_tags_round_trip_in_order() {
    for backend in backends() {
        let (store, _guard) = fresh_store(backend).await;
        let acme = created_workspace(&store, "acme").await;
        let orders: [&[&str]; 4] = [
            &["zeta", "alpha", "mid"],
            &["mid", "zeta", "alpha"],
            &["Ünïcode", "a b c", "UPPER", "lower", "100%_off"],
            &[],
        ];
        let mut leads = Vec::new();
        for (i, tags) in orders.iter().enumerate() {
            let mut lead = full_lead(acme.id, &format!("t{i}@acme.io"));
            lead.tags = Tags::parse("tags", tags).unwrap();
            leads.push(lead);
        }
        store.insert_lead(&leads[0]).await.unwrap();
        store.insert_lead(&leads[1]).await.unwrap();
        store.insert_leads_bulk(acme.id, &leads[2..]).await.unwrap();
        for (lead, tags) in leads.iter().zip(orders) {
            let back = store.lead(acme.id, lead.id).await.unwrap().unwrap();
            assert_eq!(back.tags.as_strs(), tags.to_vec(), "{backend:?}");
        }
        // reordering is a change that persists
        let mut lead = leads[0].clone();
        lead.tags = Tags::parse("tags", &["mid", "alpha", "zeta", "new"]).unwrap();
        lead.version = 2;
        store.update_lead(&lead, &was(&lead, 1, false)).await.unwrap();
        let back = store.lead(acme.id, lead.id).await.unwrap().unwrap();
        assert_eq!(
            back.tags.as_strs(),
            vec!["mid", "alpha", "zeta", "new"],
            "{backend:?}"
        );
        // and the tag filter sees the tags as written
        let with = |mode, tags: &[&str]| LeadFilter {
            tags: Some((
                mode,
                tags.iter().map(|t| Tag::parse("tags", t).unwrap()).collect(),
            )),
            ..Default::default()
        };
        for (filter, want) in [
            (with(TagMatch::Any, &["new"]), vec![lead.id]),
            (
                with(TagMatch::All, &["alpha", "zeta"]),
                vec![leads[0].id, leads[1].id],
            ),
            (with(TagMatch::Any, &["100%_off"]), vec![leads[2].id]),
            (with(TagMatch::Any, &["100%"]), vec![]),
        ] {
            let mut got: Vec<LeadId> = store
                .list_leads(acme.id, &page(filter.clone(), LeadOrder::default(), 10))
                .await
                .unwrap()
                .iter()
                .map(|l| l.id)
                .collect();
            got.sort();
            let mut want = want;
            want.sort();
            assert_eq!(got, want, "{backend:?} {filter:?}");
        }
    }
}

#[tokio::test]
async fn contract_custom_fields_round_trip() {
    for backend in backends() {
        let (store, _guard) = fresh_store(backend).await;
        let acme = created_workspace(&store, "acme").await;
        let values = [
            json!({}),
            json!({"plan": "pro"}),
            json!({
                "int": 42, "negative": -7, "big": i64::MAX, "unsigned": u64::MAX, "float": 1.5,
                "bool": true, "null": null, "text": "quote \" backslash \\ newline \n tab \t",
                "unicode": "Zoë 日本 🚀", "list": [1, "two", [3], {"four": 4}],
                "nested": {"deeper": {"deepest": [null, false]}}, "with space": "ok", "ümlaut-key": 1
            }),
        ];
        let mut ids = Vec::new();
        for (i, value) in values.iter().enumerate() {
            let mut lead = full_lead(acme.id, &format!("c{i}@acme.io"));
            lead.custom_fields = CustomFields::parse("customFields", value.clone()).unwrap();
            store.insert_lead(&lead).await.unwrap();
            ids.push(lead.id);
        }
        for (id, value) in ids.iter().zip(&values) {
            let back = store.lead(acme.id, *id).await.unwrap().unwrap();
            assert_eq!(
                &serde_json::Value::Object(back.custom_fields.as_map().clone()),
                value,
                "{backend:?}"
            );
        }
        // replaced wholesale by an update
        let mut lead = store.lead(acme.id, ids[2]).await.unwrap().unwrap();
        lead.custom_fields = CustomFields::parse("customFields", json!({"only": "this"})).unwrap();
        lead.version += 1;
        store
            .update_lead(&lead, &was(&lead, lead.version - 1, false))
            .await
            .unwrap();
        let back = store.lead(acme.id, ids[2]).await.unwrap().unwrap();
        assert_eq!(back.custom_fields.as_map().len(), 1, "{backend:?}");
        assert_eq!(back, lead);
    }
}

// ---- listing, counting and existence over a bulk-loaded workspace, against the oracle ----

const BULK: usize = 5_000;

struct Bulk {
    ws: Workspace,
    other: Workspace,
    leads: Vec<Lead>,
}

/// 5,000 synthetic leads with archived ones, absent sort keys and ties on every sort key, and a
/// second workspace holding the same emails.
async fn bulk_load(store: &Store) -> Bulk {
    let ws = created_workspace(store, "bulk").await;
    let other = created_workspace(store, "other").await;
    let end = now();
    let mut generator = Generator::new(2024);
    let mut leads: Vec<Lead> = (0..BULK).map(|_| generator.lead(ws.id, end)).collect();
    let tie = end - chrono::Duration::days(100);
    for (i, lead) in leads.iter_mut().enumerate() {
        if i % 17 == 0 {
            lead.archived_at = Some(lead.updated_at);
        }
        if i % 23 == 0 {
            lead.company_name = None;
        }
        if i % 29 == 0 {
            lead.last_name = None;
        }
        if i % 37 == 0 {
            lead.created_at = tie;
            lead.updated_at = tie;
        }
    }
    assert_eq!(store.insert_leads_bulk(ws.id, &leads).await.unwrap(), BULK as u64);
    let mut generator = Generator::new(2024);
    let theirs: Vec<Lead> = (0..300).map(|_| generator.lead(other.id, end)).collect();
    store.insert_leads_bulk(other.id, &theirs).await.unwrap();
    Bulk { ws, other, leads }
}

/// Where `lead` lies relative to `cursor`, by the reference model.
fn position(lead: &Lead, cursor: &Cursor) -> Ordering {
    reference::position(lead, cursor)
}

/// The ids `filter` selects in `order`, by the reference model.
fn oracle(leads: &[Lead], filter: &LeadFilter, order: LeadOrder) -> Vec<LeadId> {
    reference::select(leads, filter, order)
        .into_iter()
        .map(|l| l.id)
        .collect()
}

fn page(filter: LeadFilter, order: LeadOrder, limit: usize) -> LeadQuery {
    LeadQuery {
        filter,
        order,
        after: None,
        before: None,
        limit,
        direction: PageDirection::Forward,
    }
}

/// Reads every page in `direction` and returns the ids in sort order, and the leads as read.
async fn walk(
    store: &Store,
    ws: WorkspaceId,
    filter: &LeadFilter,
    order: LeadOrder,
    direction: PageDirection,
    limit: usize,
) -> (Vec<LeadId>, Vec<Lead>) {
    let mut cursor: Option<Cursor> = None;
    let mut read = Vec::new();
    loop {
        let query = LeadQuery {
            filter: filter.clone(),
            order,
            after: cursor.clone().filter(|_| direction == PageDirection::Forward),
            before: cursor.clone().filter(|_| direction == PageDirection::Backward),
            limit,
            direction,
        };
        let mut rows = store.list_leads(ws, &query).await.unwrap();
        assert!(
            rows.len() <= limit + 1,
            "list_leads returned {} for limit {limit}",
            rows.len()
        );
        let more = rows.len() > limit;
        rows.truncate(limit);
        if let Some(last) = rows.last() {
            cursor = Some(reference::cursor(order, last));
        }
        read.extend(rows);
        if !more {
            break;
        }
    }
    let mut ids: Vec<LeadId> = read.iter().map(|l| l.id).collect();
    if direction == PageDirection::Backward {
        ids.reverse();
    }
    (ids, read)
}

fn all_orders() -> Vec<LeadOrder> {
    SortField::ALL
        .into_iter()
        .flat_map(|field| {
            [Direction::Asc, Direction::Desc]
                .into_iter()
                .map(move |direction| LeadOrder { field, direction })
        })
        .collect()
}

/// Filters over the bulk data, each selecting something different.
fn filters(leads: &[Lead]) -> Vec<(String, LeadFilter)> {
    let sample = leads
        .iter()
        .find(|l| l.archived_at.is_none() && l.last_name.is_some())
        .unwrap();
    let tag = |t: &str| Tag::parse("tags", t).unwrap();
    let country = |c: &str| CountryCode::parse("country", c).unwrap();
    let at = |i: usize| leads[i].created_at;
    let mut list = vec![
        ("everything".to_owned(), LeadFilter::default()),
        (
            "archived only".into(),
            LeadFilter {
                archived: ArchivedFilter::Only,
                ..Default::default()
            },
        ),
        (
            "statuses".into(),
            LeadFilter {
                statuses: vec![LeadStatus::Qualified, LeadStatus::Customer],
                ..Default::default()
            },
        ),
        (
            "owners".into(),
            LeadFilter {
                owners: vec![
                    "ana@seller.test".into(),
                    "chen@seller.test".into(),
                    "nobody".into(),
                ],
                ..Default::default()
            },
        ),
        (
            "countries".into(),
            LeadFilter {
                countries: vec![country("DE"), country("FR"), country("JP")],
                ..Default::default()
            },
        ),
        (
            "sources".into(),
            LeadFilter {
                sources: vec!["webinar".into()],
                ..Default::default()
            },
        ),
        (
            "score range".into(),
            LeadFilter {
                score_min: Some(Score::from_trusted(20)),
                score_max: Some(Score::from_trusted(40)),
                ..Default::default()
            },
        ),
        (
            "without email".into(),
            LeadFilter {
                has_email: Some(false),
                ..Default::default()
            },
        ),
        (
            "with email".into(),
            LeadFilter {
                has_email: Some(true),
                ..Default::default()
            },
        ),
        (
            "any tag".into(),
            LeadFilter {
                tags: Some((TagMatch::Any, vec![tag("hot"), tag("trial")])),
                ..Default::default()
            },
        ),
        (
            "all tags".into(),
            LeadFilter {
                tags: Some((TagMatch::All, vec![tag("hot"), tag("trial")])),
                ..Default::default()
            },
        ),
        (
            "all tags, one repeated".into(),
            LeadFilter {
                tags: Some((TagMatch::All, vec![tag("hot"), tag("hot")])),
                ..Default::default()
            },
        ),
        (
            "created window".into(),
            LeadFilter {
                created_from: Some(at(100).min(at(200))),
                created_to: Some(at(100).max(at(200))),
                ..Default::default()
            },
        ),
        (
            "updated window".into(),
            LeadFilter {
                updated_from: Some(leads[37].updated_at),
                updated_to: Some(leads[300].updated_at.max(leads[37].updated_at)),
                ..Default::default()
            },
        ),
        (
            "combined".into(),
            LeadFilter {
                statuses: vec![LeadStatus::New, LeadStatus::Contacted],
                countries: vec![country("US")],
                has_email: Some(true),
                score_min: Some(Score::from_trusted(30)),
                tags: Some((TagMatch::Any, vec![tag("enterprise"), tag("smb"), tag("hot")])),
                archived: ArchivedFilter::Only,
                ..Default::default()
            },
        ),
        (
            "nothing".into(),
            LeadFilter {
                owners: vec!["nobody".into()],
                ..Default::default()
            },
        ),
    ];
    let searches = [
        "ller".to_owned(),
        "o'brien".to_owned(),
        "blue sun".to_owned(),
        "@".to_owned(),
        "%".to_owned(),
        "_".to_owned(),
        sample.last_name.as_ref().unwrap().to_lowercase(),
        // a full name spans two fields
        format!(
            "{} {}",
            sample.first_name.as_ref().unwrap(),
            sample.last_name.as_ref().unwrap()
        )
        .to_lowercase(),
        sample.email.as_ref().unwrap().as_str()[..6].to_owned(),
    ];
    for search in searches {
        list.push((
            format!("search {search:?}"),
            LeadFilter {
                search: Some(search),
                ..Default::default()
            },
        ));
    }
    list
}

#[tokio::test]
async fn contract_insert_leads_bulk_maintains_lead_counts() {
    for backend in backends() {
        let (store, _guard) = fresh_store(backend).await;
        let bulk = bulk_load(&store).await;
        let archived = bulk.leads.iter().filter(|l| l.archived_at.is_some()).count() as u64;
        assert_eq!(
            store.lead_counts(bulk.ws.id).await.unwrap(),
            counts(BULK as u64 - archived, archived),
            "{backend:?}"
        );
        assert_eq!(store.lead_counts(bulk.other.id).await.unwrap(), counts(300, 0));
        // a bulk insert that fails part-way leaves nothing behind
        let mut generator = Generator::new(77);
        let mut batch: Vec<Lead> = (0..2_000).map(|_| generator.lead(bulk.ws.id, now())).collect();
        batch[1_999].email = bulk.leads.iter().find_map(|l| l.email.clone());
        let err = store.insert_leads_bulk(bulk.ws.id, &batch).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Conflict { field: "email" }),
            "{backend:?}: {err:?}"
        );
        assert_eq!(store.lead(bulk.ws.id, batch[0].id).await.unwrap(), None);
        assert_eq!(
            store.lead_counts(bulk.ws.id).await.unwrap(),
            counts(BULK as u64 - archived, archived)
        );
        // and one that mixes workspaces is refused outright
        let mut mixed: Vec<Lead> = (0..3).map(|_| generator.lead(bulk.ws.id, now())).collect();
        mixed[1].workspace_id = bulk.other.id;
        assert!(store.insert_leads_bulk(bulk.ws.id, &mixed).await.is_err());
        assert_eq!(
            store.lead(bulk.ws.id, mixed[0].id).await.unwrap(),
            None,
            "{backend:?}"
        );
    }
}

#[tokio::test]
async fn contract_list_leads_pages_every_order_like_the_oracle() {
    for backend in backends() {
        let (store, _guard) = fresh_store(backend).await;
        let bulk = bulk_load(&store).await;
        let by_id: HashMap<LeadId, &Lead> = bulk.leads.iter().map(|l| (l.id, l)).collect();
        let everything = LeadFilter::default();
        for order in all_orders() {
            let want = oracle(&bulk.leads, &everything, order);
            assert!(want.len() > 4_000);
            for (direction, limit) in [(PageDirection::Forward, 997), (PageDirection::Backward, 1_500)] {
                let (got, read) = walk(&store, bulk.ws.id, &everything, order, direction, limit).await;
                assert_eq!(got.len(), want.len(), "{backend:?} {order:?} {direction:?}");
                assert!(got == want, "{backend:?} {order:?} {direction:?}: order differs");
                // rows come back whole
                for lead in &read {
                    assert_eq!(Some(lead), by_id.get(&lead.id).copied(), "{backend:?}");
                }
            }
        }
    }
}

#[tokio::test]
async fn contract_list_leads_filters_like_the_oracle() {
    for backend in backends() {
        let (store, _guard) = fresh_store(backend).await;
        let bulk = bulk_load(&store).await;
        let orders = all_orders();
        let mut mismatches = Vec::new();
        for (i, (name, filter)) in filters(&bulk.leads).into_iter().enumerate() {
            let order = orders[i % orders.len()];
            let want = oracle(&bulk.leads, &filter, order);
            let direction = if i % 2 == 0 {
                PageDirection::Forward
            } else {
                PageDirection::Backward
            };
            let (got, _) = walk(&store, bulk.ws.id, &filter, order, direction, 500).await;
            if got != want {
                mismatches.push(format!(
                    "{name}: store {} rows, oracle {} rows",
                    got.len(),
                    want.len()
                ));
            }
        }
        assert!(mismatches.is_empty(), "{backend:?}: {mismatches:#?}");
    }
}

#[tokio::test]
async fn contract_list_leads_returns_the_window_between_two_cursors() {
    for backend in backends() {
        let (store, _guard) = fresh_store(backend).await;
        let bulk = bulk_load(&store).await;
        let by_id: HashMap<LeadId, &Lead> = bulk.leads.iter().map(|l| (l.id, l)).collect();
        let filter = LeadFilter {
            statuses: vec![LeadStatus::New, LeadStatus::Contacted],
            ..Default::default()
        };
        for order in all_orders() {
            let want = oracle(&bulk.leads, &filter, order);
            let after = reference::cursor(order, by_id[&want[100]]);
            let before = reference::cursor(order, by_id[&want[400]]);
            for (direction, expected) in [
                (PageDirection::Forward, want[101..151].to_vec()),
                (
                    PageDirection::Backward,
                    want[350..400].iter().rev().copied().collect(),
                ),
            ] {
                let query = LeadQuery {
                    filter: filter.clone(),
                    order,
                    after: Some(after.clone()),
                    before: Some(before.clone()),
                    limit: 50,
                    direction,
                };
                let rows = store.list_leads(bulk.ws.id, &query).await.unwrap();
                let ids: Vec<LeadId> = rows.iter().map(|l| l.id).collect();
                assert_eq!(ids.len(), 51, "{backend:?} {order:?} {direction:?}");
                assert_eq!(ids[..50], expected[..], "{backend:?} {order:?} {direction:?}");
            }
            // a window smaller than the page: exactly its rows, no extra
            let query = LeadQuery {
                filter: filter.clone(),
                order,
                after: Some(after.clone()),
                before: Some(reference::cursor(order, by_id[&want[104]])),
                limit: 50,
                direction: PageDirection::Forward,
            };
            let ids: Vec<LeadId> = store
                .list_leads(bulk.ws.id, &query)
                .await
                .unwrap()
                .iter()
                .map(|l| l.id)
                .collect();
            assert_eq!(ids, want[101..104].to_vec(), "{backend:?} {order:?}");
        }
    }
}

#[tokio::test]
async fn contract_list_leads_never_returns_another_workspaces_rows() {
    for backend in backends() {
        let (store, _guard) = fresh_store(backend).await;
        let bulk = bulk_load(&store).await;
        let (ids, read) = walk(
            &store,
            bulk.other.id,
            &LeadFilter::default(),
            LeadOrder::default(),
            PageDirection::Forward,
            1_000,
        )
        .await;
        assert_eq!(ids.len(), 300, "{backend:?}");
        assert!(read.iter().all(|l| l.workspace_id == bulk.other.id));
        let unknown = store
            .list_leads(
                WorkspaceId::new(),
                &page(LeadFilter::default(), LeadOrder::default(), 10),
            )
            .await
            .unwrap();
        assert_eq!(unknown, vec![]);
    }
}

#[tokio::test]
async fn contract_count_leads_counts_like_the_oracle_up_to_the_cap() {
    for backend in backends() {
        let (store, _guard) = fresh_store(backend).await;
        let bulk = bulk_load(&store).await;
        let mut mismatches = Vec::new();
        for (name, filter) in filters(&bulk.leads) {
            let n = bulk
                .leads
                .iter()
                .filter(|l| reference::matches(&filter, l))
                .count() as u64;
            for cap in [u64::MAX, 10_000, n + 1, n, n.saturating_sub(1), 7, 0] {
                let got = store.count_leads(bulk.ws.id, &filter, cap).await.unwrap();
                if got != n.min(cap) {
                    mismatches.push(format!("{name} cap {cap}: store {got}, oracle {}", n.min(cap)));
                }
            }
        }
        assert!(mismatches.is_empty(), "{backend:?}: {mismatches:#?}");
        let other = store
            .count_leads(bulk.other.id, &LeadFilter::default(), u64::MAX)
            .await
            .unwrap();
        assert_eq!(other, 300);
    }
}

#[tokio::test]
async fn contract_any_lead_beside_answers_like_the_oracle() {
    for backend in backends() {
        let (store, _guard) = fresh_store(backend).await;
        let bulk = bulk_load(&store).await;
        let by_id: HashMap<LeadId, &Lead> = bulk.leads.iter().map(|l| (l.id, l)).collect();
        let orders = all_orders();
        let mut mismatches = Vec::new();
        let mut checks = 0;
        for (i, (name, filter)) in filters(&bulk.leads).into_iter().enumerate() {
            for order in [orders[i % orders.len()], orders[(i + 3) % orders.len()]] {
                let selected = oracle(&bulk.leads, &filter, order);
                let mut cursors: Vec<Cursor> = Vec::new();
                for at in [0, selected.len() / 2, selected.len().saturating_sub(1)] {
                    if let Some(id) = selected.get(at) {
                        cursors.push(reference::cursor(order, by_id[id]));
                    }
                }
                // a lead the filter does not select, and points before and after everything
                if let Some(outside) = bulk.leads.iter().find(|l| !reference::matches(&filter, l)) {
                    cursors.push(reference::cursor(order, outside));
                }
                let (low, high) = match order.field {
                    SortField::CreatedAt | SortField::UpdatedAt => (
                        SortValue::Time(Timestamp::from_timestamp(0, 0).unwrap()),
                        SortValue::Time(now() + chrono::Duration::days(1)),
                    ),
                    SortField::LastName | SortField::CompanyName => (
                        SortValue::Text(String::new()),
                        SortValue::Text("\u{10FFFF}".into()),
                    ),
                    SortField::Score => (SortValue::Int(-1), SortValue::Int(101)),
                };
                for key in [low, high] {
                    cursors.push(Cursor {
                        order,
                        key,
                        id: LeadId::new(),
                    });
                }
                for cursor in &cursors {
                    for side in [CursorSide::AtOrBefore, CursorSide::AtOrAfter] {
                        let want = bulk
                            .leads
                            .iter()
                            .filter(|l| reference::matches(&filter, l))
                            .any(|l| {
                                let p = position(l, cursor);
                                match side {
                                    CursorSide::AtOrBefore => p != Ordering::Greater,
                                    CursorSide::AtOrAfter => p != Ordering::Less,
                                }
                            });
                        let got = store
                            .any_lead_beside(bulk.ws.id, &filter, cursor, side)
                            .await
                            .unwrap();
                        checks += 1;
                        if got != want {
                            mismatches.push(format!(
                                "{name} {order:?} {side:?} at {:?}: store {got}, oracle {want}",
                                cursor.key
                            ));
                        }
                    }
                }
            }
        }
        assert!(checks > 300, "{checks}");
        assert!(mismatches.is_empty(), "{backend:?}: {mismatches:#?}");
        // the other workspace's rows are invisible to it
        let order = LeadOrder::default();
        let theirs = store
            .list_leads(bulk.other.id, &page(LeadFilter::default(), order, 1))
            .await
            .unwrap();
        let cursor = reference::cursor(order, &theirs[0]);
        let empty = created_workspace(&store, "empty").await;
        for side in [CursorSide::AtOrBefore, CursorSide::AtOrAfter] {
            let found = store
                .any_lead_beside(empty.id, &LeadFilter::default(), &cursor, side)
                .await
                .unwrap();
            assert!(!found, "{backend:?} {side:?}");
        }
    }
}

#[tokio::test]
async fn contract_load_leads_with_index_rebuild_keeps_every_index_working() {
    use leadgate::domain::{LeadFilter, LeadOrder, LeadQuery, PageDirection};
    use leadgate::store::StoreError;
    for backend in backends() {
        let (store, _guard) = fresh_store(backend).await;
        let ws = leadgate::domain::Workspace {
            id: leadgate::domain::WorkspaceId::new(),
            slug: leadgate::domain::WorkspaceSlug::parse("bulk").unwrap(),
            name: "Bulk".into(),
            created_at: leadgate::domain::now(),
        };
        store.create_workspace(&ws).await.unwrap();
        let mut generator = leadgate::bulk::synthetic::Generator::new(3);
        let now = leadgate::domain::now();
        let mut seen = Vec::new();
        let mut reported = Vec::new();
        let loaded = store
            .load_leads(
                ws.id,
                2_500,
                true,
                |n| {
                    let chunk: Vec<_> = (0..n.min(1_000)).map(|_| generator.lead(ws.id, now)).collect();
                    seen.extend(chunk.iter().cloned());
                    chunk
                },
                |done| reported.push(done),
            )
            .await
            .unwrap();
        assert_eq!(loaded, 2_500, "{backend:?}");
        assert_eq!(reported, vec![1_000, 2_000, 2_500]);
        assert_eq!(store.lead_counts(ws.id).await.unwrap().active, 2_500);
        // the unique email index is back
        let mut dup = leadgate::domain::Lead::new(ws.id, now);
        dup.email = seen.iter().find_map(|l| l.email.clone());
        assert!(matches!(
            store.insert_lead(&dup).await,
            Err(StoreError::Conflict { field: "email" })
        ));
        // tags and paging work, and agree with the generated data
        let tagged = seen
            .iter()
            .filter(|l| l.tags.iter().any(|t| t.as_str() == "hot"))
            .count();
        let filter = LeadFilter {
            tags: Some((
                leadgate::domain::TagMatch::Any,
                vec![leadgate::domain::Tag::parse("tags", "hot").unwrap()],
            )),
            ..Default::default()
        };
        assert_eq!(
            store.count_leads(ws.id, &filter, 10_000).await.unwrap(),
            tagged as u64
        );
        let page = store
            .list_leads(
                ws.id,
                &LeadQuery {
                    filter: LeadFilter::default(),
                    order: LeadOrder::default(),
                    after: None,
                    before: None,
                    limit: 10,
                    direction: PageDirection::Forward,
                },
            )
            .await
            .unwrap();
        let mut oldest = seen.clone();
        oldest.sort_by_key(|l| (l.created_at, l.id));
        assert_eq!(
            page.iter().map(|l| l.id).collect::<Vec<_>>(),
            oldest[..11].iter().map(|l| l.id).collect::<Vec<_>>()
        );
    }
}

/// `lead` as the store held it before a write: at `version`, archived or not.
fn was(lead: &Lead, version: i64, archived: bool) -> Lead {
    Lead {
        version,
        archived_at: archived.then(|| lead.archived_at.unwrap_or(lead.updated_at)),
        ..lead.clone()
    }
}

// ---- seeded random filters × sorts × page directions, against the reference model ----

/// The seed of the random cases: `LEADGATE_TEST_SEED` when set (to replay a failure), else a
/// fixed one; every failure message names it.
fn seed() -> u64 {
    std::env::var("LEADGATE_TEST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x1ead_9a7e)
}

/// A filter of a few random conditions, their values taken from the data so that they select
/// something more often than not.
fn random_filter(rng: &mut impl rand::Rng, leads: &[Lead]) -> LeadFilter {
    use rand::seq::IndexedRandom;
    let any = |rng: &mut dyn rand::RngCore| &leads[rand::Rng::random_range(rng, 0..leads.len())];
    let mut f = LeadFilter::default();
    if rng.random_bool(0.3) {
        f.statuses = LeadStatus::ALL
            .into_iter()
            .filter(|_| rng.random_bool(0.4))
            .collect();
    }
    if rng.random_bool(0.15) {
        f.owners = (0..rng.random_range(1..=3))
            .filter_map(|_| any(rng).owner.clone())
            .chain(["nobody".to_owned()])
            .collect();
    }
    if rng.random_bool(0.25) {
        f.countries = (0..rng.random_range(1..=3))
            .filter_map(|_| any(rng).country.clone())
            .collect();
    }
    if rng.random_bool(0.15) {
        f.sources = (0..rng.random_range(1..=2))
            .filter_map(|_| any(rng).source.clone())
            .collect();
    }
    if rng.random_bool(0.25) {
        let a = rng.random_range(0..=100);
        let b = rng.random_range(0..=100);
        if rng.random_bool(0.7) {
            f.score_min = Some(Score::from_trusted(a.min(b)));
        }
        if rng.random_bool(0.7) {
            f.score_max = Some(Score::from_trusted(a.max(b)));
        }
    }
    if rng.random_bool(0.2) {
        let (a, b) = (any(rng).created_at, any(rng).created_at);
        f.created_from = rng.random_bool(0.8).then_some(a.min(b));
        f.created_to = rng.random_bool(0.8).then_some(a.max(b));
    }
    if rng.random_bool(0.2) {
        let (a, b) = (any(rng).updated_at, any(rng).updated_at);
        f.updated_from = rng.random_bool(0.8).then_some(a.min(b));
        f.updated_to = rng.random_bool(0.8).then_some(a.max(b));
    }
    if rng.random_bool(0.15) {
        f.has_email = Some(rng.random_bool(0.5));
    }
    if rng.random_bool(0.25) {
        let pool: Vec<Tag> = leads
            .iter()
            .flat_map(|l| l.tags.iter().cloned())
            .take(500)
            .collect();
        let tags: Vec<Tag> = (0..rng.random_range(1..=3))
            .filter_map(|_| pool.choose(rng).cloned())
            .collect();
        let mode = if rng.random_bool(0.5) {
            TagMatch::Any
        } else {
            TagMatch::All
        };
        f.tags = Some((mode, tags));
    }
    if rng.random_bool(0.2) {
        f.archived = ArchivedFilter::Only;
    }
    if rng.random_bool(0.25) {
        let lead = any(rng);
        let source = [
            lead.last_name.clone(),
            lead.company_name.clone(),
            lead.email.as_ref().map(|e| e.as_str().to_owned()),
            lead.first_name.clone(),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
        let chars: Vec<char> = source.chars().collect();
        f.search = Some(if chars.len() < 3 || rng.random_bool(0.1) {
            ["%", "_", "o'", "zzz"].choose(rng).unwrap().to_string()
        } else {
            let len = rng.random_range(2..=6.min(chars.len()));
            let at = rng.random_range(0..=chars.len() - len);
            chars[at..at + len].iter().collect()
        });
    }
    f
}

#[tokio::test]
async fn contract_random_filters_sorts_and_pages_match_the_reference_model() {
    use rand::SeedableRng;
    const CASES: usize = 40;
    let seed = seed();
    for backend in backends() {
        let (store, _guard) = fresh_store(backend).await;
        let bulk = bulk_load(&store).await;
        let orders = all_orders();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut nonempty = 0;
        for case in 0..CASES {
            let filter = random_filter(&mut rng, &bulk.leads);
            let order = orders[rng.random_range(0..orders.len())];
            let forward = rng.random_bool(0.5);
            let direction = if forward {
                PageDirection::Forward
            } else {
                PageDirection::Backward
            };
            let limit = [1, 7, 50, 333, 1_000][rng.random_range(0..5)];
            let what = format!(
                "{backend:?} seed {seed} case {case}: {filter:?} {order:?} {direction:?} limit {limit}"
            );
            let selected = reference::select(&bulk.leads, &filter, order);
            let want: Vec<LeadId> = selected.iter().map(|l| l.id).collect();
            if !want.is_empty() {
                nonempty += 1;
            }
            // small pages over big selections would be thousands of statements: cap them
            let limit = if want.len() / limit > 60 { 333 } else { limit };
            let (got, read) = walk(&store, bulk.ws.id, &filter, order, direction, limit).await;
            assert_eq!(got.len(), want.len(), "{what}: row count");
            assert!(got == want, "{what}: the rows or their order differ");
            assert!(read.iter().all(|l| reference::matches(&filter, l)), "{what}");
            let counted = store.count_leads(bulk.ws.id, &filter, u64::MAX).await.unwrap();
            assert_eq!(counted, want.len() as u64, "{what}: count");

            // a window between two random cursors, taken from either end
            if selected.len() >= 2 {
                let a = rng.random_range(0..selected.len());
                let b = rng.random_range(0..selected.len());
                let after = reference::cursor(order, selected[a.min(b)]);
                let before = reference::cursor(order, selected[a.max(b)]);
                let (after, before) = (
                    rng.random_bool(0.8).then_some(after),
                    rng.random_bool(0.8).then_some(before),
                );
                let window_limit = rng.random_range(1..=60);
                let query = LeadQuery {
                    filter: filter.clone(),
                    order,
                    after: after.clone(),
                    before: before.clone(),
                    limit: window_limit,
                    direction,
                };
                let rows = store.list_leads(bulk.ws.id, &query).await.unwrap();
                let expected: Vec<LeadId> = reference::page(
                    &selected,
                    after.as_ref(),
                    before.as_ref(),
                    window_limit + 1,
                    forward,
                )
                .into_iter()
                .map(|l| l.id)
                .collect();
                let rows: Vec<LeadId> = rows.iter().map(|l| l.id).collect();
                assert_eq!(
                    rows, expected,
                    "{what}: window {after:?}..{before:?} limit {window_limit}"
                );
            }
        }
        assert!(
            nonempty > CASES / 3,
            "{backend:?} seed {seed}: too few cases select anything"
        );
    }
}

#[tokio::test]
async fn the_in_memory_filter_agrees_with_the_reference_model() {
    use rand::SeedableRng;
    let seed = seed();
    let mut generator = Generator::new(31);
    let end = now();
    let ws = WorkspaceId::new();
    let mut leads: Vec<Lead> = (0..2_000).map(|_| generator.lead(ws, end)).collect();
    for (i, lead) in leads.iter_mut().enumerate() {
        if i % 13 == 0 {
            lead.archived_at = Some(lead.updated_at);
        }
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut filters: Vec<LeadFilter> = filters(&leads).into_iter().map(|(_, f)| f).collect();
    filters.extend((0..200).map(|_| random_filter(&mut rng, &leads)));
    for filter in filters {
        for lead in &leads {
            assert_eq!(
                filter.matches(lead),
                reference::matches(&filter, lead),
                "seed {seed}: {filter:?} on {lead:?}"
            );
        }
    }
}

/// The job queue's repository contract.
mod jobs {
    use super::created_workspace;
    use crate::helpers::{backends, fresh_store};
    use leadgate::domain::{
        Duplicate, Job, JobFailure, JobId, JobKind, JobScope, JobSelection, JobState, NewJob, Schedule,
        Timestamp, now,
    };
    use leadgate::store::{Lease, Store};
    use serde_json::json;
    use std::collections::HashSet;

    fn lease(at: Timestamp, secs: i64) -> Lease {
        Lease {
            token: uuid::Uuid::now_v7().to_string(),
            until: at + chrono::TimeDelta::seconds(secs),
        }
    }

    async fn claim(store: &Store, kinds: &[&str], n: u32, at: Timestamp) -> Vec<Job> {
        store.claim_jobs(kinds, n, &lease(at, 60), at).await.unwrap()
    }

    fn failure(job: &Job, error: &str, at: Timestamp) -> JobFailure {
        JobFailure {
            attempt: job.attempts,
            at,
            error: error.into(),
        }
    }

    #[tokio::test]
    async fn claims_follow_priority_and_time_and_complete_only_with_the_token() {
        for backend in backends() {
            let (store, _g) = fresh_store(backend).await;
            let at = now();
            let mut low = NewJob::new(JobKind::new("k"), json!({"n": 1}));
            low.priority = -1;
            let mut high = NewJob::new(JobKind::new("k"), json!({"n": 2}));
            high.priority = 5;
            let mut later = NewJob::new(JobKind::new("k"), json!({"n": 3}));
            later.run_at = Some(at + chrono::TimeDelta::hours(1));
            let other = NewJob::new(JobKind::new("other"), json!({}));
            let low = store.enqueue_job(&low, 3, at).await.unwrap();
            let high = store.enqueue_job(&high, 3, at).await.unwrap();
            store.enqueue_job(&later, 3, at).await.unwrap();
            store.enqueue_job(&other, 3, at).await.unwrap();
            assert!(low.created && high.created);

            let jobs = claim(&store, &["k"], 10, at).await;
            let ids: Vec<JobId> = jobs.iter().map(|j| j.id).collect();
            assert_eq!(
                ids,
                vec![high.id, low.id],
                "{backend:?}: due jobs of the kind, by priority"
            );
            let job = &jobs[0];
            assert_eq!(job.state, JobState::Running);
            assert_eq!(job.attempts, 1);
            assert_eq!(job.max_attempts, 3);
            assert_eq!(job.payload, json!({"n": 2}));
            assert!(
                claim(&store, &["k"], 10, at).await.is_empty(),
                "leased jobs are not claimed twice"
            );

            let token = job.lease_token.clone().unwrap();
            let done = store
                .complete_jobs(&[(job.id, "someone-else".into()), (jobs[1].id, "x".into())], at)
                .await
                .unwrap();
            assert_eq!(done, 0, "{backend:?}: tokens must match their own job");
            let done = store
                .complete_jobs(
                    &[
                        (job.id, token.clone()),
                        (jobs[1].id, jobs[1].lease_token.clone().unwrap()),
                    ],
                    at,
                )
                .await
                .unwrap();
            assert_eq!(done, 2);
            let stored = store.job(JobScope::AllWorkspaces, job.id).await.unwrap().unwrap();
            assert_eq!(stored.state, JobState::Succeeded);
            assert_eq!(stored.finished_at, Some(at));
            assert_eq!(stored.lease_token, None);
            assert!(!store.heartbeat_job(job.id, &token, at, at).await.unwrap());

            let pruned = store
                .prune_jobs(at + chrono::TimeDelta::seconds(1))
                .await
                .unwrap();
            assert_eq!(pruned, 2, "{backend:?}");
            assert!(
                store
                    .job(JobScope::AllWorkspaces, job.id)
                    .await
                    .unwrap()
                    .is_none()
            );
        }
    }

    #[tokio::test]
    async fn unique_keys_dedupe_or_debounce_while_a_job_is_live() {
        for backend in backends() {
            let (store, _g) = fresh_store(backend).await;
            let at = now();
            let first = NewJob::new(JobKind::new("k"), json!({"v": 1})).unique("key-1", Duplicate::Keep);
            let a = store.enqueue_job(&first, 3, at).await.unwrap();
            let b = store.enqueue_job(&first, 3, at).await.unwrap();
            assert!(a.created && !b.created, "{backend:?}");
            assert_eq!(a.id, b.id);

            let mut replace =
                NewJob::new(JobKind::new("k"), json!({"v": 2})).unique("key-1", Duplicate::Replace);
            let later = at + chrono::TimeDelta::seconds(30);
            replace.run_at = Some(later);
            let c = store.enqueue_job(&replace, 3, at).await.unwrap();
            assert_eq!((c.id, c.created), (a.id, false));
            let stored = store.job(JobScope::AllWorkspaces, a.id).await.unwrap().unwrap();
            assert_eq!(stored.payload, json!({"v": 2}), "{backend:?}: debounced");
            assert_eq!(stored.run_at, later);

            // A running holder keeps its payload; once it is done the key is free again.
            let jobs = claim(&store, &["k"], 1, later).await;
            assert_eq!(jobs.len(), 1);
            let d = store.enqueue_job(&replace, 3, later).await.unwrap();
            assert_eq!((d.id, d.created), (a.id, false));
            let token = jobs[0].lease_token.clone().unwrap();
            store.complete_jobs(&[(a.id, token)], later).await.unwrap();
            let e = store.enqueue_job(&first, 3, later).await.unwrap();
            assert!(e.created && e.id != a.id, "{backend:?}");
        }
    }

    #[tokio::test]
    async fn failures_retry_then_die_with_their_history_and_a_dead_event() {
        for backend in backends() {
            let (store, _g) = fresh_store(backend).await;
            let ws = created_workspace(&store, "jobs").await;
            let at = now();
            let job = NewJob::new(JobKind::new("k"), json!({})).in_workspace(ws.id);
            let id = store.enqueue_job(&job, 2, at).await.unwrap().id;

            let claimed = claim(&store, &["k"], 1, at).await.remove(0);
            let mut stale = claimed.clone();
            stale.lease_token = Some("stale".into());
            assert!(
                !store
                    .fail_job(&stale, &failure(&claimed, "x", at), None)
                    .await
                    .unwrap()
            );
            let retry_at = at + chrono::TimeDelta::seconds(5);
            assert!(
                store
                    .fail_job(&claimed, &failure(&claimed, "first", at), Some(retry_at))
                    .await
                    .unwrap()
            );
            assert!(
                claim(&store, &["k"], 1, at).await.is_empty(),
                "not before its retry time"
            );

            let claimed = claim(&store, &["k"], 1, retry_at).await.remove(0);
            assert_eq!(claimed.attempts, 2);
            assert!(
                store
                    .fail_job(&claimed, &failure(&claimed, "second", retry_at), None)
                    .await
                    .unwrap()
            );
            let dead = store.job(JobScope::Workspace(ws.id), id).await.unwrap().unwrap();
            assert_eq!(dead.state, JobState::Dead, "{backend:?}");
            let errors: Vec<(u32, &str)> = dead
                .errors
                .iter()
                .map(|e| (e.attempt, e.error.as_str()))
                .collect();
            assert_eq!(errors, vec![(1, "first"), (2, "second")]);
            assert_eq!(dead.finished_at, Some(retry_at));

            let events = store.events_after(ws.id, 0, 10).await.unwrap();
            assert_eq!(events.len(), 1, "{backend:?}");
            assert_eq!(events[0].kind, "job.dead");
            assert_eq!(
                events[0].payload,
                json!({"jobId": id.as_i64(), "kind": "k", "error": "second"})
            );
        }
    }

    #[tokio::test]
    async fn expired_leases_are_reclaimed_or_dead_when_attempts_are_used_up() {
        for backend in backends() {
            let (store, _g) = fresh_store(backend).await;
            let at = now();
            let once = store
                .enqueue_job(&NewJob::new(JobKind::new("k"), json!({})), 1, at)
                .await
                .unwrap()
                .id;
            let twice = store
                .enqueue_job(&NewJob::new(JobKind::new("k"), json!({})), 2, at)
                .await
                .unwrap()
                .id;
            let short = lease(at, 1);
            let claimed = store.claim_jobs(&["k"], 10, &short, at).await.unwrap();
            assert_eq!(claimed.len(), 2);
            assert!(
                store
                    .heartbeat_job(twice, &short.token, short.until, at)
                    .await
                    .unwrap()
            );

            let nothing = store.reclaim_expired_jobs(at).await.unwrap();
            assert_eq!(
                (nothing.requeued, nothing.dead.len()),
                (0, 0),
                "{backend:?}: not yet expired"
            );
            let later = at + chrono::TimeDelta::seconds(2);
            let reclaimed = store.reclaim_expired_jobs(later).await.unwrap();
            assert_eq!(reclaimed.requeued, 1, "{backend:?}");
            assert_eq!(
                reclaimed.dead.iter().map(|j| j.id).collect::<Vec<_>>(),
                vec![once]
            );
            assert_eq!(reclaimed.dead[0].errors[0].error, "lease expired");

            let again = claim(&store, &["k"], 10, later).await;
            assert_eq!(again.iter().map(|j| j.id).collect::<Vec<_>>(), vec![twice]);
            assert_eq!(again[0].attempts, 2);
            assert_eq!(again[0].errors.len(), 1, "the expiry is in the history");
            // The old claim lost the job: it can neither complete nor fail it.
            assert_eq!(
                store
                    .complete_jobs(&[(twice, short.token.clone())], later)
                    .await
                    .unwrap(),
                0
            );
            let dead = store.job(JobScope::AllWorkspaces, once).await.unwrap().unwrap();
            assert_eq!(dead.state, JobState::Dead);
        }
    }

    #[tokio::test]
    async fn dead_jobs_are_paged_replayed_and_discarded_per_workspace() {
        for backend in backends() {
            let (store, _g) = fresh_store(backend).await;
            let mine = created_workspace(&store, "mine").await;
            let theirs = created_workspace(&store, "theirs").await;
            let at = now();
            let mut ids = Vec::new();
            for (ws, kind) in [(mine.id, "a"), (mine.id, "b"), (mine.id, "a"), (theirs.id, "a")] {
                let kind = JobKind::new(kind);
                let id = store
                    .enqueue_job(&NewJob::new(kind, json!({})).in_workspace(ws), 1, at)
                    .await
                    .unwrap()
                    .id;
                let job = claim(&store, &[kind.as_str()], 1, at).await.remove(0);
                assert!(
                    store
                        .fail_job(&job, &failure(&job, "boom", at), None)
                        .await
                        .unwrap()
                );
                ids.push(id);
            }
            let scope = JobScope::Workspace(mine.id);
            let page = store
                .dead_jobs(scope, None, &leadgate::domain::KeysetPage::first(2))
                .await
                .unwrap()
                .items;
            assert_eq!(
                page.iter().map(|j| j.id).collect::<Vec<_>>(),
                vec![ids[2], ids[1]],
                "{backend:?}"
            );
            let rest = store
                .dead_jobs(scope, None, &leadgate::domain::KeysetPage::after(ids[1], 2))
                .await
                .unwrap()
                .items;
            assert_eq!(rest.iter().map(|j| j.id).collect::<Vec<_>>(), vec![ids[0]]);
            let of_a = store
                .dead_jobs(scope, Some("a"), &leadgate::domain::KeysetPage::first(10))
                .await
                .unwrap()
                .items;
            assert_eq!(of_a.len(), 2);

            let stats = store.job_stats(scope).await.unwrap();
            let dead: u64 = stats
                .iter()
                .filter(|s| s.state == JobState::Dead)
                .map(|s| s.count)
                .sum();
            assert_eq!(dead, 3, "{backend:?}: only the workspace's");

            // Another workspace's job cannot be named.
            let foreign = JobSelection {
                ids: vec![ids[3]],
                kind: None,
            };
            assert_eq!(store.replay_jobs(scope, &foreign, at).await.unwrap().len(), 0);
            assert_eq!(store.discard_jobs(scope, &foreign).await.unwrap(), 0);

            let by_kind = JobSelection {
                ids: vec![],
                kind: Some("a".into()),
            };
            assert_eq!(
                store.replay_jobs(scope, &by_kind, at).await.unwrap().len(),
                2,
                "{backend:?}"
            );
            let replayed = store.job(scope, ids[0]).await.unwrap().unwrap();
            assert_eq!(replayed.state, JobState::Queued);
            assert_eq!(replayed.attempts, 0);
            assert_eq!(replayed.errors.len(), 1, "history kept");
            assert_eq!(replayed.finished_at, None);

            let by_id = JobSelection {
                ids: vec![ids[1], ids[0]],
                kind: None,
            };
            assert_eq!(
                store.discard_jobs(scope, &by_id).await.unwrap(),
                1,
                "only dead ones"
            );
            assert!(store.job(scope, ids[1]).await.unwrap().is_none());
            assert!(
                store
                    .job(JobScope::AllWorkspaces, ids[3])
                    .await
                    .unwrap()
                    .is_some()
            );
        }
    }

    fn schedule(name: &str, cron: &str, next: Timestamp) -> Schedule {
        Schedule {
            name: name.into(),
            cron: cron.into(),
            tz: "UTC".into(),
            kind: "k".into(),
            payload: json!({"from": name}),
            next_run_at: next,
            last_run_at: None,
            enabled: true,
        }
    }

    #[tokio::test]
    async fn a_schedule_tick_fires_once_however_many_race_for_it() {
        for backend in backends() {
            let (store, _g) = fresh_store(backend).await;
            let at = now();
            let due = at - chrono::TimeDelta::seconds(1);
            store
                .upsert_schedule(&schedule("s", "* * * * *", due))
                .await
                .unwrap();
            // Registering again with the same cron keeps the stored tick.
            store
                .upsert_schedule(&schedule("s", "* * * * *", at + chrono::TimeDelta::hours(1)))
                .await
                .unwrap();
            assert_eq!(
                store.schedules().await.unwrap()[0].next_run_at,
                due,
                "{backend:?}"
            );

            let next = at + chrono::TimeDelta::minutes(1);
            let job = NewJob::new(JobKind::new("k"), json!({"from": "s"}));
            let racers: Vec<_> = (0..4)
                .map(|_| store.fire_schedule("s", due, next, &job, 3, at))
                .collect();
            let fired = futures_util::future::join_all(racers).await;
            let wins = fired
                .into_iter()
                .filter(|r| r.as_ref().unwrap().is_some())
                .count();
            assert_eq!(wins, 1, "{backend:?}");
            let stored = &store.schedules().await.unwrap()[0];
            assert_eq!((stored.next_run_at, stored.last_run_at), (next, Some(due)));
            let jobs = claim(&store, &["k"], 10, at).await;
            assert_eq!(jobs.len(), 1);
            assert_eq!(jobs[0].payload, json!({"from": "s"}));

            // A changed cron restarts the schedule.
            store
                .upsert_schedule(&schedule("s", "0 * * * *", at + chrono::TimeDelta::hours(1)))
                .await
                .unwrap();
            assert_eq!(
                store.schedules().await.unwrap()[0].next_run_at,
                at + chrono::TimeDelta::hours(1)
            );
        }
    }

    #[tokio::test]
    async fn concurrent_claims_never_share_a_job() {
        for backend in backends() {
            let (store, _g) = fresh_store(backend).await;
            let at = now();
            for i in 0..200 {
                store
                    .enqueue_job(&NewJob::new(JobKind::new("k"), json!({"i": i})), 3, at)
                    .await
                    .unwrap();
            }
            let claimers: Vec<_> = (0..4)
                .map(|_| {
                    let store = store.clone();
                    tokio::spawn(async move {
                        let mut mine = Vec::new();
                        loop {
                            let jobs = claim(&store, &["k"], 16, at).await;
                            if jobs.is_empty() {
                                return mine;
                            }
                            mine.extend(jobs.into_iter().map(|j| j.id));
                        }
                    })
                })
                .collect();
            let mut seen = HashSet::new();
            for c in claimers {
                for id in c.await.unwrap() {
                    assert!(seen.insert(id), "{backend:?}: {id} claimed twice");
                }
            }
            assert_eq!(seen.len(), 200, "{backend:?}");
        }
    }
}

/// The unique constraints of the live catalog (names on PostgreSQL, `table.col, table.col` on
/// SQLite, as each reports a violation).
async fn unique_constraints(backend: crate::helpers::Backend, url: &str) -> Vec<String> {
    use sqlx::Row as _;
    match backend {
        crate::helpers::Backend::Postgres => {
            let pool = sqlx::PgPool::connect(url).await.expect("postgres");
            let rows = sqlx::query(
                "SELECT conname::text FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace \
                 WHERE n.nspname = current_schema() AND c.contype IN ('p', 'u') \
                 UNION SELECT indexname::text FROM pg_indexes \
                 WHERE schemaname = current_schema() AND indexdef LIKE 'CREATE UNIQUE%'",
            )
            .fetch_all(&pool)
            .await
            .expect("catalog");
            rows.iter().map(|r| r.get::<String, _>(0)).collect()
        }
        crate::helpers::Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(url).await.expect("sqlite");
            let tables: Vec<String> = sqlx::query("SELECT name FROM sqlite_master WHERE type = 'table'")
                .fetch_all(&pool)
                .await
                .expect("catalog")
                .iter()
                .map(|r| r.get(0))
                .collect();
            let mut out = Vec::new();
            for table in tables {
                let sql = format!("SELECT name FROM pragma_index_list('{table}') WHERE \"unique\" = 1");
                let indexes = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .fetch_all(&pool)
                    .await
                    .expect("indexes");
                for index in indexes {
                    let name: String = index.get(0);
                    let sql = format!("SELECT name FROM pragma_index_info('{name}') ORDER BY seqno");
                    let columns: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .fetch_all(&pool)
                        .await
                        .expect("index columns")
                        .iter()
                        .map(|r| format!("{table}.{}", r.get::<String, _>(0)))
                        .collect();
                    out.push(columns.join(", "));
                }
            }
            out
        }
    }
}

#[tokio::test]
async fn contract_every_unique_constraint_maps_to_a_conflict() {
    use leadgate::store::{Dialect, dialect::known_unique_constraints};
    for backend in backends() {
        let (url, _guard) = crate::helpers::fresh_database(backend).await;
        let store = Store::connect(&url, &leadgate::store::PoolOptions::default())
            .await
            .expect("store");
        let known = known_unique_constraints(store.dialect());
        let mut found = unique_constraints(backend, &url).await;
        found.retain(|name| !name.starts_with("_sqlx_migrations"));
        let unknown: Vec<&String> = found.iter().filter(|c| !known.contains(&c.as_str())).collect();
        assert!(
            unknown.is_empty(),
            "{backend:?}: unique constraints `store::dialect::UNIQUE` does not name: {unknown:?}"
        );
        if store.dialect() == Dialect::Postgres {
            let stale: Vec<&&str> = known.iter().filter(|k| !found.iter().any(|f| f == *k)).collect();
            assert!(
                stale.is_empty(),
                "constraints named but not in the schema: {stale:?}"
            );
        }
        store.close().await;
    }
}

#[tokio::test]
async fn contract_a_duplicate_email_is_a_conflict_on_email_by_its_constraint() {
    for backend in backends() {
        let (store, _guard) = fresh_store(backend).await;
        let ws = created_workspace(&store, "dup").await;
        let lead = full_lead(ws.id, "dup@acme.io");
        store.insert_lead(&lead).await.unwrap();
        let again = full_lead(ws.id, "dup@acme.io");
        assert!(
            matches!(
                store.insert_lead(&again).await,
                Err(StoreError::Conflict { field: "email" })
            ),
            "{backend:?}"
        );
        let mut same_id = full_lead(ws.id, "other@acme.io");
        same_id.id = lead.id;
        assert!(
            matches!(
                store.insert_lead(&same_id).await,
                Err(StoreError::Conflict { field: "id" })
            ),
            "{backend:?}"
        );
    }
}

/// `lead` with every client-set text column the test data leaves empty filled with a value
/// of its own, through the column table: a lead field added later is covered by the contract
/// tests below without a line of test code.
fn with_every_text_column(mut lead: Lead, tag: &str) -> Lead {
    for column in LEAD_COLUMNS {
        if column.role == ColumnRole::Field
            && column.ty == ColumnType::Text
            && !column.json
            && (column.get)(&lead) == Value::Null
        {
            (column.set)(&mut lead, Value::Text(format!("{} {tag}", column.name))).unwrap();
        }
    }
    lead
}

#[tokio::test]
async fn contract_every_lead_column_round_trips_through_insert_update_and_events() {
    for backend in backends() {
        let (store, _guard) = fresh_store(backend).await;
        let ws = created_workspace(&store, "cols").await;
        let lead = with_every_text_column(full_lead(ws.id, "cols@acme.io"), "one");
        for column in LEAD_COLUMNS.iter().filter(|c| c.role == ColumnRole::Field) {
            assert_ne!(
                (column.get)(&lead),
                Value::Null,
                "{backend:?}: {} is empty",
                column.name
            );
        }
        let events = store.insert_lead(&lead).await.unwrap();
        assert_eq!(
            store.lead(ws.id, lead.id).await.unwrap().as_ref(),
            Some(&lead),
            "{backend:?}"
        );
        assert_eq!(
            events[0].lead_change().map(|c| c.lead).as_ref(),
            Some(&lead),
            "{backend:?}"
        );

        let mut changed = lead.clone();
        for column in LEAD_COLUMNS
            .iter()
            .filter(|c| c.role == ColumnRole::Field && c.ty == ColumnType::Text && !c.json)
        {
            if let Value::Text(old) = (column.get)(&lead)
                && column.import.is_some()
                && column.name != "email"
            {
                (column.set)(&mut changed, Value::Text(format!("{old} two"))).unwrap();
            }
        }
        changed.version += 1;
        changed.updated_at += chrono::Duration::microseconds(1);
        let events = store.update_lead(&changed, &lead).await.unwrap();
        assert_eq!(
            store.lead(ws.id, lead.id).await.unwrap().as_ref(),
            Some(&changed),
            "{backend:?}"
        );
        let change = events[0].lead_change().expect("a lead event");
        assert_eq!(change.lead, changed, "{backend:?}");
        let expected: Vec<&str> = LEAD_COLUMNS
            .iter()
            .filter(|c| c.role == ColumnRole::Field && (c.get)(&lead) != (c.get)(&changed))
            .map(|c| c.api)
            .collect();
        assert!(expected.len() > 5, "{backend:?}: {expected:?}");
        assert_eq!(change.changed_fields, expected, "{backend:?}");
    }
}

/// PostgreSQL reads lend connections of their own without a ping: one that the server ended
/// while it sat idle (a restart, a proxy's idle timeout) is replaced, and the read succeeds.
#[tokio::test]
async fn postgres_reads_survive_the_server_ending_idle_connections() {
    if crate::helpers::postgres_url_or_skip().is_none() {
        return;
    }
    let (url, _guard) = crate::helpers::fresh_database(crate::helpers::Backend::Postgres).await;
    let store = Store::connect(&url, &leadgate::store::PoolOptions { max_connections: 4 })
        .await
        .unwrap();
    let ws = created_workspace(&store, "acme").await;
    let lead = full_lead(ws.id, "zoe@acme-robotics.de");
    store.insert_lead(&lead).await.unwrap();
    assert_eq!(store.lead(ws.id, lead.id).await.unwrap(), Some(lead.clone()));
    let ended = leadgate::store::admin::terminate_other_sessions(&url)
        .await
        .unwrap();
    assert!(ended >= 1, "the store's idle connections were ended ({ended})");
    for _ in 0..3 {
        assert_eq!(store.lead(ws.id, lead.id).await.unwrap(), Some(lead.clone()));
    }
    store.close().await;
}
