//! The catalog one caller sees: namespaces and flights the caller cannot read do not exist for its SQL.
//!
//! Planning a query reads schemas, so a check after planning is too late: `SELECT nosuch FROM beta.secret` would
//! answer "Valid fields are beta.secret.k, …", and `information_schema.columns` would list every flight. Each
//! request with a [`Scope`] is planned in a `SessionState` made from the engine's long-lived one with this catalog
//! in place of the store's: resolving a table the caller may not read fails with the scope's error before its
//! schema is looked at, and `information_schema` lists only what the caller may read.
//!
//! The same per-request state also makes every operator of the physical plan yield now and then
//! ([`YieldEverywhere`]), so that a request whose client went away, or whose deadline passed, stops computing.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, MemoryCatalogProviderList, SchemaProvider, TableProvider,
};
use datafusion::common::DataFusionError;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::session_state::SessionState;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::coop::CooperativeExec;

use super::catalog::{CATALOG, FlightTable, StoreCatalog};
use crate::error::{Error, Result};
use crate::store::{FlightId, FlightRef, FlightStore, QualifiedName};

/// What one caller may read; the service implements it from the caller's grants.
pub trait Scope: Send + Sync + std::fmt::Debug {
    /// Ok when names in `namespace` may be looked up; the error (PERMISSION_DENIED) otherwise.
    fn namespace(&self, namespace: &str) -> Result<()>;
    /// Ok when flight `id` may be read; the error (PERMISSION_DENIED) otherwise.
    fn flight(&self, id: FlightId) -> Result<()>;
}

/// A session state like `base` whose `flightbay` catalog shows only what `scope` may read.
pub(super) fn session_state(base: SessionState, store: &FlightStore, scope: Arc<dyn Scope>) -> SessionState {
    let catalogs = MemoryCatalogProviderList::new();
    let catalog = VisibleCatalog {
        inner: StoreCatalog::new(store.clone()),
        store: store.clone(),
        scope,
    };
    // The previous value is None: the list is new.
    let _ = catalogs.register_catalog(CATALOG.to_string(), Arc::new(catalog));
    SessionStateBuilder::new_from_existing(base)
        .with_catalog_list(Arc::new(catalogs))
        .with_physical_optimizer_rule(Arc::new(YieldEverywhere))
        .build()
}

/// Wraps every operator of a physical plan in DataFusion's `CooperativeExec`.
///
/// A computation is stopped by aborting its task, which takes effect only when the task yields. DataFusion makes
/// its scans cooperative (they yield once tokio's per-task budget is spent), but an operator that produces many
/// batches from data it already holds never polls a scan: a cross join of two 20 000-row tables emits 20 000
/// batches per right-hand batch without yielding, so a cancelled one kept its thread busy for a minute. With
/// every operator cooperative, each batch that moves spends budget, and the task yields within a few hundred.
#[derive(Debug)]
struct YieldEverywhere;

impl PhysicalOptimizerRule for YieldEverywhere {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>, DataFusionError> {
        plan.transform_up(|node| {
            if node.as_ref().downcast_ref::<CooperativeExec>().is_some() {
                return Ok(Transformed::no(node));
            }
            Ok(Transformed::yes(
                Arc::new(CooperativeExec::new(node)) as Arc<dyn ExecutionPlan>
            ))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "flightbay_yield_everywhere"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

fn external(e: Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// The store's catalog, filtered by a [`Scope`].
#[derive(Debug)]
struct VisibleCatalog {
    inner: StoreCatalog,
    store: FlightStore,
    scope: Arc<dyn Scope>,
}

impl CatalogProvider for VisibleCatalog {
    fn schema_names(&self) -> Vec<String> {
        let mut names = self.inner.schema_names();
        names.retain(|ns| self.scope.namespace(ns).is_ok());
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        let inner = self.inner.schema(name)?;
        Some(Arc::new(VisibleSchema {
            inner,
            namespace: name.to_string(),
            store: self.store.clone(),
            scope: Arc::clone(&self.scope),
        }))
    }
}

/// One namespace, filtered by a [`Scope`].
#[derive(Debug)]
struct VisibleSchema {
    inner: Arc<dyn SchemaProvider>,
    namespace: String,
    store: FlightStore,
    scope: Arc<dyn Scope>,
}

impl VisibleSchema {
    /// Whether `name` (a name in this namespace or `f<id>`) may be seen; no lookup happens before the namespace
    /// check, so a missing name and an unreadable one look the same.
    fn visible(&self, name: &str) -> Result<()> {
        self.scope.namespace(&self.namespace)?;
        let reference = match FlightId::from_table_name(name) {
            Some(id) => FlightRef::Id(id),
            None => FlightRef::Name(QualifiedName::try_new(Some(&self.namespace), name)?),
        };
        match self.store.resolve(&reference) {
            Ok(id) => self.scope.flight(id),
            // Missing: the inner schema reports it as the store would.
            Err(_) => Ok(()),
        }
    }
}

#[async_trait]
impl SchemaProvider for VisibleSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.inner.table_names();
        names.retain(|n| self.visible(n).is_ok());
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        self.visible(name).map_err(external)?;
        let table = self.inner.table(name).await?;
        // The name may have moved since `visible` looked; check the flight the table is bound to.
        if let Some(flight) = table.as_ref().and_then(|t| t.as_ref().downcast_ref::<FlightTable>()) {
            self.scope.flight(flight.id()).map_err(external)?;
        }
        Ok(table)
    }

    fn table_exist(&self, name: &str) -> bool {
        self.visible(name).is_ok() && self.inner.table_exist(name)
    }
}
