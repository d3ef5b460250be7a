//! [`Command`]: the bytes of a `CMD` flight descriptor.
//!
//! # Format
//!
//! A CMD descriptor is UTF-8. If its first non-blank character is `{` it is a JSON object whose `"op"` key picks the
//! request; anything else is a SQL query. Every op except `put` and `partition` derives a **new flight**; an optional
//! `"name"` (and `"namespace"`) key names the result (moving the name if it exists).
//!
//! ```text
//! SELECT sensor, avg(value) FROM trips GROUP BY sensor
//! {"op":"sql","query":"SELECT * FROM sales.trips WHERE fare > 10","name":"big_fares"}
//! {"op":"take","source":42,"indices":[0,5,9]}
//! {"op":"slice","source":"trips","offset":10,"length":100}
//! {"op":"filter","source":42,"predicate":"fare > 10 AND city = 'Oslo'"}
//! {"op":"sort_by","source":"trips","keys":[["fare","descending"],"city"],"null_placement":"at_end"}
//! {"op":"select","source":42,"columns":["a","b"]}
//! {"op":"drop_columns","source":42,"columns":["b"]}
//! {"op":"rename_columns","source":42,"names":{"a":"x"}}          (or a list with one new name per column)
//! {"op":"head","source":42,"num_rows":5}
//! {"op":"join","source":"left","right":"right","keys":"id","right_keys":"rid","join_type":"left outer"}
//! {"op":"resample","source":"ticks","time_column":"ts","every":"1h","aggregations":{"price":"mean"},"by":["sym"]}
//! {"op":"resample","source":"ticks","time_col":"ts","rule":"15min","aggregation_func":"sum"}
//! {"op":"shuffle","source":42,"seed":7}
//! {"op":"partition","source":42,"parts":8}                      (FlightInfo with 8 endpoints; no new flight)
//! {"op":"put","name":"trips","namespace":"sales","mode":"append"} (DoPut only)
//! ```
//!
//! `source` is a flight id (`42`) or a name (`"trips"`, `"sales.trips"`, `"f42"`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::protocol::reference::Source;
use crate::store::{FlightId, FlightRef, PutMode, QualifiedName};

/// A parsed CMD descriptor.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// DoPut target: where the upload goes and what happens if the name exists.
    Put {
        /// Target name.
        name: QualifiedName,
        /// Put mode; `None` means the server default.
        mode: Option<PutMode>,
    },
    /// Row-range endpoints over an existing flight.
    Partition {
        /// The flight.
        source: FlightRef,
        /// Number of endpoints (1..=1024).
        parts: u32,
    },
    /// An op that derives a new flight.
    Derive {
        /// The op.
        op: Box<Op>,
        /// Name for the result, if any.
        name: Option<QualifiedName>,
    },
}

/// Sort order of one key.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Smallest first.
    #[serde(alias = "asc")]
    Ascending,
    /// Largest first.
    #[serde(alias = "desc")]
    Descending,
}

/// Where nulls go in `sort_by` (pyarrow's `null_placement`).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NullPlacement {
    /// Nulls first.
    AtStart,
    /// Nulls last (pyarrow's default).
    #[default]
    AtEnd,
}

/// One sort key: `"col"` (ascending) or `["col", "descending"]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(untagged)]
pub enum SortKey {
    /// Ascending by this column.
    Column(String),
    /// Column and order.
    Ordered(String, Order),
}

impl SortKey {
    /// Column and order.
    pub fn parts(&self) -> (&str, Order) {
        match self {
            SortKey::Column(c) => (c, Order::Ascending),
            SortKey::Ordered(c, o) => (c, *o),
        }
    }
}

impl Serialize for SortKey {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let (c, o) = self.parts();
        (c, o).serialize(s)
    }
}

/// `sort_by` keys: one column name or a list of keys (pyarrow's `sorting`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(untagged)]
pub enum SortKeys {
    /// One column, ascending.
    One(String),
    /// Several keys.
    Many(Vec<SortKey>),
}

impl SortKeys {
    /// The keys as a list.
    pub fn keys(&self) -> Vec<SortKey> {
        match self {
            SortKeys::One(c) => vec![SortKey::Column(c.clone())],
            SortKeys::Many(k) => k.clone(),
        }
    }
}

impl Serialize for SortKeys {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.keys().serialize(s)
    }
}

/// One column name or several.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(untagged)]
pub enum Columns {
    /// One column.
    One(String),
    /// Several columns.
    Many(Vec<String>),
}

impl Columns {
    /// The names as a list.
    pub fn names(&self) -> Vec<String> {
        match self {
            Columns::One(c) => vec![c.clone()],
            Columns::Many(c) => c.clone(),
        }
    }
}

impl Serialize for Columns {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.names().serialize(s)
    }
}

/// `rename_columns` argument: a new name for every column in order, or a map from old to new names.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RenameSpec {
    /// One new name per column.
    List(Vec<String>),
    /// Old name → new name; other columns keep theirs.
    Map(BTreeMap<String, String>),
}

/// Join type, spelled as in `pyarrow.Table.join`.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JoinType {
    /// Rows with a match on both sides.
    #[serde(rename = "inner")]
    Inner,
    /// All left rows (pyarrow's default).
    #[default]
    #[serde(rename = "left outer")]
    LeftOuter,
    /// All right rows.
    #[serde(rename = "right outer")]
    RightOuter,
    /// All rows of both.
    #[serde(rename = "full outer")]
    FullOuter,
    /// Left rows with a match.
    #[serde(rename = "left semi")]
    LeftSemi,
    /// Right rows with a match.
    #[serde(rename = "right semi")]
    RightSemi,
    /// Left rows without a match.
    #[serde(rename = "left anti")]
    LeftAnti,
    /// Right rows without a match.
    #[serde(rename = "right anti")]
    RightAnti,
}

/// Aggregation function of `resample`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Aggregation {
    /// Arithmetic mean (`avg`).
    #[serde(alias = "avg")]
    Mean,
    /// Sum.
    Sum,
    /// Minimum.
    Min,
    /// Maximum.
    Max,
    /// Count of non-null values.
    Count,
    /// First value in time order.
    First,
    /// Last value in time order.
    Last,
    /// Median.
    Median,
}

/// Column → aggregation pairs of `resample`, kept in the order the client wrote them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Aggregations(pub Vec<(String, Aggregation)>);

impl<'de> Deserialize<'de> for Aggregations {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Aggregations;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object mapping column names to aggregations")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Aggregations, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Aggregation>()? {
                    if out.iter().any(|(c, _)| *c == k) {
                        return Err(serde::de::Error::custom(format!("column {k:?} appears twice")));
                    }
                    out.push((k, v));
                }
                Ok(Aggregations(out))
            }
        }
        d.deserialize_map(Visit)
    }
}

impl Serialize for Aggregations {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl Serialize for Source {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match &self.0 {
            FlightRef::Id(id) => id.0.serialize(s),
            FlightRef::Name(n) => n.to_string().serialize(s),
        }
    }
}

/// An op that derives a new flight. Serialized (with sources resolved to ids) it is the op's canonical form, used
/// in lineage and in the result-cache key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    /// A SQL query over flights (`trips`, `sales.trips`, `f42`).
    Sql {
        /// The query.
        query: String,
    },
    /// Rows at the given positions, in that order.
    Take {
        /// Input flight.
        source: Source,
        /// Row positions (0-based).
        indices: Vec<u64>,
    },
    /// A contiguous range of rows.
    Slice {
        /// Input flight.
        source: Source,
        /// First row.
        #[serde(default)]
        offset: u64,
        /// Number of rows; `None` means to the end.
        #[serde(default)]
        length: Option<u64>,
    },
    /// Rows where a SQL predicate holds.
    Filter {
        /// Input flight.
        source: Source,
        /// SQL boolean expression over the columns.
        predicate: String,
    },
    /// Rows sorted by keys (stable).
    SortBy {
        /// Input flight.
        source: Source,
        /// Sort keys.
        keys: SortKeys,
        /// Where nulls go.
        #[serde(default)]
        null_placement: NullPlacement,
    },
    /// Only these columns, in this order.
    Select {
        /// Input flight.
        source: Source,
        /// Columns to keep.
        columns: Columns,
    },
    /// All columns but these.
    DropColumns {
        /// Input flight.
        source: Source,
        /// Columns to drop.
        columns: Columns,
    },
    /// The same data with new column names.
    RenameColumns {
        /// Input flight.
        source: Source,
        /// New names.
        names: RenameSpec,
    },
    /// The first rows.
    Head {
        /// Input flight.
        source: Source,
        /// How many rows (default 5).
        #[serde(default = "default_head")]
        num_rows: u64,
    },
    /// A join of two flights, as `pyarrow.Table.join`.
    Join {
        /// Left flight.
        source: Source,
        /// Right flight.
        right: Source,
        /// Left key columns.
        keys: Columns,
        /// Right key columns (default: same as `keys`).
        #[serde(default)]
        right_keys: Option<Columns>,
        /// Join type (default `left outer`).
        #[serde(default)]
        join_type: JoinType,
        /// Suffix for clashing left column names.
        #[serde(default)]
        left_suffix: Option<String>,
        /// Suffix for clashing right column names.
        #[serde(default)]
        right_suffix: Option<String>,
        /// Whether key columns appear once (default true).
        #[serde(default = "default_true")]
        coalesce_keys: bool,
    },
    /// Time-series downsampling into fixed bins labelled by their left edge; empty bins are omitted.
    Resample {
        /// Input flight.
        source: Source,
        /// Timestamp column (alias `time_col`).
        #[serde(alias = "time_col")]
        time_column: String,
        /// Bin width such as `1h`, `15min`, `1D`, `30s` (alias `rule`).
        #[serde(alias = "rule")]
        every: String,
        /// Per-column aggregations, in output order.
        #[serde(default)]
        aggregations: Option<Aggregations>,
        /// One aggregation applied to every other non-group column.
        #[serde(default)]
        aggregation_func: Option<Aggregation>,
        /// Group columns: one series per distinct value.
        #[serde(default)]
        by: Vec<String>,
    },
    /// All rows in a seeded random order (same seed, same order).
    Shuffle {
        /// Input flight.
        source: Source,
        /// Permutation seed.
        seed: u64,
    },
}

fn default_head() -> u64 {
    5
}

fn default_true() -> bool {
    true
}

impl Op {
    /// The op's wire name.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Sql { .. } => "sql",
            Op::Take { .. } => "take",
            Op::Slice { .. } => "slice",
            Op::Filter { .. } => "filter",
            Op::SortBy { .. } => "sort_by",
            Op::Select { .. } => "select",
            Op::DropColumns { .. } => "drop_columns",
            Op::RenameColumns { .. } => "rename_columns",
            Op::Head { .. } => "head",
            Op::Join { .. } => "join",
            Op::Resample { .. } => "resample",
            Op::Shuffle { .. } => "shuffle",
        }
    }

    /// The input references, in order (empty for `sql`, whose inputs come from its plan).
    pub fn sources_mut(&mut self) -> Vec<&mut Source> {
        match self {
            Op::Sql { .. } => vec![],
            Op::Join { source, right, .. } => vec![source, right],
            Op::Take { source, .. }
            | Op::Slice { source, .. }
            | Op::Filter { source, .. }
            | Op::SortBy { source, .. }
            | Op::Select { source, .. }
            | Op::DropColumns { source, .. }
            | Op::RenameColumns { source, .. }
            | Op::Head { source, .. }
            | Op::Resample { source, .. }
            | Op::Shuffle { source, .. } => vec![source],
        }
    }
}

impl Command {
    /// Parses CMD descriptor bytes.
    pub fn try_decode(bytes: &[u8]) -> Result<Self> {
        let text = std::str::from_utf8(bytes).map_err(|_| Error::invalid("command is not valid UTF-8"))?;
        let trimmed = text.trim_start();
        if trimmed.is_empty() {
            return Err(Error::invalid("empty command: send SQL text or a JSON op"));
        }
        if !trimmed.starts_with('{') {
            super::sql_depth::check("query", text)?;
            return Ok(Command::Derive {
                op: Box::new(Op::Sql {
                    query: text.to_string(),
                }),
                name: None,
            });
        }
        let mut value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| Error::invalid(format!("invalid JSON command: {e}")))?;
        let obj = value
            .as_object_mut()
            .ok_or_else(|| Error::invalid("JSON command must be an object"))?;
        let name = take_string(obj, "name")?;
        let namespace = take_string(obj, "namespace")?;
        let target = |name: Option<String>| -> Result<Option<QualifiedName>> {
            match (name, namespace.as_deref()) {
                (Some(n), ns) => QualifiedName::try_new(ns, &n).map(Some),
                (None, None) => Ok(None),
                (None, Some(_)) => Err(Error::invalid("\"namespace\" given without \"name\"")),
            }
        };
        match obj.get("op").and_then(|v| v.as_str()) {
            None => Err(Error::invalid("JSON command needs a string \"op\"")),
            Some("put") => {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                #[allow(dead_code)]
                struct Put {
                    op: String,
                    #[serde(default)]
                    mode: Option<PutMode>,
                }
                let put: Put =
                    serde_json::from_value(value).map_err(|e| Error::invalid(format!("invalid put: {e}")))?;
                let name = target(name)?.ok_or_else(|| Error::invalid("put needs a \"name\""))?;
                Ok(Command::Put { name, mode: put.mode })
            }
            Some("partition") => {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                #[allow(dead_code)]
                struct Partition {
                    op: String,
                    source: Source,
                    parts: u32,
                }
                let p: Partition =
                    serde_json::from_value(value).map_err(|e| Error::invalid(format!("invalid partition: {e}")))?;
                if !(1..=1024).contains(&p.parts) {
                    return Err(Error::invalid("partition \"parts\" must be between 1 and 1024"));
                }
                Ok(Command::Partition {
                    source: p.source.0,
                    parts: p.parts,
                })
            }
            Some(_) => {
                let op: Op = serde_json::from_value(value).map_err(|e| Error::invalid(format!("invalid op: {e}")))?;
                match &op {
                    Op::Sql { query } => super::sql_depth::check("query", query)?,
                    Op::Filter { predicate, .. } => super::sql_depth::check("predicate", predicate)?,
                    _ => {}
                }
                Ok(Command::Derive {
                    op: Box::new(op),
                    name: target(name)?,
                })
            }
        }
    }
}

fn take_string(obj: &mut serde_json::Map<String, serde_json::Value>, key: &str) -> Result<Option<String>> {
    match obj.remove(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(Error::invalid(format!("\"{key}\" must be a string, got {other}"))),
    }
}

/// Replaces every source of `op` by the id it resolved to (the form used in lineage and cache keys).
pub fn with_resolved_sources(mut op: Op, ids: &[FlightId]) -> Op {
    for (source, id) in op.sources_mut().into_iter().zip(ids) {
        *source = Source(FlightRef::Id(*id));
    }
    op
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Command> {
        Command::try_decode(s.as_bytes())
    }

    #[test]
    fn sql_text() {
        assert_eq!(
            parse("SELECT 1").unwrap(),
            Command::Derive {
                op: Box::new(Op::Sql {
                    query: "SELECT 1".into()
                }),
                name: None
            }
        );
        assert!(parse("   ").is_err());
        assert!(Command::try_decode(b"\xff").is_err());
    }

    #[test]
    fn ops_round_trip() {
        let cases = [
            r#"{"op":"take","source":42,"indices":[0,5,9]}"#,
            r#"{"op":"slice","source":"trips","offset":10,"length":100}"#,
            r#"{"op":"filter","source":42,"predicate":"fare > 10"}"#,
            r#"{"op":"sort_by","source":"trips","keys":[["fare","descending"],["city","ascending"]],"null_placement":"at_start"}"#,
            r#"{"op":"select","source":42,"columns":["a","b"]}"#,
            r#"{"op":"rename_columns","source":42,"names":{"a":"x"}}"#,
            r#"{"op":"head","source":42,"num_rows":3}"#,
            r#"{"op":"join","source":"l","right":"r","keys":["id"],"right_keys":["rid"],"join_type":"inner","left_suffix":null,"right_suffix":"_r","coalesce_keys":true}"#,
            r#"{"op":"resample","source":"ticks","time_column":"ts","every":"1h","aggregations":{"price":"mean"},"aggregation_func":null,"by":["sym"]}"#,
            r#"{"op":"shuffle","source":42,"seed":7}"#,
        ];
        for case in cases {
            let Command::Derive { op, name: None } = parse(case).unwrap() else {
                panic!("{case}")
            };
            let back = serde_json::to_string(&op).unwrap();
            let again: Op = serde_json::from_str(&back).unwrap();
            assert_eq!(*op, again, "{case} -> {back}");
        }
    }

    #[test]
    fn aliases_and_names() {
        let Command::Derive { op, name } =
            parse(r#"{"op":"resample","source":"t","time_col":"ts","rule":"15min","aggregation_func":"sum","name":"r","namespace":"x"}"#)
                .unwrap()
        else {
            panic!()
        };
        assert_eq!(name.unwrap().to_string(), "x.r");
        assert!(matches!(*op, Op::Resample { ref every, .. } if every == "15min"));
        let Command::Derive { op, .. } = parse(r#"{"op":"sort_by","source":1,"keys":"fare"}"#).unwrap() else {
            panic!()
        };
        assert_eq!(
            serde_json::to_value(&op).unwrap()["keys"],
            serde_json::json!([["fare", "ascending"]])
        );
    }

    #[test]
    fn put_and_partition() {
        assert_eq!(
            parse(r#"{"op":"put","name":"trips","namespace":"sales","mode":"append"}"#).unwrap(),
            Command::Put {
                name: QualifiedName::parse("sales.trips").unwrap(),
                mode: Some(PutMode::Append)
            }
        );
        assert_eq!(
            parse(r#"{"op":"partition","source":4,"parts":8}"#).unwrap(),
            Command::Partition {
                source: FlightRef::Id(FlightId(4)),
                parts: 8
            }
        );
    }

    #[test]
    fn bad_commands() {
        for bad in [
            "{",
            r#"{"source":1}"#,
            r#"{"op":"explode","source":1}"#,
            r#"{"op":"put","name":"t","mode":"sometimes"}"#,
            r#"{"op":"put"}"#,
            r#"{"op":"put","name":"f12"}"#,
            r#"{"op":"take","source":1,"indices":[-1]}"#,
            r#"{"op":"slice","source":1,"offset":-2}"#,
            r#"{"op":"take","source":1,"indices":[1],"extra":true}"#,
            r#"{"op":"partition","source":1,"parts":0}"#,
            r#"{"op":"resample","source":1,"time_column":"ts","every":"1h","aggregation_func":"mode"}"#,
        ] {
            assert!(matches!(parse(bad), Err(Error::InvalidArgument(_))), "{bad} accepted");
        }
    }
}
