//! [`Action`]: custom DoAction requests. Each takes a UTF-8 JSON object body and returns one JSON object.
//!
//! A flight is referred to as `{"id": 42}` or `{"name": "trips"}` (optionally with `"namespace": "sales"`, or as
//! `"name": "sales.trips"`). Errors travel as gRPC statuses, never as JSON.

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::store::{FlightId, FlightRef, QualifiedName};

/// A parsed custom action.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Drop a flight and the names pointing at it.
    Drop(FlightRef),
    /// Point a name at an existing flight.
    Rename {
        /// The flight.
        id: FlightId,
        /// The name to point at it.
        name: QualifiedName,
    },
    /// Delete a namespace; with `force`, also drop the flights it names.
    DeleteNamespace {
        /// The namespace.
        namespace: String,
        /// Drop contents instead of refusing.
        force: bool,
    },
    /// Ancestry of a flight.
    Lineage(FlightRef),
    /// Keep a flight in memory (reloading it if spilled).
    Pin(FlightRef),
    /// Let a pinned flight be spilled again.
    Unpin(FlightRef),
    /// Write a flight to disk and release its memory now.
    Spill(FlightRef),
    /// Server counters.
    Stats,
    /// Liveness and version.
    Health,
    /// Stop the server gracefully.
    Shutdown,
}

/// Every custom action: `(type, description with body and result shape)`. Served by ListActions.
pub const ACTIONS: &[(&str, &str)] = &[
    (
        "drop",
        r#"drop a flight and its names: {"id": int} | {"name": str, "namespace"?: str} -> {"dropped": int}"#,
    ),
    (
        "rename",
        r#"point a name at a flight: {"id": int, "name": str, "namespace"?: str} -> {"id": int, "name": str, "previous": int|null}"#,
    ),
    (
        "delete_namespace",
        r#"delete a namespace, refusing if not empty unless forced: {"namespace": str, "force"?: bool} -> {"dropped": [int]}"#,
    ),
    (
        "lineage",
        r#"how a flight was made, back to its uploads: {"id": int} | {"name": str} -> {"id": int, "op": str, "params": {}, "inputs": [...]}"#,
    ),
    (
        "pin",
        r#"keep a flight in memory, reloading it if spilled: {"id": int} | {"name": str} -> {"id": int, "pinned": true}"#,
    ),
    (
        "unpin",
        r#"let a pinned flight be spilled again: {"id": int} | {"name": str} -> {"id": int, "pinned": false}"#,
    ),
    (
        "spill",
        r#"write a flight to disk and free its memory now: {"id": int} | {"name": str} -> {"id": int, "state": "spilled"}"#,
    ),
    (
        "stats",
        r#"server counters: {} -> {"flights": int, "resident_bytes": int, "cache_hits": int, ...}"#,
    ),
    (
        "health",
        r#"liveness: {} -> {"status": "ok", "version": str, "uptime_seconds": float}"#,
    ),
    (
        "shutdown",
        r#"stop the server gracefully: {} -> {"shutting_down": true}"#,
    ),
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefBody {
    #[serde(default)]
    id: Option<u64>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
}

impl RefBody {
    fn into_ref(self) -> Result<FlightRef> {
        match (self.id, self.name) {
            (Some(id), None) if self.namespace.is_none() => Ok(FlightRef::Id(FlightId(id))),
            (None, Some(name)) => Ok(FlightRef::Name(qualified(self.namespace.as_deref(), &name)?)),
            _ => Err(Error::invalid(
                "give either \"id\" or \"name\" (with optional \"namespace\")",
            )),
        }
    }
}

fn qualified(namespace: Option<&str>, name: &str) -> Result<QualifiedName> {
    match namespace {
        Some(ns) => QualifiedName::try_new(Some(ns), name),
        None => QualifiedName::parse(name),
    }
}

/// Deserializes an action body, which must be a JSON object (or empty, meaning `{}`). serde's derived structs
/// would also accept a list of field values (`[1]` read as `{"id": 1}`); bodies are objects only.
fn body<T: serde::de::DeserializeOwned>(kind: &str, bytes: &[u8]) -> Result<T> {
    let bad = |e: &dyn std::fmt::Display| Error::invalid(format!("invalid body for action {kind}: {e}"));
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return serde_json::from_slice(b"{}").map_err(|e| bad(&e));
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| bad(&e))?;
    if !value.is_object() {
        return Err(bad(&"the body must be a JSON object"));
    }
    serde_json::from_value(value).map_err(|e| bad(&e))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

impl Action {
    /// Parses an action type and its JSON body.
    pub fn try_decode(kind: &str, bytes: &[u8]) -> Result<Self> {
        match kind {
            "drop" => body::<RefBody>(kind, bytes)?.into_ref().map(Action::Drop),
            "lineage" => body::<RefBody>(kind, bytes)?.into_ref().map(Action::Lineage),
            "pin" => body::<RefBody>(kind, bytes)?.into_ref().map(Action::Pin),
            "unpin" => body::<RefBody>(kind, bytes)?.into_ref().map(Action::Unpin),
            "spill" => body::<RefBody>(kind, bytes)?.into_ref().map(Action::Spill),
            "rename" => {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Rename {
                    id: u64,
                    name: String,
                    #[serde(default)]
                    namespace: Option<String>,
                }
                let r: Rename = body(kind, bytes)?;
                Ok(Action::Rename {
                    id: FlightId(r.id),
                    name: qualified(r.namespace.as_deref(), &r.name)?,
                })
            }
            "delete_namespace" => {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Delete {
                    namespace: String,
                    #[serde(default)]
                    force: bool,
                }
                let d: Delete = body(kind, bytes)?;
                crate::store::validate_identifier("namespace", &d.namespace)?;
                Ok(Action::DeleteNamespace {
                    namespace: d.namespace,
                    force: d.force,
                })
            }
            "stats" | "health" | "shutdown" => {
                body::<Empty>(kind, bytes)?;
                Ok(match kind {
                    "stats" => Action::Stats,
                    "health" => Action::Health,
                    _ => Action::Shutdown,
                })
            }
            other => Err(Error::unimplemented(format!(
                "unknown action {other:?}; ListActions lists the supported ones"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bodies() {
        assert_eq!(
            Action::try_decode("drop", br#"{"id":3}"#).unwrap(),
            Action::Drop(FlightRef::Id(FlightId(3)))
        );
        assert_eq!(
            Action::try_decode("drop", br#"{"name":"trips","namespace":"sales"}"#).unwrap(),
            Action::Drop(FlightRef::Name(QualifiedName::parse("sales.trips").unwrap()))
        );
        assert_eq!(
            Action::try_decode("drop", br#"{"name":"sales.trips"}"#).unwrap(),
            Action::Drop(FlightRef::Name(QualifiedName::parse("sales.trips").unwrap()))
        );
        assert_eq!(Action::try_decode("stats", b"").unwrap(), Action::Stats);
        assert_eq!(
            Action::try_decode("rename", br#"{"id":4,"name":"x"}"#).unwrap(),
            Action::Rename {
                id: FlightId(4),
                name: QualifiedName::parse("x").unwrap()
            }
        );
        assert_eq!(
            Action::try_decode("delete_namespace", br#"{"namespace":"sales","force":true}"#).unwrap(),
            Action::DeleteNamespace {
                namespace: "sales".into(),
                force: true
            }
        );
    }

    #[test]
    fn rejects_bad_bodies() {
        for (kind, b) in [
            ("drop", &br#"{}"#[..]),
            ("drop", br#"{"id":1,"name":"x"}"#),
            ("drop", br#"{"id":-1}"#),
            ("drop", b"not json"),
            ("rename", br#"{"id":1,"name":"f2"}"#),
            ("stats", br#"{"x":1}"#),
            ("delete_namespace", br#"{"namespace":"a b"}"#),
            ("drop", b"[1]"),
            ("drop", b"1"),
            ("drop", b"null"),
            ("rename", br#"[4,"x"]"#),
            ("delete_namespace", br#"["sales",true]"#),
            ("stats", b"[]"),
            ("drop", br#"{"id":1,"extra":true}"#),
        ] {
            assert!(
                matches!(Action::try_decode(kind, b), Err(Error::InvalidArgument(_))),
                "{kind} {b:?}"
            );
        }
        assert!(matches!(
            Action::try_decode("explode", b"{}"),
            Err(Error::Unimplemented(_))
        ));
    }

    #[test]
    fn every_action_is_listed() {
        for (kind, _) in ACTIONS {
            let r = Action::try_decode(kind, b"{}");
            assert!(!matches!(r, Err(Error::Unimplemented(_))), "{kind}");
        }
    }
}
