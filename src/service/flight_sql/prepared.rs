//! Prepared statements: a query and its bound parameter values under a random handle, for the caller who made it.
//!
//! A handle is only a name for the query text: executing it runs the same engine path as a CMD query, so its
//! result is a shared, cached flight like any other. The least recently used statements are forgotten past
//! [`MAX_STATEMENTS`] (a client that never closes its statements cannot grow the server without bound).

use std::num::NonZeroUsize;
use std::sync::Mutex;

use bytes::Bytes;
use datafusion::common::ScalarValue;
use lru::LruCache;
use uuid::Uuid;

use crate::error::{Error, Result};

/// How many prepared statements the server keeps at once.
pub(super) const MAX_STATEMENTS: usize = 10_000;

/// One prepared statement.
#[derive(Clone, Debug)]
pub(super) struct Prepared {
    /// The query text.
    pub query: String,
    /// Values for its placeholders, bound by DoPut; empty until then.
    pub params: Vec<ScalarValue>,
    /// The subject of the caller who prepared it; nobody else may use the handle.
    owner: String,
}

/// The open prepared statements.
#[derive(Debug)]
pub(in crate::service) struct PreparedStatements {
    statements: Mutex<LruCache<Uuid, Prepared>>,
}

impl Default for PreparedStatements {
    fn default() -> Self {
        Self {
            statements: Mutex::new(LruCache::new(
                NonZeroUsize::new(MAX_STATEMENTS).unwrap_or(NonZeroUsize::MIN),
            )),
        }
    }
}

impl PreparedStatements {
    /// Keeps `query` for `owner`; returns its handle.
    pub(super) fn create(&self, query: String, owner: &str) -> Bytes {
        let handle = Uuid::new_v4();
        let prepared = Prepared {
            query,
            params: Vec::new(),
            owner: owner.to_string(),
        };
        self.lock().put(handle, prepared);
        Bytes::copy_from_slice(handle.as_bytes())
    }

    /// The statement behind `handle`, if `owner` prepared it and it is still open.
    pub(super) fn get(&self, handle: &[u8], owner: &str) -> Result<Prepared> {
        let key = parse(handle)?;
        self.lock()
            .get(&key)
            .filter(|p| p.owner == owner)
            .cloned()
            .ok_or_else(|| unknown(handle))
    }

    /// Binds parameter values to the statement behind `handle`.
    pub(super) fn bind(&self, handle: &[u8], owner: &str, params: Vec<ScalarValue>) -> Result<()> {
        let key = parse(handle)?;
        let mut statements = self.lock();
        let prepared = statements
            .get_mut(&key)
            .filter(|p| p.owner == owner)
            .ok_or_else(|| unknown(handle))?;
        prepared.params = params;
        Ok(())
    }

    /// Forgets the statement behind `handle`. Closing is idempotent: an unknown or closed handle is not an error
    /// (clients close statements from destructors and retries).
    pub(super) fn close(&self, handle: &[u8], owner: &str) {
        let Ok(key) = parse(handle) else {
            return;
        };
        let mut statements = self.lock();
        if statements.peek(&key).is_some_and(|p| p.owner == owner) {
            statements.pop(&key);
        }
    }

    /// How many statements are open.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<Uuid, Prepared>> {
        self.statements
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn parse(handle: &[u8]) -> Result<Uuid> {
    Uuid::from_slice(handle).map_err(|_| unknown(handle))
}

fn unknown(handle: &[u8]) -> Error {
    Error::not_found(format!(
        "prepared statement {} does not exist or was closed; create it again with CreatePreparedStatement",
        hex(handle)
    ))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().take(32).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_belong_to_their_owner_and_close_once() {
        let statements = PreparedStatements::default();
        let handle = statements.create("SELECT $1".into(), "ann");
        assert_eq!(statements.get(&handle, "ann").unwrap().query, "SELECT $1");
        assert!(matches!(statements.get(&handle, "bob"), Err(Error::NotFound(_))));
        assert!(statements.bind(&handle, "bob", vec![ScalarValue::from(1i64)]).is_err());
        statements.bind(&handle, "ann", vec![ScalarValue::from(1i64)]).unwrap();
        assert_eq!(
            statements.get(&handle, "ann").unwrap().params,
            vec![ScalarValue::from(1i64)]
        );
        statements.close(&handle, "bob");
        assert_eq!(statements.len(), 1);
        statements.close(&handle, "ann");
        statements.close(&handle, "ann");
        assert_eq!(statements.len(), 0);
        assert!(matches!(statements.get(&handle, "ann"), Err(Error::NotFound(_))));
        assert!(matches!(statements.get(b"nonsense", "ann"), Err(Error::NotFound(_))));
    }
}
