//! `resample`: time-series downsampling into fixed bins with DataFusion's `date_bin`, following pandas'
//! `DataFrame.resample(rule, on=...).agg(...)`: bins are labelled by their left edge, aligned to midnight (UTC) of
//! the first timestamp's day (pandas' `origin="start_day"`), and empty bins are omitted.

use std::sync::Arc;

use arrow::array::AsArray;
use arrow::datatypes::{DataType, Int64Type, IntervalMonthDayNano, Schema, TimeUnit};
use datafusion::common::{Column, ScalarValue};
use datafusion::functions::expr_fn::date_bin;
use datafusion::functions_aggregate::expr_fn::{avg, count, max, median, min, sum};
use datafusion::functions_aggregate::first_last::{first_value_udaf, last_value_udaf};
use datafusion::logical_expr::expr::NullTreatment;
use datafusion::logical_expr::{Expr, ExprFunctionExt, SortExpr, cast, lit};
use datafusion::prelude::{DataFrame, SessionContext, coalesce};
use futures::StreamExt;

use crate::error::{Error, Result};
use crate::protocol::command::Aggregation;
use crate::query::catalog::FlightTable;
use crate::store::{Flight, FlightStore};

/// A resample request.
#[derive(Clone, Debug)]
pub struct Resample {
    /// Timestamp column.
    pub time_column: String,
    /// Bin width such as `15min`.
    pub every: String,
    /// Per-column aggregations, in output order.
    pub aggregations: Option<Vec<(String, Aggregation)>>,
    /// One aggregation for every value column.
    pub aggregation_func: Option<Aggregation>,
    /// Group columns.
    pub by: Vec<String>,
}

/// Parses a pandas-style frequency (`30s`, `15min`, `1h`, `1D`, `2W`, `500ms`, `10us`, `5ns`; also `T`/`H`/`S`
/// aliases) into nanoseconds.
pub fn parse_every(every: &str) -> Result<i64> {
    let s = every.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: i64 = if num.is_empty() { Ok(1) } else { num.parse() }
        .map_err(|_| Error::invalid(format!("bad resample interval {every:?}")))?;
    let unit_ns: i64 = match unit {
        "ns" | "N" => 1,
        "us" | "U" | "µs" => 1_000,
        "ms" | "L" => 1_000_000,
        "s" | "S" => 1_000_000_000,
        "min" | "T" | "m" => 60_000_000_000,
        "h" | "H" => 3_600_000_000_000,
        "D" | "d" => 86_400_000_000_000,
        "W" | "w" => 7 * 86_400_000_000_000,
        _ => {
            return Err(Error::invalid(format!(
                "bad resample interval {every:?}: use a number and one of ns, us, ms, s, min, h, D, W (e.g. \"15min\")"
            )));
        }
    };
    match n.checked_mul(unit_ns) {
        Some(v) if v > 0 => Ok(v),
        _ => Err(Error::invalid(format!(
            "resample interval {every:?} must be positive and fit in 292 years"
        ))),
    }
}

fn is_numeric(t: &DataType) -> bool {
    t.is_numeric() || matches!(t, DataType::Boolean)
}

fn aggregate(agg: Aggregation, column: &str, time_column: &str, t: &DataType) -> Result<Expr> {
    let c = || Expr::Column(Column::new_unqualified(column));
    let order = || {
        vec![SortExpr::new(
            Expr::Column(Column::new_unqualified(time_column)),
            true,
            false,
        )]
    };
    let numeric = |name: &str| -> Result<()> {
        if is_numeric(t) {
            Ok(())
        } else {
            Err(Error::invalid(format!(
                "cannot take the {name} of column {column:?} of type {t}"
            )))
        }
    };
    Ok(match agg {
        Aggregation::Mean => {
            numeric("mean")?;
            avg(c())
        }
        // pandas sums an all-null bin to 0
        Aggregation::Sum => {
            numeric("sum")?;
            coalesce(vec![sum(c()), lit(0i64)])
        }
        Aggregation::Median => {
            numeric("median")?;
            median(cast(c(), DataType::Float64))
        }
        Aggregation::Min => min(c()),
        Aggregation::Max => max(c()),
        Aggregation::Count => count(c()),
        // pandas' first/last skip nulls
        Aggregation::First => first_value_udaf()
            .call(vec![c()])
            .order_by(order())
            .null_treatment(NullTreatment::IgnoreNulls)
            .build()?,
        Aggregation::Last => last_value_udaf()
            .call(vec![c()])
            .order_by(order())
            .null_treatment(NullTreatment::IgnoreNulls)
            .build()?,
    }
    .alias(column))
}

/// The earliest timestamp of column `column`, floored to its day, in the column's unit (0 when there are no rows).
/// Reads only that column, from memory or disk.
async fn start_day(store: &FlightStore, flight: &Flight, column: usize, unit: TimeUnit) -> Result<i64> {
    let per_day: i64 = match unit {
        TimeUnit::Second => 86_400,
        TimeUnit::Millisecond => 86_400_000,
        TimeUnit::Microsecond => 86_400_000_000,
        TimeUnit::Nanosecond => 86_400_000_000_000,
    };
    let mut lowest: Option<i64> = None;
    let mut batches = store.read(flight, None, Some(vec![column]));
    while let Some(batch) = batches.next().await {
        let values = arrow::compute::cast(batch?.column(0), &DataType::Int64)?;
        if let Some(m) = arrow::compute::min(values.as_primitive::<Int64Type>()) {
            lowest = Some(lowest.map_or(m, |l| l.min(m)));
        }
    }
    Ok(lowest.map_or(0, |m| m.div_euclid(per_day) * per_day))
}

/// What [`check`] finds out about a valid request.
struct Checked {
    tcol: usize,
    unit: TimeUnit,
    tz: Option<Arc<str>>,
    every: i64,
    aggs: Vec<Expr>,
}

/// Validates `r` against the flight's schema (before any data is read, so a bad request fails fast and is not
/// cached).
pub fn check(schema: &Schema, r: &Resample) -> Result<()> {
    checked(schema, r).map(|_| ())
}

fn checked(schema: &Schema, r: &Resample) -> Result<Checked> {
    let tcol = schema
        .index_of(&r.time_column)
        .map_err(|_| Error::invalid(format!("no time column named {:?}", r.time_column)))?;
    let (unit, tz) = match schema.field(tcol).data_type() {
        DataType::Timestamp(unit, tz) => (*unit, tz.clone()),
        other => {
            return Err(Error::invalid(format!(
                "time column {:?} is {other}, not a timestamp",
                r.time_column
            )));
        }
    };
    let every = parse_every(&r.every)?;
    for b in &r.by {
        schema
            .index_of(b)
            .map_err(|_| Error::invalid(format!("no group column named {b:?}")))?;
    }
    let wanted: Vec<(String, Aggregation)> = match (&r.aggregations, r.aggregation_func) {
        (Some(list), None) => list.clone(),
        (None, Some(func)) => schema
            .fields()
            .iter()
            .filter(|f| *f.name() != r.time_column && !r.by.contains(f.name()))
            .filter(|f| {
                !matches!(func, Aggregation::Mean | Aggregation::Sum | Aggregation::Median) || is_numeric(f.data_type())
            })
            .map(|f| (f.name().clone(), func))
            .collect(),
        (Some(_), Some(_)) => {
            return Err(Error::invalid(
                "give either \"aggregations\" or \"aggregation_func\", not both",
            ));
        }
        (None, None) => {
            return Err(Error::invalid(
                "resample needs \"aggregations\" or \"aggregation_func\"",
            ));
        }
    };
    if wanted.is_empty() {
        return Err(Error::invalid("resample has no column to aggregate"));
    }
    let mut aggs = Vec::new();
    for (name, agg) in &wanted {
        let i = schema
            .index_of(name)
            .map_err(|_| Error::invalid(format!("no column named {name:?} to aggregate")))?;
        if *name == r.time_column || r.by.contains(name) {
            return Err(Error::invalid(format!(
                "column {name:?} is the time or a group column; it cannot be aggregated"
            )));
        }
        aggs.push(aggregate(*agg, name, &r.time_column, schema.field(i).data_type())?);
    }
    Ok(Checked {
        tcol,
        unit,
        tz,
        every,
        aggs,
    })
}

/// Builds the resample plan over `flight` (reading its time column once, for the first day).
pub async fn plan(ctx: &SessionContext, store: &FlightStore, flight: &Flight, r: &Resample) -> Result<DataFrame> {
    let Checked {
        tcol,
        unit,
        tz,
        every,
        aggs,
    } = checked(&flight.meta.schema, r)?;
    let origin = start_day(store, flight, tcol, unit).await?;
    let origin = match unit {
        TimeUnit::Second => ScalarValue::TimestampSecond(Some(origin), tz),
        TimeUnit::Millisecond => ScalarValue::TimestampMillisecond(Some(origin), tz),
        TimeUnit::Microsecond => ScalarValue::TimestampMicrosecond(Some(origin), tz),
        TimeUnit::Nanosecond => ScalarValue::TimestampNanosecond(Some(origin), tz),
    };
    let stride = ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(0, 0, every)));
    let bin = date_bin(
        lit(stride),
        Expr::Column(Column::new_unqualified(&r.time_column)),
        lit(origin),
    )
    .alias(&r.time_column);
    let mut groups: Vec<Expr> = r.by.iter().map(|b| Expr::Column(Column::new_unqualified(b))).collect();
    groups.push(bin);
    let order: Vec<SortExpr> =
        r.by.iter()
            .chain(std::iter::once(&r.time_column))
            .map(|c| SortExpr::new(Expr::Column(Column::new_unqualified(c)), true, false))
            .collect();
    let table = Arc::new(FlightTable::new(store.clone(), flight.clone()));
    Ok(ctx.read_table(table)?.aggregate(groups, aggs)?.sort(order)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(parse_every("1h").unwrap(), 3_600_000_000_000);
        assert_eq!(parse_every("15min").unwrap(), 900_000_000_000);
        assert_eq!(parse_every("1D").unwrap(), 86_400_000_000_000);
        assert_eq!(parse_every("30s").unwrap(), 30_000_000_000);
        assert_eq!(parse_every("500ms").unwrap(), 500_000_000);
        assert_eq!(parse_every("H").unwrap(), 3_600_000_000_000);
        for bad in ["", "0h", "1 parsec", "h1", "99999999999999999W"] {
            assert!(parse_every(bad).is_err(), "{bad}");
        }
    }
}
