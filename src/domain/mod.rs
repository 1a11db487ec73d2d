//! The domain: entities and validated value types, with no I/O and no framework.
//!
//! Everything that crosses into the system from a client is parsed here once into a type that
//! cannot hold an invalid value (`EmailAddress::parse`, `Phone::parse`, …); nothing downstream
//! validates again. Neither GraphQL nor SQL derives live here: `graphql` and `store` convert.

mod api_key;
pub mod campaign;
mod columns;
mod crm;
mod enrichment;
mod erasure;
mod error;
mod event;
mod filter;
mod ids;
mod import;
mod job;
mod lead;
mod paging;
mod providers;
mod rate;
mod retention;
mod values;
mod webhook;
mod workspace;

pub use api_key::{
    ApiKey, DISPLAY_PREFIX_LEN, KEY_BODY_LEN, KEY_PREFIX, KeyDigest, KeyRefusal, MAX_KEY_NAME, Scope, Scopes,
    display_prefix, parse_key_name, parse_secret, secret_from_bytes,
};
pub use columns::{
    ColumnType, LEAD_COLUMNS, LeadColumn, Role as ColumnRole, Value, changed_fields, lead_column,
    lead_export_json, lead_from_columns, lead_from_snapshot, lead_from_values, lead_snapshot, personal_texts,
    read_columns,
};
pub use crm::{
    CRM_SYNC_FINISHED, ConflictPolicy, CrmConnection, CrmCredentials, CrmKind, CrmLink, CrmSyncRun,
    FieldMapping, LinkStatus, MAX_CONNECTION_NAME, MappedField, MappingRule, OnDeletion, SyncCounts,
    SyncDirection, SyncTrigger, Transform, values_digest,
};
pub use enrichment::{
    CompanyData, EmailStatus, EmailVerificationData, EnrichmentRecord, Fields, Group, GroupData, PersonData,
    PhoneData, PhoneKind, PhoneNumber, Policy, Source, Subject,
};
pub use erasure::{EmailHash, REDACTED, personal_values, redact};
pub use error::{FieldError, FieldErrorCode, ValidationErrors};
pub use event::{
    EVENT_TYPES, Event, JOB_DEAD, LEAD_ARCHIVED, LEAD_CHANGE_TYPES, LEAD_CREATED, LEAD_ENRICHED, LEAD_ERASED,
    LEAD_RESTORED, LEAD_UPDATED, LeadChange, NewEvent, WEBHOOK_DISABLED, erased_payload,
};
pub use filter::{
    ArchivedFilter, Cursor, CursorSide, Direction, LeadFilter, LeadOrder, LeadQuery, PageDirection,
    SortField, SortValue, TagMatch, filter_from_json, filter_to_json,
};
pub use ids::{
    ApiKeyId, CampaignId, CrmConnectionId, CrmRunId, DeliveryId, ErasureId, ImportId, LeadId, RetentionRunId,
    WebhookId, WorkspaceId,
};
pub use import::{
    IMPORT_FINISHED, IMPORT_PROGRESS, Import, ImportCheckpoint, ImportCounts, ImportErrorRow, ImportStatus,
};
pub use job::{
    Duplicate, Enqueued, Jitter, Job, JobFailure, JobId, JobKind, JobScope, JobSelection, JobState, NewJob,
    QueueStat, RetryPolicy, Schedule,
};
pub use lead::{Lead, LeadDraft, LeadPatch, LeadStatus, Patch, Timestamp, UpsertOutcome, now};
pub use paging::{KeysetPage, Paged};
pub(crate) use providers::provider_list;
pub use providers::{EnrichmentSettings, ProviderConfig, ProviderKind, SealedKey, Usage, UsagePeriod};
pub use rate::{MAX_RATE_COUNT, RateLimit, RatePeriod};
pub use retention::{
    Cutoffs, Erasure, ErasureCounts, MAX_ERASURE_REASON, MAX_RETENTION_DAYS, RetentionCounts, RetentionDays,
    RetentionPolicy, RetentionRun, RunTrigger,
};
pub use values::{
    CountryCode, CustomFields, Domain, EmailAddress, LinkedInUrl, Phone, Score, Tag, Tags, TimeZone,
};
pub use webhook::{WebhookDelivery, WebhookEndpoint, parse_event_types, parse_webhook_url};
pub use workspace::{Role, Workspace, WorkspaceSlug};
