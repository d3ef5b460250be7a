//! DoAction: custom actions with JSON bodies (see [`crate::protocol::action`]); one JSON result each.

use arrow_flight::Action as FlightAction;
use futures::StreamExt;
use serde_json::{Value, json};
use tonic::{Request, Response, Status};

use super::auth::{Access, authorize};
use super::{BoxStream, FlightbayService};
use crate::auth::Level;
use crate::error::{Error, Result};
use crate::protocol::Action;
use crate::store::{FlightId, FlightRef};

pub(super) async fn handle(
    service: &FlightbayService,
    request: Request<FlightAction>,
) -> Result<Response<BoxStream<arrow_flight::Result>>, Status> {
    let access = authorize(service, &request).await?;
    let (metadata, _, action) = request.into_parts();
    if let Some(sql) = crate::protocol::flight_sql::try_decode_action(&action.r#type, &action.body) {
        let results = super::flight_sql::do_action(service, &access, sql?, &metadata).await?;
        return Ok(Response::new(
            futures::stream::iter(results.into_iter().map(Ok)).boxed(),
        ));
    }
    let parsed = Action::try_decode(&action.r#type, &action.body)?;
    let value = run(service, &access, parsed).await?;
    let body = serde_json::to_vec(&value).unwrap_or_default();
    let result = arrow_flight::Result { body: body.into() };
    Ok(Response::new(futures::stream::iter([Ok(result)]).boxed()))
}

async fn run(service: &FlightbayService, access: &Access, action: Action) -> Result<Value> {
    let store = service.store();
    match action {
        Action::Drop(reference) => {
            access.read_names([&reference])?;
            let id = store.resolve(&reference)?;
            access.write_flight(id)?;
            store.drop_flight(id).await?;
            Ok(json!({ "dropped": id }))
        }
        Action::Rename { id, name } => {
            access.write_name(&name)?;
            access.read_ref(&FlightRef::Id(id))?;
            let previous = store.set_name(&name, id).await?;
            Ok(json!({ "id": id, "name": name.to_string(), "previous": previous }))
        }
        Action::DeleteNamespace { namespace, force } => {
            access.require(&namespace, Level::Admin)?;
            let dropped = store.delete_namespace(&namespace, force).await?;
            Ok(json!({ "dropped": dropped }))
        }
        Action::Lineage(reference) => {
            let id = access.read_ref(&reference)?;
            lineage(service, id, 0)
        }
        Action::Pin(reference) => {
            access.read_names([&reference])?;
            let id = store.resolve(&reference)?;
            access.write_flight(id)?;
            store.pin(id).await?;
            Ok(json!({ "id": id, "pinned": true }))
        }
        Action::Unpin(reference) => {
            access.read_names([&reference])?;
            let id = store.resolve(&reference)?;
            access.write_flight(id)?;
            store.unpin(id)?;
            Ok(json!({ "id": id, "pinned": false }))
        }
        Action::Spill(reference) => {
            access.read_names([&reference])?;
            let id = store.resolve(&reference)?;
            access.write_flight(id)?;
            store.spill(id).await?;
            Ok(json!({ "id": id, "state": store.get(id)?.state() }))
        }
        Action::Stats => {
            access.require_everywhere(Level::Admin)?;
            serde_json::to_value(service.stats()).map_err(|e| Error::internal(format!("encoding stats: {e}")))
        }
        Action::Health => Ok(json!({
            "status": "ok",
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_seconds": service.inner.started.elapsed().as_secs_f64(),
        })),
        Action::Shutdown => {
            access.require_everywhere(Level::Admin)?;
            service.inner.stop.notify_one();
            Ok(json!({ "shutting_down": true }))
        }
    }
}

/// The ancestry of `id` as nested JSON; inputs that were dropped appear as `{"id": n, "dropped": true}`.
fn lineage(service: &FlightbayService, id: FlightId, depth: usize) -> Result<Value> {
    let store = service.store();
    let flight = match store.lookup(&FlightRef::Id(id)) {
        Ok(f) => f,
        Err(_) if depth > 0 => return Ok(json!({ "id": id, "dropped": true })),
        Err(e) => return Err(e),
    };
    let lineage = &flight.meta.lineage;
    let inputs = if depth < 64 {
        lineage
            .inputs
            .iter()
            .map(|input| lineage_of(service, *input, depth + 1))
            .collect::<Result<Vec<_>>>()?
    } else {
        vec![]
    };
    Ok(json!({
        "id": id,
        "names": store.names_of(id).iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        "op": lineage.op,
        "params": lineage.params,
        "created_at": flight.meta.created_at,
        "inputs": inputs,
    }))
}

fn lineage_of(service: &FlightbayService, id: FlightId, depth: usize) -> Result<Value> {
    lineage(service, id, depth)
}
