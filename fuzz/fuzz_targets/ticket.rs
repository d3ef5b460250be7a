//! DoGet tickets: any bytes parse or fail cleanly, and whatever parses round-trips.
#![no_main]

use flightbay::protocol::Ticket;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(ticket) = Ticket::try_decode(data) {
        assert_eq!(Ticket::try_decode(&ticket.encode()).ok(), Some(ticket));
    }
});
