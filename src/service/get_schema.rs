//! GetSchema: the Arrow schema of a stored flight (PATH) without any data.

use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::{FlightDescriptor, SchemaAsIpc, SchemaResult};
use tonic::{Request, Response, Status};

use super::FlightbayService;
use super::auth::authorize;
use crate::error::{Error, Result};
use crate::protocol::{Command, Descriptor};

pub(super) async fn handle(
    service: &FlightbayService,
    request: Request<FlightDescriptor>,
) -> Result<Response<SchemaResult>, Status> {
    let access = authorize(service, &request).await?;
    let (metadata, _, descriptor) = request.into_parts();
    let schema = match Descriptor::try_decode(&descriptor)? {
        Descriptor::Path(reference) | Descriptor::Command(Command::Partition { source: reference, .. }) => {
            let id = access.read_ref(&reference)?;
            std::sync::Arc::clone(&service.store().get(id)?.meta.schema)
        }
        Descriptor::Command(Command::Derive { op, name }) => {
            if let Some(name) = &name {
                access.write_name(name)?;
            }
            let outcome = super::compute::derive(service, &access, *op, name, &metadata).await?;
            std::sync::Arc::clone(&outcome.flight.meta.schema)
        }
        Descriptor::FlightSql(command) => super::flight_sql::get_schema(service, &access, command, &metadata).await?,
        Descriptor::Command(Command::Put { .. }) => {
            return Err(Error::invalid("\"put\" commands are for DoPut").into());
        }
    };
    let result: Result<SchemaResult> = SchemaAsIpc::new(&schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(Error::from);
    Ok(Response::new(result?))
}
