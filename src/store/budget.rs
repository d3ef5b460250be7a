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
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            inner: Arc::new(BudgetInner {
                limit,
                used: AtomicUsize::new(0),
                peak: AtomicUsize::new(0),
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

    fn add(&self, bytes: usize) {
        let now = self.inner.used.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.inner.peak.fetch_max(now, Ordering::Relaxed);
    }

    fn try_add(&self, bytes: usize) -> bool {
        let result = self
            .inner
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                let next = used.checked_add(bytes)?;
                (next <= self.inner.limit).then_some(next)
            });
        match result {
            Ok(prev) => {
                self.inner.peak.fetch_max(prev + bytes, Ordering::Relaxed);
                true
            }
            Err(_) => false,
        }
    }

    fn sub(&self, bytes: usize) {
        self.inner.used.fetch_sub(bytes, Ordering::Relaxed);
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
        let ok = self.budget.try_add(bytes);
        if ok {
            self.bytes += bytes;
        }
        ok
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
