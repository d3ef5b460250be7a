//! The result cache: canonical request key → flight id, with single-flight computation.
//!
//! Flights are immutable and keys contain the resolved input ids, so an entry never goes stale; it only disappears
//! when its flight is dropped, and then the next request recomputes.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use serde::Serialize;
use tokio::sync::OnceCell;

use crate::error::Result;
use crate::store::{FlightId, FlightStore};

/// Bumped whenever the meaning of a key changes (op semantics, plan canonicalization).
const KEY_VERSION: u32 = 1;

/// A 128-bit digest of a canonical request.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey(u64, u64);

impl CacheKey {
    /// Digest of anything hashable (an optimized logical plan, a canonical op string).
    pub fn of<T: Hash + ?Sized>(kind: &str, value: &T) -> Self {
        let digest = |salt: u64| {
            let mut h = DefaultHasher::new();
            (salt, KEY_VERSION, kind).hash(&mut h);
            value.hash(&mut h);
            h.finish()
        };
        CacheKey(digest(0x9e37_79b9_7f4a_7c15), digest(0xc2b2_ae3d_27d4_eb4f))
    }
}

/// Whether a request was answered by an existing flight.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheStatus {
    /// An existing flight answered.
    Hit,
    /// The result was computed now.
    Miss,
}

impl CacheStatus {
    /// `hit` / `miss`.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
        }
    }
}

/// Counters reported by `stats`.
#[derive(Debug, Default, Serialize)]
pub struct CacheStats {
    /// Requests answered by an existing flight.
    pub hits: u64,
    /// Requests that computed (or waited for) a new flight.
    pub misses: u64,
    /// Computations actually run (concurrent identical misses share one).
    pub computations: u64,
    /// Requests that could not be cached (volatile functions).
    pub uncacheable: u64,
    /// Keys currently known.
    pub entries: usize,
}

/// Key → flight, with one computation per key at a time.
#[derive(Debug, Default)]
pub struct ResultCache {
    /// DashMap: requests for different keys never contend; the per-key `OnceCell` makes concurrent identical
    /// requests wait for one computation instead of running it N times.
    entries: DashMap<CacheKey, Arc<OnceCell<FlightId>>>,
    /// Hits by the flight that answered (for the dashboard); entries of dropped flights go at the next
    /// [`Self::hits_by_flight`], so the map stays as small as the flights that were ever reused and still exist.
    flight_hits: DashMap<FlightId, u64>,
    hits: AtomicU64,
    misses: AtomicU64,
    computations: AtomicU64,
    uncacheable: AtomicU64,
}

impl ResultCache {
    /// Returns the flight for `key`, computing it with `compute` at most once among concurrent callers.
    pub async fn get_or_compute<F, Fut>(
        &self,
        store: &FlightStore,
        key: CacheKey,
        compute: F,
    ) -> Result<(FlightId, CacheStatus)>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<FlightId>>,
    {
        let mut compute = Some(compute);
        loop {
            let cell = Arc::clone(self.entries.entry(key).or_default().value());
            if let Some(id) = cell.get() {
                if store.contains(*id) {
                    self.record_hit(*id);
                    return Ok((*id, CacheStatus::Hit));
                }
                // The result was dropped: forget it (unless someone already replaced the entry) and recompute.
                self.entries.remove_if(&key, |_, v| Arc::ptr_eq(v, &cell));
                continue;
            }
            let mut ran = false;
            let result = cell
                .get_or_try_init(|| {
                    ran = true;
                    self.computations.fetch_add(1, Ordering::Relaxed);
                    match compute.take() {
                        Some(f) => futures::future::Either::Left(f()),
                        None => futures::future::Either::Right(async {
                            Err(crate::error::Error::internal("cache computation requested twice"))
                        }),
                    }
                })
                .await;
            match result {
                Ok(id) => {
                    let status = if ran { CacheStatus::Miss } else { CacheStatus::Hit };
                    match status {
                        CacheStatus::Miss => {
                            self.misses.fetch_add(1, Ordering::Relaxed);
                        }
                        CacheStatus::Hit => self.record_hit(*id),
                    }
                    return Ok((*id, status));
                }
                Err(e) => {
                    self.entries.remove_if(&key, |_, v| Arc::ptr_eq(v, &cell));
                    return Err(e);
                }
            }
        }
    }

    fn record_hit(&self, id: FlightId) {
        self.hits.fetch_add(1, Ordering::Relaxed);
        *self.flight_hits.entry(id).or_default() += 1;
    }

    /// Hits by the flight that answered them, for flights that still exist (the others are forgotten here).
    pub fn hits_by_flight(&self, store: &FlightStore) -> HashMap<FlightId, u64> {
        self.flight_hits.retain(|id, _| store.contains(*id));
        self.flight_hits.iter().map(|e| (*e.key(), *e.value())).collect()
    }

    /// Counts a request that bypassed the cache.
    pub fn record_uncacheable(&self) {
        self.uncacheable.fetch_add(1, Ordering::Relaxed);
        self.misses.fetch_add(1, Ordering::Relaxed);
        self.computations.fetch_add(1, Ordering::Relaxed);
    }

    /// Current counters.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            computations: self.computations.load(Ordering::Relaxed),
            uncacheable: self.uncacheable.load(Ordering::Relaxed),
            entries: self.entries.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::record_batch::RecordBatch;

    use super::*;
    use crate::error::Error;
    use crate::store::{Lineage, StoreConfig};

    async fn flight(store: &FlightStore) -> FlightId {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let mut writer = store.derived_writer(Arc::clone(&schema));
        writer
            .push(RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 2]))]).unwrap())
            .await
            .unwrap();
        let lineage = Lineage {
            op: "test".into(),
            params: serde_json::json!({}),
            inputs: vec![],
        };
        store
            .publish_derived(writer.finish().await.unwrap(), lineage, None)
            .await
            .unwrap()
            .id()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_compute_once_and_failures_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let store = FlightStore::open(StoreConfig::ephemeral(1 << 20, dir.path().to_path_buf()))
            .await
            .unwrap();
        let id = flight(&store).await;
        let cache = Arc::new(ResultCache::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let key = CacheKey::of("op", "same request");
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (cache, store, runs) = (Arc::clone(&cache), store.clone(), Arc::clone(&runs));
                tokio::spawn(async move {
                    cache
                        .get_or_compute(&store, key, || async {
                            runs.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            Ok(id)
                        })
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut statuses = Vec::new();
        for t in tasks {
            let (got, status) = t.await.unwrap();
            assert_eq!(got, id);
            statuses.push(status);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1, "one computation for sixteen requests");
        assert_eq!(statuses.iter().filter(|s| **s == CacheStatus::Miss).count(), 1);
        assert_eq!(cache.stats().computations, 1);
        assert_eq!(cache.hits_by_flight(&store), HashMap::from([(id, 15)]));

        // a failed computation is not remembered: the next request computes again
        let failing = CacheKey::of("op", "fails once");
        let e = cache
            .get_or_compute(&store, failing, || async { Err(Error::invalid("bad")) })
            .await
            .unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)));
        let (got, status) = cache
            .get_or_compute(&store, failing, || async { Ok(id) })
            .await
            .unwrap();
        assert_eq!((got, status), (id, CacheStatus::Miss));

        // a dropped result is recomputed
        store.drop_flight(id).await.unwrap();
        let again = flight(&store).await;
        let (got, status) = cache.get_or_compute(&store, key, || async { Ok(again) }).await.unwrap();
        assert_eq!((got, status), (again, CacheStatus::Miss));
        // the dropped flight's hits went with it
        assert_eq!(cache.hits_by_flight(&store), HashMap::new());
        store.close().await.unwrap();
    }
}
