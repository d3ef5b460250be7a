//! DoGet: streams a stored flight (or a row range of it) as Flight IPC messages of at most about 3 MiB.
//!
//! [`messages`] produces the answer as [`FlightMessage`]s whose bodies are the stored column buffers themselves.
//! The server sends them with the hand-built gRPC frames of [`super::wire`]; the tonic handler ([`handle`]) is
//! the same answer through tonic's codec, for embedding `FlightbayService` in another tonic server.

use std::sync::Arc;

use arrow::datatypes::Schema;
use arrow::ipc::writer::StreamEncoder;
use arrow::record_batch::RecordBatch;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::{FlightData as FlightDataMsg, Ticket};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use tonic::{Request, Response, Status};

use super::FlightbayService;
use super::auth::authorize;
use crate::error::Error;
use crate::protocol::Ticket as FlightTicket;
use crate::protocol::flight_data::{FlightMessage, encode_batch, has_dictionary, split_for_wire};

/// The DoGet answer as a stream of messages: the schema first, then the batches.
pub(super) type Messages = BoxStream<'static, Result<FlightMessage, Status>>;

pub(super) async fn handle(
    service: &FlightbayService,
    request: Request<Ticket>,
) -> Result<Response<super::BoxStream<FlightDataMsg>>, Status> {
    let stream = messages(service, request).await?;
    Ok(Response::new(stream.map_ok(FlightMessage::into_flight_data).boxed()))
}

/// Checks the ticket and the caller's access, then streams the flight.
pub(super) async fn messages(service: &FlightbayService, request: Request<Ticket>) -> Result<Messages, Status> {
    let access = authorize(service, &request).await?;
    let bytes = request.into_inner().ticket;
    if let Some(command) = crate::protocol::flight_sql::try_decode(&bytes) {
        return Ok(super::flight_sql::do_get(service, &access, command?)?);
    }
    let ticket = FlightTicket::try_decode(&bytes)?;
    access.read_flight(ticket.id)?;
    let flight = service.store().get(ticket.id)?;
    let schema = Arc::clone(&flight.meta.schema);
    if let Some((offset, length)) = ticket.rows
        && offset.saturating_add(length) > flight.meta.num_rows
    {
        return Err(Error::not_found(format!(
            "ticket {ticket} asks for rows beyond the {} rows of flight {}",
            flight.meta.num_rows, ticket.id
        ))
        .into());
    }
    let batches = service
        .store()
        .read(&flight, ticket.rows, None)
        .map_err(Status::from)
        .boxed();
    let pieces = batches
        .map_ok(|b| futures::stream::iter(split_for_wire(b).into_iter().map(Ok)))
        .try_flatten();
    if has_dictionary(&schema) {
        Ok(hydrated(schema, pieces.boxed()))
    } else {
        uncopied(schema, pieces.boxed())
    }
}

/// Messages whose bodies are the batches' own buffers. The schema goes first, alone, so a client has it before
/// the first batch is read from disk; the encoder's own copy of it (before the first batch) is dropped.
fn uncopied(schema: Arc<Schema>, batches: BoxStream<'static, Result<RecordBatch, Status>>) -> Result<Messages, Status> {
    let header = StreamEncoder::try_new(&schema)
        .and_then(StreamEncoder::finish)
        .and_then(crate::protocol::flight_data::split_ipc_stream)
        .map_err(|e| Error::internal(format!("encoding the schema: {e}")))?;
    let mut encoder = StreamEncoder::try_new(&schema).map_err(|e| Error::internal(format!("encoder: {e}")))?;
    let mut first = true;
    let body = batches
        .map(move |batch| -> Result<_, Status> {
            let mut messages = encode_batch(&mut encoder, &batch?)
                .map_err(|e| Status::from(Error::internal(format!("encoding a batch: {e}"))))?;
            if std::mem::take(&mut first) {
                messages.remove(0);
            }
            Ok(futures::stream::iter(messages.into_iter().map(Ok)))
        })
        .try_flatten();
    Ok(futures::stream::iter(header.into_iter().map(Ok)).chain(body).boxed())
}

/// Flights with dictionary columns go through arrow-flight's encoder, which sends them as their value types
/// (many Flight clients cannot follow dictionary replacement); it copies each batch into a new body.
pub(super) fn hydrated(schema: Arc<Schema>, batches: BoxStream<'static, Result<RecordBatch, Status>>) -> Messages {
    // The encoder sizes batches by whole buffers, which over-counts sliced batches many times over; the batches
    // are already cut to size by `split_for_wire`, so its own splitting is turned off.
    FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .with_max_flight_data_size(usize::MAX)
        .build(batches.map_err(|s| FlightError::Tonic(Box::new(s))))
        .map_ok(FlightMessage::from_flight_data)
        .map_err(Status::from)
        .boxed()
}
