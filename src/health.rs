//! Whether the server takes new work: serving from start until shutdown begins, then draining while requests in
//! flight finish. This type owns that state; the HTTP `/health` endpoint reads it, and it reports it to gRPC
//! Health v1 (`grpc.health.v1.Health`, served on the Flight port by tonic-health) for the whole server (`""`) and
//! for `arrow.flight.protocol.FlightService`.
//!
//! On drain, gRPC watchers get NOT_SERVING as their last message and their streams end, so a `Watch` client
//! cannot hold the Flight server's graceful shutdown open; a `Check` answers NOT_SERVING from then on (until the
//! Flight server stops accepting new calls).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tonic::server::NamedService;
use tonic::{Request, Response, Status};
use tonic_health::ServingStatus;
use tonic_health::pb::health_check_response::ServingStatus as WireStatus;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::server::{HealthReporter, HealthService};

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
    pub async fn new() -> (Self, HealthServer<GrpcHealth>) {
        let reporter = HealthReporter::new();
        reporter
            .set_service_status(FLIGHT_SERVICE, ServingStatus::Serving)
            .await;
        let health = Self {
            draining: Arc::new(AtomicBool::new(false)),
            reporter: reporter.clone(),
        };
        let service = GrpcHealth {
            statuses: HealthService::from_health_reporter(reporter),
            health: health.clone(),
        };
        (health, HealthServer::new(service))
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

/// gRPC Health v1: tonic-health's statuses and watch streams, with `Check` answering NOT_SERVING for the
/// reported services once the server drains (their statuses are cleared then, to end the watch streams).
#[derive(Debug)]
pub struct GrpcHealth {
    statuses: HealthService,
    health: Health,
}

#[tonic::async_trait]
impl tonic_health::pb::health_server::Health for GrpcHealth {
    async fn check(&self, request: Request<HealthCheckRequest>) -> Result<Response<HealthCheckResponse>, Status> {
        let service = request.get_ref().service.as_str();
        if !self.health.is_serving() && ["", FLIGHT_SERVICE].contains(&service) {
            return Ok(Response::new(HealthCheckResponse {
                status: WireStatus::NotServing as i32,
            }));
        }
        self.statuses.check(request).await
    }

    type WatchStream = tonic_health::server::WatchStream;

    async fn watch(&self, request: Request<HealthCheckRequest>) -> Result<Response<Self::WatchStream>, Status> {
        self.statuses.watch(request).await
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use tonic_health::pb::health_server::Health as _;

    use super::*;

    async fn check(service: &GrpcHealth, name: &str) -> Result<i32, tonic::Code> {
        let request = Request::new(HealthCheckRequest {
            service: name.to_owned(),
        });
        match service.check(request).await {
            Ok(response) => Ok(response.into_inner().status),
            Err(status) => Err(status.code()),
        }
    }

    #[tokio::test]
    async fn check_answers_not_serving_after_drain_and_watchers_end() {
        let (health, server) = Health::new().await;
        let service = GrpcHealth {
            statuses: HealthService::from_health_reporter(health.reporter.clone()),
            health: health.clone(),
        };
        drop(server);
        let serving = Ok(WireStatus::Serving as i32);
        assert_eq!(check(&service, "").await, serving);
        assert_eq!(check(&service, FLIGHT_SERVICE).await, serving);
        assert_eq!(check(&service, "no.such.Service").await, Err(tonic::Code::NotFound));
        let watch = service
            .watch(Request::new(HealthCheckRequest { service: String::new() }))
            .await
            .unwrap()
            .into_inner();

        health.drain().await;
        let not_serving = Ok(WireStatus::NotServing as i32);
        assert_eq!(check(&service, "").await, not_serving);
        assert_eq!(check(&service, FLIGHT_SERVICE).await, not_serving);
        assert_eq!(check(&service, "no.such.Service").await, Err(tonic::Code::NotFound));
        // The watcher's last message is NOT_SERVING, then its stream ends.
        let seen: Vec<i32> = watch.map(|r| r.unwrap().status).collect().await;
        assert_eq!(seen.last(), Some(&(WireStatus::NotServing as i32)));
    }
}
