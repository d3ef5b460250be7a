//! Names and namespaces: validated identifiers that point at flights.

use std::fmt;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::store::FlightId;

/// The namespace every server has and that bare names live in.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Longest accepted name or namespace, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// Checks that `s` is usable as a name or namespace.
///
/// Names are SQL identifiers: `[A-Za-z_][A-Za-z0-9_]*`, at most [`MAX_NAME_LEN`] bytes. The form `f<digits>`
/// is reserved, because SQL uses it for flight ids.
pub fn validate_identifier(kind: &str, s: &str) -> Result<()> {
    let mut bytes = s.bytes();
    let first_ok = matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_');
    if !first_ok || !bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(Error::invalid(format!(
            "invalid {kind} {s:?}: use letters, digits and '_', starting with a letter or '_'"
        )));
    }
    if s.len() > MAX_NAME_LEN {
        return Err(Error::invalid(format!(
            "invalid {kind}: {} bytes long, the limit is {MAX_NAME_LEN}",
            s.len()
        )));
    }
    if FlightId::from_table_name(s).is_some() {
        return Err(Error::invalid(format!(
            "invalid {kind} {s:?}: names of the form f<digits> are reserved for flight ids"
        )));
    }
    Ok(())
}

/// A validated `namespace.name`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct QualifiedName {
    /// The namespace (a SQL schema).
    pub namespace: String,
    /// The name inside the namespace (a SQL table).
    pub name: String,
}

impl QualifiedName {
    /// Validates both parts; `namespace` defaults to [`DEFAULT_NAMESPACE`].
    pub fn try_new(namespace: Option<&str>, name: &str) -> Result<Self> {
        let namespace = namespace.unwrap_or(DEFAULT_NAMESPACE);
        validate_identifier("namespace", namespace)?;
        validate_identifier("name", name)?;
        Ok(Self {
            namespace: namespace.to_string(),
            name: name.to_string(),
        })
    }

    /// Parses `name` or `namespace.name`.
    pub fn parse(s: &str) -> Result<Self> {
        match s.split_once('.') {
            Some((ns, name)) => Self::try_new(Some(ns), name),
            None => Self::try_new(None, s),
        }
    }
}

impl fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.namespace, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        assert!(validate_identifier("name", "trips").is_ok());
        assert!(validate_identifier("name", "_t2").is_ok());
        assert!(validate_identifier("name", "f").is_ok());
        assert!(validate_identifier("name", "fx1").is_ok());
        for bad in ["", "a b", "1abc", "f12", "F7", "a-b", "é", &"x".repeat(129)] {
            assert!(validate_identifier("name", bad).is_err(), "{bad:?} accepted");
        }
        assert!(validate_identifier("name", &"x".repeat(128)).is_ok());
    }

    #[test]
    fn qualified() {
        let q = QualifiedName::parse("sales.trips").unwrap();
        assert_eq!(q.to_string(), "sales.trips");
        assert_eq!(QualifiedName::parse("trips").unwrap().namespace, "default");
        assert!(QualifiedName::parse("a.b.c").is_err());
    }
}

/// Every namespace and the flight each name points at, with the reverse index from id to names.
///
/// Owned by the store's state lock, so a name move and the flight map always change together.
#[derive(Debug, Default)]
pub struct NameTable {
    namespaces: std::collections::BTreeMap<String, std::collections::BTreeMap<String, FlightId>>,
    by_id: std::collections::HashMap<FlightId, std::collections::BTreeSet<QualifiedName>>,
}

impl NameTable {
    /// A table holding only the empty `default` namespace.
    pub fn new() -> Self {
        let mut t = Self::default();
        t.namespaces.insert(DEFAULT_NAMESPACE.to_string(), Default::default());
        t
    }

    /// The flight `name` points at.
    pub fn get(&self, name: &QualifiedName) -> Option<FlightId> {
        self.namespaces.get(&name.namespace)?.get(&name.name).copied()
    }

    /// Points `name` at `id` (creating the namespace), returning the flight it pointed at before.
    pub fn set(&mut self, name: &QualifiedName, id: FlightId) -> Option<FlightId> {
        let old = self
            .namespaces
            .entry(name.namespace.clone())
            .or_default()
            .insert(name.name.clone(), id);
        if let Some(old) = old {
            self.unindex(old, name);
        }
        self.by_id.entry(id).or_default().insert(name.clone());
        old
    }

    /// Removes `name`, returning the flight it pointed at.
    pub fn remove(&mut self, name: &QualifiedName) -> Option<FlightId> {
        let old = self.namespaces.get_mut(&name.namespace)?.remove(&name.name)?;
        self.unindex(old, name);
        Some(old)
    }

    /// Removes every name that points at `id`.
    pub fn remove_id(&mut self, id: FlightId) {
        for name in self.by_id.remove(&id).unwrap_or_default() {
            if let Some(ns) = self.namespaces.get_mut(&name.namespace) {
                ns.remove(&name.name);
            }
        }
    }

    /// Names pointing at `id`, sorted.
    pub fn names_of(&self, id: FlightId) -> Vec<QualifiedName> {
        self.by_id
            .get(&id)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether `namespace` exists.
    pub fn has_namespace(&self, namespace: &str) -> bool {
        self.namespaces.contains_key(namespace)
    }

    /// Creates `namespace` if missing.
    pub fn create_namespace(&mut self, namespace: &str) {
        self.namespaces.entry(namespace.to_string()).or_default();
    }

    /// Names in `namespace` with their flights, sorted by name.
    pub fn entries(&self, namespace: &str) -> Vec<(String, FlightId)> {
        self.namespaces
            .get(namespace)
            .map(|ns| ns.iter().map(|(n, id)| (n.clone(), *id)).collect())
            .unwrap_or_default()
    }

    /// All namespaces, sorted.
    pub fn namespaces(&self) -> Vec<String> {
        self.namespaces.keys().cloned().collect()
    }

    /// Removes a namespace and its names (the default namespace is emptied, not removed).
    pub fn remove_namespace(&mut self, namespace: &str) {
        for (name, _) in self.entries(namespace) {
            self.remove(&QualifiedName {
                namespace: namespace.to_string(),
                name,
            });
        }
        if namespace != DEFAULT_NAMESPACE {
            self.namespaces.remove(namespace);
        }
    }

    /// Number of names in all namespaces.
    pub fn len(&self) -> usize {
        self.namespaces.values().map(|ns| ns.len()).sum()
    }

    /// Whether no name exists.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn unindex(&mut self, id: FlightId, name: &QualifiedName) {
        if let Some(set) = self.by_id.get_mut(&id) {
            set.remove(name);
            if set.is_empty() {
                self.by_id.remove(&id);
            }
        }
    }
}
