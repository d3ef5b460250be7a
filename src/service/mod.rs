//! The tonic edge: `impl FlightService` only dispatches; each RPC lives in its own file and reads
//! parse → call the core → encode.

mod auth;
mod compute;
mod dashboard;
mod decode_status;
mod do_action;
mod do_get;
mod do_put;
mod flight_sql;
mod get_flight_info;
mod get_schema;
mod handshake;
mod info;
mod list_actions;
mod list_flights;
mod rpc_metrics;
mod wire;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo, HandshakeRequest, HandshakeResponse,
    PollInfo, PutResult, SchemaResult, Ticket,
};
use futures::Stream;
use serde::Serialize;
use tokio::sync::Notify;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::Authenticator;
use crate::config::Config;
use crate::query::{Engine, EngineStats};
use crate::store::{FlightStore, StoreStats};

pub use compute::{COMPUTE_STACK_BYTES, ComputeStats};
pub use dashboard::{DashboardView, FlightRow, LineageInput, LineageRow};
pub use decode_status::DecodeStatusLayer;
pub use rpc_metrics::RpcMetricsLayer;
pub use wire::DoGetLayer;

/// A boxed response stream.
pub type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The Flight service; cheap to clone.
#[derive(Clone, Debug)]
pub struct FlightbayService {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: FlightStore,
    engine: Engine,
    config: Config,
    /// Notified by the `shutdown` action; `server::run` waits on it.
    stop: Arc<Notify>,
    started: Instant,
    /// `None` when auth is off: every caller may do everything.
    auth: Option<Authenticator>,
    /// Where SQL and ops compute, under admission control and deadlines.
    compute: compute::Compute,
    /// Open Flight SQL prepared statements.
    prepared: flight_sql::PreparedStatements,
}

impl FlightbayService {
    /// A service over `store` and `engine`; the `shutdown` action notifies `stop`. With `auth`, every RPC but
    /// Handshake needs a bearer token (see `service/auth.rs` for what each grant allows). Fails when the
    /// computation runtime cannot start.
    pub fn try_new(
        store: FlightStore,
        engine: Engine,
        config: Config,
        stop: Arc<Notify>,
        auth: Option<Authenticator>,
    ) -> crate::Result<Self> {
        let compute = compute::Compute::try_new(&config)?;
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                engine,
                config,
                stop,
                started: Instant::now(),
                auth,
                compute,
                prepared: Default::default(),
            }),
        })
    }

    /// The counters of the store, the result cache and the computation queue: what the `stats` action answers
    /// and `/metrics` exposes.
    pub fn stats(&self) -> Stats {
        Stats {
            store: self.inner.store.stats(),
            engine: self.inner.engine.stats(),
            compute: self.inner.compute.stats(),
        }
    }

    fn store(&self) -> &FlightStore {
        &self.inner.store
    }

    fn engine(&self) -> &Engine {
        &self.inner.engine
    }
}

/// Counters of a running server (see [`FlightbayService::stats`]).
#[derive(Debug, Serialize)]
pub struct Stats {
    /// Flights, memory, disk, spills, reloads, evictions.
    pub store: StoreStats,
    /// The result cache.
    pub engine: EngineStats,
    /// SQL queries and ops: running, queued, and how they ended.
    pub compute: ComputeStats,
}

#[tonic::async_trait]
impl FlightService for FlightbayService {
    type HandshakeStream = BoxStream<HandshakeResponse>;
    type ListFlightsStream = BoxStream<FlightInfo>;
    type DoGetStream = BoxStream<FlightData>;
    type DoPutStream = BoxStream<PutResult>;
    type DoExchangeStream = BoxStream<FlightData>;
    type DoActionStream = BoxStream<arrow_flight::Result>;
    type ListActionsStream = BoxStream<ActionType>;

    async fn handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        handshake::handle(self, request).await
    }

    async fn list_flights(&self, request: Request<Criteria>) -> Result<Response<Self::ListFlightsStream>, Status> {
        list_flights::handle(self, request).await
    }

    async fn get_flight_info(&self, request: Request<FlightDescriptor>) -> Result<Response<FlightInfo>, Status> {
        get_flight_info::handle(self, request).await
    }

    async fn poll_flight_info(&self, _request: Request<FlightDescriptor>) -> Result<Response<PollInfo>, Status> {
        Err(Status::unimplemented(
            "PollFlightInfo is not supported; use GetFlightInfo",
        ))
    }

    async fn get_schema(&self, request: Request<FlightDescriptor>) -> Result<Response<SchemaResult>, Status> {
        get_schema::handle(self, request).await
    }

    async fn do_get(&self, request: Request<Ticket>) -> Result<Response<Self::DoGetStream>, Status> {
        do_get::handle(self, request).await
    }

    async fn do_put(&self, request: Request<Streaming<FlightData>>) -> Result<Response<Self::DoPutStream>, Status> {
        do_put::handle(self, request).await
    }

    async fn do_exchange(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        Err(Status::unimplemented("DoExchange is not supported"))
    }

    async fn do_action(&self, request: Request<Action>) -> Result<Response<Self::DoActionStream>, Status> {
        do_action::handle(self, request).await
    }

    async fn list_actions(&self, request: Request<Empty>) -> Result<Response<Self::ListActionsStream>, Status> {
        list_actions::handle(self, request).await
    }
}
