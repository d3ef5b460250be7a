//! DataFusion glue: one long-lived `SessionContext` over the store, ops → results, and the result cache with
//! single-flight. No tonic.
//!
//! [`Engine::run`] is the one path every derive request takes: resolve names to ids, build the canonical key,
//! look it up, and on a miss compute once and publish the result as a new flight.

mod cache;
pub mod catalog;
mod join;
mod ops;
mod resample;
mod visible;

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::common::DFSchema;
use datafusion::datasource::source_as_provider;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::{DataFrame, SQLOptions, SessionConfig, SessionContext};
use futures::StreamExt;
use serde::Serialize;

use cache::ResultCache;
pub use cache::{CacheKey, CacheStats, CacheStatus};
use catalog::{CATALOG, FlightTable, StoreCatalog};
/// `resample`'s bin-width parser (`1h`, `15min`, `1D`), public for the fuzz targets and property tests.
pub use resample::parse_every;
pub use visible::Scope;

use crate::error::{Error, Result};
use crate::protocol::command::{Op, with_resolved_sources};
use crate::store::{DEFAULT_NAMESPACE, Flight, FlightId, FlightStore, Lineage, QualifiedName};

/// Runs ops over flights and caches their results as flights.
pub struct Engine {
    store: FlightStore,
    ctx: SessionContext,
    cache: ResultCache,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

/// What [`Engine::run`] returns: the result flight and whether it already existed.
#[derive(Debug)]
pub struct Outcome {
    /// The result.
    pub flight: Flight,
    /// `Hit` if an existing flight answered.
    pub cache: CacheStatus,
}

/// Engine counters for `stats`.
#[derive(Debug, Serialize)]
pub struct EngineStats {
    /// Result cache counters.
    pub cache: CacheStats,
}

/// A check of a request's input flights, run before anything is computed (see [`Engine::run_checked`]).
pub type InputCheck<'a> = dyn Fn(&[FlightId]) -> Result<()> + Send + Sync + 'a;

/// A prepared request: everything but the computation itself.
enum Work {
    /// A DataFusion plan to execute.
    Plan(DataFrame),
    /// An op computed with Arrow kernels over one input (and, for `filter`, its compiled predicate).
    Native(Box<Op>, Flight, Option<Arc<dyn PhysicalExpr>>),
}

impl Engine {
    /// An engine over `store`; DataFusion's operators may use up to `memory_limit` bytes before spilling or
    /// failing with RESOURCE_EXHAUSTED.
    pub fn try_new(store: FlightStore, memory_limit: usize) -> Result<Self> {
        let config = SessionConfig::new()
            .with_default_catalog_and_schema(CATALOG, DEFAULT_NAMESPACE)
            .with_create_default_catalog_and_schema(false)
            .with_information_schema(true)
            // DataFusion sets aside 10 MiB per sort for merging spilled runs; under a small budget that alone
            // exceeds the pool, so scale it down with the budget.
            .set_usize(
                "datafusion.execution.sort_spill_reservation_bytes",
                (memory_limit / 16).clamp(64 * 1024, 10 << 20),
            );
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(memory_limit, 1.0)
            .build_arc()?;
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        ctx.register_catalog(CATALOG, Arc::new(StoreCatalog::new(store.clone())));
        Ok(Self {
            store,
            ctx,
            cache: ResultCache::default(),
        })
    }

    /// Counters for `stats`.
    pub fn stats(&self) -> EngineStats {
        EngineStats {
            cache: self.cache.stats(),
        }
    }

    /// Runs `op` (or finds its cached result) and names the result `name` if given.
    pub async fn run(&self, op: Op, name: Option<QualifiedName>) -> Result<Outcome> {
        self.run_checked(op, name, &|_| Ok(()), None).await
    }

    /// [`Engine::run`], but first hands the resolved input ids to `check`, which may refuse the request. The check
    /// runs after names are resolved and SQL is planned, before any data is read, computed or published, so a
    /// refused request leaves the store as it was. With a `scope`, SQL is planned against only the namespaces and
    /// flights the scope may read (see [`Scope`]), so what it cannot read does not show even in planner errors
    /// or `information_schema`. The service layer uses both for authorization.
    pub async fn run_checked(
        &self,
        op: Op,
        name: Option<QualifiedName>,
        check: &InputCheck<'_>,
        scope: Option<Arc<dyn Scope>>,
    ) -> Result<Outcome> {
        let (key, lineage, work) = self.prepare(op, check, scope).await?;
        let publish = |work: Work| async {
            let flight = self.publish(work, lineage.clone(), name.as_ref()).await?;
            Ok::<_, Error>(flight.id())
        };
        let (id, status) = match key {
            Some(key) => self.cache.get_or_compute(&self.store, key, || publish(work)).await?,
            None => {
                self.cache.record_uncacheable();
                (publish(work).await?, CacheStatus::Miss)
            }
        };
        if status == CacheStatus::Hit
            && let Some(name) = &name
        {
            self.store.set_name(name, id).await?;
        }
        Ok(Outcome {
            flight: self.store.get(id)?,
            cache: status,
        })
    }

    /// Resolves inputs and builds the cache key (None when uncacheable), the lineage and the work.
    async fn prepare(
        &self,
        op: Op,
        check: &InputCheck<'_>,
        scope: Option<Arc<dyn Scope>>,
    ) -> Result<(Option<CacheKey>, Lineage, Work)> {
        if let Op::Sql { query } = &op {
            return self.prepare_sql(query, check, scope).await;
        }
        let mut sources = Vec::new();
        let mut op = op;
        for source in op.sources_mut() {
            sources.push(self.store.lookup(&source.0)?);
        }
        let ids: Vec<FlightId> = sources.iter().map(Flight::id).collect();
        check(&ids)?;
        let op = with_resolved_sources(op, &ids);
        let mut params = serde_json::to_value(&op).map_err(|e| Error::internal(e.to_string()))?;
        if let Some(obj) = params.as_object_mut() {
            obj.remove("op");
            obj.remove("source");
            obj.remove("right");
        }
        let lineage = Lineage {
            op: op.name().to_string(),
            params,
            inputs: ids,
        };
        let canonical = serde_json::to_string(&op).map_err(|e| Error::internal(e.to_string()))?;
        let mut key = Some(CacheKey::of("op", &canonical));
        // Native ops are computed only on a cache miss, inside the single-flight computation (see `publish`);
        // here they are only validated enough to build the key.
        let work = match &op {
            Op::Sql { .. } => return Err(Error::internal("sql handled above")),
            Op::Filter { predicate, .. } => {
                let flight = &sources[0];
                let df_schema = DFSchema::try_from(flight.meta.schema.as_ref().clone())?;
                let expr = self.ctx.parse_sql_expr(predicate, &df_schema)?;
                key = (!expr.is_volatile()).then(|| CacheKey::of("filter", &(flight.id(), &expr)));
                let physical = self.ctx.create_physical_expr(expr, &df_schema)?;
                Work::Native(Box::new(op.clone()), flight.clone(), Some(physical))
            }
            Op::Join {
                keys,
                right_keys,
                join_type,
                left_suffix,
                right_suffix,
                coalesce_keys,
                ..
            } => {
                let spec = join::Join {
                    keys: keys.names(),
                    right_keys: right_keys.as_ref().unwrap_or(keys).names(),
                    join_type: *join_type,
                    left_suffix: left_suffix.as_deref(),
                    right_suffix: right_suffix.as_deref(),
                    coalesce_keys: *coalesce_keys,
                };
                Work::Plan(join::plan(&self.ctx, &sources[0], &sources[1], &spec)?)
            }
            Op::Resample {
                time_column,
                every,
                aggregations,
                aggregation_func,
                by,
                ..
            } => {
                let spec = resample::Resample {
                    time_column,
                    every,
                    aggregations: aggregations.as_ref().map(|a| a.0.as_slice()),
                    aggregation_func: *aggregation_func,
                    by,
                };
                let input = self.store.batches(&sources[0]).await?;
                Work::Plan(resample::plan(&self.ctx, &sources[0], &input, &spec)?)
            }
            _ => Work::Native(Box::new(op.clone()), sources[0].clone(), None),
        };
        Ok((key, lineage, work))
    }

    /// Computes a native op over its input (read from memory or its spill file).
    async fn compute_native(
        &self,
        op: &Op,
        source: &Flight,
        predicate: Option<Arc<dyn PhysicalExpr>>,
    ) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let batches = self.store.batches(source).await?;
        let schema = Arc::clone(&source.meta.schema);
        let op = op.clone();
        // Sorting or gathering millions of rows takes seconds: off the async workers, which keep serving.
        tokio::task::spawn_blocking(move || native(&op, schema, &batches, predicate))
            .await
            .map_err(|e| Error::internal(format!("native op task failed: {e}")))?
    }

    async fn prepare_sql(
        &self,
        query: &str,
        check: &InputCheck<'_>,
        scope: Option<Arc<dyn Scope>>,
    ) -> Result<(Option<CacheKey>, Lineage, Work)> {
        // Deep expressions overflow stacks in code that cannot be protected (derived Clone, Hash, Drop of plans).
        crate::protocol::sql_depth::check("query", query)?;
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let state = match scope {
            Some(scope) => visible::session_state(self.ctx.state(), &self.store, scope),
            None => self.ctx.state(),
        };
        let dialect = state.config().options().sql_parser.dialect;
        let statement = state.sql_to_statement(query, &dialect)?;
        if !is_query(&statement) {
            return Err(Error::invalid(
                "flightbay SQL is read-only: send a query (SELECT, WITH, VALUES, EXPLAIN); uploads and actions change data",
            ));
        }
        let plan = state.statement_to_plan(statement).await?;
        options.verify_plan(&plan)?;
        let df = DataFrame::new(state, plan);
        let plan = df.clone().into_optimized_plan()?;
        let (canonical, inputs, volatile) = canonicalize(plan)?;
        check(&inputs)?;
        let key = (!volatile).then(|| CacheKey::of("sql", &canonical));
        let lineage = Lineage {
            op: "sql".to_string(),
            params: serde_json::json!({ "query": query }),
            inputs,
        };
        Ok((key, lineage, Work::Plan(df)))
    }

    /// Streams the work's batches into a new flight and publishes it.
    async fn publish(&self, work: Work, lineage: Lineage, name: Option<&QualifiedName>) -> Result<Flight> {
        let writer = match work {
            Work::Native(op, source, predicate) => {
                let (schema, batches) = self.compute_native(&op, &source, predicate).await?;
                let mut writer = self.store.derived_writer(schema);
                for batch in batches {
                    writer.push(batch).await?;
                }
                writer
            }
            Work::Plan(df) => {
                let mut stream: SendableRecordBatchStream = df.execute_stream().await?;
                let mut writer = self.store.derived_writer(stream.schema());
                while let Some(batch) = stream.next().await {
                    writer.push(batch?).await?;
                }
                writer
            }
        };
        let pending = writer.finish(false).await?;
        self.store.publish_derived(pending, lineage, name).await
    }
}

/// Whether a parsed statement only reads.
fn is_query(statement: &datafusion::sql::parser::Statement) -> bool {
    use datafusion::sql::parser::Statement;
    use datafusion::sql::sqlparser::ast::Statement as Sql;
    match statement {
        Statement::Statement(s) => match s.as_ref() {
            Sql::Query(_) => true,
            Sql::Explain { statement, .. } => matches!(statement.as_ref(), Sql::Query(_)),
            _ => false,
        },
        Statement::Explain(e) => is_query(&e.statement),
        _ => false,
    }
}

/// Rewrites every scan of a flight to the table name `f<id>` (so the key names ids, not the names that pointed
/// at them), and reports the input ids and whether the result may not be cached (a volatile expression, or a scan
/// of anything but a flight).
fn canonicalize(plan: LogicalPlan) -> Result<(LogicalPlan, Vec<FlightId>, bool)> {
    use datafusion::common::TableReference;
    use datafusion::common::tree_node::Transformed;
    let mut inputs = Vec::new();
    let mut volatile = false;
    let rewritten = plan
        .transform_up_with_subqueries(|node| {
            if node.expressions().iter().any(|e| e.is_volatile()) {
                volatile = true;
            }
            if let LogicalPlan::TableScan(mut scan) = node {
                let provider = source_as_provider(&scan.source)?;
                if let Some(table) = provider.as_ref().downcast_ref::<FlightTable>() {
                    if !inputs.contains(&table.id()) {
                        inputs.push(table.id());
                    }
                    scan.table_name = TableReference::bare(table.id().table_name());
                } else {
                    // Not an immutable flight (information_schema, whose rows change and differ by caller):
                    // never cached, or one caller's view would answer another's.
                    volatile = true;
                }
                return Ok(Transformed::yes(LogicalPlan::TableScan(scan)));
            }
            Ok(Transformed::no(node))
        })?
        .data;
    inputs.sort();
    Ok((rewritten, inputs, volatile))
}

/// Computes a native op over `batches` (blocking; see [`Engine::compute_native`]).
fn native(
    op: &Op,
    schema: SchemaRef,
    batches: &[RecordBatch],
    predicate: Option<Arc<dyn PhysicalExpr>>,
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    Ok(match op {
        Op::Take { indices, .. } => (Arc::clone(&schema), ops::take(&schema, batches, indices)?),
        Op::Slice { offset, length, .. } => (schema, ops::slice(batches, *offset, *length)),
        Op::Head { num_rows, .. } => (schema, ops::slice(batches, 0, Some(*num_rows))),
        Op::Select { columns, .. } => ops::select(&schema, batches, &columns.names())?,
        Op::DropColumns { columns, .. } => ops::drop_columns(&schema, batches, &columns.names())?,
        Op::RenameColumns { names, .. } => ops::rename_columns(&schema, batches, names)?,
        Op::SortBy {
            keys, null_placement, ..
        } => (
            Arc::clone(&schema),
            ops::sort_by(&schema, batches, &keys.keys(), *null_placement)?,
        ),
        Op::Shuffle { seed, .. } => (Arc::clone(&schema), ops::shuffle(&schema, batches, *seed)?),
        Op::Filter { .. } => {
            let physical = predicate.ok_or_else(|| Error::internal("filter without a predicate"))?;
            let mut out = Vec::new();
            for batch in batches {
                let mask = physical.evaluate(batch)?.into_array(batch.num_rows())?;
                let kept = ops::apply_mask(batch, &mask)?;
                if kept.num_rows() > 0 {
                    out.push(kept);
                }
            }
            (schema, out)
        }
        Op::Sql { .. } | Op::Join { .. } | Op::Resample { .. } => {
            return Err(Error::internal("planned ops are not native"));
        }
    })
}
