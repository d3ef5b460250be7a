//! Building `FlightInfo` for a stored flight: schema, totals, endpoints with tickets, JSON metadata.

use arrow_flight::{FlightDescriptor, FlightEndpoint, FlightInfo};

use crate::error::Result;
use crate::protocol::Ticket;
use crate::protocol::flight_data::hydrated_schema;
use crate::protocol::metadata::InfoMetadata;
use crate::store::{Flight, FlightStore, QualifiedName};

/// What to put in a FlightInfo besides the flight itself.
#[derive(Debug, Default)]
pub(super) struct InfoOptions<'a> {
    /// The name the client asked by.
    pub preferred: Option<&'a QualifiedName>,
    /// Split the rows into this many row-range endpoints (default one endpoint for the whole flight).
    pub parts: Option<u32>,
    /// `hit` / `miss` for CMD requests.
    pub cache: Option<&'static str>,
}

/// The descriptor a flight is listed under: `PATH [namespace, name]` when named, else `PATH ["<id>"]`.
pub(super) fn canonical_descriptor(flight: &Flight, names: &[QualifiedName]) -> FlightDescriptor {
    match names.first() {
        Some(n) => FlightDescriptor::new_path(vec![n.namespace.clone(), n.name.clone()]),
        None => FlightDescriptor::new_path(vec![flight.id().to_string()]),
    }
}

/// Row ranges `(offset, length)` splitting `rows` into `parts` nearly equal pieces, in order.
pub(super) fn partition_ranges(rows: u64, parts: u32) -> Vec<(u64, u64)> {
    let parts = u64::from(parts.max(1));
    (0..parts)
        .map(|i| {
            let start = rows * i / parts;
            let end = rows * (i + 1) / parts;
            (start, end - start)
        })
        .collect()
}

/// FlightInfo for `flight`, echoing `descriptor`.
pub(super) fn flight_info(
    store: &FlightStore,
    flight: &Flight,
    names: &[QualifiedName],
    descriptor: FlightDescriptor,
    options: InfoOptions<'_>,
) -> Result<FlightInfo> {
    let meta = &flight.meta;
    let endpoints: Vec<FlightEndpoint> = match options.parts {
        None => vec![FlightEndpoint::new().with_ticket(arrow_flight::Ticket::new(Ticket::whole(flight.id()).encode()))],
        Some(parts) => partition_ranges(meta.num_rows, parts)
            .into_iter()
            .map(|(offset, length)| {
                FlightEndpoint::new().with_ticket(arrow_flight::Ticket::new(
                    Ticket::range(flight.id(), offset, length).encode(),
                ))
            })
            .collect(),
    };
    let mut metadata = InfoMetadata::new(flight, names, options.preferred);
    metadata.cache = options.cache;
    metadata.pinned = store.is_pinned(flight.id());
    Ok(FlightInfo::new()
        .try_with_schema(&hydrated_schema(&meta.schema))?
        .with_descriptor(descriptor)
        .with_endpoints(endpoints)
        .with_total_records(i64::try_from(meta.num_rows).unwrap_or(-1))
        .with_total_bytes(i64::try_from(meta.num_bytes).unwrap_or(-1))
        .with_ordered(true)
        .with_app_metadata(metadata.to_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_every_row_once() {
        for (rows, parts) in [(10, 3), (0, 4), (3, 8), (1_000_001, 7)] {
            let r = partition_ranges(rows, parts);
            assert_eq!(r.len(), parts as usize);
            let mut next = 0;
            for (o, l) in r {
                assert_eq!(o, next);
                next = o + l;
            }
            assert_eq!(next, rows);
        }
    }
}
