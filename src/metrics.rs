//! Prometheus metrics (`GET /metrics` on the HTTP listener, OpenMetrics text).
//!
//! Two kinds, so that each number has one owner:
//!
//! - **RPC metrics** are recorded here, by the tower layer of [`crate::service::RpcMetricsLayer`] in front of the
//!   Flight port: calls and their duration by method and gRPC status code, bytes in and out by method.
//! - **State** is read at scrape time from the counters the `stats` action reports
//!   ([`crate::service::FlightbayService::stats`]: the store, the result cache, the computation queue); nothing is
//!   copied, so `/metrics` and `stats` always agree.
//!
//! Every name starts with `flightbay_` and is listed in the README ("Metrics and health").
//!
//! The RPC layer also keeps the last [`RECENT_CALLS`] calls ([`RecentCalls`]) for the dashboard; they are not
//! Prometheus metrics.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::service::{FlightbayService, Stats};

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Labels of a finished call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    /// The RPC, e.g. `DoGet` (a fixed set, see [`crate::service::RpcMetricsLayer`]).
    pub method: &'static str,
    /// The gRPC status code name, e.g. `OK`, `NOT_FOUND`.
    pub code: &'static str,
}

/// Labels of a byte counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    /// The RPC.
    pub method: &'static str,
}

/// The metrics the RPC layer records.
#[derive(Debug)]
pub struct RpcMetrics {
    /// Seconds from a call's arrival until its response ended (the last message of a stream included).
    pub duration: Family<CallLabels, Histogram>,
    /// Bytes of gRPC messages received (request bodies, frame headers included).
    pub received_bytes: Family<MethodLabels, Counter>,
    /// Bytes of gRPC messages sent (response bodies, frame headers included).
    pub sent_bytes: Family<MethodLabels, Counter>,
    /// The last calls, for the dashboard.
    pub recent: RecentCalls,
}

impl Default for RpcMetrics {
    fn default() -> Self {
        Self {
            // 0.5 ms to about 65 s, doubling.
            duration: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.0005, 2.0, 18))),
            received_bytes: Family::default(),
            sent_bytes: Family::default(),
            recent: RecentCalls::default(),
        }
    }
}

/// How many finished calls [`RecentCalls`] keeps.
pub const RECENT_CALLS: usize = 50;

/// One finished call, as the dashboard lists it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RecentCall {
    /// The RPC (see [`CallLabels::method`]).
    pub method: &'static str,
    /// The gRPC status code name.
    pub code: &'static str,
    /// When the call ended (RFC 3339, UTC, milliseconds).
    pub ended_at: String,
    /// Seconds from its arrival until its response ended.
    pub duration_seconds: f64,
}

/// The last [`RECENT_CALLS`] finished calls, oldest first: a bounded ring, so a busy server keeps a fixed amount.
#[derive(Debug, Default)]
pub struct RecentCalls {
    /// A plain mutex: each holder pushes or copies at most [`RECENT_CALLS`] small records and never awaits, so
    /// the lock is held for microseconds, once per call and once per dashboard refresh.
    calls: Mutex<VecDeque<RecentCall>>,
}

impl RecentCalls {
    /// Records `call`, forgetting the oldest beyond [`RECENT_CALLS`].
    pub fn push(&self, call: RecentCall) {
        let mut calls = self.lock();
        if calls.len() == RECENT_CALLS {
            calls.pop_front();
        }
        calls.push_back(call);
    }

    /// The calls kept, newest first.
    pub fn newest_first(&self) -> Vec<RecentCall> {
        self.lock().iter().rev().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<RecentCall>> {
        // A push or a copy cannot leave the ring half-changed, so a lock poisoned elsewhere still guards a valid one.
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The registry behind `/metrics`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    rpc: Arc<RpcMetrics>,
}

impl Metrics {
    /// RPC metrics, plus the state of `service` read at each scrape.
    pub fn new(service: FlightbayService) -> Self {
        let rpc = Arc::new(RpcMetrics::default());
        let mut registry = Registry::with_prefix("flightbay");
        registry.register_with_unit(
            "rpc_duration",
            "Flight RPCs by method and gRPC status code, from arrival until the response ended; _count is the \
             number of calls",
            Unit::Seconds,
            rpc.duration.clone(),
        );
        registry.register_with_unit(
            "rpc_received",
            "Bytes of gRPC messages received, by method",
            Unit::Bytes,
            rpc.received_bytes.clone(),
        );
        registry.register_with_unit(
            "rpc_sent",
            "Bytes of gRPC messages sent, by method",
            Unit::Bytes,
            rpc.sent_bytes.clone(),
        );
        registry.register_collector(Box::new(StatsCollector { service }));
        Self { registry, rpc }
    }

    /// What the RPC layer records into.
    pub fn rpc(&self) -> Arc<RpcMetrics> {
        Arc::clone(&self.rpc)
    }

    /// Every metric as OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail, and every collector returns Ok: an error here would be a bug in one.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!("encoding metrics: {e}");
        }
        out
    }
}

/// Reads [`Stats`] at scrape time (see the module docs).
#[derive(Debug)]
struct StatsCollector {
    service: FlightbayService,
}

impl Collector for StatsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Stats { store, engine, compute } = self.service.stats();
        let cache = &engine.cache;
        let mut out = Out(&mut encoder);

        out.gauge("flights", "Flights that exist", store.flights as u64)?;
        out.gauge_by(
            "flights_by_state",
            "Flights by where their rows are: memory (every row resident) or spilled (some rows only on disk)",
            "state",
            &[
                ("memory", store.flights_in_memory as u64),
                ("spilled", store.flights_spilled as u64),
            ],
        )?;
        out.gauge("flights_pinned", "Pinned flights", store.flights_pinned as u64)?;
        out.gauge("names", "Names in all namespaces", store.names as u64)?;
        out.gauge("namespaces", "Namespaces, default included", store.namespaces as u64)?;

        out.gauge(
            "resident_bytes",
            "Bytes counted against the memory budget",
            store.resident_bytes as u64,
        )?;
        out.gauge(
            "peak_resident_bytes",
            "Highest resident bytes seen",
            store.peak_resident_bytes as u64,
        )?;
        out.gauge(
            "unwritten_bytes",
            "Resident bytes that have no file yet",
            store.unwritten_bytes,
        )?;
        out.gauge(
            "memory_limit_bytes",
            "The memory budget (--memory-limit)",
            store.memory_limit as u64,
        )?;
        out.gauge(
            "high_water_bytes",
            "Resident bytes above which the background writer starts",
            store.high_water_bytes as u64,
        )?;
        out.gauge("spilled_bytes", "Bytes of flight files on disk", store.spilled_bytes)?;
        if let Some(limit) = store.disk_limit {
            out.gauge("disk_limit_bytes", "The disk limit (--disk-limit)", limit)?;
        }

        out.counter("spills", "Flight files written (for any reason)", store.spills)?;
        out.counter(
            "conversions",
            "Durable upload logs converted to Parquet",
            store.conversions,
        )?;
        out.counter("reloads", "Spilled segments brought back into memory", store.reloads)?;
        out.counter(
            "writer_waits",
            "Times a writer waited for the background writer",
            store.writer_waits,
        )?;
        let e = &store.evictions;
        out.counter_by(
            "evictions",
            "Flights moved out of memory or deleted, by reason: memory (to make room), forced (the spill action), \
             too_large (straight to disk), disk_limit (derived flights deleted under --disk-limit)",
            "reason",
            &[
                ("memory", e.memory),
                ("forced", e.forced),
                ("too_large", e.too_large),
                ("disk_limit", e.disk_limit_drops),
            ],
        )?;

        out.counter(
            "cache_hits",
            "Derive requests answered by an existing flight",
            cache.hits,
        )?;
        out.counter(
            "cache_misses",
            "Derive requests that computed (or waited for) a new flight",
            cache.misses,
        )?;
        out.counter(
            "cache_computations",
            "Computations run (concurrent identical misses share one)",
            cache.computations,
        )?;
        out.counter(
            "cache_uncacheable",
            "Derive requests that could not be cached",
            cache.uncacheable,
        )?;
        out.gauge("cache_entries", "Result cache keys known", cache.entries as u64)?;

        out.gauge(
            "queries_running",
            "SQL queries and ops computing now",
            compute.running as u64,
        )?;
        out.gauge(
            "queries_queued",
            "SQL queries and ops waiting for a slot",
            compute.queued as u64,
        )?;
        out.counter_by(
            "queries_finished",
            "SQL queries and ops by outcome: completed (ran to the end), rejected (queue full), timed_out, \
             cancelled (the client went away)",
            "outcome",
            &[
                ("completed", compute.completed),
                ("rejected", compute.rejected),
                ("timed_out", compute.timed_out),
                ("cancelled", compute.cancelled),
            ],
        )?;
        Ok(())
    }
}

/// Writes constant metrics to a collector's encoder.
struct Out<'a, 'b>(&'a mut DescriptorEncoder<'b>);

impl Out<'_, '_> {
    fn gauge(&mut self, name: &str, help: &str, value: u64) -> Result<(), std::fmt::Error> {
        let gauge = ConstGauge::new(value as i64);
        gauge.encode(self.0.encode_descriptor(name, help, None, gauge.metric_type())?)
    }

    fn counter(&mut self, name: &str, help: &str, value: u64) -> Result<(), std::fmt::Error> {
        let counter = ConstCounter::new(value);
        counter.encode(self.0.encode_descriptor(name, help, None, counter.metric_type())?)
    }

    fn gauge_by(&mut self, name: &str, help: &str, label: &str, values: &[(&str, u64)]) -> Result<(), std::fmt::Error> {
        let mut family = self.0.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for (value_label, value) in values {
            let labels = [(label, *value_label)];
            ConstGauge::new(*value as i64).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }

    fn counter_by(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        values: &[(&str, u64)],
    ) -> Result<(), std::fmt::Error> {
        let mut family = self.0.encode_descriptor(name, help, None, MetricType::Counter)?;
        for (value_label, value) in values {
            let labels = [(label, *value_label)];
            ConstCounter::new(*value).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// The name of gRPC status code `code` as the gRPC spec writes it (`OK`, `NOT_FOUND`, …).
pub fn code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(i: usize) -> RecentCall {
        RecentCall {
            method: "DoGet",
            code: "OK",
            ended_at: format!("call {i}"),
            duration_seconds: i as f64,
        }
    }

    #[test]
    fn the_ring_keeps_the_newest_calls() {
        let recent = RecentCalls::default();
        recent.push(call(0));
        recent.push(call(1));
        assert_eq!(recent.newest_first(), vec![call(1), call(0)]);
        for i in 2..RECENT_CALLS + 7 {
            recent.push(call(i));
        }
        let kept = recent.newest_first();
        assert_eq!(kept.len(), RECENT_CALLS);
        assert_eq!(kept.first(), Some(&call(RECENT_CALLS + 6)));
        assert_eq!(kept.last(), Some(&call(7)));
    }
}
