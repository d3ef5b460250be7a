//! Where derive requests (SQL and ops) compute: admission control, deadlines, cancellation, and threads with
//! stacks sized for DataFusion's recursion.
//!
//! - **Admission**: at most `--max-concurrent-queries` computations run at once and `--max-queued-queries` more
//!   wait for a slot; a request beyond that is refused at once with UNAVAILABLE and a retry hint
//!   (`grpc-retry-pushback-ms`), so one heavy user cannot queue work without bound and starve the rest.
//! - **Deadlines**: the earlier of the client's `grpc-timeout` and `--query-timeout` bounds queueing plus
//!   computing; past it the computation is stopped and the request fails with DEADLINE_EXCEEDED.
//! - **Cancellation**: when the client goes away (or its deadline passes) tonic drops the request; the
//!   computation task is aborted with it, which drops DataFusion's streams and the pending flight, returning their
//!   memory. An aborted request publishes nothing.
//! - **Stacks**: planning, optimizing, hashing and evaluating expressions recurse once per nesting level, and
//!   [`crate::protocol::sql_depth`] lets through up to 1 000 levels; the computations run on a runtime of their
//!   own whose threads have [`COMPUTE_STACK_BYTES`] of stack (address space reserved, touched only as used), far
//!   beyond what that depth needs even in a debug build.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use serde::Serialize;
use tokio::runtime::{Handle, Runtime};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::metadata::MetadataMap;

use super::FlightbayService;
use super::auth::Access;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::protocol::Op;
use crate::query::{Outcome, Scope};
use crate::store::{FlightId, QualifiedName};

/// Stack of each computation thread.
pub const COMPUTE_STACK_BYTES: usize = 256 << 20;
/// Most computation threads (one per slot up to this).
const MAX_COMPUTE_THREADS: usize = 64;
/// The retry hint sent with UNAVAILABLE.
const RETRY_AFTER_MS: u64 = 1000;

/// Counters for `stats`.
#[derive(Debug, Default, Serialize)]
pub struct ComputeStats {
    /// Computations running now.
    pub running: usize,
    /// Requests waiting for a slot now.
    pub queued: usize,
    /// Computations that ran to the end (successfully or not).
    pub completed: u64,
    /// Requests refused because every slot and queue place was taken.
    pub rejected: u64,
    /// Requests stopped by their deadline or `--query-timeout`.
    pub timed_out: u64,
    /// Computations stopped because the client went away.
    pub cancelled: u64,
}

#[derive(Debug, Default)]
struct Counters {
    running: AtomicUsize,
    queued: AtomicUsize,
    completed: AtomicU64,
    rejected: AtomicU64,
    timed_out: AtomicU64,
    cancelled: AtomicU64,
}

/// The computation side of the service (see the module docs).
#[derive(Debug)]
pub(super) struct Compute {
    /// `Option` only so that `Drop` can take it and shut it down without blocking the thread that drops it.
    runtime: Option<Runtime>,
    /// Slots for running computations.
    slots: Arc<Semaphore>,
    /// Places for running plus waiting requests; one is taken before waiting for a slot.
    places: Arc<Semaphore>,
    max_places: usize,
    timeout: Option<Duration>,
    counters: Arc<Counters>,
}

impl Drop for Compute {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Decrements a gauge when dropped.
struct Gauge(Arc<Counters>, fn(&Counters) -> &AtomicUsize);

impl Gauge {
    fn enter(counters: &Arc<Counters>, which: fn(&Counters) -> &AtomicUsize) -> Self {
        which(counters).fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(counters), which)
    }
}

impl Drop for Gauge {
    fn drop(&mut self) {
        (self.1)(&self.0).fetch_sub(1, Ordering::Relaxed);
    }
}

/// Aborts the computation if the request is dropped before it finished (client gone, deadline passed).
struct AbortOnDrop<T> {
    handle: JoinHandle<T>,
    counters: Arc<Counters>,
    timed_out: bool,
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        if !self.handle.is_finished() {
            self.handle.abort();
            if !self.timed_out {
                self.counters.cancelled.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl Compute {
    /// The computation runtime and limits from `config`.
    pub(super) fn try_new(config: &Config) -> Result<Self> {
        let slots = config.max_concurrent_queries_resolved();
        // One thread per slot: a computation that does not yield (a long kernel) holds its thread, and the OS,
        // not the runtime, then shares the cores among the running ones.
        let workers = slots.clamp(2, MAX_COMPUTE_THREADS);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("flightbay-compute")
            .thread_stack_size(COMPUTE_STACK_BYTES)
            .enable_all()
            .build()
            .map_err(|e| Error::internal(format!("cannot start the computation runtime: {e}")))?;
        let max_places = slots.saturating_add(config.max_queued_queries);
        Ok(Self {
            runtime: Some(runtime),
            slots: Arc::new(Semaphore::new(slots)),
            places: Arc::new(Semaphore::new(max_places)),
            max_places,
            timeout: config.query_timeout_limit(),
            counters: Arc::default(),
        })
    }

    /// Current counters.
    pub(super) fn stats(&self) -> ComputeStats {
        let c = &self.counters;
        ComputeStats {
            running: c.running.load(Ordering::Relaxed),
            queued: c.queued.load(Ordering::Relaxed),
            completed: c.completed.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
            timed_out: c.timed_out.load(Ordering::Relaxed),
            cancelled: c.cancelled.load(Ordering::Relaxed),
        }
    }

    fn handle(&self) -> Result<&Handle> {
        self.runtime
            .as_ref()
            .map(Runtime::handle)
            .ok_or_else(|| Error::internal("the computation runtime has stopped"))
    }

    /// Runs `work` on the computation runtime under admission control and the earlier of `client_timeout` and
    /// `--query-timeout`.
    pub(super) async fn run<T, F>(&self, client_timeout: Option<Duration>, work: F) -> Result<T>
    where
        F: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let budget = match (client_timeout, self.timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let deadline = budget.map(|d| Instant::now() + d);
        let late = |counters: &Counters| {
            counters.timed_out.fetch_add(1, Ordering::Relaxed);
            Error::DeadlineExceeded(format!(
                "the request did not finish within {:.3}s (the client's deadline or --query-timeout) and was stopped",
                budget.unwrap_or_default().as_secs_f64()
            ))
        };
        let place = Arc::clone(&self.places).try_acquire_owned().map_err(|_| {
            self.counters.rejected.fetch_add(1, Ordering::Relaxed);
            Error::Unavailable {
                message: format!(
                    "server busy: {} computations running or queued, the most allowed (--max-concurrent-queries, \
                     --max-queued-queries); retry in {RETRY_AFTER_MS} ms",
                    self.max_places
                ),
                retry_after_ms: RETRY_AFTER_MS,
            }
        })?;
        let slot = {
            let _queued = Gauge::enter(&self.counters, |c| &c.queued);
            let acquire = Arc::clone(&self.slots).acquire_owned();
            let acquired = match deadline {
                Some(at) => tokio::time::timeout_at(at, acquire)
                    .await
                    .map_err(|_| late(&self.counters))?,
                None => acquire.await,
            };
            acquired.map_err(|_| Error::internal("admission closed"))?
        };
        let counters = Arc::clone(&self.counters);
        let task = async move {
            let _running = Gauge::enter(&counters, |c| &c.running);
            let result = work.await;
            counters.completed.fetch_add(1, Ordering::Relaxed);
            drop((slot, place));
            result
        };
        let mut guard = AbortOnDrop {
            handle: self.handle()?.spawn(task),
            counters: Arc::clone(&self.counters),
            timed_out: false,
        };
        let joined = match deadline {
            Some(at) => match tokio::time::timeout_at(at, &mut guard.handle).await {
                Ok(joined) => joined,
                Err(_) => {
                    guard.timed_out = true;
                    return Err(late(&self.counters));
                }
            },
            None => (&mut guard.handle).await,
        };
        joined.map_err(|e| Error::internal(format!("computation task failed: {e}")))?
    }
}

/// The client's deadline from its `grpc-timeout` header (`<digits><unit>`, unit one of `H M S m u n`).
pub(super) fn grpc_timeout(metadata: &MetadataMap) -> Option<Duration> {
    let value = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Runs a derive op for `access` on the computation runtime: names of inputs are checked against the caller's
/// namespaces first, SQL is planned in the caller's [`Scope`], and inputs are checked before anything is read.
pub(super) async fn derive(
    service: &FlightbayService,
    access: &Access,
    mut op: Op,
    name: Option<QualifiedName>,
    metadata: &MetadataMap,
) -> Result<Outcome> {
    access.read_names(op.sources_mut().into_iter().map(|s| &s.0))?;
    let task_service = service.clone();
    let access = access.clone();
    let work = async move {
        let check = |inputs: &[FlightId]| access.read_inputs(inputs);
        let scope: Arc<dyn Scope> = Arc::new(access.clone());
        task_service.engine().run_checked(op, name, &check, Some(scope)).await
    };
    service.inner.compute.run(grpc_timeout(metadata), work).await
}

/// [`derive`] for a SQL query with bound parameter values (Flight SQL prepared statements).
pub(super) async fn derive_sql(
    service: &FlightbayService,
    access: &Access,
    query: String,
    params: Vec<ScalarValue>,
    metadata: &MetadataMap,
) -> Result<Outcome> {
    let task_service = service.clone();
    let access = access.clone();
    let work = async move {
        let check = |inputs: &[FlightId]| access.read_inputs(inputs);
        let scope: Arc<dyn Scope> = Arc::new(access.clone());
        task_service
            .engine()
            .run_sql_checked(&query, params, None, &check, Some(scope))
            .await
    };
    service.inner.compute.run(grpc_timeout(metadata), work).await
}

/// Plans a SQL query in the caller's scope without running it: the schemas of its result and its parameters.
pub(super) async fn describe_sql(
    service: &FlightbayService,
    access: &Access,
    query: String,
    metadata: &MetadataMap,
) -> Result<(SchemaRef, SchemaRef)> {
    let task_service = service.clone();
    let scope: Arc<dyn Scope> = Arc::new(access.clone());
    let work = async move { task_service.engine().describe_sql(&query, Some(scope)).await };
    service.inner.compute.run(grpc_timeout(metadata), work).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts() {
        let mut m = MetadataMap::new();
        assert_eq!(grpc_timeout(&m), None);
        for (value, expected) in [
            ("5S", Some(Duration::from_secs(5))),
            ("250m", Some(Duration::from_millis(250))),
            ("2H", Some(Duration::from_secs(7200))),
            ("10u", Some(Duration::from_micros(10))),
            ("S", None),
            ("5x", None),
            ("123456789S", None),
            ("", None),
        ] {
            m.insert("grpc-timeout", value.parse().unwrap());
            assert_eq!(grpc_timeout(&m), expected, "{value}");
        }
    }
}
