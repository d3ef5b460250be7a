//! DoGet: streams a stored flight (or a row range of it) as Flight IPC messages of about 2 MiB.

use arrow::record_batch::RecordBatch;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::{FlightData, Ticket};
use futures::{StreamExt, TryStreamExt};
use tonic::{Request, Response, Status};

use super::{BoxStream, FlightbayService};
use crate::error::Error;
use crate::protocol::Ticket as FlightTicket;
use crate::store::{batch_bytes, slice_batches};

/// Target size of one outgoing message; below grpc-go's 4 MiB default receive limit with room to spare.
pub(crate) const TARGET_MESSAGE_BYTES: usize = 2 * 1024 * 1024;

pub(super) async fn handle(
    service: &FlightbayService,
    request: Request<Ticket>,
) -> Result<Response<BoxStream<FlightData>>, Status> {
    let ticket = FlightTicket::try_decode(&request.into_inner().ticket)?;
    let flight = service.store().get(ticket.id)?;
    let schema = std::sync::Arc::clone(&flight.meta.schema);
    let batches: Vec<RecordBatch> = match ticket.rows {
        None => flight.resident_batches().cloned().collect(),
        Some((offset, length)) => {
            if offset + length > flight.meta.num_rows {
                return Err(Error::not_found(format!(
                    "ticket {ticket} asks for rows beyond the {} rows of flight {}",
                    flight.meta.num_rows, ticket.id
                ))
                .into());
            }
            slice_batches(flight.resident_batches(), offset, length)
        }
    };
    let messages = futures::stream::iter(batches.into_iter().flat_map(split_for_wire).map(Ok));
    // The encoder sizes batches by whole buffers, which over-counts sliced batches many times over; the batches
    // are already cut to size by `split_for_wire`, so its own splitting is turned off.
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .with_max_flight_data_size(usize::MAX)
        .build(messages)
        .map_err(Status::from);
    Ok(Response::new(stream.boxed()))
}

/// Cuts a batch into zero-copy row slices of about [`TARGET_MESSAGE_BYTES`] each, sized from sliced buffers.
fn split_for_wire(batch: RecordBatch) -> Vec<RecordBatch> {
    let bytes = batch_bytes(&batch);
    let rows = batch.num_rows();
    if bytes <= TARGET_MESSAGE_BYTES || rows <= 1 {
        return vec![batch];
    }
    let pieces = bytes.div_ceil(TARGET_MESSAGE_BYTES);
    let per_piece = rows.div_ceil(pieces);
    (0..rows)
        .step_by(per_piece)
        .map(|start| batch.slice(start, per_piece.min(rows - start)))
        .collect()
}
