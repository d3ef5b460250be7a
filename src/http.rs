//! The HTTP side listener (`--http-port`): `/metrics`, `/health` and the dashboard beside the Flight port, served
//! by axum.
//!
//! A listener of its own rather than routes on the Flight port: the Flight port may speak TLS that offers only
//! HTTP/2, and its frame sizes, windows and DoGet layer are tuned for Flight, not for probes and scrapers.
//!
//! - `GET /metrics`: Prometheus metrics as OpenMetrics text (see [`crate::metrics`]).
//! - `GET /health`: `200 {"status":"serving",…}`, or `503 {"status":"draining",…}` once shutdown has begun (the
//!   listener stays up until the Flight server has finished its requests, so a probe sees the drain).
//! - `GET /` and `GET /api/…`: the dashboard (see [`crate::dashboard`]).
//!
//! `/metrics` and `/health` need no token even when auth is on (scrapers and probes rarely carry one); the
//! dashboard's data does.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::error::{Error, Result};
use crate::health::Health;
use crate::metrics::{self, Metrics};
use crate::service::FlightbayService;

/// What the HTTP handlers read.
#[derive(Clone, Debug)]
pub struct HttpState {
    /// Serving or draining.
    pub health: Health,
    /// The registry `/metrics` encodes (and the recent calls the dashboard lists).
    pub metrics: Arc<Metrics>,
    /// What the dashboard reads: flights, lineage, counters, and who may see them.
    pub service: FlightbayService,
}

/// The routes of the HTTP listener.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .merge(crate::dashboard::router())
        .with_state(state)
}

/// Serves [`router`] on `listener` until `shutdown` completes, then finishes the requests in flight.
pub async fn serve(
    listener: TcpListener,
    state: HttpState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    // With the client's address: the dashboard's Basic logins are throttled per peer, as on the Flight port.
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| Error::internal(format!("HTTP listener: {e}")))
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], state.metrics.encode())
}

async fn health(State(state): State<HttpState>) -> impl IntoResponse {
    let (code, status) = if state.health.is_serving() {
        (StatusCode::OK, "serving")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    };
    let body = serde_json::json!({ "status": status, "version": env!("CARGO_PKG_VERSION") });
    (code, [(header::CONTENT_TYPE, "application/json")], body.to_string())
}
