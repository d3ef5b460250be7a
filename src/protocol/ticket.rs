//! [`Ticket`]: the bytes a client hands to DoGet.
//!
//! # Format
//!
//! Short ASCII, stable for as long as the flight exists, so a client may retry a DoGet or build a ticket by hand:
//!
//! | ticket | meaning |
//! |---|---|
//! | `42` | all rows of flight 42 |
//! | `42@1000+500` | rows 1000..1500 of flight 42 (a partition endpoint) |
//!
//! Clients normally copy tickets out of FlightInfo endpoints.

use std::fmt;

use crate::error::{Error, Result};
use crate::store::FlightId;

/// A parsed DoGet ticket.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Ticket {
    /// The flight to stream.
    pub id: FlightId,
    /// A row range `(offset, length)`; `None` means every row.
    pub rows: Option<(u64, u64)>,
}

impl Ticket {
    /// A ticket for every row of `id`.
    pub fn whole(id: FlightId) -> Self {
        Self { id, rows: None }
    }

    /// A ticket for `length` rows of `id` starting at `offset`.
    pub fn range(id: FlightId, offset: u64, length: u64) -> Self {
        Self {
            id,
            rows: Some((offset, length)),
        }
    }

    /// Parses ticket bytes.
    pub fn try_decode(bytes: &[u8]) -> Result<Self> {
        let bad = || {
            Error::invalid(format!(
                "invalid ticket {:?}: expected \"<id>\" or \"<id>@<offset>+<length>\"",
                String::from_utf8_lossy(&bytes[..bytes.len().min(64)])
            ))
        };
        let s = std::str::from_utf8(bytes).map_err(|_| bad())?;
        let number = |t: &str| -> Result<u64> {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            t.parse().map_err(|_| bad())
        };
        match s.split_once('@') {
            None => Ok(Self::whole(FlightId(number(s)?))),
            Some((id, range)) => {
                let (offset, length) = range.split_once('+').ok_or_else(bad)?;
                Ok(Self::range(FlightId(number(id)?), number(offset)?, number(length)?))
            }
        }
    }

    /// The ticket bytes.
    pub fn encode(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }
}

impl fmt::Display for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.rows {
            None => write!(f, "{}", self.id),
            Some((offset, length)) => write!(f, "{}@{offset}+{length}", self.id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for t in [
            Ticket::whole(FlightId(42)),
            Ticket::range(FlightId(7), 1_000_000, 500_000),
        ] {
            assert_eq!(Ticket::try_decode(&t.encode()).unwrap(), t);
        }
        assert_eq!(Ticket::whole(FlightId(42)).encode(), b"42");
        assert_eq!(Ticket::range(FlightId(42), 1000, 500).encode(), b"42@1000+500");
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            &b""[..],
            b"x",
            b"-1",
            b"4 2",
            b"42@",
            b"42@1",
            b"42@1+",
            b"42@+1",
            b"\xff\xfe",
            b"99999999999999999999999",
        ] {
            assert!(Ticket::try_decode(bad).is_err(), "{bad:?}");
        }
    }
}
