//! GraphQL metrics, one registry per `Gateway`: operations by name and type, errors by
//! `extensions.code`, latency by operation type, slow root fields, and WebSocket connections
//! and active subscriptions by subprotocol. HTTP and WebSocket operations are counted alike.
//!
//! **Labels stay bounded.** An operation name is a label only among the first
//! `MAX_OPERATION_NAMES` distinct names this process saw; later ones count as `other`, and an
//! anonymous operation as `anonymous`. A code is a label when it looks like one (capital letters
//! and underscores, as every code this server sets), else `OTHER`; an error without one is `NONE`.
//! Nothing else a client sends becomes a label.
//!
//! **Slow resolvers** are timed only at the root: `Timed` wraps the `Query` and `Mutation`
//! roots and times each root field (its resolver and everything selected under it), counting
//! those slower than `slow_resolver_ms` by `Type.field`. That costs two clock reads per root
//! field. Timing every field would need an async-graphql extension, and with any extension
//! registered every field of every response takes async-graphql's slower path (a `ResolveInfo`
//! per field, two type-name strings per list item, the extension chain); the nested fields that
//! can be slow are enrichment groups, whose provider calls have their own latency metrics.

use async_graphql::parser::types::{ExecutableDocument, Field, OperationType};
use async_graphql::registry::Registry as SchemaRegistry;
use async_graphql::resolver_utils::{ContainerType, resolve_container};
use async_graphql::{
    Context, ContextSelectionSet, ObjectType, OutputType, Positioned, Response, ServerError, ServerResult,
    Value,
};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Distinct operation names kept as labels; later names count as `other`.
pub const MAX_OPERATION_NAMES: usize = 200;

/// The label of operations past the name cap (and of names that are not GraphQL names).
pub const OTHER_OPERATION: &str = "other";
/// The label of operations without a name.
pub const ANONYMOUS_OPERATION: &str = "anonymous";

/// Longest code kept as a label.
const MAX_CODE_LEN: usize = 40;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    /// The operation's name, `anonymous` or `other` (see the module header).
    pub operation: Arc<str>,
    /// `query`, `mutation`, `subscription`, or `unknown` for a request refused before its
    /// document was read.
    pub r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabels {
    pub r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    /// The error's `extensions.code`, `OTHER` or `NONE`.
    pub code: Cow<'static, str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FieldLabels {
    /// `Query.leads`, `Mutation.createLead`, …
    pub field: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SubprotocolLabels {
    /// `graphql-transport-ws` or `graphql-ws`.
    pub subprotocol: &'static str,
}

/// The GraphQL metric families; cheap to clone.
#[derive(Clone)]
pub struct GraphqlMetrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    operations: Family<OperationLabels, Counter>,
    errors: Family<CodeLabels, Counter>,
    duration: Family<TypeLabels, Histogram>,
    slow_fields: Family<FieldLabels, Counter>,
    connections: Family<SubprotocolLabels, Gauge>,
    subscriptions: Family<SubprotocolLabels, Gauge>,
    names: RwLock<HashSet<Arc<str>>>,
    other: Arc<str>,
    anonymous: Arc<str>,
    /// Root fields slower than this are counted; `None`: root fields are not timed.
    slow_resolver: Option<Duration>,
}

impl std::fmt::Debug for GraphqlMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GraphqlMetrics")
    }
}

impl Default for GraphqlMetrics {
    /// Root fields slower than 100 ms counted, as `slow_resolver_ms` defaults to.
    fn default() -> Self {
        Self::new(Some(Duration::from_millis(100)))
    }
}

/// What an operation is counted as: its name label and its type.
#[derive(Clone, Debug)]
pub struct Operation {
    name: Arc<str>,
    kind: &'static str,
}

impl Operation {
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The subprotocol names the gauges start with (at zero).
const SUBPROTOCOLS: [&str; 2] = ["graphql-transport-ws", "graphql-ws"];

impl GraphqlMetrics {
    /// Families with root fields slower than `slow_resolver` counted (`None`: not timed).
    pub fn new(slow_resolver: Option<Duration>) -> Self {
        let mut registry = Registry::with_prefix("leadgate_graphql");
        let operations = Family::<OperationLabels, Counter>::default();
        let errors = Family::<CodeLabels, Counter>::default();
        let duration = Family::<TypeLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ])
        });
        let slow_fields = Family::<FieldLabels, Counter>::default();
        let connections = Family::<SubprotocolLabels, Gauge>::default();
        let subscriptions = Family::<SubprotocolLabels, Gauge>::default();
        registry.register(
            "operations",
            "GraphQL operations executed, by operation name and type",
            operations.clone(),
        );
        registry.register(
            "errors",
            "Errors in GraphQL responses, by extensions.code",
            errors.clone(),
        );
        registry.register(
            "operation_duration_seconds",
            "Time to execute a query or mutation (subscriptions are not timed)",
            duration.clone(),
        );
        registry.register(
            "slow_resolvers",
            "Root fields that took longer than slow_resolver_ms, by Type.field",
            slow_fields.clone(),
        );
        registry.register(
            "ws_connections",
            "Open GraphQL WebSocket connections, by subprotocol",
            connections.clone(),
        );
        registry.register(
            "ws_subscriptions",
            "Active subscriptions on GraphQL WebSocket connections, by subprotocol",
            subscriptions.clone(),
        );
        for subprotocol in SUBPROTOCOLS {
            let _ = connections.get_or_create(&SubprotocolLabels { subprotocol });
            let _ = subscriptions.get_or_create(&SubprotocolLabels { subprotocol });
        }
        Self {
            inner: Arc::new(Inner {
                registry,
                operations,
                errors,
                duration,
                slow_fields,
                connections,
                subscriptions,
                names: RwLock::new(HashSet::new()),
                other: Arc::from(OTHER_OPERATION),
                anonymous: Arc::from(ANONYMOUS_OPERATION),
                slow_resolver: slow_resolver.filter(|d| !d.is_zero()),
            }),
        }
    }

    /// The label of an operation called `name`: the name itself while fewer than
    /// `MAX_OPERATION_NAMES` are known (or it is one of them), else `other`.
    fn name_label(&self, name: Option<&str>) -> Arc<str> {
        let Some(name) = name else {
            return self.inner.anonymous.clone();
        };
        if !is_graphql_name(name) {
            return self.inner.other.clone();
        }
        let names = &self.inner.names;
        if let Some(known) = names.read().unwrap_or_else(|p| p.into_inner()).get(name) {
            return known.clone();
        }
        let mut names = names.write().unwrap_or_else(|p| p.into_inner());
        if let Some(known) = names.get(name) {
            return known.clone();
        }
        if names.len() >= MAX_OPERATION_NAMES {
            return self.inner.other.clone();
        }
        let label: Arc<str> = Arc::from(name);
        names.insert(label.clone());
        label
    }

    /// The operation a prepared request runs (its document already parsed: this does not parse
    /// it again).
    pub fn operation_of(&self, request: &mut async_graphql::Request) -> Operation {
        // taken out for the while the document is borrowed, not copied
        let name = request.operation_name.take();
        let operation = match request.parsed_query() {
            Ok(doc) => self.operation_in(doc, name.as_deref()),
            Err(_) => self.unread(name.as_deref()),
        };
        request.operation_name = name;
        operation
    }

    /// The operation `operation_name` selects in `doc`.
    pub fn operation_in(&self, doc: &ExecutableDocument, operation_name: Option<&str>) -> Operation {
        use async_graphql::parser::types::DocumentOperations;
        let Some(selected) = super::selected_operation(doc, operation_name) else {
            return self.unread(operation_name);
        };
        let name = match &doc.operations {
            DocumentOperations::Single(_) => None,
            DocumentOperations::Multiple(ops) => {
                operation_name.or_else(|| ops.keys().next().map(|n| n.as_str()))
            }
        };
        Operation {
            name: self.name_label(name),
            kind: type_label(selected.node.ty),
        }
    }

    /// A request refused before its document was read: the name it asked for, type `unknown`.
    pub fn unread(&self, operation_name: Option<&str>) -> Operation {
        Operation {
            name: self.name_label(operation_name),
            kind: "unknown",
        }
    }

    /// Counts one operation.
    pub fn count(&self, operation: &Operation) {
        self.inner
            .operations
            .get_or_create(&OperationLabels {
                operation: operation.name.clone(),
                r#type: operation.kind,
            })
            .inc();
    }

    /// Counts the errors of a response by code.
    pub fn errors(&self, errors: &[ServerError]) {
        for error in errors {
            self.inner
                .errors
                .get_or_create(&CodeLabels {
                    code: code_label(error),
                })
                .inc();
        }
    }

    /// Observes how long a query or mutation took.
    pub fn took(&self, operation: &Operation, took: Duration) {
        self.inner
            .duration
            .get_or_create(&TypeLabels {
                r#type: operation.kind,
            })
            .observe(took.as_secs_f64());
    }

    /// One operation answered with `response`: counted, its errors counted, its time observed.
    pub fn answered(&self, operation: &Operation, response: &Response, took: Option<Duration>) {
        self.count(operation);
        self.errors(&response.errors);
        if let Some(took) = took {
            self.took(operation, took);
        }
    }

    /// Counts a root field that took longer than `slow_resolver_ms`.
    fn slow_field(&self, parent: &str, field: &str) {
        self.inner
            .slow_fields
            .get_or_create(&FieldLabels {
                field: format!("{parent}.{field}"),
            })
            .inc();
    }

    /// One more open WebSocket connection until the guard is dropped.
    pub fn connection(&self, subprotocol: &'static str) -> GaugeGuard {
        GaugeGuard::new(
            self.inner
                .connections
                .get_or_create(&SubprotocolLabels { subprotocol })
                .clone(),
        )
    }

    /// One more active subscription until the guard is dropped.
    pub fn subscription(&self, subprotocol: &'static str) -> GaugeGuard {
        GaugeGuard::new(
            self.inner
                .subscriptions
                .get_or_create(&SubprotocolLabels { subprotocol })
                .clone(),
        )
    }

    /// The families in the Prometheus text format, without a closing `# EOF`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode_registry(&mut out, &self.inner.registry).is_err() {
            out.clear();
        }
        out
    }

    /// `root` with its fields timed, when slow resolvers are counted.
    pub(super) fn timed<T>(&self, root: T) -> Timed<T> {
        Timed {
            root,
            slow: self
                .inner
                .slow_resolver
                .map(|threshold| (threshold, self.clone())),
        }
    }
}

/// Adds one to a gauge while it lives.
pub struct GaugeGuard(Gauge);

impl GaugeGuard {
    fn new(gauge: Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn type_label(ty: OperationType) -> &'static str {
    match ty {
        OperationType::Query => "query",
        OperationType::Mutation => "mutation",
        OperationType::Subscription => "subscription",
    }
}

/// `[_A-Za-z][_0-9A-Za-z]*`, at most 128 characters.
fn is_graphql_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 128
        && chars.next().is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

fn code_label(error: &ServerError) -> Cow<'static, str> {
    let code = error.extensions.as_ref().and_then(|e| e.get("code"));
    match code {
        None => Cow::Borrowed("NONE"),
        Some(Value::String(code))
            if !code.is_empty()
                && code.len() <= MAX_CODE_LEN
                && code.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') =>
        {
            Cow::Owned(code.clone())
        }
        Some(_) => Cow::Borrowed("OTHER"),
    }
}

/// A root type whose fields are timed (see the module header); to the schema it is `T`.
pub struct Timed<T> {
    root: T,
    slow: Option<(Duration, GraphqlMetrics)>,
}

impl<T: Default> Default for Timed<T> {
    /// Not timed.
    fn default() -> Self {
        Self {
            root: T::default(),
            slow: None,
        }
    }
}

impl<T: ContainerType> OutputType for Timed<T> {
    fn type_name() -> Cow<'static, str> {
        T::type_name()
    }

    fn create_type_info(registry: &mut SchemaRegistry) -> String {
        T::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        _field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        resolve_container(ctx, self).await
    }
}

impl<T: ContainerType> ContainerType for Timed<T> {
    async fn resolve_field(&self, ctx: &Context<'_>) -> ServerResult<Option<Value>> {
        let Some((threshold, metrics)) = &self.slow else {
            return self.root.resolve_field(ctx).await;
        };
        let started = Instant::now();
        let value = self.root.resolve_field(ctx).await;
        if started.elapsed() >= *threshold {
            metrics.slow_field(&T::type_name(), ctx.item.node.name.node.as_str());
        }
        value
    }

    async fn find_entity(&self, ctx: &Context<'_>, params: &Value) -> ServerResult<Option<Value>> {
        self.root.find_entity(ctx, params).await
    }
}

impl<T: ObjectType> ObjectType for Timed<T> {}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> ExecutableDocument {
        async_graphql::parser::parse_query(text).expect("parses")
    }

    #[test]
    fn operations_are_labelled_by_name_and_type_and_anonymous_ones_as_anonymous() {
        let m = GraphqlMetrics::new(None);
        let named = m.operation_in(&doc("mutation Save { a }"), None);
        assert_eq!((named.name(), named.kind()), ("Save", "mutation"));
        let picked = m.operation_in(&doc("query A { a } subscription B { b }"), Some("B"));
        assert_eq!((picked.name(), picked.kind()), ("B", "subscription"));
        let anonymous = m.operation_in(&doc("{ a }"), None);
        assert_eq!((anonymous.name(), anonymous.kind()), ("anonymous", "query"));
        let missing = m.operation_in(&doc("query A { a } query B { b }"), Some("C"));
        assert_eq!((missing.name(), missing.kind()), ("C", "unknown"));
        let unchosen = m.operation_in(&doc("query A { a } query B { b }"), None);
        assert_eq!((unchosen.name(), unchosen.kind()), ("anonymous", "unknown"));
    }

    #[test]
    fn names_past_the_cap_count_as_other_and_known_names_keep_their_label() {
        let m = GraphqlMetrics::new(None);
        for i in 0..MAX_OPERATION_NAMES {
            assert_eq!(m.unread(Some(&format!("Op{i}"))).name(), format!("Op{i}"));
        }
        assert_eq!(m.unread(Some("OneTooMany")).name(), "other");
        assert_eq!(m.unread(Some("Op7")).name(), "Op7", "a known name stays");
        assert_eq!(m.unread(Some("not a name")).name(), "other");
        assert_eq!(m.unread(None).name(), "anonymous");
    }

    #[test]
    fn errors_count_by_code_and_odd_codes_do_not_become_labels() {
        let m = GraphqlMetrics::new(None);
        let coded = |code: Value| {
            let mut e = ServerError::new("x", None);
            e.extensions
                .get_or_insert_with(Default::default)
                .set("code", code);
            e
        };
        m.errors(&[
            coded(Value::from("NOT_FOUND")),
            coded(Value::from("NOT_FOUND")),
            coded(Value::from("lead@example.com")),
            coded(Value::from(7)),
            ServerError::new("no code", None),
        ]);
        let text = m.render();
        for (code, n) in [("NOT_FOUND", 2), ("OTHER", 2), ("NONE", 1)] {
            let sample = format!("leadgate_graphql_errors_total{{code=\"{code}\"}} {n}\n");
            assert!(text.contains(&sample), "{sample} in {text}");
        }
        assert!(!text.contains("example.com"), "{text}");
    }

    #[test]
    fn gauges_follow_their_guards() {
        let m = GraphqlMetrics::new(None);
        let sample = |m: &GraphqlMetrics| {
            let text = m.render();
            text.lines()
                .find_map(|l| {
                    l.strip_prefix(r#"leadgate_graphql_ws_subscriptions{subprotocol="graphql-ws"} "#)
                })
                .map(str::to_owned)
                .unwrap_or_else(|| panic!("{text}"))
        };
        assert_eq!(sample(&m), "0");
        let a = m.subscription("graphql-ws");
        let b = m.subscription("graphql-ws");
        assert_eq!(sample(&m), "2");
        drop(a);
        assert_eq!(sample(&m), "1");
        drop(b);
        assert_eq!(sample(&m), "0");
    }

    #[derive(Default)]
    struct Root;

    #[async_graphql::Object]
    impl Root {
        async fn slow(&self) -> i32 {
            tokio::time::sleep(Duration::from_millis(30)).await;
            1
        }

        async fn fast(&self) -> i32 {
            2
        }
    }

    fn schema(
        m: &GraphqlMetrics,
    ) -> async_graphql::Schema<Timed<Root>, async_graphql::EmptyMutation, async_graphql::EmptySubscription>
    {
        async_graphql::Schema::build(
            m.timed(Root),
            async_graphql::EmptyMutation,
            async_graphql::EmptySubscription,
        )
        .finish()
    }

    #[tokio::test]
    async fn root_fields_slower_than_the_threshold_are_counted_by_type_and_field() {
        let m = GraphqlMetrics::new(Some(Duration::from_millis(20)));
        let schema = schema(&m);
        assert!(schema.sdl().contains("type Root {"), "the wrapper is invisible");
        let response = schema.execute("{ slow fast }").await;
        assert!(response.errors.is_empty(), "{:?}", response.errors);
        assert_eq!(
            response.data.into_json().expect("json"),
            serde_json::json!({"slow": 1, "fast": 2})
        );
        let text = m.render();
        assert!(
            text.contains(r#"leadgate_graphql_slow_resolvers_total{field="Root.slow"} 1"#),
            "{text}"
        );
    }

    #[tokio::test]
    async fn without_a_threshold_nothing_is_timed() {
        let m = GraphqlMetrics::new(Some(Duration::ZERO));
        let response = schema(&m).execute("{ slow }").await;
        assert!(response.errors.is_empty(), "{:?}", response.errors);
        assert!(!m.render().contains("Root.slow"), "{}", m.render());
    }
}
