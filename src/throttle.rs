//! Login throttling: a bound on concurrent password checks, and failure limits per user and per peer.
//!
//! Every Basic credential costs one argon2 verification: about 19 MiB of memory and tens of milliseconds of one
//! core, by design. Without a bound, 48 parallel bogus logins took a server from 226 MB to 1.17 GB RSS, and a
//! guesser could try passwords as fast as the cores hash. [`LoginThrottle`] makes logins cheap to refuse:
//!
//! - at most [`MAX_CONCURRENT_CHECKS`] verifications run at once, on that many threads of the throttle's own
//!   (the allocator keeps a freed 19 MiB block in the arena of the thread that used it, so checks spread over
//!   the blocking pool's many threads would keep one block per thread); up to [`MAX_WAITING_CHECKS`] more wait
//!   for a slot, and the rest are refused at once with UNAVAILABLE (and a retry hint), so memory stays bounded;
//! - after [`MAX_USER_FAILURES`] failed logins for one user name (known or not), or [`MAX_PEER_FAILURES`] from
//!   one client address, within [`FAILURE_WINDOW`], further attempts for it are refused with RESOURCE_EXHAUSTED
//!   until the window has passed, without hashing anything. A successful login clears the user's count.
//!
//! Unknown users are checked against a dummy hash (see [`crate::auth::Users::check`]) and counted like known
//! ones, so neither response time nor throttling tells which user names exist.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, SemaphorePermit};

use crate::error::{Error, Result};

/// Password verifications that may run at once.
pub const MAX_CONCURRENT_CHECKS: usize = 2;
/// Logins that may wait for a verification slot; more are refused with UNAVAILABLE.
pub const MAX_WAITING_CHECKS: usize = 64;
/// Failed logins per user name within [`FAILURE_WINDOW`] before that name is refused.
pub const MAX_USER_FAILURES: u32 = 5;
/// Failed logins per client address within [`FAILURE_WINDOW`] before that address is refused.
pub const MAX_PEER_FAILURES: u32 = 20;
/// How long failures are remembered.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Users and peers remembered at most; past it, expired entries are forgotten first, then the oldest.
const MAX_TRACKED: usize = 10_000;

/// What failures are counted against.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    User(String),
    Peer(IpAddr),
}

/// Failures of one key in its current window.
#[derive(Clone, Copy, Debug)]
struct Window {
    started: Instant,
    failures: u32,
}

/// A password check handed to the check threads.
type Job = Box<dyn FnOnce() + Send>;

/// The throttle of one server (see the module docs).
#[derive(Debug)]
pub struct LoginThrottle {
    checks: Semaphore,
    /// Logins holding or waiting for a verification slot.
    admitted: Semaphore,
    /// A std mutex: held only to read or bump a counter, never across an await.
    failures: Mutex<HashMap<Key, Window>>,
    /// Feeds the check threads; dropping it (with the throttle) ends them.
    jobs: Mutex<Sender<Job>>,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        // A std mutex around the receiver: each idle thread takes the next job; held only while taking it.
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..MAX_CONCURRENT_CHECKS {
            let queue = Arc::clone(&queue);
            let spawned = std::thread::Builder::new()
                .name(format!("flightbay-login-{i}"))
                .spawn(move || run_checks(&queue));
            if let Err(e) = spawned {
                tracing::warn!("cannot start a password check thread: {e}");
            }
        }
        Self {
            checks: Semaphore::new(MAX_CONCURRENT_CHECKS),
            admitted: Semaphore::new(MAX_CONCURRENT_CHECKS + MAX_WAITING_CHECKS),
            failures: Mutex::new(HashMap::new()),
            jobs: Mutex::new(jobs),
        }
    }
}

/// A check thread: runs jobs until the throttle is dropped.
fn run_checks(queue: &Mutex<Receiver<Job>>) {
    loop {
        let job = match queue.lock() {
            Ok(q) => q.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

/// A verification slot; dropping it lets the next login hash.
#[derive(Debug)]
pub struct CheckPermit<'a> {
    _check: SemaphorePermit<'a>,
    _admitted: SemaphorePermit<'a>,
}

impl LoginThrottle {
    /// Refuses `user` from `peer` if either has failed too often lately, then waits for a verification slot
    /// (refusing with UNAVAILABLE when too many logins already wait).
    pub async fn admit(&self, user: &str, peer: Option<IpAddr>) -> Result<CheckPermit<'_>> {
        let now = Instant::now();
        self.refuse_if_limited(&Key::User(user.to_string()), MAX_USER_FAILURES, now, "user name")?;
        if let Some(ip) = peer {
            self.refuse_if_limited(&Key::Peer(ip), MAX_PEER_FAILURES, now, "client address")?;
        }
        let admitted = self.admitted.try_acquire().map_err(|_| Error::Unavailable {
            message: format!(
                "too many logins at once ({} checking or waiting); retry shortly, or reuse the bearer token that \
                 Handshake returns instead of sending a password with every call",
                MAX_CONCURRENT_CHECKS + MAX_WAITING_CHECKS
            ),
            retry_after_ms: 1000,
        })?;
        let check = self
            .checks
            .acquire()
            .await
            .map_err(|_| Error::internal("login throttle closed"))?;
        Ok(CheckPermit {
            _check: check,
            _admitted: admitted,
        })
    }

    /// Runs `check` (a password verification) on a check thread; the caller holds a [`CheckPermit`] from
    /// [`LoginThrottle::admit`], so at most [`MAX_CONCURRENT_CHECKS`] run at once.
    pub async fn run<T: Send + 'static>(
        &self,
        _permit: &CheckPermit<'_>,
        check: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            // Err: the login was abandoned (client gone); nobody waits for the answer.
            let _ = done.send(check());
        });
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(job)
            .map_err(|_| Error::internal("the password check threads have stopped"))?;
        result
            .await
            .map_err(|_| Error::internal("a password check thread failed"))
    }

    /// Counts a failed login of `user` from `peer`.
    pub fn record_failure(&self, user: &str, peer: Option<IpAddr>) {
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() >= MAX_TRACKED {
            failures.retain(|_, w| now.duration_since(w.started) < FAILURE_WINDOW);
            if failures.len() >= MAX_TRACKED
                && let Some(oldest) = failures.iter().min_by_key(|(_, w)| w.started).map(|(k, _)| k.clone())
            {
                failures.remove(&oldest);
            }
        }
        let keys = std::iter::once(Key::User(user.to_string())).chain(peer.map(Key::Peer));
        for key in keys {
            let window = failures.entry(key).or_insert(Window {
                started: now,
                failures: 0,
            });
            if now.duration_since(window.started) >= FAILURE_WINDOW {
                *window = Window {
                    started: now,
                    failures: 0,
                };
            }
            window.failures = window.failures.saturating_add(1);
        }
    }

    /// Forgets the failures of `user` after a successful login.
    pub fn record_success(&self, user: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.remove(&Key::User(user.to_string()));
    }

    fn refuse_if_limited(&self, key: &Key, limit: u32, now: Instant, what: &str) -> Result<()> {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let Some(window) = failures.get(key) else {
            return Ok(());
        };
        let elapsed = now.duration_since(window.started);
        if window.failures < limit || elapsed >= FAILURE_WINDOW {
            return Ok(());
        }
        let wait = (FAILURE_WINDOW - elapsed).as_secs().max(1);
        Err(Error::ResourceExhausted(format!(
            "too many failed logins for this {what} ({} in {}s); retry in {wait}s",
            window.failures,
            FAILURE_WINDOW.as_secs()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn failures_lock_out_a_user_and_a_peer() {
        let throttle = LoginThrottle::default();
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..MAX_USER_FAILURES {
            drop(throttle.admit("alice", None).await.unwrap());
            throttle.record_failure("alice", None);
        }
        let refused = throttle.admit("alice", None).await.unwrap_err();
        assert!(matches!(refused, Error::ResourceExhausted(_)), "{refused}");
        // Another user from another address is still let through; a success clears only that user.
        drop(throttle.admit("bob", None).await.unwrap());
        throttle.record_success("bob");
        for i in 0..MAX_PEER_FAILURES {
            let user = format!("guess{i}");
            drop(throttle.admit(&user, Some(peer)).await.unwrap());
            throttle.record_failure(&user, Some(peer));
        }
        assert!(matches!(
            throttle.admit("carol", Some(peer)).await,
            Err(Error::ResourceExhausted(_))
        ));
        assert!(throttle.admit("carol", None).await.is_ok());
    }

    #[tokio::test]
    async fn checks_are_bounded() {
        let throttle = LoginThrottle::default();
        let mut held = Vec::new();
        for i in 0..MAX_CONCURRENT_CHECKS {
            held.push(throttle.admit(&format!("u{i}"), None).await.unwrap());
        }
        // Every slot is taken: the next login waits instead of hashing.
        let waiting = futures::FutureExt::now_or_never(throttle.admit("w", None));
        assert!(waiting.is_none(), "a login past the bound must wait");
        drop(held.pop());
        assert!(throttle.admit("w", None).await.is_ok());
    }
}
