//! ListActions: every custom action with a one-line description of its JSON body and result.

use arrow_flight::{ActionType, Empty};
use futures::StreamExt;
use tonic::{Request, Response, Status};

use super::auth::authorize;
use super::{BoxStream, FlightbayService};
use crate::protocol::action::ACTIONS;
use crate::protocol::flight_sql;

pub(super) async fn handle(
    service: &FlightbayService,
    request: Request<Empty>,
) -> Result<Response<BoxStream<ActionType>>, Status> {
    authorize(service, &request).await?;
    let actions = ACTIONS.iter().chain(flight_sql::ACTIONS).map(|(kind, description)| {
        Ok(ActionType {
            r#type: kind.to_string(),
            description: description.to_string(),
        })
    });
    Ok(Response::new(futures::stream::iter(actions).boxed()))
}
