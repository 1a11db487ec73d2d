//! `leadgate erase`: erases a person on request (by lead id or email) through
//! `ErasureService` and prints the audit record.

use super::flags::DataSettings;
use crate::app;
use crate::config::Settings;
use anyhow::bail;
use clap::Args;

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["lead", "email"])))]
pub struct EraseArgs {
    /// Workspace slug of the lead.
    #[arg(long)]
    pub workspace: String,
    /// The lead's id (its UUID or its GraphQL global id).
    #[arg(long)]
    pub lead: Option<String>,
    /// The lead's email address.
    #[arg(long)]
    pub email: Option<String>,
    /// Why (kept in the audit record; no personal data, please).
    #[arg(long)]
    pub reason: Option<String>,
    #[command(flatten)]
    pub settings: DataSettings,
}

pub(super) async fn erase(settings: &Settings, args: EraseArgs) -> anyhow::Result<()> {
    use crate::domain::{EmailAddress, LeadId};
    use crate::service::ServiceError;
    let store = app::open_store(settings).await?;
    let services = app::services(settings, store.clone())?;
    let ws = super::workspace_by_slug(&services, &args.workspace).await?;
    let actor = super::operator(&ws);
    let result = match (&args.lead, &args.email) {
        (Some(raw), _) => {
            let id = parse_lead_id(raw).ok_or_else(|| anyhow::anyhow!("--lead: '{raw}' is not a lead id"))?;
            services
                .erasure
                .erase(&actor, LeadId::from_uuid(id), args.reason.clone())
                .await
        }
        (None, Some(raw)) => {
            let email =
                EmailAddress::parse("email", raw).map_err(|e| anyhow::anyhow!("--email: {}", e.message))?;
            services
                .erasure
                .erase_by_email(&actor, &email, args.reason.clone())
                .await
        }
        (None, None) => bail!("give --lead ID or --email EMAIL"),
    };
    let erasure = match result {
        Ok(e) => e,
        Err(ServiceError::NotFound(_)) => bail!("no such lead in workspace `{}`", ws.slug),
        Err(e) => return Err(e.into()),
    };
    let c = erasure.counts;
    println!(
        "erased lead {} as {} at {}: {} enrichment records, {} events scrubbed, {} webhook deliveries \
         scrubbed, {} jobs scrubbed",
        erasure.lead_id,
        erasure.id,
        erasure.erased_at.to_rfc3339(),
        c.enrichment_records,
        c.events_scrubbed,
        c.deliveries_scrubbed,
        c.jobs_scrubbed
    );
    store.close().await;
    Ok(())
}

/// A lead id as a UUID or as the GraphQL global id (`base64("Lead:<uuid>")`).
fn parse_lead_id(raw: &str) -> Option<uuid::Uuid> {
    use base64::Engine;
    if let Ok(id) = uuid::Uuid::parse_str(raw.trim()) {
        return Some(id);
    }
    let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw.trim().trim_end_matches('='))
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    uuid::Uuid::parse_str(text.strip_prefix("Lead:")?).ok()
}
