//! Handshake: accepts any payload while auth is off (JDBC and ADBC send one when given credentials).

use arrow_flight::{HandshakeRequest, HandshakeResponse};
use futures::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::{BoxStream, FlightbayService};

pub(super) async fn handle(
    _service: &FlightbayService,
    request: Request<Streaming<HandshakeRequest>>,
) -> Result<Response<BoxStream<HandshakeResponse>>, Status> {
    let mut stream = request.into_inner();
    let protocol_version = match stream.message().await? {
        Some(req) => req.protocol_version,
        None => 0,
    };
    let response = HandshakeResponse {
        protocol_version,
        payload: Default::default(),
    };
    Ok(Response::new(futures::stream::iter([Ok(response)]).boxed()))
}
