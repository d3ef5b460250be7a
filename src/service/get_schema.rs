//! GetSchema: the Arrow schema of a stored flight (PATH) without any data.

use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::{FlightDescriptor, SchemaAsIpc, SchemaResult};
use tonic::{Request, Response, Status};

use super::FlightbayService;
use crate::error::{Error, Result};
use crate::protocol::{Command, Descriptor};

pub(super) async fn handle(
    service: &FlightbayService,
    request: Request<FlightDescriptor>,
) -> Result<Response<SchemaResult>, Status> {
    let descriptor = request.into_inner();
    let schema = match Descriptor::try_decode(&descriptor)? {
        Descriptor::Path(reference) => std::sync::Arc::clone(&service.store().lookup(&reference)?.meta.schema),
        Descriptor::Command(Command::Derive { op, name }) => {
            std::sync::Arc::clone(&service.engine().run(*op, name).await?.flight.meta.schema)
        }
        Descriptor::Command(Command::Partition { source, .. }) => {
            std::sync::Arc::clone(&service.store().lookup(&source)?.meta.schema)
        }
        Descriptor::Command(Command::Put { .. }) => {
            return Err(Error::invalid("\"put\" commands are for DoPut").into());
        }
    };
    let result: Result<SchemaResult> = SchemaAsIpc::new(&schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(Error::from);
    Ok(Response::new(result?))
}
