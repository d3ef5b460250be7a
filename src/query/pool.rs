//! [`BudgetPool`]: DataFusion's memory pool drawn from the store's budget, so stored flights and the operators of
//! running queries (sorts, joins, aggregates) share one bound. When the budget is full, a query first takes the
//! memory of flights that are already on disk, then waits for the background writer to put more on disk (blocking
//! its compute thread); failing that, its operator spills (to the data directory, counted
//! against the disk limit) or the query fails with RESOURCE_EXHAUSTED.

use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::error::DataFusionError;
use datafusion::execution::memory_pool::{MemoryLimit, MemoryPool, MemoryReservation};

use crate::store::FlightStore;

/// A memory pool over the store's budget.
#[derive(Debug)]
pub struct BudgetPool {
    store: FlightStore,
    /// Bytes DataFusion holds now.
    reserved: AtomicUsize,
}

impl BudgetPool {
    /// A pool drawing from `store`'s budget.
    pub fn new(store: FlightStore) -> Self {
        Self {
            store,
            reserved: AtomicUsize::new(0),
        }
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

    fn grow(&self, _reservation: &MemoryReservation, additional: usize) {
        self.store.budget().add(additional);
        self.reserved.fetch_add(additional, Ordering::Relaxed);
    }

    fn shrink(&self, _reservation: &MemoryReservation, shrink: usize) {
        self.store.budget().sub(shrink);
        self.reserved.fetch_sub(shrink, Ordering::Relaxed);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> datafusion::error::Result<()> {
        if self.store.reserve_blocking(additional) {
            self.reserved.fetch_add(additional, Ordering::Relaxed);
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
