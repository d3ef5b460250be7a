//! [`MemoryBudget`] and its RAII [`Reservation`]s: the one owner of "how many bytes are resident".

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts the bytes of resident flight data against a limit.
///
/// Every resident batch is covered by a [`Reservation`]; dropping the reservation returns its bytes, so no code path
/// can forget to release memory. Cloning the budget is cheap and shares the counter.
///
/// Scenarios:
/// - an upload grows its reservation batch by batch while it streams in; if the upload fails, the half-built flight
///   and its reservation are dropped together and the bytes come back;
/// - an appended flight shares the segments of its parent, so shared bytes are counted once, and released when the
///   last flight that uses them is dropped.
#[derive(Clone, Debug)]
pub struct MemoryBudget {
    inner: Arc<BudgetInner>,
}

#[derive(Debug)]
struct BudgetInner {
    limit: usize,
    used: AtomicUsize,
    peak: AtomicUsize,
    /// Woken whenever bytes are released, for writers waiting for room.
    released: tokio::sync::Notify,
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            inner: Arc::new(BudgetInner {
                limit,
                used: AtomicUsize::new(0),
                peak: AtomicUsize::new(0),
                released: tokio::sync::Notify::new(),
            }),
        }
    }

    /// The configured limit in bytes.
    pub fn limit(&self) -> usize {
        self.inner.limit
    }

    /// Bytes currently reserved.
    pub fn used(&self) -> usize {
        self.inner.used.load(Ordering::Relaxed)
    }

    /// The largest value `used` has reached.
    pub fn peak(&self) -> usize {
        self.inner.peak.load(Ordering::Relaxed)
    }

    /// Bytes that can still be reserved without exceeding the limit.
    pub fn available(&self) -> usize {
        self.limit().saturating_sub(self.used())
    }

    /// An empty reservation, to be grown as data arrives.
    pub fn reservation(&self) -> Reservation {
        Reservation {
            budget: self.clone(),
            bytes: 0,
        }
    }

    /// A future that completes the next time bytes are released (create it before checking for room).
    pub fn released(&self) -> tokio::sync::futures::Notified<'_> {
        self.inner.released.notified()
    }

    /// Wakes writers waiting for room (something became evictable).
    pub(crate) fn wake_waiters(&self) {
        self.inner.released.notify_waiters();
    }

    /// Adds `bytes` that are accounted outside a [`Reservation`] (DataFusion's memory pool).
    pub(crate) fn add(&self, bytes: usize) {
        let now = self.inner.used.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.inner.peak.fetch_max(now, Ordering::Relaxed);
    }

    /// Adds `bytes` outside a [`Reservation`] if the budget has room.
    pub(crate) fn try_add(&self, bytes: usize) -> bool {
        self.try_add_below(bytes, self.inner.limit)
    }

    /// Adds `bytes` if the total stays at or below `ceiling` (and the limit).
    fn try_add_below(&self, bytes: usize, ceiling: usize) -> bool {
        let ceiling = ceiling.min(self.inner.limit);
        let result = self
            .inner
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                let next = used.checked_add(bytes)?;
                (next <= ceiling).then_some(next)
            });
        match result {
            Ok(prev) => {
                self.inner.peak.fetch_max(prev + bytes, Ordering::Relaxed);
                true
            }
            Err(_) => false,
        }
    }

    /// Releases `bytes` added with [`MemoryBudget::add`] or [`MemoryBudget::try_add`].
    pub(crate) fn sub(&self, bytes: usize) {
        if bytes > 0 {
            self.inner.used.fetch_sub(bytes, Ordering::Relaxed);
            self.inner.released.notify_waiters();
        }
    }
}

/// Bytes held against a [`MemoryBudget`]; released on drop.
#[derive(Debug)]
pub struct Reservation {
    budget: MemoryBudget,
    bytes: usize,
}

impl Reservation {
    /// Bytes held by this reservation.
    pub fn size(&self) -> usize {
        self.bytes
    }

    /// Adds `bytes` unconditionally (the caller has already made room or accepts going over).
    pub fn grow(&mut self, bytes: usize) {
        self.budget.add(bytes);
        self.bytes += bytes;
    }

    /// Adds `bytes` only if the budget has room; returns whether it did.
    pub fn try_grow(&mut self, bytes: usize) -> bool {
        self.try_grow_below(bytes, usize::MAX)
    }

    /// Adds `bytes` only if the budget's total stays at or below `ceiling`; returns whether it did.
    pub fn try_grow_below(&mut self, bytes: usize, ceiling: usize) -> bool {
        let ok = self.budget.try_add_below(bytes, ceiling);
        if ok {
            self.bytes += bytes;
        }
        ok
    }

    /// Releases `bytes` of what is held (at most all of it).
    pub fn shrink(&mut self, bytes: usize) {
        let bytes = bytes.min(self.bytes);
        self.budget.sub(bytes);
        self.bytes -= bytes;
    }

    /// Moves everything `other` holds into this reservation.
    pub fn merge(&mut self, mut other: Reservation) {
        self.bytes += std::mem::take(&mut other.bytes);
    }

    /// Leaves what is held in the budget, to be released with [`MemoryBudget::sub`] by whoever accounts for it
    /// from now on (DataFusion's memory pool).
    pub(crate) fn detach(mut self) {
        self.bytes = 0;
    }

    /// Releases everything held.
    pub fn free(&mut self) {
        self.budget.sub(self.bytes);
        self.bytes = 0;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.free();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_release_on_drop() {
        let budget = MemoryBudget::new(100);
        let mut a = budget.reservation();
        a.grow(60);
        let mut b = budget.reservation();
        assert!(!b.try_grow(50));
        assert!(b.try_grow(40));
        assert_eq!(budget.used(), 100);
        drop(a);
        assert_eq!(budget.used(), 40);
        b.free();
        assert_eq!(budget.used(), 0);
        assert_eq!(budget.peak(), 100);
    }
}
