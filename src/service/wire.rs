//! DoGet on the wire without tonic's codec: a tower layer in front of the generated Flight service answers
//! `DoGet` itself, sending each message as the hand-built gRPC frame of [`crate::protocol::flight_data`], whose
//! large chunks are the stored column buffers. tonic's codec would copy every body into its frame buffer first;
//! hyper passes these chunks to the socket as they are. Every other RPC goes to tonic unchanged.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use arrow_flight::Ticket;
use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use http_body::Frame;
use http_body_util::{BodyExt, Limited};
use tonic::Status;
use tonic::body::Body;

use super::FlightbayService;
use super::do_get::{Messages, messages};
use crate::error::Error;
use crate::protocol::flight_data::decode_grpc_request;

/// The gRPC method path this layer answers.
const DO_GET_PATH: &str = "/arrow.flight.protocol.FlightService/DoGet";
/// A DoGet request is one small `Ticket`; anything larger is refused before it is buffered.
const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// Routes `DoGet` to [`FlightbayService`]'s own encoder; `max_message` is the largest frame it may send.
#[derive(Clone, Debug)]
pub struct DoGetLayer {
    service: FlightbayService,
    max_message: usize,
}

impl DoGetLayer {
    /// A layer answering DoGet for `service`, refusing to send a message over `max_message` bytes.
    pub fn new(service: FlightbayService, max_message: usize) -> Self {
        Self { service, max_message }
    }
}

impl<S> tower_layer::Layer<S> for DoGetLayer {
    type Service = DoGetRoute<S>;

    fn layer(&self, inner: S) -> DoGetRoute<S> {
        DoGetRoute {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`DoGetLayer`] builds.
#[derive(Clone, Debug)]
pub struct DoGetRoute<S> {
    inner: S,
    layer: DoGetLayer,
}

impl<S> tower_service::Service<http::Request<Body>> for DoGetRoute<S>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>> + Send,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if request.uri().path() != DO_GET_PATH {
            return Box::pin(self.inner.call(request));
        }
        let layer = self.layer.clone();
        Box::pin(async move {
            Ok(match answer(&layer.service, request).await {
                Ok(messages) => {
                    let mut response = http::Response::new(Body::new(MessageBody::new(messages, layer.max_message)));
                    response.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("application/grpc"),
                    );
                    response
                }
                Err(status) => status.into_http(),
            })
        })
    }
}

/// Reads the ticket and asks [`messages`] for the answer, with the caller's headers as tonic metadata.
async fn answer(service: &FlightbayService, request: http::Request<Body>) -> Result<Messages, Status> {
    let (parts, body) = request.into_parts();
    let bytes = Limited::new(body, MAX_REQUEST_BYTES)
        .collect()
        .await
        .map_err(|e| Error::invalid(format!("reading the DoGet request: {e}")))?
        .to_bytes();
    let ticket: Ticket = decode_grpc_request(&bytes)?;
    messages(
        service,
        tonic::Request::from_http(http::Request::from_parts(parts, ticket)),
    )
    .await
}

/// The response body: each message's gRPC frame in chunks, then the trailers with the call's status.
struct MessageBody {
    messages: Messages,
    chunks: VecDeque<Bytes>,
    max_message: usize,
    done: bool,
}

impl MessageBody {
    fn new(messages: Messages, max_message: usize) -> Self {
        Self {
            messages,
            chunks: VecDeque::new(),
            max_message,
            done: false,
        }
    }
}

impl http_body::Body for MessageBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        loop {
            if let Some(chunk) = self.chunks.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(chunk))));
            }
            if self.done {
                return Poll::Ready(None);
            }
            let status = match ready!(self.messages.poll_next_unpin(cx)) {
                Some(Ok(message)) if message.grpc_frame_len() > self.max_message => Status::out_of_range(format!(
                    "a message of {} bytes (one row range that cannot be cut smaller) exceeds the \
                     {}-byte limit; raise --max-message-size",
                    message.grpc_frame_len(),
                    self.max_message
                )),
                Some(Ok(message)) => {
                    self.chunks.extend(message.into_grpc_chunks());
                    continue;
                }
                Some(Err(status)) => status,
                None => Status::ok(""),
            };
            self.done = true;
            let mut trailers = http::HeaderMap::new();
            if let Err(e) = status.add_header(&mut trailers) {
                trailers = http::HeaderMap::new();
                let _ = e.add_header(&mut trailers);
            }
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.chunks.is_empty()
    }
}
