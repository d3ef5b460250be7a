//! Flight references as they appear on the wire: descriptor paths and JSON `source` values.

use serde::Deserialize;
use serde::de::{self, Deserializer};

use crate::error::{Error, Result};
use crate::store::{FlightId, FlightRef, QualifiedName};

/// Parses a PATH descriptor: `["trips"]`, `["sales", "trips"]` or `["42"]` (all digits: a flight id).
pub fn parse_path(path: &[String]) -> Result<FlightRef> {
    match path {
        [one] if !one.is_empty() && one.bytes().all(|b| b.is_ascii_digit()) => one
            .parse()
            .map(|id| FlightRef::Id(FlightId(id)))
            .map_err(|_| Error::invalid(format!("flight id {one} is out of range"))),
        [name] => Ok(FlightRef::Name(QualifiedName::try_new(None, name)?)),
        [namespace, name] => Ok(FlightRef::Name(QualifiedName::try_new(Some(namespace), name)?)),
        _ => Err(Error::invalid(format!(
            "descriptor path must be [\"name\"], [\"namespace\", \"name\"] or [\"<id>\"], got {} elements",
            path.len()
        ))),
    }
}

/// Parses a reference given as text: `42`, `f42`, `trips` or `sales.trips`.
pub fn parse_text(s: &str) -> Result<FlightRef> {
    if let Some(id) = FlightId::from_table_name(s) {
        return Ok(FlightRef::Id(id));
    }
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return parse_path(&[s.to_string()]);
    }
    QualifiedName::parse(s).map(FlightRef::Name)
}

/// A `source` in a JSON op: a number (flight id) or a string (`"trips"`, `"sales.trips"`, `"f42"`, `"42"`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source(pub FlightRef);

impl<'de> Deserialize<'de> for Source {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Id(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Id(id) => Ok(Source(FlightRef::Id(FlightId(id)))),
            Raw::Text(s) => parse_text(&s).map(Source).map_err(de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(parts: &[&str]) -> Result<FlightRef> {
        parse_path(&parts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn paths() {
        assert_eq!(p(&["42"]).unwrap(), FlightRef::Id(FlightId(42)));
        assert_eq!(
            p(&["trips"]).unwrap(),
            FlightRef::Name(QualifiedName::parse("default.trips").unwrap())
        );
        assert_eq!(
            p(&["sales", "trips"]).unwrap(),
            FlightRef::Name(QualifiedName::parse("sales.trips").unwrap())
        );
        for bad in [&[][..], &["a", "b", "c"], &["f12"], &["a b"], &[""]] {
            assert!(p(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sources() {
        let s: Source = serde_json::from_str("42").unwrap();
        assert_eq!(s.0, FlightRef::Id(FlightId(42)));
        let s: Source = serde_json::from_str("\"f7\"").unwrap();
        assert_eq!(s.0, FlightRef::Id(FlightId(7)));
        let s: Source = serde_json::from_str("\"sales.trips\"").unwrap();
        assert_eq!(s.0, FlightRef::Name(QualifiedName::parse("sales.trips").unwrap()));
        assert!(serde_json::from_str::<Source>("\"a b\"").is_err());
        assert!(serde_json::from_str::<Source>("-1").is_err());
    }
}
