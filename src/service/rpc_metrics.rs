//! The tower layer that records every Flight-port call into [`RpcMetrics`]: its duration by method and gRPC
//! status code, and the bytes of its request and response bodies.
//!
//! It sits outermost, so it sees the status clients see (after [`super::DecodeStatusLayer`]) and times DoGet's own
//! route too. A call ends when its response body ends: the status then comes from the trailers (or from the
//! headers of a trailers-only answer); a response dropped before its end (the client went away) counts as
//! `CANCELLED`. Method labels come from a fixed list, so a client sending made-up paths cannot grow the series.
//! Each finished call is also kept in the ring of recent calls the dashboard shows.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::body::Body;

use crate::metrics::{CallLabels, MethodLabels, RecentCall, RpcMetrics, code_name};

/// Records calls into `metrics` (see the module docs).
#[derive(Clone, Debug)]
pub struct RpcMetricsLayer {
    metrics: Arc<RpcMetrics>,
}

impl RpcMetricsLayer {
    /// A layer recording into `metrics`.
    pub fn new(metrics: Arc<RpcMetrics>) -> Self {
        Self { metrics }
    }
}

impl<S> tower_layer::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetricsService<S>;

    fn layer(&self, inner: S) -> RpcMetricsService<S> {
        RpcMetricsService {
            inner,
            metrics: Arc::clone(&self.metrics),
        }
    }
}

/// The service [`RpcMetricsLayer`] builds.
#[derive(Clone, Debug)]
pub struct RpcMetricsService<S> {
    inner: S,
    metrics: Arc<RpcMetrics>,
}

impl<S> tower_service::Service<http::Request<Body>> for RpcMetricsService<S>
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
        let started = Instant::now();
        let method = method_label(request.uri().path());
        let metrics = Arc::clone(&self.metrics);
        let received = metrics.received_bytes.get_or_create(&MethodLabels { method }).clone();
        let request = request.map(|body| {
            Body::new(Counted {
                inner: body,
                on_data: Box::new(move |n| {
                    received.inc_by(n);
                }),
                on_end: None,
            })
        });
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            let call = Call {
                metrics: Arc::clone(&metrics),
                method,
                started,
                // A trailers-only answer (most errors) carries its status in the headers.
                code: grpc_status(response.headers()),
            };
            let sent = metrics.sent_bytes.get_or_create(&MethodLabels { method }).clone();
            Ok(response.map(|body| {
                Body::new(Counted {
                    inner: body,
                    on_data: Box::new(move |n| {
                        sent.inc_by(n);
                    }),
                    on_end: Some(call),
                })
            }))
        })
    }
}

/// A call whose end is recorded once: at its trailers, at the end of its body, or when its body is dropped.
struct Call {
    metrics: Arc<RpcMetrics>,
    method: &'static str,
    started: Instant,
    code: Option<i32>,
}

impl Call {
    fn finish(self, code: i32) {
        let seconds = self.started.elapsed().as_secs_f64();
        let labels = CallLabels {
            method: self.method,
            code: code_name(code),
        };
        self.metrics.duration.get_or_create(&labels).observe(seconds);
        self.metrics.recent.push(RecentCall {
            method: labels.method,
            code: labels.code,
            ended_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            duration_seconds: seconds,
        });
    }
}

/// A body that counts its data bytes and, for a response, records the call when it ends.
struct Counted {
    inner: Body,
    on_data: Box<dyn Fn(u64) + Send + Sync>,
    on_end: Option<Call>,
}

impl HttpBody for Counted {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    (self.on_data)(data.len() as u64);
                }
                if let Some(trailers) = frame.trailers_ref()
                    && let Some(call) = self.on_end.take()
                {
                    let code = grpc_status(trailers).or(call.code).unwrap_or(UNKNOWN);
                    call.finish(code);
                }
            }
            // The body failed midway: hyper resets the stream, which the client sees as cancelled or internal.
            Some(Err(_)) => {
                if let Some(call) = self.on_end.take() {
                    call.finish(INTERNAL);
                }
            }
            None => {
                if let Some(call) = self.on_end.take() {
                    let code = call.code.unwrap_or(UNKNOWN);
                    call.finish(code);
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if let Some(call) = self.on_end.take() {
            // Dropped before its end: a trailers-only answer is complete with its headers; anything else was cut
            // short because the client went away.
            let code = call.code.unwrap_or(CANCELLED);
            call.finish(code);
        }
    }
}

const CANCELLED: i32 = 1;
const UNKNOWN: i32 = 2;
const INTERNAL: i32 = 13;

/// The `grpc-status` in `headers`, if any.
fn grpc_status(headers: &http::HeaderMap) -> Option<i32> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
}

/// The method label for a request path: the RPC's name for the services on the Flight port, `other` for anything
/// else.
fn method_label(path: &str) -> &'static str {
    const FLIGHT: &[&str] = &[
        "Handshake",
        "ListFlights",
        "GetFlightInfo",
        "PollFlightInfo",
        "GetSchema",
        "DoGet",
        "DoPut",
        "DoExchange",
        "DoAction",
        "ListActions",
    ];
    if let Some(name) = path.strip_prefix("/arrow.flight.protocol.FlightService/") {
        return FLIGHT.iter().find(|m| **m == name).copied().unwrap_or("other");
    }
    match path {
        "/grpc.health.v1.Health/Check" => "Health/Check",
        "/grpc.health.v1.Health/Watch" => "Health/Watch",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_labels_come_from_a_fixed_list() {
        assert_eq!(method_label("/arrow.flight.protocol.FlightService/DoGet"), "DoGet");
        assert_eq!(method_label("/arrow.flight.protocol.FlightService/Nope"), "other");
        assert_eq!(method_label("/grpc.health.v1.Health/Check"), "Health/Check");
        assert_eq!(method_label("/made/up"), "other");
    }
}
