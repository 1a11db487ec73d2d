//! Exporting leads: who may export, what the file is called, and the rows-exported counter.
//! The encoding and the batched reads live in `bulk::export`; HTTP and the CLI both start
//! exports here.

use super::{Actor, ServiceError};
use crate::bulk::export::{self, DEFAULT_BATCH, ExportRequest};
/// The formats and extra columns an export can have, and one piece of its body.
pub use crate::bulk::export::{Chunk, Extras, Format};
use crate::domain::{LeadFilter, Scope, now};
use crate::store::Store;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use std::sync::Arc;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FormatLabels {
    /// `csv` or `ndjson`.
    format: &'static str,
}

/// Export metric families, one registry per application.
#[derive(Clone, Debug)]
pub struct ExportMetrics {
    registry: Arc<Registry>,
    rows: Family<FormatLabels, Counter>,
    failed: Family<FormatLabels, Counter>,
}

impl ExportMetrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("leadgate");
        let rows = Family::<FormatLabels, Counter>::default();
        let failed = Family::<FormatLabels, Counter>::default();
        registry.register("export_rows", "Leads written by exports", rows.clone());
        registry.register(
            "export_failures",
            "Exports ended by a store error after they began",
            failed.clone(),
        );
        Self {
            registry: Arc::new(registry),
            rows,
            failed,
        }
    }

    /// The families in the Prometheus text format, without the closing `# EOF`.
    pub fn render_families(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode_registry(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// A started export: its suggested file name and its body, header first.
pub struct Export {
    /// `leads-<workspace slug>-<UTC date>.<csv|ndjson>`.
    pub filename: String,
    pub format: Format,
    /// Ends with `Err` when the store fails part way (already logged).
    pub body: BoxStream<'static, Result<Chunk, ServiceError>>,
}

#[derive(Clone, Debug)]
pub struct ExportService {
    store: Store,
    batch_size: usize,
    metrics: ExportMetrics,
}

impl ExportService {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            batch_size: DEFAULT_BATCH,
            metrics: ExportMetrics::new(),
        }
    }

    /// Leads read per statement (clamped to `bulk::export::MAX_BATCH`).
    pub fn set_batch_size(&mut self, batch_size: usize) {
        self.batch_size = batch_size.clamp(1, export::MAX_BATCH);
    }

    pub fn metrics(&self) -> &ExportMetrics {
        &self.metrics
    }

    /// Fails with `Forbidden` unless the actor's role may export (and a key holds READ_LEADS
    /// and IMPORT_EXPORT).
    pub fn authorize(&self, actor: &Actor) -> Result<(), ServiceError> {
        if !actor.role.can_export() {
            return Err(ServiceError::Forbidden(format!(
                "the {} role cannot export leads",
                actor.role.as_str()
            )));
        }
        actor.require_lead_reader()?;
        actor.require_scope(Scope::ImportExport)
    }

    /// Starts exporting the leads of the actor's workspace that match `filter`. Nothing is
    /// read before the body is polled, except the workspace (for the file name).
    pub async fn start(
        &self,
        actor: &Actor,
        filter: LeadFilter,
        format: Format,
        extras: Extras,
    ) -> Result<Export, ServiceError> {
        self.authorize(actor)?;
        let ws = self
            .store
            .workspace(actor.workspace_id)
            .await?
            .ok_or(ServiceError::NotFound("workspace"))?;
        let filename = format!(
            "leads-{}-{}.{}",
            ws.slug.as_str(),
            now().format("%Y-%m-%d"),
            format.as_str()
        );
        let request = ExportRequest {
            filter,
            format,
            extras,
            batch_size: self.batch_size,
        };
        let labels = FormatLabels {
            format: format.as_str(),
        };
        let metrics = self.metrics.clone();
        let body = export::stream(self.store.clone(), ws.id, request)
            .map(move |item| match item {
                Ok(chunk) => {
                    metrics.rows.get_or_create(&labels).inc_by(chunk.rows);
                    Ok(chunk)
                }
                Err(e) => {
                    metrics.failed.get_or_create(&labels).inc();
                    tracing::error!(error = %e, workspace = %ws.id, "export failed after it began");
                    Err(ServiceError::Internal(e))
                }
            })
            .boxed();
        Ok(Export {
            filename,
            format,
            body,
        })
    }
}
