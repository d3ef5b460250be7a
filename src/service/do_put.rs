//! DoPut: streams an upload into a pending flight and publishes it atomically at the end.
//!
//! The descriptor of the first message picks the target: `PATH ["name"]` / `["ns","name"]` uses the server's
//! default put mode; `CMD {"op":"put",…}` picks name, namespace and mode. Nothing becomes visible until the last
//! batch has arrived; a stream that fails or disconnects midway leaves no flight and moves no name.

use arrow::record_batch::RecordBatch;
use arrow_flight::decode::DecodedPayload;
use arrow_flight::error::FlightError;
use arrow_flight::{FlightData, PutResult};
use futures::{StreamExt, TryStreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::auth::{Access, authorize};
use super::flight_sql::{self, PutRequest};
use super::{BoxStream, FlightbayService};
use crate::error::{Error, Result};
use crate::protocol::metadata::PutMetadata;
use crate::protocol::upload;
use crate::protocol::{Command, Descriptor};
use crate::store::{FlightId, FlightRef, FlightWriter, PutTarget};

pub(super) async fn handle(
    service: &FlightbayService,
    request: Request<Streaming<FlightData>>,
) -> Result<Response<BoxStream<PutResult>>, Status> {
    let access = authorize(service, &request).await?;
    let (result, id) = upload(service, &access, request.into_inner()).await?;
    let mut response = Response::new(futures::stream::iter([Ok(result)]).boxed());
    if let Some(id) = id {
        // Flight SQL's ingest answer has room only for a row count; the new flight's id travels as a header.
        response.metadata_mut().insert(FLIGHT_ID_HEADER, id.0.into());
    }
    Ok(response)
}

/// The response header that carries the id of the flight an upload made.
pub const FLIGHT_ID_HEADER: &str = "flightbay-flight-id";

/// How the answer to an upload is written.
enum Reply {
    /// flightbay's JSON [`PutMetadata`].
    Flightbay,
    /// Flight SQL's `DoPutUpdateResult` with the count of rows uploaded.
    Ingest,
}

async fn upload(
    service: &FlightbayService,
    access: &Access,
    mut stream: Streaming<FlightData>,
) -> Result<(PutResult, Option<FlightId>)> {
    let first = stream
        .message()
        .await
        .map_err(Error::from_client_stream)?
        .ok_or_else(|| Error::invalid("empty DoPut stream: the first message must carry a descriptor and schema"))?;
    let descriptor = first
        .flight_descriptor
        .clone()
        .ok_or_else(|| Error::invalid("the first DoPut message must carry a flight descriptor"))?;
    let mut reply = Reply::Flightbay;
    let target = match Descriptor::try_decode(&descriptor)? {
        Descriptor::Path(FlightRef::Name(name)) => PutTarget {
            name,
            mode: service.inner.config.default_put_mode,
        },
        Descriptor::FlightSql(command) => match flight_sql::put_request(service, access, command)? {
            PutRequest::Ingest(target) => {
                reply = Reply::Ingest;
                target
            }
            PutRequest::Bind(handle) => {
                let batches = parameters(first, stream).await?;
                return Ok((flight_sql::bind(access, service, handle, &batches)?, None));
            }
        },
        Descriptor::Path(FlightRef::Id(id)) => {
            return Err(Error::invalid(format!(
                "cannot upload to flight id {id}: flights are immutable; upload to a name"
            )));
        }
        Descriptor::Command(Command::Put { name, mode }) => PutTarget {
            name,
            mode: mode.unwrap_or(service.inner.config.default_put_mode),
        },
        Descriptor::Command(_) => {
            return Err(Error::invalid(
                "DoPut takes a PATH descriptor or a CMD {\"op\":\"put\",\"name\":…,\"mode\":…}",
            ));
        }
    };
    access.put(&target)?;
    let store = service.store();
    store.check_put(&target)?;

    // With --durable, every message is logged as it arrives, before it is decoded.
    let log = store.upload_log()?;
    let appender = log.clone();
    let messages = futures::stream::once(async { Ok(first) })
        .chain(stream)
        .map(|m| m.map_err(|s| FlightError::ExternalError(Box::new(Error::from_client_stream(s)))))
        .and_then(move |message| {
            let log = appender.clone();
            async move {
                if let Some(log) = &log {
                    log.append(&message.data_header, &message.data_body)
                        .await
                        .map_err(|e| FlightError::ExternalError(Box::new(e)))?;
                }
                Ok(message)
            }
        });
    let mut decoder = std::pin::pin!(upload::decoder(messages));
    let mut writer: Option<FlightWriter> = None;
    let mut log = log;
    let mut rows = 0u64;
    while let Some(decoded) = decoder.next().await {
        match decoded?.payload {
            DecodedPayload::Schema(schema) => match &writer {
                None => writer = Some(store.writer(schema).with_log(log.take())),
                Some(w) if w.schema().fields() == schema.fields() => {}
                Some(_) => return Err(Error::invalid("the schema changed in the middle of the upload")),
            },
            DecodedPayload::RecordBatch(batch) => match writer.as_mut() {
                Some(w) => {
                    rows += batch.num_rows() as u64;
                    w.push(batch).await?
                }
                None => return Err(Error::invalid("record batch before schema")),
            },
            DecodedPayload::None => {}
        }
    }
    let writer = writer.ok_or_else(|| Error::invalid("the upload carried no schema"))?;
    // hyper reports a client's RST_STREAM(CANCEL) as a clean end of the request body (hyperium/hyper#3681), so a
    // cancelled upload looks complete here. Yielding once lets hyper see the reset while this future is pending
    // and drop it, so a cancelled upload is never published.
    tokio::task::yield_now().await;
    let pending = writer.finish().await?;
    let flight = store.publish_upload(pending, Some(&target)).await?;
    tracing::debug!(id = %flight.id(), name = %target.name, rows = flight.meta.num_rows, "upload published");
    let result = match reply {
        Reply::Flightbay => PutResult {
            app_metadata: PutMetadata::new(&flight, Some(&target.name)).to_bytes().into(),
        },
        Reply::Ingest => flight_sql::ingest_result(rows),
    };
    Ok((result, Some(flight.id())))
}

/// The parameter batches of a Flight SQL bind: at most [`MAX_PARAMETER_ROWS`] rows are read.
async fn parameters(first: FlightData, stream: Streaming<FlightData>) -> Result<Vec<RecordBatch>> {
    let messages = futures::stream::once(async { Ok(first) })
        .chain(stream)
        .map(|m| m.map_err(|s| FlightError::ExternalError(Box::new(Error::from_client_stream(s)))));
    let mut decoder = std::pin::pin!(upload::decoder(messages));
    let mut batches = Vec::new();
    let mut rows = 0;
    while let Some(decoded) = decoder.next().await {
        if let DecodedPayload::RecordBatch(batch) = decoded?.payload {
            rows += batch.num_rows();
            batches.push(batch);
            if rows > MAX_PARAMETER_ROWS {
                break;
            }
        }
    }
    Ok(batches)
}

/// More parameter rows than this are refused without reading the rest.
const MAX_PARAMETER_ROWS: usize = 1;
