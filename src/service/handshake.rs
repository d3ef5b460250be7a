//! Handshake: with auth off, accepts anything (JDBC and ADBC send a payload when given credentials). With auth on,
//! exchanges credentials for a bearer token.
//!
//! Credentials come from the `authorization` header (`Basic <b64>`, padded or not, as pyarrow's
//! `authenticate_basic_token`, Go and ADBC send it; or `Bearer <jwt>`, which is checked and returned as is) or,
//! failing that, from the first request's payload: a protobuf `BasicAuth`, or `user:password` as text. The token
//! travels back in the `authorization: Bearer <jwt>` response header and as the response payload.

use arrow_flight::{BasicAuth, HandshakeRequest, HandshakeResponse};
use futures::StreamExt;
use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

use super::auth::{Credentials, credentials};
use super::{BoxStream, FlightbayService};
use crate::error::{Error, Result};

pub(super) async fn handle(
    service: &FlightbayService,
    request: Request<Streaming<HandshakeRequest>>,
) -> Result<Response<BoxStream<HandshakeResponse>>, Status> {
    // Headers are only looked at with auth on, so with auth off any Handshake succeeds as before.
    let header = match service.inner.auth {
        Some(_) => credentials(request.metadata())?,
        None => None,
    };
    let peer = request.remote_addr().map(|a| a.ip());
    let mut stream = request.into_inner();
    let (protocol_version, payload) = match stream.message().await.map_err(Error::from_client_stream)? {
        Some(req) => (req.protocol_version, req.payload),
        None => (0, Default::default()),
    };
    let Some(auth) = &service.inner.auth else {
        let response = HandshakeResponse {
            protocol_version,
            payload: Default::default(),
        };
        return Ok(Response::new(futures::stream::iter([Ok(response)]).boxed()));
    };
    let token = match header.or_else(|| payload_credentials(&payload)) {
        Some(Credentials::Bearer(token)) => {
            auth.verify(&token)?;
            token
        }
        Some(Credentials::Basic(user, password)) => {
            let principal = auth.login(user, password, peer).await?;
            tracing::info!(user = %principal.subject, grants = %principal.grants, "handshake: token issued");
            auth.tokens.mint(&principal.subject, &principal.grants)?
        }
        None => {
            return Err(Error::unauthenticated(
                "flightbay: Handshake needs credentials: \"authorization: Basic <base64 user:password>\"",
            )
            .into());
        }
    };
    let value: MetadataValue<_> = format!("Bearer {token}")
        .parse()
        .map_err(|_| Error::internal("token is not a valid header value"))?;
    let response = HandshakeResponse {
        protocol_version,
        payload: token.into_bytes().into(),
    };
    let mut response = Response::new(futures::stream::iter([Ok(response)]).boxed());
    response.metadata_mut().insert("authorization", value);
    Ok(response)
}

/// Credentials in a Handshake payload: a protobuf `BasicAuth` or `user:password` text.
fn payload_credentials(payload: &[u8]) -> Option<Credentials> {
    if payload.is_empty() {
        return None;
    }
    if let Ok(basic) = BasicAuth::decode(payload)
        && !basic.username.is_empty()
    {
        return Some(Credentials::Basic(basic.username, basic.password));
    }
    let text = std::str::from_utf8(payload).ok()?;
    let (user, password) = text.split_once(':')?;
    Some(Credentials::Basic(user.to_string(), password.to_string()))
}
