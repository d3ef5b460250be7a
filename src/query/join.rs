//! `join` with pyarrow's `Table.join` semantics, planned with DataFusion: left columns first (key columns
//! coalesced from both sides for right/full outer joins when `coalesce_keys`), then the right side's other
//! columns; clashing names take `left_suffix` / `right_suffix`.

use std::sync::Arc;

use datafusion::common::{Column, JoinType as DfJoinType};
use datafusion::logical_expr::Expr;
use datafusion::prelude::{DataFrame, SessionContext, coalesce};

use crate::error::{Error, Result};
use crate::protocol::command::JoinType;
use crate::query::catalog::FlightTable;
use crate::store::{Flight, FlightStore};

/// A validated join request.
#[derive(Debug)]
pub struct Join<'a> {
    /// Left key columns.
    pub keys: Vec<String>,
    /// Right key columns.
    pub right_keys: Vec<String>,
    /// pyarrow join type.
    pub join_type: JoinType,
    /// Suffix for clashing left names.
    pub left_suffix: Option<&'a str>,
    /// Suffix for clashing right names.
    pub right_suffix: Option<&'a str>,
    /// Whether key columns appear once.
    pub coalesce_keys: bool,
}

fn qualified(side: &str, name: &str) -> Expr {
    Expr::Column(Column::new(Some(side), name))
}

/// Builds the join plan of `left` and `right`.
pub fn plan(
    ctx: &SessionContext,
    store: &FlightStore,
    left: &Flight,
    right: &Flight,
    j: &Join<'_>,
) -> Result<DataFrame> {
    let (ls, rs) = (&left.meta.schema, &right.meta.schema);
    if j.keys.is_empty() || j.keys.len() != j.right_keys.len() {
        return Err(Error::invalid(format!(
            "join needs the same number of left and right keys, got {:?} and {:?}",
            j.keys, j.right_keys
        )));
    }
    for (k, schema, side) in j
        .keys
        .iter()
        .map(|k| (k, ls, "left"))
        .chain(j.right_keys.iter().map(|k| (k, rs, "right")))
    {
        schema
            .index_of(k)
            .map_err(|_| Error::invalid(format!("no {side} key column named {k:?}")))?;
    }
    let df_type = match j.join_type {
        JoinType::Inner => DfJoinType::Inner,
        JoinType::LeftOuter => DfJoinType::Left,
        JoinType::RightOuter => DfJoinType::Right,
        JoinType::FullOuter => DfJoinType::Full,
        JoinType::LeftSemi => DfJoinType::LeftSemi,
        JoinType::RightSemi => DfJoinType::RightSemi,
        JoinType::LeftAnti => DfJoinType::LeftAnti,
        JoinType::RightAnti => DfJoinType::RightAnti,
    };
    let l = ctx
        .read_table(Arc::new(FlightTable::new(store.clone(), left.clone())))?
        .alias("l")?;
    let r = ctx
        .read_table(Arc::new(FlightTable::new(store.clone(), right.clone())))?
        .alias("r")?;
    let on: Vec<Expr> = j
        .keys
        .iter()
        .zip(&j.right_keys)
        .map(|(a, b)| qualified("l", a).eq(qualified("r", b)))
        .collect();
    let joined = l.join_on(r, df_type, on)?;

    let projection: Vec<(Expr, String)> = match j.join_type {
        JoinType::LeftSemi | JoinType::LeftAnti => ls
            .fields()
            .iter()
            .map(|f| (qualified("l", f.name()), f.name().clone()))
            .collect(),
        JoinType::RightSemi | JoinType::RightAnti => rs
            .fields()
            .iter()
            .map(|f| (qualified("r", f.name()), f.name().clone()))
            .collect(),
        _ => {
            let right_cols: Vec<&String> = rs
                .fields()
                .iter()
                .map(|f| f.name())
                .filter(|n| !(j.coalesce_keys && j.right_keys.contains(n)))
                .collect();
            let left_cols: Vec<&String> = ls.fields().iter().map(|f| f.name()).collect();
            let mut out = Vec::new();
            for name in &left_cols {
                let expr = match j.keys.iter().position(|k| k == *name) {
                    Some(p) if j.coalesce_keys && matches!(j.join_type, JoinType::RightOuter | JoinType::FullOuter) => {
                        coalesce(vec![qualified("l", name), qualified("r", &j.right_keys[p])])
                    }
                    _ => qualified("l", name),
                };
                let clash = right_cols.contains(name);
                out.push((expr, suffixed(name, clash, j.left_suffix)));
            }
            for name in &right_cols {
                let clash = left_cols.contains(name);
                out.push((qualified("r", name), suffixed(name, clash, j.right_suffix)));
            }
            out
        }
    };
    let mut seen = std::collections::HashSet::new();
    for (_, name) in &projection {
        if !seen.insert(name.as_str()) {
            return Err(Error::invalid(format!(
                "join output would have two columns named {name:?}; pass left_suffix / right_suffix"
            )));
        }
    }
    Ok(joined.select(projection.into_iter().map(|(e, n)| e.alias(n)).collect::<Vec<_>>())?)
}

fn suffixed(name: &str, clash: bool, suffix: Option<&str>) -> String {
    match (clash, suffix) {
        (true, Some(s)) => format!("{name}{s}"),
        _ => name.to_string(),
    }
}
