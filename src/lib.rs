//! flightbay: an Arrow Flight server where every upload and every query result is a numbered, immutable flight.
//!
//! Crate map, from the wire inwards:
//!
//! - [`server`]: transport (message limits, graceful shutdown); takes a bound listener.
//! - [`http`]: the HTTP side listener (`/metrics`, `/health`, the [`dashboard`]); [`metrics`] names and encodes
//!   the Prometheus metrics; [`health`] owns serving vs draining (and reports it to gRPC Health v1).
//! - [`service`]: the tonic edge, one file per RPC: parse → call the core → encode.
//! - [`protocol`]: the only code that knows byte layouts (descriptors, tickets, action bodies, metadata JSON).
//! - [`query`]: DataFusion glue: ops → plans, the result cache with single-flight.
//! - [`store`]: flight ids, names, namespaces, the memory budget.
//! - [`auth`]: grants, bearer tokens, the users file and password hashes (no knowledge of flights);
//!   [`throttle`] bounds password checks and refuses repeated login failures.
//! - [`config`], [`error`], [`telemetry`]: settings, the error → status mapping, logging.
//! - [`cli`]: the client subcommands (`ls`, `put`, `get`, `sql`, `drop`, `stats`).

pub mod auth;
pub mod cli;
pub mod config;
pub mod dashboard;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod health;
pub mod http;
pub mod metrics;
pub mod protocol;
pub mod query;
pub mod server;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod throttle;

pub use config::Config;
pub use error::{Error, Result};
