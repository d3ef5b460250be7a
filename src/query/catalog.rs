//! Flights as DataFusion tables: namespaces are schemas of the `flightbay` catalog, and each name (or `f<id>`)
//! resolves to a [`FlightTable`] bound to the flight it points at *when the query is planned*.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, Session, TableProvider};
use datafusion::common::{DataFusionError, Statistics};
use datafusion::datasource::TableType;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use super::scan::{FlightScanExec, ROW_NUMBER};
use crate::error::Error;
use crate::store::{FlightId, FlightRef, FlightStore, QualifiedName, validate_identifier};

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
        Ok(Some(Arc::new(FlightTable::new(self.store.clone(), flight))))
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

/// A table over exactly one immutable flight, scanned through the store (see [`FlightScanExec`]).
#[derive(Debug)]
pub struct FlightTable {
    store: FlightStore,
    flight: crate::store::Flight,
    /// The table's schema: the flight's, and the row number column when asked for.
    schema: SchemaRef,
    row_numbers: bool,
}

impl FlightTable {
    /// Wraps `flight` of `store`.
    pub fn new(store: FlightStore, flight: crate::store::Flight) -> Self {
        let schema = Arc::clone(&flight.meta.schema);
        Self {
            store,
            flight,
            schema,
            row_numbers: false,
        }
    }

    /// Adds a last column, [`ROW_NUMBER`] (UInt64), holding each row's position in the flight: a tie-break that
    /// makes DataFusion's sort stable.
    pub fn with_row_numbers(mut self) -> Self {
        let mut fields = self.flight.meta.schema.fields().to_vec();
        fields.push(Arc::new(arrow::datatypes::Field::new(
            ROW_NUMBER,
            arrow::datatypes::DataType::UInt64,
            false,
        )));
        self.schema = Arc::new(arrow::datatypes::Schema::new_with_metadata(
            fields,
            self.flight.meta.schema.metadata().clone(),
        ));
        self.row_numbers = true;
        self
    }

    /// The flight this table reads.
    pub fn id(&self) -> FlightId {
        self.flight.id()
    }
}

#[async_trait]
impl TableProvider for FlightTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(FlightScanExec::try_new(
            self.store.clone(),
            self.flight.clone(),
            projection,
            self.row_numbers,
            state.config().target_partitions(),
            limit,
        )?))
    }

    fn statistics(&self) -> Option<Statistics> {
        let mut stats = Statistics::new_unknown(&self.schema);
        stats.num_rows = datafusion::common::stats::Precision::Exact(self.flight.meta.num_rows as usize);
        Some(stats)
    }
}
