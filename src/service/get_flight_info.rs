//! GetFlightInfo: on PATH describes a stored flight and never computes; on CMD runs the op (or finds its cached
//! result) and describes the result; `partition` describes an existing flight with N row-range endpoints.

use arrow_flight::{FlightDescriptor, FlightInfo};
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use super::FlightbayService;
use super::auth::{Access, authorize};
use super::compute::derive;
use super::info::{InfoOptions, flight_info};
use crate::error::{Error, Result};
use crate::protocol::{Command, Descriptor};
use crate::store::FlightRef;

pub(super) async fn handle(
    service: &FlightbayService,
    request: Request<FlightDescriptor>,
) -> Result<Response<FlightInfo>, Status> {
    let access = authorize(service, &request).await?;
    let (metadata, _, descriptor) = request.into_parts();
    Ok(Response::new(describe(service, &access, descriptor, &metadata).await?))
}

async fn describe(
    service: &FlightbayService,
    access: &Access,
    descriptor: FlightDescriptor,
    metadata: &MetadataMap,
) -> Result<FlightInfo> {
    let store = service.store();
    match Descriptor::try_decode(&descriptor)? {
        Descriptor::Path(reference) => {
            let flight = store.get(access.read_ref(&reference)?)?;
            let names = store.names_of(flight.id());
            let preferred = match &reference {
                FlightRef::Name(n) => Some(n),
                FlightRef::Id(_) => None,
            };
            flight_info(
                store,
                &flight,
                &names,
                descriptor,
                InfoOptions {
                    preferred,
                    ..Default::default()
                },
            )
        }
        Descriptor::Command(Command::Partition { source, parts }) => {
            let flight = store.get(access.read_ref(&source)?)?;
            let names = store.names_of(flight.id());
            let options = InfoOptions {
                parts: Some(parts),
                ..Default::default()
            };
            flight_info(store, &flight, &names, descriptor, options)
        }
        Descriptor::Command(Command::Put { .. }) => Err(Error::invalid(
            "\"put\" commands are for DoPut; GetFlightInfo takes a PATH, SQL or a derive op",
        )),
        Descriptor::FlightSql(command) => {
            super::flight_sql::get_flight_info(service, access, command, descriptor, metadata).await
        }
        Descriptor::Command(Command::Derive { op, name }) => {
            if let Some(name) = &name {
                access.write_name(name)?;
            }
            let outcome = derive(service, access, *op, name.clone(), metadata).await?;
            let names = store.names_of(outcome.flight.id());
            let options = InfoOptions {
                preferred: name.as_ref(),
                cache: Some(outcome.cache.as_str()),
                ..Default::default()
            };
            flight_info(store, &outcome.flight, &names, descriptor, options)
        }
    }
}
