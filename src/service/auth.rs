//! Authorization at the edge: who is calling (from the `authorization` header) and whether their grants cover the
//! namespaces a request touches. Every RPC handler calls [`authorize`] first; the store and the engine know nothing
//! of principals.
//!
//! # Which namespaces a flight belongs to
//!
//! - An **upload** belongs to the namespace it was uploaded to, and is shared with the namespace of every name
//!   pointing at it now; reading it needs `read` on **any** of these. (An upload recorded without its namespace
//!   and with no name left needs a `*` grant.) An **append** shares its parent's batches, so reading it also
//!   needs what reading the parent needs (its lineage inputs), and appending needs read access to the parent:
//!   otherwise `alpha:write` could append one row to a flight derived from `beta` and read all of `beta` back.
//! - A **derived** flight (SQL, take, join, …) belongs to its inputs: reading it needs read access to **every**
//!   input, recursively down to the uploads, whatever names point at the derived flight itself. An input that was
//!   dropped can no longer be traced, so such a flight needs a `*` grant.
//! - Running SQL or an op needs read access to every flight it reads (so `SELECT … FROM sales.trips` needs `read`
//!   on `sales` when `sales.trips` was uploaded there); naming its result needs `write` on the result's namespace.
//! - Addressing a flight **by name** also needs `read` on the name's namespace, checked before the name is looked
//!   up: to a caller without it, a name in that namespace is PERMISSION_DENIED whether it exists or not. SQL sees
//!   the same: unreadable namespaces and flights are missing from `information_schema`, and naming one is refused
//!   before its schema is read (see [`crate::query::Scope`]).
//! - Uploading to `ns.name`, pointing a name at a flight (`rename`), and naming a result need `write` on `ns`.
//!   Dropping, pinning, unpinning and spilling a flight need `write` on what it belongs to (every namespace naming
//!   it; for an unnamed flight, what reading it needs, at the `write` level).
//! - `delete_namespace` needs `admin` on that namespace; `stats` (all namespaces) and `shutdown` need `*: admin`.
//! - `health`, ListActions and Handshake need only valid credentials (Handshake takes Basic ones).

use std::collections::{BTreeSet, HashSet};
use std::net::IpAddr;

use tonic::metadata::MetadataMap;

use super::FlightbayService;
use crate::auth::{Level, Principal, WILDCARD};
use crate::error::{Error, Result};
use crate::store::{FlightId, FlightRef, FlightStore, PutMode, PutTarget, QualifiedName};

/// How many flights [`Access::requirement`] visits in one lineage before asking for a `*` grant instead.
const MAX_LINEAGE_FLIGHTS: usize = 100_000;

/// What [`authorize`] reads of a request: its metadata and, when known, the client's address (for login
/// throttling per peer).
pub(super) trait Caller {
    /// The request metadata.
    fn metadata(&self) -> &MetadataMap;
    /// The client's IP address, if the transport reported it.
    fn peer(&self) -> Option<IpAddr>;
}

impl Caller for MetadataMap {
    fn metadata(&self) -> &MetadataMap {
        self
    }
    fn peer(&self) -> Option<IpAddr> {
        None
    }
}

impl<T> Caller for tonic::Request<T> {
    fn metadata(&self) -> &MetadataMap {
        tonic::Request::metadata(self)
    }
    fn peer(&self) -> Option<IpAddr> {
        self.remote_addr().map(|a| a.ip())
    }
}

/// The principal behind a request: unrestricted when auth is off; otherwise from `authorization: Bearer <jwt>`
/// (or `Basic <b64>` when the server has a users file). UNAUTHENTICATED without valid credentials.
pub(super) async fn authorize(service: &FlightbayService, caller: &(impl Caller + ?Sized)) -> Result<Access> {
    let principal = match &service.inner.auth {
        None => Principal::unrestricted(),
        Some(auth) => match credentials(caller.metadata())? {
            Some(Credentials::Bearer(token)) => auth.verify(&token)?,
            Some(Credentials::Basic(user, password)) => auth.login(user, password, caller.peer()).await?,
            None => {
                return Err(Error::unauthenticated(
                    "flightbay: authentication required: send \"authorization: Bearer <token>\" (Handshake with Basic \
                     credentials returns one)",
                ));
            }
        },
    };
    Ok(Access {
        store: service.store().clone(),
        principal,
    })
}

/// Credentials found in request metadata.
pub(super) enum Credentials {
    /// `authorization: Bearer <token>`.
    Bearer(String),
    /// `authorization: Basic <base64 user:password>`.
    Basic(String, String),
}

/// The credentials in the `authorization` header, if any.
pub(super) fn credentials(metadata: &MetadataMap) -> Result<Option<Credentials>> {
    let Some(value) = metadata.get("authorization") else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| Error::unauthenticated("flightbay: the authorization header is not ASCII"))?
        .trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" => Ok(Some(Credentials::Bearer(rest.trim().to_string()))),
        "basic" => {
            let (user, password) = crate::auth::decode_basic(rest)?;
            Ok(Some(Credentials::Basic(user, password)))
        }
        _ => Err(Error::unauthenticated(
            "flightbay: the authorization header must be \"Bearer <token>\" or \"Basic <base64>\"",
        )),
    }
}

/// What reading a flight needs: read access in at least one namespace of every clause, and a `*` grant when
/// some part could not be traced to a namespace.
#[derive(Debug, Default)]
struct Requirement {
    /// Each clause: the namespaces of one upload (its own and those of its names; any one suffices).
    clauses: Vec<BTreeSet<String>>,
    /// An unnamed upload, a dropped input, or lineage of more than [`MAX_LINEAGE_FLIGHTS`] flights.
    wildcard: bool,
}

/// A caller's principal and the store to check requests against.
#[derive(Clone, Debug)]
pub(super) struct Access {
    store: FlightStore,
    principal: Principal,
}

impl Access {
    /// Who is calling (the token's subject; `anonymous` with auth off).
    pub(super) fn subject(&self) -> &str {
        &self.principal.subject
    }

    /// Whether the caller may read something in `namespace`.
    pub(super) fn can_read_namespace(&self, namespace: &str) -> bool {
        self.principal.grants.allows(namespace, Level::Read)
    }

    fn denied(&self, needs: impl std::fmt::Display) -> Error {
        Error::denied(format!(
            "flightbay: permission denied: {needs}; {} has {}",
            self.principal.subject, self.principal.grants
        ))
    }

    /// `level` in `namespace`.
    pub(super) fn require(&self, namespace: &str, level: Level) -> Result<()> {
        if self.principal.grants.allows(namespace, level) {
            Ok(())
        } else {
            Err(self.denied(format_args!("this needs {level} on namespace {namespace}")))
        }
    }

    /// `level` on every namespace (a `*` grant).
    pub(super) fn require_everywhere(&self, level: Level) -> Result<()> {
        if self.principal.grants.allows_everywhere(level) {
            Ok(())
        } else {
            Err(self.denied(format_args!("this needs {WILDCARD}:{level}")))
        }
    }

    /// Resolves `reference` for reading: read on the name's namespace (if by name) and on the flight.
    /// A missing flight is NOT_FOUND and an unreadable one PERMISSION_DENIED: ids are sequential, so hiding which
    /// ones exist would protect nothing. Names in a namespace the caller cannot read are refused before lookup.
    pub(super) fn read_ref(&self, reference: &FlightRef) -> Result<FlightId> {
        if let FlightRef::Name(name) = reference {
            self.require(&name.namespace, Level::Read)?;
        }
        let id = self.store.resolve(reference)?;
        self.read_flight(id)?;
        Ok(id)
    }

    /// Whether the caller may read flight `id` (see the module docs).
    pub(super) fn can_read(&self, id: FlightId) -> bool {
        self.satisfies(&self.requirement(id), Level::Read)
    }

    /// Read access to flight `id`.
    pub(super) fn read_flight(&self, id: FlightId) -> Result<()> {
        if self.can_read(id) {
            Ok(())
        } else {
            Err(self.denied(format_args!("flight {id} needs read on the namespaces of its uploads")))
        }
    }

    /// Read access to every input of an op (the engine's [`crate::query::InputCheck`]).
    pub(super) fn read_inputs(&self, inputs: &[FlightId]) -> Result<()> {
        inputs.iter().try_for_each(|id| self.read_flight(*id))
    }

    /// `write` on the namespace `name` lives in.
    pub(super) fn write_name(&self, name: &QualifiedName) -> Result<()> {
        self.require(&name.namespace, Level::Write)
    }

    /// An upload to `target`: `write` on its namespace and, for an append to an existing name, read access to the
    /// flight appended to (whose rows the new flight shares).
    pub(super) fn put(&self, target: &PutTarget) -> Result<()> {
        self.write_name(&target.name)?;
        if target.mode == PutMode::Append
            && let Ok(parent) = self.store.resolve(&FlightRef::Name(target.name.clone()))
        {
            self.read_flight(parent)?;
        }
        Ok(())
    }

    /// `read` on the namespace of every input given by name: checked before any lookup, so that a missing name
    /// and an unreadable one answer alike.
    pub(super) fn read_names<'a>(&self, references: impl IntoIterator<Item = &'a FlightRef>) -> Result<()> {
        for reference in references {
            if let FlightRef::Name(name) = reference {
                self.require(&name.namespace, Level::Read)?;
            }
        }
        Ok(())
    }

    /// Write access to flight `id`: write on every namespace naming it, or, when unnamed, on what reading needs.
    pub(super) fn write_flight(&self, id: FlightId) -> Result<()> {
        let names = self.store.names_of(id);
        if names.is_empty() {
            if self.satisfies(&self.requirement(id), Level::Write) {
                return Ok(());
            }
            return Err(self.denied(format_args!(
                "changing flight {id} needs write on the namespaces of its uploads"
            )));
        }
        names.iter().try_for_each(|n| self.write_name(n))
    }

    fn satisfies(&self, req: &Requirement, level: Level) -> bool {
        let grants = &self.principal.grants;
        if grants.allows_everywhere(level) {
            return true;
        }
        !req.wildcard && req.clauses.iter().all(|c| c.iter().any(|ns| grants.allows(ns, level)))
    }

    /// What reading flight `id` needs, walking lineage down to the uploads.
    fn requirement(&self, id: FlightId) -> Requirement {
        let mut req = Requirement::default();
        if !self.principal.grants.allows_everywhere(Level::Read) {
            self.collect(id, &mut req);
        }
        req
    }

    /// Walks lineage from `id` without recursion (an append chain is as long as the number of appends), visiting
    /// each flight once and at most [`MAX_LINEAGE_FLIGHTS`] of them.
    fn collect(&self, id: FlightId, req: &mut Requirement) {
        let mut seen = HashSet::new();
        let mut pending = vec![id];
        while let Some(id) = pending.pop() {
            if req.wildcard {
                return;
            }
            if !seen.insert(id) {
                continue;
            }
            if seen.len() > MAX_LINEAGE_FLIGHTS {
                req.wildcard = true;
                return;
            }
            let Some(meta) = self.store.peek_meta(id) else {
                req.wildcard = true;
                return;
            };
            if meta.lineage.op == "upload" {
                let mut namespaces: BTreeSet<String> =
                    self.store.names_of(id).into_iter().map(|n| n.namespace).collect();
                namespaces.extend(meta.namespace.clone());
                if namespaces.is_empty() {
                    req.wildcard = true;
                } else {
                    req.clauses.push(namespaces);
                }
            }
            // A derived flight's inputs, and an append's parent (whose rows it shares).
            pending.extend(meta.lineage.inputs.iter().copied());
        }
    }
}

impl crate::query::Scope for Access {
    fn namespace(&self, namespace: &str) -> Result<()> {
        self.require(namespace, Level::Read)
    }

    fn flight(&self, id: FlightId) -> Result<()> {
        self.read_flight(id)
    }
}

impl Access {
    /// Who is calling and with which grants (the dashboard shows it).
    pub(super) fn principal(&self) -> &Principal {
        &self.principal
    }
}
