//! The wire protocol: the only code that knows byte layouts of descriptors, tickets and action bodies.
//!
//! - [`reference`]: PATH descriptors and JSON `source` values → [`crate::store::FlightRef`]
//! - [`command`]: CMD descriptors (SQL text or JSON ops)
//! - [`flight_sql`]: Flight SQL messages (protobuf `Any`) in descriptors, tickets and action bodies
//! - [`ticket`]: DoGet tickets
//! - [`action`]: custom DoAction bodies
//! - [`metadata`]: the JSON carried in `PutResult` and `FlightInfo` `app_metadata`
//! - [`flight_data`]: DoGet's gRPC frames, written by hand around stored column buffers
//! - [`upload`]: the checks of uploaded IPC messages before they are decoded
//! - [`sql_depth`]: the nesting bound on SQL text and filter predicates, checked before parsing

pub mod action;
pub mod command;
pub mod flight_data;
pub mod flight_sql;
pub mod metadata;
pub mod reference;
pub mod sql_depth;
pub mod ticket;
pub mod upload;

#[cfg(test)]
mod properties;

pub use action::Action;
pub use command::{Command, Op};
pub use ticket::Ticket;

use arrow_flight::FlightDescriptor;
use arrow_flight::flight_descriptor::DescriptorType;

use crate::error::{Error, Result};
use crate::store::FlightRef;

/// A parsed `FlightDescriptor`.
#[derive(Clone, Debug, PartialEq)]
pub enum Descriptor {
    /// `PATH`: a flight by name or id; never computes anything.
    Path(FlightRef),
    /// `CMD`: SQL or a JSON op.
    Command(Command),
    /// `CMD`: a Flight SQL command (see [`flight_sql`]).
    FlightSql(arrow_flight::sql::Command),
}

impl Descriptor {
    /// Parses a descriptor sent by a client.
    pub fn try_decode(d: &FlightDescriptor) -> Result<Self> {
        match d.r#type() {
            DescriptorType::Path => reference::parse_path(&d.path).map(Descriptor::Path),
            DescriptorType::Cmd => match flight_sql::try_decode(&d.cmd) {
                Some(command) => command.map(Descriptor::FlightSql),
                None => Command::try_decode(&d.cmd).map(Descriptor::Command),
            },
            DescriptorType::Unknown => Err(Error::invalid("flight descriptor type must be PATH or CMD")),
        }
    }
}
