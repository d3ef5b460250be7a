//! The dashboard at `/` of the HTTP listener: one page (HTML, CSS and plain JS, embedded in the binary) that
//! polls a JSON API every two seconds.
//!
//! - `GET /`, `GET /dashboard.js`, `GET /dashboard.css`: the page. Served **without** a token even when auth is on:
//!   it is the same for everyone and holds no data, and a browser cannot attach an `Authorization` header to a
//!   page it navigates to (that would take a cookie, and cookies bring CSRF). The token goes, from the page's
//!   token field (kept in `sessionStorage`), only into the API requests below.
//! - `GET /api/info`: `{"version": "0.1.0", "auth": true}`, so the page knows to ask for a token before it asks
//!   for data. It says nothing about flights.
//! - `GET /api/dashboard`: what [`FlightbayService::dashboard`] lets the caller see, plus the recent Flight calls
//!   (for the callers who may see the server-wide counters). With auth on and no valid
//!   `Authorization: Bearer <token>` (or Basic credentials, as on the Flight port), 401 and nothing else.
//!
//! The numbers are the `stats` action's ([`FlightbayService::stats`]), the flights those ListFlights lists.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::http::HttpState;
use crate::metrics::RECENT_CALLS;
use crate::service::FlightbayService;

const INDEX_HTML: &str = include_str!("index.html");
const DASHBOARD_JS: &str = include_str!("dashboard.js");
const DASHBOARD_CSS: &str = include_str!("dashboard.css");

/// Only this origin's own files may run or load, and the page cannot be framed: flight names and SQL text are
/// shown with `textContent`, and this stops anything that slipped through from calling elsewhere.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                                       img-src 'self' data:; base-uri 'none'; form-action 'none'; \
                                       frame-ancestors 'none'";

/// The dashboard's routes (merged into [`crate::http::router`]).
pub fn router() -> Router<HttpState> {
    Router::new()
        .route("/", get(|| async { page("text/html; charset=utf-8", INDEX_HTML) }))
        .route(
            "/dashboard.js",
            get(|| async { page("text/javascript; charset=utf-8", DASHBOARD_JS) }),
        )
        .route(
            "/dashboard.css",
            get(|| async { page("text/css; charset=utf-8", DASHBOARD_CSS) }),
        )
        .route("/api/info", get(info))
        .route("/api/dashboard", get(dashboard))
}

fn page(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

async fn info(State(state): State<HttpState>) -> Response {
    json_response(
        StatusCode::OK,
        json!({ "version": env!("CARGO_PKG_VERSION"), "auth": state.service.auth_required() }),
    )
}

async fn dashboard(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let service: &FlightbayService = &state.service;
    let view = match service.dashboard(&headers, Some(peer.ip())).await {
        Ok(view) => view,
        Err(e) => return error_response(e),
    };
    // Recent calls are server-wide, like the counters: shown to the same callers.
    let recent = view.stats.is_some().then(|| state.metrics.rpc().recent.newest_first());
    json_response(
        StatusCode::OK,
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "now": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "auth": service.auth_required(),
            "subject": view.subject,
            "grants": view.grants,
            "flights": view.flights,
            "stats": view.stats,
            "recent": recent,
            "recent_capacity": RECENT_CALLS,
        }),
    )
}

/// The HTTP answer to a refused or failed request: the gRPC code's HTTP counterpart and the same message.
fn error_response(e: crate::Error) -> Response {
    let status = tonic::Status::from(e);
    let code = match status.code() {
        tonic::Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        tonic::Code::PermissionDenied => StatusCode::FORBIDDEN,
        tonic::Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        tonic::Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let mut response = json_response(code, json!({ "error": status.message() }));
    if code == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

fn json_response(code: StatusCode, body: serde_json::Value) -> Response {
    (
        code,
        [
            (header::CONTENT_TYPE, "application/json"),
            // Flight names and counts change every moment and may be private: never kept by a cache.
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body.to_string(),
    )
        .into_response()
}
