//! INVALID_ARGUMENT, not INTERNAL, for request bytes that are not the RPC's protobuf message.
//!
//! tonic decodes a unary request before the handler sees it and reports bytes that do not decode (garbage, or a
//! `string` field such as a PATH element or an action type that is not UTF-8) as INTERNAL, which flightbay's
//! clients are told means a server bug. This layer rewrites exactly that answer, recognised by prost's message,
//! to INVALID_ARGUMENT; every other response passes through untouched. (Streamed requests are classified where
//! they are read, by [`crate::error::Error::from_client_stream`].)

use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tonic::body::Body;

use crate::error::is_decode_failure;

/// The tower layer (see the module docs).
#[derive(Clone, Copy, Debug, Default)]
pub struct DecodeStatusLayer;

impl<S> tower_layer::Layer<S> for DecodeStatusLayer {
    type Service = DecodeStatus<S>;

    fn layer(&self, inner: S) -> DecodeStatus<S> {
        DecodeStatus { inner }
    }
}

/// The service [`DecodeStatusLayer`] builds.
#[derive(Clone, Debug)]
pub struct DecodeStatus<S> {
    inner: S,
}

impl<S> tower_service::Service<http::Request<Body>> for DecodeStatus<S>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>> + Send,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let response = self.inner.call(request);
        Box::pin(async move {
            let mut response = response.await?;
            rewrite(response.headers_mut());
            Ok(response)
        })
    }
}

/// Rewrites a trailers-only INTERNAL decode failure in `headers` to INVALID_ARGUMENT.
fn rewrite(headers: &mut http::HeaderMap) {
    let Some(status) = tonic::Status::from_header_map(headers) else {
        return;
    };
    if status.code() != tonic::Code::Internal || !is_decode_failure(status.message()) {
        return;
    }
    let fixed =
        tonic::Status::invalid_argument(format!("request is not a valid protobuf message: {}", status.message()));
    if fixed.add_header(headers).is_err() {
        // The message could not be encoded as a header; the code alone is what matters.
        headers.insert("grpc-status", http::HeaderValue::from_static("3"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_only_decode_failures() {
        let mut headers = http::HeaderMap::new();
        tonic::Status::internal("failed to decode Protobuf message: invalid string value: data is not UTF-8 encoded")
            .add_header(&mut headers)
            .unwrap();
        rewrite(&mut headers);
        let status = tonic::Status::from_header_map(&headers).unwrap();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().contains("not UTF-8"), "{}", status.message());

        let mut headers = http::HeaderMap::new();
        tonic::Status::internal("a real bug").add_header(&mut headers).unwrap();
        rewrite(&mut headers);
        assert_eq!(
            tonic::Status::from_header_map(&headers).unwrap().code(),
            tonic::Code::Internal
        );
    }
}
