//! Flight SQL on flightbay's port: CMD descriptors, tickets and action bodies that are protobuf `Any` messages of
//! the `arrow.flight.protocol.sql` package.
//!
//! A request is Flight SQL only when its bytes decode as an `Any` whose `type_url` starts with [`TYPE_URL_PREFIX`];
//! everything else (PATH descriptors, SQL text, JSON ops, `42@…` tickets) is flightbay's own protocol. SQL text can
//! not be mistaken for one: it would have to start with a protobuf length prefix followed by that URL.
//!
//! | request | Flight SQL message |
//! |---|---|
//! | GetFlightInfo / GetSchema CMD | `CommandStatementQuery`, `CommandPreparedStatementQuery`, `CommandGet*` |
//! | DoGet ticket | a `CommandGet*` (metadata results); query results use flightbay's own tickets |
//! | DoPut descriptor | `CommandStatementIngest` (upload), `CommandPreparedStatementQuery` (bind parameters) |
//! | DoAction | `CreatePreparedStatement`, `ClosePreparedStatement` ([`ACTIONS`]) |

use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest, Any, Command, ProstMessageExt,
};
use prost::Message;

use crate::error::{Error, Result};

/// The `type_url` prefix of every Flight SQL message.
pub const TYPE_URL_PREFIX: &str = "type.googleapis.com/arrow.flight.protocol.sql.";

/// The Flight SQL actions flightbay serves: `(type, description)`. Served by ListActions beside flightbay's own.
pub const ACTIONS: &[(&str, &str)] = &[
    (
        "CreatePreparedStatement",
        "Flight SQL: plan a query with ? or $n parameters; Any(ActionCreatePreparedStatementRequest) -> \
         Any(ActionCreatePreparedStatementResult)",
    ),
    (
        "ClosePreparedStatement",
        "Flight SQL: forget a prepared statement; Any(ActionClosePreparedStatementRequest) -> nothing",
    ),
];

/// A Flight SQL action.
#[derive(Clone, Debug, PartialEq)]
pub enum SqlAction {
    /// Plan a query and keep it under a handle.
    CreatePreparedStatement(ActionCreatePreparedStatementRequest),
    /// Forget a handle.
    ClosePreparedStatement(ActionClosePreparedStatementRequest),
}

/// Decodes `bytes` as a Flight SQL command. `None` when they are not one (flightbay's own protocol); an error when
/// they name a Flight SQL message but its body does not decode.
pub fn try_decode(bytes: &[u8]) -> Option<Result<Command>> {
    let any = Any::decode(bytes).ok()?;
    if !any.type_url.starts_with(TYPE_URL_PREFIX) {
        return None;
    }
    let type_url = any.type_url.clone();
    Some(Command::try_from(any).map_err(|e| Error::invalid(format!("malformed Flight SQL message {type_url}: {e}"))))
}

/// Decodes a Flight SQL action: `None` when `kind` is not one of [`ACTIONS`].
pub fn try_decode_action(kind: &str, body: &[u8]) -> Option<Result<SqlAction>> {
    fn unpack<M: ProstMessageExt>(kind: &str, body: &[u8]) -> Result<M> {
        let bad = |detail: String| Error::invalid(format!("malformed {kind} body: {detail}"));
        let any = Any::decode(body).map_err(|e| bad(e.to_string()))?;
        any.unpack::<M>()
            .map_err(|e| bad(e.to_string()))?
            .ok_or_else(|| bad(format!("expected {}, got {:?}", M::type_url(), any.type_url)))
    }
    match kind {
        "CreatePreparedStatement" => Some(unpack(kind, body).map(SqlAction::CreatePreparedStatement)),
        "ClosePreparedStatement" => Some(unpack(kind, body).map(SqlAction::ClosePreparedStatement)),
        _ => None,
    }
}

/// Ticket bytes for a Flight SQL metadata command, decoded by [`try_decode`] when DoGet receives them.
pub fn ticket(command: Command) -> Vec<u8> {
    command.into_any().encode_to_vec()
}

#[cfg(test)]
mod tests {
    use arrow_flight::sql::{CommandGetCatalogs, CommandStatementQuery};

    use super::*;

    #[test]
    fn only_flight_sql_messages_are_flight_sql() {
        let query = CommandStatementQuery {
            query: "SELECT 1".into(),
            transaction_id: None,
        };
        let bytes = query.as_any().encode_to_vec();
        assert_eq!(
            try_decode(&bytes).unwrap().unwrap(),
            Command::CommandStatementQuery(query)
        );
        for plain in [
            &b"SELECT 1"[..],
            b"\nSELECT 1",
            b"{\"op\":\"take\"}",
            b"42@0+10",
            b"",
            b"\x0a\x03abc",
        ] {
            assert!(try_decode(plain).is_none(), "{plain:?}");
        }
        let other = Any {
            type_url: "type.googleapis.com/google.protobuf.Empty".into(),
            value: Default::default(),
        };
        assert!(try_decode(&other.encode_to_vec()).is_none());
    }

    #[test]
    fn malformed_and_unknown_messages() {
        let torn = Any {
            type_url: CommandStatementQuery::type_url().into(),
            value: vec![0x0a, 0x10, b'x'].into(),
        };
        let err = try_decode(&torn.encode_to_vec()).unwrap().unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        let unknown = Any {
            type_url: format!("{TYPE_URL_PREFIX}CommandFromTheFuture"),
            value: Default::default(),
        };
        assert!(matches!(
            try_decode(&unknown.encode_to_vec()).unwrap().unwrap(),
            Command::Unknown(_)
        ));
        let ticket = ticket(Command::CommandGetCatalogs(CommandGetCatalogs {}));
        assert_eq!(
            try_decode(&ticket).unwrap().unwrap(),
            Command::CommandGetCatalogs(CommandGetCatalogs {})
        );
    }

    #[test]
    fn actions() {
        let request = ActionClosePreparedStatementRequest {
            prepared_statement_handle: vec![1, 2].into(),
        };
        let body = request.as_any().encode_to_vec();
        assert_eq!(
            try_decode_action("ClosePreparedStatement", &body).unwrap().unwrap(),
            SqlAction::ClosePreparedStatement(request)
        );
        assert!(try_decode_action("drop", b"{}").is_none());
        assert!(try_decode_action("CreatePreparedStatement", &body).unwrap().is_err());
        assert!(try_decode_action("CreatePreparedStatement", b"\xff").unwrap().is_err());
    }
}
