//! Whether the server takes new work: serving from start until shutdown begins, then draining while requests in
//! flight finish. This type owns that state; the HTTP `/health` endpoint reads it, and it reports it to gRPC
//! Health v1 (`grpc.health.v1.Health`, served on the Flight port by tonic-health) for the whole server (`""`) and
//! for `arrow.flight.protocol.FlightService`.
//!
//! On drain, gRPC watchers get NOT_SERVING as their last message and their streams end, so a `Watch` client
//! cannot hold the Flight server's graceful shutdown open; a `Check` after that answers NOT_FOUND, like any
//! unknown service (and new calls are refused anyway once the Flight server stops accepting).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tonic::server::NamedService;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// The gRPC service name health is reported for, besides the whole server.
const FLIGHT_SERVICE: &str =
    <arrow_flight::flight_service_server::FlightServiceServer<crate::service::FlightbayService> as NamedService>::NAME;

/// Serving or draining; cheap to clone, clones share the state.
#[derive(Clone, Debug)]
pub struct Health {
    /// Set once, when shutdown begins; never cleared (a draining server only stops). An atomic, not a lock:
    /// it is one flag read by every probe.
    draining: Arc<AtomicBool>,
    /// tonic-health's statuses, shared with the `grpc.health.v1.Health` service built beside it.
    reporter: HealthReporter,
}

impl Health {
    /// A serving server, and the gRPC Health v1 service that reports it.
    pub async fn new() -> (
        Self,
        tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
    ) {
        let (reporter, service) = tonic_health::server::health_reporter();
        reporter
            .set_service_status(FLIGHT_SERVICE, ServingStatus::Serving)
            .await;
        let health = Self {
            draining: Arc::new(AtomicBool::new(false)),
            reporter,
        };
        (health, service)
    }

    /// Whether the server still takes new requests.
    pub fn is_serving(&self) -> bool {
        !self.draining.load(Ordering::Acquire)
    }

    /// Marks the server as draining (shutdown has begun); see the module docs for what gRPC clients see.
    pub async fn drain(&self) {
        self.draining.store(true, Ordering::Release);
        let mut reporter = self.reporter.clone();
        for service in ["", FLIGHT_SERVICE] {
            reporter.set_service_status(service, ServingStatus::NotServing).await;
            reporter.clear_service_status(service).await;
        }
    }
}
