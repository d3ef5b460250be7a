//! Flights as DataFusion tables: namespaces are schemas of the `flightbay` catalog, and each name (or `f<id>`)
//! resolves to a [`FlightTable`] bound to the flight it points at *when the query is planned*.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, Session, TableProvider};
use datafusion::common::{DataFusionError, Statistics};
use datafusion::datasource::TableType;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::TableProviderFilterPushDown;
use datafusion::physical_plan::ExecutionPlan;

use crate::error::Error;
use crate::store::spill::SpillFile;
use crate::store::{FlightData, FlightId, FlightRef, FlightStore, QualifiedName, validate_identifier};

/// Name of the catalog flightbay registers; the default schema is the `default` namespace.
pub const CATALOG: &str = "flightbay";

/// The catalog: one schema per namespace.
#[derive(Debug)]
pub struct StoreCatalog {
    store: FlightStore,
}

impl StoreCatalog {
    /// A catalog over `store`.
    pub fn new(store: FlightStore) -> Self {
        Self { store }
    }
}

impl CatalogProvider for StoreCatalog {
    fn schema_names(&self) -> Vec<String> {
        self.store.namespaces().into_iter().map(|(ns, _)| ns).collect()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        // Any valid identifier is a schema, so an unknown namespace reports "no flight named ns.x" (NOT_FOUND)
        // instead of a planner error.
        validate_identifier("namespace", name).ok()?;
        Some(Arc::new(NamespaceSchema {
            store: self.store.clone(),
            namespace: name.to_string(),
        }))
    }
}

/// One namespace as a SQL schema.
#[derive(Debug)]
struct NamespaceSchema {
    store: FlightStore,
    namespace: String,
}

#[async_trait]
impl SchemaProvider for NamespaceSchema {
    fn table_names(&self) -> Vec<String> {
        self.store
            .namespaces()
            .into_iter()
            .find(|(ns, _)| *ns == self.namespace)
            .map(|(_, names)| names.into_iter().map(|(n, _)| n).collect())
            .unwrap_or_default()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        let reference = match FlightId::from_table_name(name) {
            Some(id) => FlightRef::Id(id),
            None => FlightRef::Name(
                QualifiedName::try_new(Some(&self.namespace), name).map_err(|e| DataFusionError::External(e.into()))?,
            ),
        };
        let flight = self
            .store
            .lookup(&reference)
            .map_err(|e: Error| DataFusionError::External(e.into()))?;
        Ok(Some(Arc::new(FlightTable::new(flight))))
    }

    fn table_exist(&self, name: &str) -> bool {
        match FlightId::from_table_name(name) {
            Some(id) => self.store.contains(id),
            None => QualifiedName::try_new(Some(&self.namespace), name)
                .and_then(|n| self.store.resolve(&FlightRef::Name(n)))
                .is_ok(),
        }
    }
}

/// A table over exactly one immutable flight.
#[derive(Debug)]
pub struct FlightTable {
    flight: crate::store::Flight,
}

impl FlightTable {
    /// Wraps `flight`.
    pub fn new(flight: crate::store::Flight) -> Self {
        Self { flight }
    }

    /// The flight this table reads.
    pub fn id(&self) -> FlightId {
        self.flight.id()
    }

    fn parquet(&self, file: &SpillFile) -> datafusion::error::Result<ListingTable> {
        let url = ListingTableUrl::parse(file.path.to_string_lossy())?;
        let options = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
        let config = ListingTableConfig::new(url)
            .with_listing_options(options)
            .with_schema(Arc::clone(&self.flight.meta.schema));
        ListingTable::try_new(config)
    }
}

#[async_trait]
impl TableProvider for FlightTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.flight.meta.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        match &self.flight.data {
            FlightData::Memory(segments) => {
                let batches: Vec<RecordBatch> = segments.iter().flat_map(|s| s.batches().iter().cloned()).collect();
                let partitions = split_contiguous(batches, state.config().target_partitions());
                let exec = MemorySourceConfig::try_new_exec(&partitions, self.schema(), projection.cloned())?;
                Ok(exec)
            }
            // A spilled flight is scanned in place: a Parquet scan of its one file, with projection, row-group
            // pruning by the pushed-down filters, and the limit.
            FlightData::Spilled(file) => self.parquet(file)?.scan(state, projection, filters, limit).await,
        }
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        let support = match self.flight.data {
            FlightData::Memory(_) => TableProviderFilterPushDown::Unsupported,
            FlightData::Spilled(_) => TableProviderFilterPushDown::Inexact,
        };
        Ok(vec![support; filters.len()])
    }

    fn statistics(&self) -> Option<Statistics> {
        let mut stats = Statistics::new_unknown(&self.flight.meta.schema);
        stats.num_rows = datafusion::common::stats::Precision::Exact(self.flight.meta.num_rows as usize);
        Some(stats)
    }
}

/// Splits batches into at most `n` partitions of consecutive batches with similar row counts.
fn split_contiguous(batches: Vec<RecordBatch>, n: usize) -> Vec<Vec<RecordBatch>> {
    let n = n.max(1).min(batches.len().max(1));
    let total: usize = batches.iter().map(|b| b.num_rows()).sum();
    let per = total.div_ceil(n).max(1);
    let mut parts: Vec<Vec<RecordBatch>> = vec![Vec::new()];
    let mut rows = 0;
    for b in batches {
        if rows >= per && parts.len() < n {
            parts.push(Vec::new());
            rows = 0;
        }
        rows += b.num_rows();
        if let Some(last) = parts.last_mut() {
            last.push(b);
        }
    }
    parts
}
