//! [`FlightScanExec`]: DataFusion's scan of one flight. Each partition is a contiguous row range read through the
//! store's one read API ([`FlightStore::read`]), so SQL over a flight works the same whether its rows are in memory,
//! on disk or both, and the flight's files stay on disk until the scan is done, even if the flight is dropped
//! meanwhile.

use std::sync::Arc;

use arrow::array::{RecordBatchOptions, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Statistics};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::statistics::StatisticsArgs;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties};
use futures::StreamExt;

use crate::store::{Flight, FlightStore};

/// Rows below which a flight is scanned as one partition.
const MIN_PARTITION_ROWS: u64 = 65_536;

/// Name of the column [`FlightTable::with_row_numbers`](super::catalog::FlightTable::with_row_numbers) adds.
pub const ROW_NUMBER: &str = "__flightbay_row";

/// Scans one flight in up to `target_partitions` row ranges, with a projection and an optional row limit.
#[derive(Debug)]
pub struct FlightScanExec {
    store: FlightStore,
    flight: Flight,
    /// Columns of the flight to read.
    projection: Option<Vec<usize>>,
    /// Where in the output the row number goes, if it was asked for.
    row_number: Option<usize>,
    schema: SchemaRef,
    ranges: Vec<(u64, u64)>,
    limit: Option<usize>,
    properties: Arc<PlanProperties>,
}

impl FlightScanExec {
    /// A scan of `flight` in at most `partitions` contiguous row ranges. With `row_numbers`, the table has one more
    /// column after the flight's, [`ROW_NUMBER`] (the row's position in the flight, from 0), which `projection` may
    /// select like any other.
    pub fn try_new(
        store: FlightStore,
        flight: Flight,
        projection: Option<&Vec<usize>>,
        row_numbers: bool,
        partitions: usize,
        limit: Option<usize>,
    ) -> datafusion::error::Result<Self> {
        let width = flight.meta.schema.fields().len();
        let wanted: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..width + usize::from(row_numbers)).collect(),
        };
        let row_number = wanted.iter().position(|&c| c == width);
        let columns: Vec<usize> = wanted.iter().copied().filter(|&c| c < width).collect();
        let mut fields: Vec<_> = columns
            .iter()
            .map(|&c| Arc::clone(&flight.meta.schema.fields()[c]))
            .collect();
        if let Some(at) = row_number {
            fields.insert(at, Arc::new(Field::new(ROW_NUMBER, DataType::UInt64, false)));
        }
        let schema = Arc::new(Schema::new_with_metadata(fields, flight.meta.schema.metadata().clone()));
        let projection = (projection.is_some() || row_numbers).then_some(columns);
        let rows = flight.meta.num_rows;
        let wanted = usize::try_from(rows.div_ceil(MIN_PARTITION_ROWS)).unwrap_or(usize::MAX);
        let n = partitions.clamp(1, wanted.max(1)) as u64;
        let ranges = (0..n)
            .map(|i| {
                let (start, end) = (rows * i / n, rows * (i + 1) / n);
                (start, end - start)
            })
            .collect::<Vec<_>>();
        let properties = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(ranges.len()),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(Self {
            store,
            flight,
            projection,
            row_number,
            schema,
            ranges,
            limit,
            properties: Arc::new(properties),
        })
    }
}

impl DisplayAs for FlightScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "FlightScanExec: flight={}, state={}, partitions={}",
            self.flight.id(),
            self.flight.state(),
            self.ranges.len()
        )?;
        if let Some(p) = &self.projection {
            write!(f, ", projection={p:?}")?;
        }
        if let Some(l) = self.limit {
            write!(f, ", limit={l}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for FlightScanExec {
    fn name(&self) -> &str {
        "FlightScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> datafusion::error::Result<TreeNodeRecursion>,
    ) -> datafusion::error::Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> datafusion::error::Result<SendableRecordBatchStream> {
        let range = *self
            .ranges
            .get(partition)
            .ok_or_else(|| DataFusionError::Internal(format!("FlightScanExec has no partition {partition}")))?;
        let range = match self.limit {
            Some(limit) => (range.0, range.1.min(limit as u64)),
            None => range,
        };
        let schema = Arc::clone(&self.schema);
        let row_number = self.row_number;
        let mut next_row = range.0;
        let batches = self
            .store
            .read(&self.flight, Some(range), self.projection.clone())
            .map(move |batch| {
                let batch = batch.map_err(|e| DataFusionError::External(Box::new(e)))?;
                let rows = batch.num_rows();
                let mut columns = batch.columns().to_vec();
                if let Some(at) = row_number {
                    let numbers = UInt64Array::from_iter_values(next_row..next_row + rows as u64);
                    columns.insert(at, Arc::new(numbers));
                }
                next_row += rows as u64;
                if row_number.is_none() && batch.schema() == schema {
                    return Ok(batch);
                }
                // The columns under the scan's schema (batches may carry other field or schema metadata).
                let options = RecordBatchOptions::new().with_row_count(Some(rows));
                Ok(RecordBatch::try_new_with_options(
                    Arc::clone(&schema),
                    columns,
                    &options,
                )?)
            });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            batches,
        )))
    }

    fn statistics_from_inputs(
        &self,
        _input_stats: &[Arc<Statistics>],
        args: &StatisticsArgs,
    ) -> datafusion::error::Result<Arc<Statistics>> {
        let limited = |(_, length): &(u64, u64)| self.limit.map_or(*length, |l| (*length).min(l as u64));
        let rows: u64 = match args.partition() {
            Some(p) => self.ranges.get(p).map_or(0, limited),
            None => self.ranges.iter().map(limited).sum(),
        };
        let rows = usize::try_from(rows).unwrap_or(usize::MAX);
        let mut stats = Statistics::new_unknown(&self.schema);
        stats.num_rows = Precision::Exact(rows);
        Ok(Arc::new(stats))
    }
}
