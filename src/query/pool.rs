//! [`BudgetPool`]: DataFusion's memory pool drawn from the store's budget, so stored flights and the operators of
//! running queries (sorts, joins, aggregates) share one bound. When the budget is full, a query first takes the
//! memory of flights that are already on disk, then waits for the background writer to put more on disk (blocking
//! its compute thread); failing that, its operator spills (to the data directory, counted
//! against the disk limit) or the query fails with RESOURCE_EXHAUSTED.
//!
//! Like DataFusion's `FairSpillPool`, operators that can spill share what queries may use equally: each gets at
//! most its share of the budget minus what stored flights hold (and cannot give back) and what operators that
//! cannot spill hold, so one partition's sort cannot take the memory another needs to merge its spilled runs.
//! An operator that holds nothing yet may take its first batch beyond its share (it has nothing to spill).

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::error::DataFusionError;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation};

use crate::store::FlightStore;

/// A memory pool over the store's budget.
#[derive(Debug)]
pub struct BudgetPool {
    store: FlightStore,
    /// Bytes DataFusion holds now.
    reserved: AtomicUsize,
    /// Operators that can spill, and what those that cannot hold.
    shares: Mutex<Shares>,
}

#[derive(Debug, Default)]
struct Shares {
    spillers: usize,
    unspillable: usize,
}

impl BudgetPool {
    /// A pool drawing from `store`'s budget.
    pub fn new(store: FlightStore) -> Self {
        Self {
            store,
            reserved: AtomicUsize::new(0),
            shares: Mutex::new(Shares::default()),
        }
    }

    fn shares(&self) -> std::sync::MutexGuard<'_, Shares> {
        self.shares.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Most a spilling operator may hold: an equal share of the budget less what stored flights hold and cannot
    /// give back now and what non-spilling operators hold.
    fn spill_share(&self) -> usize {
        let budget = self.store.budget();
        let held_by_store = budget.used().saturating_sub(self.reserved());
        let store_floor = held_by_store.saturating_sub(self.store.freeable_bytes());
        let shares = self.shares();
        let available = budget.limit().saturating_sub(store_floor + shares.unspillable);
        available / shares.spillers.max(1)
    }
}

impl std::fmt::Display for BudgetPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "BudgetPool(reserved: {}, budget: {})",
            self.reserved(),
            self.store.budget().limit()
        )
    }
}

impl MemoryPool for BudgetPool {
    fn name(&self) -> &str {
        "flightbay"
    }

    fn register(&self, consumer: &MemoryConsumer) {
        if consumer.can_spill() {
            self.shares().spillers += 1;
        }
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        if consumer.can_spill() {
            let mut shares = self.shares();
            shares.spillers = shares.spillers.saturating_sub(1);
        }
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.store.budget().add(additional);
        self.reserved.fetch_add(additional, Ordering::Relaxed);
        if !reservation.consumer().can_spill() {
            self.shares().unspillable += additional;
        }
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.store.budget().sub(shrink);
        self.reserved.fetch_sub(shrink, Ordering::Relaxed);
        if !reservation.consumer().can_spill() {
            let mut shares = self.shares();
            shares.unspillable = shares.unspillable.saturating_sub(shrink);
        }
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> datafusion::error::Result<()> {
        let spills = reservation.consumer().can_spill();
        // Over its share, an operator that holds something spills it and tries again; one that holds nothing
        // could not, so its first batch is granted if the budget has it.
        if spills && reservation.size() > 0 && reservation.size() + additional > self.spill_share() {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "{} needs {additional} more bytes beyond its share of the memory budget ({} bytes)",
                reservation.consumer().name(),
                self.spill_share(),
            )));
        }
        if self.store.reserve_blocking(additional) {
            self.reserved.fetch_add(additional, Ordering::Relaxed);
            if !spills {
                self.shares().unspillable += additional;
            }
            return Ok(());
        }
        let used = self.store.budget().used();
        let queries = self.reserved();
        Err(DataFusionError::ResourcesExhausted(format!(
            "{} needs {additional} more bytes and the memory budget ({} bytes, {used} in use: {} by stored \
             flights, {queries} by queries) cannot make room",
            reservation.consumer().name(),
            self.store.budget().limit(),
            used.saturating_sub(queries),
        )))
    }

    fn reserved(&self) -> usize {
        self.reserved.load(Ordering::Relaxed)
    }

    fn memory_limit(&self) -> MemoryLimit {
        MemoryLimit::Finite(self.store.budget().limit())
    }
}
