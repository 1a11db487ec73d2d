//! The GraphQL schema: types, resolvers, Relay plumbing and error codes.
//!
//! `Gateway::new` needs no HTTP server, so tests and `leadgate schema` build it directly; the
//! `http` module is a thin transport around it. This is the only module that imports
//! async-graphql. Resolvers call `service`, never the store.

mod api_keys;
mod campaigns;
mod connection;
mod cost;
mod crm;
mod documents;
mod enrichment;
mod enrichment_api;
mod errors;
pub mod export;
mod guard;
mod ids;
mod imports;
mod inputs;
mod jobs;
pub mod metrics;
mod mutation;
mod ops;
pub mod persisted;
mod query;
mod subscription;
pub mod transport;
mod types;
mod webhooks;
pub mod ws;

pub use documents::{CacheStats, DocumentCache};
pub use enrichment::EnrichScope;
pub use enrichment_api::PlanRunner;
pub use imports::parse_import_id;
pub use query::Caller;

use crate::service::Services;
use async_graphql::{MergedObject, Schema, SchemaBuilder};
pub use metrics::GraphqlMetrics;
use metrics::Timed;
pub use subscription::SubscriptionRoot;

/// The query root: leads, enrichment, the event log, webhooks, the job queue, retention and
/// erasures.
#[derive(MergedObject, Default)]
#[graphql(name = "Query")]
pub struct QueryRoot(
    query::Query,
    enrichment_api::EnrichmentQuery,
    subscription::EventQuery,
    webhooks::WebhookQuery,
    api_keys::ApiKeyQuery,
    crm::CrmQuery,
    campaigns::CampaignQuery,
    jobs::JobsQuery,
    ops::OpsQuery,
    imports::ImportQuery,
);

/// The mutation root: leads, enrichment settings, webhooks, dead jobs, retention and erasure.
#[derive(MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct MutationRoot(
    mutation::Mutation,
    enrichment_api::EnrichmentMutation,
    webhooks::WebhookMutation,
    api_keys::ApiKeyMutation,
    crm::CrmMutation,
    campaigns::CampaignMutation,
    jobs::JobsMutation,
    ops::OpsMutation,
    imports::ImportMutation,
);

/// The roots' fields are timed for the slow-resolver count (`metrics::Timed`).
pub type LeadgateSchema = Schema<Timed<QueryRoot>, Timed<MutationRoot>, SubscriptionRoot>;

fn builder(
    metrics: Option<&GraphqlMetrics>,
) -> SchemaBuilder<Timed<QueryRoot>, Timed<MutationRoot>, SubscriptionRoot> {
    let (query, mutation) = match metrics {
        Some(m) => (m.timed(QueryRoot::default()), m.timed(MutationRoot::default())),
        None => (Timed::default(), Timed::default()),
    };
    Schema::build(query, mutation, SubscriptionRoot).directive(enrichment_api::BudgetDirective)
}

/// Protective limits and policies applied to every operation; their defaults live in
/// `config::Settings`.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Maximum nesting depth; the standard introspection query needs 13.
    pub depth: usize,
    /// Maximum complexity: one per field, multiplied by the page size under connections.
    pub complexity: usize,
    /// Maximum number of aliased fields in one document.
    pub aliases: usize,
    /// Maximum number of requests in one batch.
    pub batch: usize,
    /// Most times one response key may be selected in one selection set, fragments spread
    /// into it included.
    pub field_repeats: usize,
    /// Most directives on one field (or fragment spread, inline fragment, operation).
    pub directives: usize,
    /// Who may query `__schema` and `__type`.
    pub introspection: IntrospectionPolicy,
    /// Whether validation errors suggest names ("Did you mean …"). Off outside demos: the
    /// suggestions would spell out the schema to callers who may not introspect it.
    pub suggestions: bool,
}

/// Who may introspect the schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntrospectionPolicy {
    Always,
    /// Callers with a valid token (every WebSocket operation has one).
    Authenticated,
    Never,
}

/// The executable schema and the limits a transport applies around it.
#[derive(Clone)]
pub struct Gateway {
    schema: LeadgateSchema,
    limits: Limits,
    filters: export::FilterParser,
    documents: documents::DocumentCache,
    edge: Edge,
    metrics: GraphqlMetrics,
    /// The per-minute history of each workspace's requests (`metricsHistory`).
    history: crate::service::History,
}

/// What a gateway shares with other instances: rate limits and persisted queries.
#[derive(Clone)]
pub struct Edge {
    pub limiter: crate::limits::Limiter,
    pub policy: crate::limits::RatePolicy,
    pub persisted: persisted::PersistedQueries,
}

impl Default for Edge {
    /// No rate limits; automatic persisted queries in this process.
    fn default() -> Self {
        Self {
            limiter: crate::limits::Limiter::local(crate::limits::system_clock()),
            policy: crate::limits::RatePolicy::off(),
            persisted: persisted::PersistedQueries::default(),
        }
    }
}

impl Gateway {
    /// Builds the schema around the services, its root fields timed for `metrics`. No
    /// extensions are registered: with any, async-graphql resolves every field on a slower path
    /// (see `guard` and `metrics`).
    pub fn new(services: Services, limits: Limits, metrics: GraphqlMetrics) -> Self {
        let history = services.history.clone();
        let mut schema = builder(Some(&metrics))
            .data(services)
            .limit_depth(limits.depth)
            .limit_complexity(limits.complexity);
        if !limits.suggestions {
            schema = schema.disable_suggestions();
        }
        let schema = schema.finish();
        Self {
            schema,
            limits,
            filters: export::FilterParser::new(),
            documents: documents::DocumentCache::default(),
            edge: Edge::default(),
            metrics,
            history,
        }
    }

    /// The per-minute history requests are counted in.
    pub fn history(&self) -> &crate::service::History {
        &self.history
    }

    /// Operations, errors, latency, slow root fields and WebSockets counted (`/metrics`).
    pub fn metrics(&self) -> &GraphqlMetrics {
        &self.metrics
    }

    /// This gateway with `edge`'s rate limits and persisted queries.
    pub fn with_edge(self, edge: Edge) -> Self {
        Self { edge, ..self }
    }

    /// Rate limits and persisted queries.
    pub fn edge(&self) -> &Edge {
        &self.edge
    }

    /// A `LeadFilter` given as JSON, validated as the GraphQL input is (for exports).
    pub async fn parse_lead_filter(&self, raw: &str) -> Result<crate::domain::LeadFilter, String> {
        self.filters.parse(raw).await
    }

    pub fn schema(&self) -> &LeadgateSchema {
        &self.schema
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Parsed documents kept by text (`documents`).
    pub fn document_cache(&self) -> &documents::DocumentCache {
        &self.documents
    }
}

/// The schema in SDL, as committed in `schema.graphql`.
pub fn sdl() -> String {
    builder(None).finish().sdl()
}

/// The operation a parsed document would run: the named one, or the only one.
fn selected_operation<'d>(
    doc: &'d async_graphql::parser::types::ExecutableDocument,
    operation_name: Option<&str>,
) -> Option<&'d async_graphql::Positioned<async_graphql::parser::types::OperationDefinition>> {
    use async_graphql::parser::types::DocumentOperations;
    match (&doc.operations, operation_name) {
        (DocumentOperations::Single(op), _) => Some(op),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops.values().next(),
        (DocumentOperations::Multiple(_), None) => None,
    }
}

/// The name of the operation a request runs: the one it names, or the only one its document
/// names.
fn operation_name<'r>(
    doc: &'r async_graphql::parser::types::ExecutableDocument,
    given: Option<&'r str>,
) -> Option<&'r str> {
    use async_graphql::parser::types::DocumentOperations;
    match (&doc.operations, given) {
        (_, Some(name)) => Some(name),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops.keys().next().map(|n| n.as_str()),
        _ => None,
    }
}

/// The span an operation runs in. Its fields, the operation's name and the caller's workspace,
/// are the ids an error report is tagged with (`telemetry::sentry`); never the caller's
/// subject, which may be an email.
fn operation_span(
    request: &mut async_graphql::Request,
    workspace: Option<crate::domain::WorkspaceId>,
) -> tracing::Span {
    let span = tracing::info_span!(
        "graphql",
        operation = tracing::field::Empty,
        workspace_id = workspace.map(tracing::field::display)
    );
    if !span.is_disabled() {
        let given = request.operation_name.clone();
        if let Some(name) = request
            .parsed_query()
            .ok()
            .and_then(|doc| operation_name(doc, given.as_deref()))
        {
            span.record("operation", name);
        }
    }
    span
}

/// The type of the operation a parsed document would run.
fn operation_type(
    doc: &async_graphql::parser::types::ExecutableDocument,
    operation_name: Option<&str>,
) -> Option<async_graphql::parser::types::OperationType> {
    selected_operation(doc, operation_name).map(|op| op.node.ty)
}

/// Whether the operation a parsed document would run is a mutation (for refusing mutations
/// over GET).
fn is_mutation(doc: &async_graphql::parser::types::ExecutableDocument, operation_name: Option<&str>) -> bool {
    operation_type(doc, operation_name) == Some(async_graphql::parser::types::OperationType::Mutation)
}

/// True when a response failed before execution (parse or validation), so it carries no
/// `data`: GraphQL-over-HTTP answers those with 400 under `application/graphql-response+json`.
fn is_request_error(response: &async_graphql::Response) -> bool {
    !response.errors.is_empty()
        && response.data == async_graphql::Value::Null
        && response.errors.iter().all(|e| e.path.is_empty())
}
