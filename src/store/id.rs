//! [`FlightId`], the number that names one immutable flight forever, and [`SegmentId`], the name of one stored run
//! of rows (and of its file).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Identifier of one immutable flight.
///
/// Ids are assigned by the store in increasing order and are never reused within a data directory, so a result
/// computed from flight 7 stays correct for as long as flight 7 exists. In SQL a flight can be named `f7`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FlightId(pub u64);

impl fmt::Display for FlightId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FlightId {
    /// The SQL table name of this flight: `f<id>`.
    pub fn table_name(self) -> String {
        format!("f{}", self.0)
    }

    /// Parses `f<digits>`, the SQL table name form of an id.
    pub fn from_table_name(s: &str) -> Option<Self> {
        let digits = s.strip_prefix('f').or_else(|| s.strip_prefix('F'))?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok().map(FlightId)
    }
}

/// Identifier of a segment: rows that arrived or were computed together, stored (in memory, in a file or both) as
/// one unit and shared by every flight that contains them (an `append` makes a flight of its parent's segments and
/// one new segment).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SegmentId(uuid::Uuid);

impl SegmentId {
    /// A new, random id.
    pub fn new() -> Self {
        Self(uuid::Uuid::new_v4())
    }
}

impl Default for SegmentId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
