//! What the dashboard may show one caller: the flights they can read (names, size, state, pin, cache hits,
//! lineage) and, to a `*:admin` caller only, the server-wide counters.
//!
//! The HTTP side ([`crate::dashboard`]) hands over the request's headers; the same [`authorize`] as every RPC
//! decides who is calling and the same [`Access`] rules decide what they may read, so the dashboard never shows
//! more than ListFlights, the `lineage` action and the `stats` action would to the same token.

use std::net::IpAddr;

use serde::Serialize;
use tonic::metadata::MetadataMap;

use super::auth::{Access, Caller, authorize};
use super::{FlightbayService, Stats};
use crate::auth::Level;
use crate::error::Result;
use crate::store::{Flight, FlightId, QualifiedName};

/// One caller's view of the server.
#[derive(Debug, Serialize)]
pub struct DashboardView {
    /// The token's subject; `None` when authentication is off.
    pub subject: Option<String>,
    /// The token's grants as `namespace:level` (`None` when authentication is off).
    pub grants: Option<String>,
    /// The flights the caller may read, by id.
    pub flights: Vec<FlightRow>,
    /// What the `stats` action answers; only for callers it would answer (`*:admin`, or auth off).
    pub stats: Option<Stats>,
}

/// One flight as the dashboard lists it.
#[derive(Debug, Serialize)]
pub struct FlightRow {
    /// Flight id.
    pub id: FlightId,
    /// Its first name the caller may read, if any.
    pub name: Option<String>,
    /// That name's namespace; for an upload without such a name, the namespace it was uploaded to.
    pub namespace: Option<String>,
    /// Every `namespace.name` pointing at it, in namespaces the caller may read.
    pub names: Vec<String>,
    /// Rows.
    pub rows: u64,
    /// Bytes (in memory, or once reloaded).
    pub bytes: u64,
    /// `memory` (every row resident) or `spilled` (some rows only on disk).
    pub state: &'static str,
    /// Whether it is pinned in memory.
    pub pinned: bool,
    /// Creation time, RFC 3339 in UTC.
    pub created_at: String,
    /// Seconds since creation (by the server's clock).
    pub age_seconds: Option<f64>,
    /// Derive requests it answered from the result cache.
    pub hits: u64,
    /// How it was made.
    pub lineage: LineageRow,
}

/// A flight's lineage, one level: its inputs, the op, itself.
#[derive(Debug, Serialize)]
pub struct LineageRow {
    /// `upload` or the op (`sql`, `take`, …).
    pub op: String,
    /// The op's parameters, as the `lineage` action shows them.
    pub params: serde_json::Value,
    /// The flights it was computed from (for an append, the flight appended to).
    pub inputs: Vec<LineageInput>,
}

/// One input of a flight.
#[derive(Debug, Serialize)]
pub struct LineageInput {
    /// The input's id.
    pub id: FlightId,
    /// Whether it was dropped since.
    pub dropped: bool,
}

/// An HTTP request as [`authorize`] reads it: its headers as gRPC metadata, and the client's address.
struct HttpCaller {
    metadata: MetadataMap,
    peer: Option<IpAddr>,
}

impl Caller for HttpCaller {
    fn metadata(&self) -> &MetadataMap {
        &self.metadata
    }
    fn peer(&self) -> Option<IpAddr> {
        self.peer
    }
}

impl FlightbayService {
    /// Whether callers need credentials (the dashboard asks for a token when they do).
    pub fn auth_required(&self) -> bool {
        self.inner.auth.is_some()
    }

    /// What the caller behind `headers` (an `authorization` header as on the Flight port) may see; fails with
    /// UNAUTHENTICATED like any RPC when auth is on and the credentials are missing or wrong. Reading the view
    /// does not count as using a flight (the LRU order is left alone).
    pub async fn dashboard(&self, headers: &http::HeaderMap, peer: Option<IpAddr>) -> Result<DashboardView> {
        let caller = HttpCaller {
            metadata: MetadataMap::from_headers(headers.clone()),
            peer,
        };
        let access = authorize(self, &caller).await?;
        let hits = self.engine().hits_by_flight();
        let flights = self
            .store()
            .list()
            .into_iter()
            .filter(|(flight, _)| access.can_read(flight.id()))
            .map(|(flight, names)| {
                let hits = hits.get(&flight.id()).copied().unwrap_or(0);
                self.flight_row(&access, &flight, names, hits)
            })
            .collect();
        let stats = access.require_everywhere(Level::Admin).is_ok().then(|| self.stats());
        let (subject, grants) = match self.auth_required() {
            true => {
                let principal = access.principal();
                (Some(principal.subject.clone()), Some(principal.grants.to_string()))
            }
            false => (None, None),
        };
        Ok(DashboardView {
            subject,
            grants,
            flights,
            stats,
        })
    }

    fn flight_row(&self, access: &Access, flight: &Flight, names: Vec<QualifiedName>, hits: u64) -> FlightRow {
        let meta = &flight.meta;
        let readable = |namespace: &str| access.require(namespace, Level::Read).is_ok();
        let names: Vec<QualifiedName> = names.into_iter().filter(|n| readable(&n.namespace)).collect();
        let namespace = match names.first() {
            Some(n) => Some(n.namespace.clone()),
            None => meta.namespace.clone().filter(|ns| readable(ns)),
        };
        let age_seconds = chrono::DateTime::parse_from_rfc3339(&meta.created_at)
            .ok()
            .map(|created| (chrono::Utc::now() - created.to_utc()).as_seconds_f64().max(0.0));
        let store = self.store();
        FlightRow {
            id: flight.id(),
            name: names.first().map(|n| n.name.clone()),
            namespace,
            names: names.iter().map(QualifiedName::to_string).collect(),
            rows: meta.num_rows,
            bytes: meta.num_bytes,
            state: flight.state(),
            pinned: store.is_pinned(flight.id()),
            created_at: meta.created_at.clone(),
            age_seconds,
            hits,
            lineage: LineageRow {
                op: meta.lineage.op.clone(),
                params: meta.lineage.params.clone(),
                inputs: meta
                    .lineage
                    .inputs
                    .iter()
                    .map(|id| LineageInput {
                        id: *id,
                        dropped: !store.contains(*id),
                    })
                    .collect(),
            },
        }
    }
}
