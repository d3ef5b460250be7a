//! DoGet: streams a stored flight (or a row range of it) as Flight IPC messages of about 2 MiB.

use arrow::record_batch::RecordBatch;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::{FlightData as FlightDataMsg, Ticket};
use futures::{StreamExt, TryStreamExt};
use tonic::{Request, Response, Status};

use super::FlightbayService;
use super::auth::authorize;
use crate::error::Error;
use crate::protocol::Ticket as FlightTicket;
use crate::store::{FlightData, batch_bytes, slice_batches, spill};
use arrow_flight::error::FlightError;
use futures::stream::BoxStream;

/// Target size of one outgoing message; below grpc-go's 4 MiB default receive limit with room to spare.
pub(crate) const TARGET_MESSAGE_BYTES: usize = 2 * 1024 * 1024;

pub(super) async fn handle(
    service: &FlightbayService,
    request: Request<Ticket>,
) -> Result<Response<super::BoxStream<FlightDataMsg>>, Status> {
    let access = authorize(service, request.metadata()).await?;
    let ticket = FlightTicket::try_decode(&request.into_inner().ticket)?;
    access.read_flight(ticket.id)?;
    let flight = service.store().get(ticket.id)?;
    let schema = std::sync::Arc::clone(&flight.meta.schema);
    if let Some((offset, length)) = ticket.rows
        && offset.saturating_add(length) > flight.meta.num_rows
    {
        return Err(Error::not_found(format!(
            "ticket {ticket} asks for rows beyond the {} rows of flight {}",
            flight.meta.num_rows, ticket.id
        ))
        .into());
    }
    let batches: BoxStream<'static, Result<RecordBatch, FlightError>> = match &flight.data {
        FlightData::Memory(segments) => {
            let all = segments.iter().flat_map(|s| s.batches().iter());
            let batches: Vec<RecordBatch> = match ticket.rows {
                None => all.cloned().collect(),
                Some((offset, length)) => slice_batches(all, offset, length),
            };
            futures::stream::iter(batches.into_iter().map(Ok)).boxed()
        }
        // Straight from the Parquet file, without loading it.
        FlightData::Spilled(file) => spill::stream(file.path.clone(), ticket.rows)
            .map_err(|e| FlightError::Tonic(Box::new(Status::from(e))))
            .boxed(),
    };
    let messages = batches
        .map_ok(|b| futures::stream::iter(split_for_wire(b).into_iter().map(Ok)))
        .try_flatten();
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
