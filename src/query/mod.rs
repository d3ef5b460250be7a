//! DataFusion glue: one long-lived `SessionContext` over the store, ops → results, and the result cache with
//! single-flight. No tonic.
//!
//! [`Engine::run`] is the one path every derive request takes: resolve names to ids, build the canonical key,
//! look it up, and on a miss compute once and publish the result as a new flight.

mod cache;
pub mod catalog;
mod join;
mod ops;
mod pool;
mod resample;
mod scan;
mod visible;

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::RecordBatchOptions;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::datasource::source_as_provider;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::{DataFrame, SQLOptions, SessionConfig, SessionContext};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use cache::ResultCache;
pub use cache::{CacheKey, CacheStats, CacheStatus};
use catalog::{CATALOG, FlightTable, StoreCatalog};
/// `resample`'s bin-width parser (`1h`, `15min`, `1D`), public for the fuzz targets and property tests.
pub use resample::parse_every;
pub use visible::Scope;

use crate::error::{Error, Result};
use crate::protocol::command::{NullPlacement, Op, Order, SortKey, with_resolved_sources};
use crate::store::{DEFAULT_NAMESPACE, Flight, FlightId, FlightStore, FlightWriter, Lineage, QualifiedName};

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
    /// A resample of one flight, planned on a miss (its bins start at the first timestamp's day, which takes a
    /// read of the time column).
    Resample(resample::Resample, Flight),
    /// An op computed with Arrow kernels over one input (and, for `filter`, its compiled predicate).
    Native(Box<Op>, Flight, Option<Arc<dyn PhysicalExpr>>),
}

impl Engine {
    /// An engine over `store`. DataFusion's operators draw memory from the store's budget (`memory_limit` bytes)
    /// and spill into the data directory, or fail with RESOURCE_EXHAUSTED.
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
        // DataFusion spills into the data directory, and its files count against the disk limit with the store's.
        let temp = store.temp_dir();
        std::fs::create_dir_all(&temp)?;
        let mut runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(pool::BudgetPool::new(store.clone())))
            .with_temp_file_path(temp);
        if let Some(limit) = store.config().disk_limit {
            runtime = runtime.with_max_temp_directory_size(limit);
        }
        let runtime = runtime.build_arc()?;
        let disk = Arc::clone(&runtime.disk_manager);
        store.set_external_disk_usage(Arc::new(move || disk.used_disk_space()));
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

    /// How many derive requests each existing flight answered from the cache (flights never reused are absent).
    pub fn hits_by_flight(&self) -> HashMap<FlightId, u64> {
        self.cache.hits_by_flight(&self.store)
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
        let prepared = self.prepare(op, check, scope).await?;
        self.run_prepared(prepared, name).await
    }

    /// [`Engine::run_checked`] for a SQL query with values for its placeholders (`$1`, `$2`, … or `?`, numbered
    /// in order). The values are bound into the plan before its cache key is built, so the same query with the
    /// same values is one flight, whichever protocol asked.
    pub async fn run_sql_checked(
        &self,
        query: &str,
        params: Vec<ScalarValue>,
        name: Option<QualifiedName>,
        check: &InputCheck<'_>,
        scope: Option<Arc<dyn Scope>>,
    ) -> Result<Outcome> {
        let prepared = self.prepare_sql(query, params, check, scope).await?;
        self.run_prepared(prepared, name).await
    }

    /// Plans a SQL query without running it: the schema of its result and of its parameters (`$1`, `$2`, …, of
    /// type Null where the planner cannot tell).
    pub async fn describe_sql(&self, query: &str, scope: Option<Arc<dyn Scope>>) -> Result<(SchemaRef, SchemaRef)> {
        let df = self.plan_sql(query, scope).await?;
        let types = df.logical_plan().get_parameter_types()?;
        let fields = (1..=types.len()).map(|i| {
            let data_type = types.get(&format!("${i}")).cloned().flatten().unwrap_or(DataType::Null);
            Field::new(format!("${i}"), data_type, true)
        });
        let parameters = Arc::new(Schema::new(fields.collect::<Vec<_>>()));
        Ok((Arc::new(df.schema().as_arrow().clone()), parameters))
    }

    async fn run_prepared(
        &self,
        (key, lineage, work): (Option<CacheKey>, Lineage, Work),
        name: Option<QualifiedName>,
    ) -> Result<Outcome> {
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
            return self.prepare_sql(query, Vec::new(), check, scope).await;
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
                Work::Plan(join::plan(&self.ctx, &self.store, &sources[0], &sources[1], &spec)?)
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
                    time_column: time_column.clone(),
                    every: every.clone(),
                    aggregations: aggregations.as_ref().map(|a| a.0.clone()),
                    aggregation_func: *aggregation_func,
                    by: by.clone(),
                };
                resample::check(&sources[0].meta.schema, &spec)?;
                Work::Resample(spec, sources[0].clone())
            }
            _ => Work::Native(Box::new(op.clone()), sources[0].clone(), None),
        };
        Ok((key, lineage, work))
    }

    /// Computes a native op over its input into a new flight's writer: ops that keep rows in place stream the
    /// input batch by batch; ops that move rows load it (under a reservation) and stream their output.
    async fn compute_native(
        &self,
        op: Op,
        source: Flight,
        predicate: Option<Arc<dyn PhysicalExpr>>,
    ) -> Result<FlightWriter> {
        let schema = Arc::clone(&source.meta.schema);
        let read = |range, projection| self.store.read(&source, range, projection);
        match op {
            Op::Slice { offset, length, .. } => {
                let rows = read(Some((offset, length.unwrap_or(u64::MAX))), None);
                self.stream_into(schema, rows, Ok).await
            }
            Op::Head { num_rows, .. } => self.stream_into(schema, read(Some((0, num_rows)), None), Ok).await,
            Op::Select { columns, .. } => {
                let kept = ops::select(&schema, &columns.names())?;
                let projected = Arc::new(schema.project(&kept)?);
                self.stream_into(projected, read(None, Some(kept)), Ok).await
            }
            Op::DropColumns { columns, .. } => {
                let kept = ops::drop_columns(&schema, &columns.names())?;
                let projected = Arc::new(schema.project(&kept)?);
                self.stream_into(projected, read(None, Some(kept)), Ok).await
            }
            Op::RenameColumns { names, .. } => {
                let renamed = ops::rename_columns(&schema, &names)?;
                let out = Arc::clone(&renamed);
                self.stream_into(out, read(None, None), move |b| {
                    let options = RecordBatchOptions::new().with_row_count(Some(b.num_rows()));
                    Ok(RecordBatch::try_new_with_options(
                        Arc::clone(&renamed),
                        b.columns().to_vec(),
                        &options,
                    )?)
                })
                .await
            }
            Op::Filter { .. } => {
                let physical = predicate.ok_or_else(|| Error::internal("filter without a predicate"))?;
                self.stream_into(schema, read(None, None), move |b| {
                    let mask = physical.evaluate(&b)?.into_array(b.num_rows())?;
                    ops::apply_mask(&b, &mask)
                })
                .await
            }
            Op::Take { indices, .. } => {
                let scratch = self.store.scratch(indices.len().saturating_mul(16)).await?;
                let loaded = self.store.load(&source).await?;
                self.emit_into(Arc::clone(&schema), move |emit| {
                    let _scratch = scratch;
                    ops::take(&schema, &loaded.batches, &indices, emit)
                })
                .await
            }
            Op::Shuffle { seed, .. } => {
                let scratch = self.store.scratch(source.meta.num_rows as usize * 16).await?;
                let loaded = self.store.load(&source).await?;
                self.emit_into(Arc::clone(&schema), move |emit| {
                    let _scratch = scratch;
                    ops::shuffle(&schema, &loaded.batches, seed, emit)
                })
                .await
            }
            Op::SortBy {
                keys, null_placement, ..
            } => {
                let keys = keys.keys();
                // In memory when the sort's working memory fits the budget now; otherwise DataFusion's sort,
                // which takes memory batch by batch and spills to disk. (Waiting for the background writer to make
                // room for a whole in-memory sort made a 10M-row sort at a full budget 30 % slower than that.)
                let room = match self.store.scratch_now(source.meta.num_rows as usize * 40) {
                    Some(scratch) => self.store.load(&source).await.map(|loaded| (scratch, loaded)),
                    None => Err(Error::ResourceExhausted("no room for an in-memory sort now".into())),
                };
                let (scratch, loaded) = match room {
                    Ok(room) => room,
                    Err(Error::ResourceExhausted(_)) => {
                        let df = self.external_sort(&source, &keys, null_placement)?;
                        let rows = Box::pin(df.execute_stream().await?.map_err(Error::from));
                        let mut writer = self.store.derived_writer(schema).leave_room_for_queries();
                        return Self::drain_into(&mut writer, rows, Ok).await.map(|()| writer);
                    }
                    Err(e) => return Err(e),
                };
                self.emit_into(Arc::clone(&schema), move |emit| {
                    let _scratch = scratch;
                    ops::sort_by(&schema, &loaded.batches, &keys, null_placement, emit)
                })
                .await
            }
            Op::Sql { .. } | Op::Join { .. } | Op::Resample { .. } => {
                Err(Error::internal("planned ops are not native"))
            }
        }
    }

    /// `sort_by` as a DataFusion plan, for inputs too large to sort in memory: the sort spills, and the row number
    /// as the last key keeps it stable.
    fn external_sort(&self, source: &Flight, keys: &[SortKey], null_placement: NullPlacement) -> Result<DataFrame> {
        use datafusion::common::Column;
        use datafusion::logical_expr::{Expr, SortExpr};
        let schema = &source.meta.schema;
        let column = |name: &str| Expr::Column(Column::new_unqualified(name));
        let mut order = Vec::with_capacity(keys.len() + 1);
        for key in keys {
            let (name, direction) = key.parts();
            schema
                .index_of(name)
                .map_err(|_| Error::invalid(format!("no column named {name:?}")))?;
            order.push(SortExpr::new(
                column(name),
                direction == Order::Ascending,
                null_placement == NullPlacement::AtStart,
            ));
        }
        order.push(SortExpr::new(column(scan::ROW_NUMBER), true, false));
        let table = FlightTable::new(self.store.clone(), source.clone()).with_row_numbers();
        let columns: Vec<Expr> = schema.fields().iter().map(|f| column(f.name())).collect();
        Ok(self.ctx.read_table(Arc::new(table))?.sort(order)?.select(columns)?)
    }

    /// Pushes every batch of `rows`, passed through `map`, into a new derived flight's writer.
    async fn stream_into(
        &self,
        schema: SchemaRef,
        rows: crate::store::RowStream,
        mut map: impl FnMut(RecordBatch) -> Result<RecordBatch>,
    ) -> Result<FlightWriter> {
        let mut writer = self.store.derived_writer(schema);
        Self::drain_into(&mut writer, rows, &mut map).await?;
        Ok(writer)
    }

    async fn drain_into(
        writer: &mut FlightWriter,
        mut rows: crate::store::RowStream,
        mut map: impl FnMut(RecordBatch) -> Result<RecordBatch>,
    ) -> Result<()> {
        while let Some(batch) = rows.next().await {
            writer.push(map(batch?)?).await?;
        }
        Ok(())
    }

    /// Runs `produce` off the async workers (sorting or gathering millions of rows takes a while) and pushes each
    /// batch it emits into a new derived flight's writer as it comes. If the writer fails or the request goes away,
    /// the producer's next emit fails and it stops.
    async fn emit_into(
        &self,
        schema: SchemaRef,
        produce: impl FnOnce(&mut ops::Emit<'_>) -> Result<()> + Send + 'static,
    ) -> Result<FlightWriter> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<RecordBatch>(2);
        let task = tokio::task::spawn_blocking(move || {
            let mut emit = |batch: RecordBatch| {
                tx.blocking_send(batch)
                    .map_err(|_| Error::Cancelled("the result is no longer wanted".into()))
            };
            produce(&mut emit)
        });
        let mut writer = self.store.derived_writer(schema);
        while let Some(batch) = rx.recv().await {
            writer.push(batch).await?;
        }
        task.await
            .map_err(|e| Error::internal(format!("native op task failed: {e}")))??;
        Ok(writer)
    }

    async fn prepare_sql(
        &self,
        query: &str,
        params: Vec<ScalarValue>,
        check: &InputCheck<'_>,
        scope: Option<Arc<dyn Scope>>,
    ) -> Result<(Option<CacheKey>, Lineage, Work)> {
        let df = self.plan_sql(query, scope).await?;
        let shown: Vec<String> = params.iter().map(ScalarValue::to_string).collect();
        let df = bind(df, params)?;
        let plan = df.clone().into_optimized_plan()?;
        let (canonical, inputs, volatile) = canonicalize(plan)?;
        check(&inputs)?;
        let key = (!volatile).then(|| CacheKey::of("sql", &canonical));
        let params = match shown.is_empty() {
            true => serde_json::json!({ "query": query }),
            false => serde_json::json!({ "query": query, "params": shown }),
        };
        let lineage = Lineage {
            op: "sql".to_string(),
            params,
            inputs,
        };
        Ok((key, lineage, Work::Plan(df)))
    }

    /// Parses and plans a read-only query in `scope`; `?` placeholders become `$1`, `$2`, … in order.
    async fn plan_sql(&self, query: &str, scope: Option<Arc<dyn Scope>>) -> Result<DataFrame> {
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
        let mut statement = state.sql_to_statement(query, &dialect)?;
        if !is_query(&statement) {
            return Err(Error::invalid(
                "flightbay SQL is read-only: send a query (SELECT, WITH, VALUES, EXPLAIN); uploads and actions change data",
            ));
        }
        number_placeholders(&mut statement);
        let plan = state.statement_to_plan(statement).await?;
        options.verify_plan(&plan)?;
        Ok(DataFrame::new(state, plan))
    }

    /// Streams the work's batches into a new flight and publishes it.
    async fn publish(&self, work: Work, lineage: Lineage, name: Option<&QualifiedName>) -> Result<Flight> {
        let df = match work {
            Work::Native(op, source, predicate) => {
                let writer = self.compute_native(*op, source, predicate).await?;
                let pending = writer.finish().await?;
                return self.store.publish_derived(pending, lineage, name).await;
            }
            Work::Resample(spec, source) => resample::plan(&self.ctx, &self.store, &source, &spec).await?,
            Work::Plan(df) => df,
        };
        let mut stream: SendableRecordBatchStream = df.execute_stream().await?;
        let mut writer = self.store.derived_writer(stream.schema()).leave_room_for_queries();
        while let Some(batch) = stream.next().await {
            writer.push(batch?).await?;
        }
        let pending = writer.finish().await?;
        self.store.publish_derived(pending, lineage, name).await
    }
}

/// Every scalar function SQL can call, with the section of DataFusion's documentation it is listed in ("Math
/// Functions", "String Functions", …), sorted by name.
pub fn function_names() -> Vec<(String, Option<&'static str>)> {
    let state = SessionContext::new().state();
    let mut names: Vec<_> = state
        .scalar_functions()
        .iter()
        .map(|(name, udf)| (name.clone(), udf.documentation().map(|d| d.doc_section.label)))
        .collect();
    names.sort();
    names
}

/// Binds `params` to the placeholders `$1`…`$n` of `df`: exactly one value each, cast to the type the planner
/// gave the placeholder (INVALID_ARGUMENT when the count is wrong or a value does not cast).
fn bind(df: DataFrame, params: Vec<ScalarValue>) -> Result<DataFrame> {
    let types = df.logical_plan().get_parameter_types()?;
    if types.len() != params.len() {
        return Err(Error::invalid(format!(
            "the query has {} parameter(s) but {} value(s) were bound",
            types.len(),
            params.len()
        )));
    }
    if params.is_empty() {
        return Ok(df);
    }
    let mut values = Vec::with_capacity(params.len());
    for (i, value) in params.into_iter().enumerate() {
        let placeholder = format!("${}", i + 1);
        let expected = types.get(&placeholder).ok_or_else(|| {
            Error::invalid(format!(
                "the query's placeholders must be numbered $1 to ${} (or written as ?); {placeholder} is missing",
                types.len()
            ))
        })?;
        values.push(match expected {
            Some(data_type) if *data_type != value.data_type() && !value.is_null() => {
                value.cast_to(data_type).map_err(|e| {
                    Error::invalid(format!(
                        "parameter {placeholder}: {value:?} is not a valid {data_type}: {}",
                        e.strip_backtrace()
                    ))
                })?
            }
            Some(data_type) if value.is_null() => ScalarValue::try_from(data_type)?,
            _ => value,
        });
    }
    Ok(df.with_param_values(values)?)
}

/// Renames `?` placeholders to `$1`, `$2`, … in the order they appear (DataFusion binds values by number).
fn number_placeholders(statement: &mut datafusion::sql::parser::Statement) {
    use datafusion::sql::sqlparser::ast::{Expr, Value, visit_expressions_mut};
    let datafusion::sql::parser::Statement::Statement(statement) = statement else {
        return;
    };
    let mut n = 0;
    let _ = visit_expressions_mut(statement.as_mut(), |expr| {
        if let Expr::Value(v) = expr
            && let Value::Placeholder(p) = &mut v.value
            && p == "?"
        {
            n += 1;
            *p = format!("${n}");
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
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
