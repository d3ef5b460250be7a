//! JSON documents flightbay puts in `app_metadata`: [`PutMetadata`] (DoPut's one `PutResult`) and
//! [`InfoMetadata`] (every `FlightInfo`).
//!
//! ```text
//! PutResult.app_metadata  {"id":43,"name":"trips","namespace":"default","num_rows":1000,"num_bytes":8000}
//! FlightInfo.app_metadata {"id":44,"name":null,"namespace":null,"names":[],"lineage":{"op":"take","params":{…},
//!                          "inputs":[43]},"created_at":"2026-11-25T12:00:00.000Z","state":"memory","cache":"miss"}
//! ```

use serde::Serialize;

use crate::store::{Flight, FlightId, Lineage, QualifiedName};

/// The JSON in DoPut's `PutResult.app_metadata`.
#[derive(Debug, Serialize)]
pub struct PutMetadata {
    /// Id of the new flight.
    pub id: FlightId,
    /// Name it was uploaded to, if any.
    pub name: Option<String>,
    /// Namespace of that name.
    pub namespace: Option<String>,
    /// Rows in the new flight (for `append`: old plus new rows).
    pub num_rows: u64,
    /// Bytes of the new flight.
    pub num_bytes: u64,
}

impl PutMetadata {
    /// Describes a freshly uploaded flight.
    pub fn new(flight: &Flight, name: Option<&QualifiedName>) -> Self {
        Self {
            id: flight.id(),
            name: name.map(|n| n.name.clone()),
            namespace: name.map(|n| n.namespace.clone()),
            num_rows: flight.meta.num_rows,
            num_bytes: flight.meta.num_bytes,
        }
    }

    /// The JSON bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The JSON in every `FlightInfo.app_metadata`.
#[derive(Debug, Serialize)]
pub struct InfoMetadata<'a> {
    /// Flight id.
    pub id: FlightId,
    /// The name the flight was asked for by, else its first name, else null.
    pub name: Option<String>,
    /// That name's namespace.
    pub namespace: Option<String>,
    /// Every `namespace.name` pointing at the flight.
    pub names: Vec<String>,
    /// How the flight was made.
    pub lineage: &'a Lineage,
    /// Creation time (RFC 3339, UTC).
    pub created_at: &'a str,
    /// `memory` or `spilled`.
    pub state: &'static str,
    /// Kept in memory by the `pin` action.
    pub pinned: bool,
    /// For derived flights requested by CMD: `hit` when an existing flight answered, `miss` when computed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<&'static str>,
}

impl<'a> InfoMetadata<'a> {
    /// Describes `flight`; `preferred` is the name the client used, if any.
    pub fn new(flight: &'a Flight, names: &[QualifiedName], preferred: Option<&QualifiedName>) -> Self {
        let shown = preferred.or(names.first());
        Self {
            id: flight.id(),
            name: shown.map(|n| n.name.clone()),
            namespace: shown.map(|n| n.namespace.clone()),
            names: names.iter().map(|n| n.to_string()).collect(),
            lineage: &flight.meta.lineage,
            created_at: &flight.meta.created_at,
            state: flight.state(),
            pinned: false,
            cache: None,
        }
    }

    /// The JSON bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}
