//! Flight SQL on the Flight port (see [`crate::protocol::flight_sql`] for how requests are told apart).
//!
//! A query, plain or prepared, is a derive request like a CMD SQL descriptor: the same engine path, the same
//! cache key, the same lineage, and a FlightInfo whose endpoints carry flightbay's own tickets, so DoGet is
//! unchanged and the same SQL through ADBC, JDBC or plain Flight is one flight. Metadata commands answer with a
//! ticket that is the command itself, built into a batch when DoGet receives it.

mod metadata;
mod prepared;

use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use arrow::ipc::writer::IpcWriteOptions;
use arrow::record_batch::RecordBatch;
use arrow_flight::sql::{
    ActionCreatePreparedStatementResult, Command, CommandStatementIngest, DoPutPreparedStatementResult,
    DoPutUpdateResult, ProstMessageExt, TableExistsOption, TableNotExistOption,
};
use arrow_flight::{FlightDescriptor, FlightEndpoint, FlightInfo, IpcMessage, PutResult, SchemaAsIpc};
use bytes::Bytes;
use datafusion::common::ScalarValue;
use futures::StreamExt;
use prost::Message;
use tonic::metadata::MetadataMap;

pub(super) use prepared::PreparedStatements;

use super::FlightbayService;
use super::auth::Access;
use super::compute::{derive_sql, describe_sql};
use super::do_get::{Messages, hydrated};
use super::info::{InfoOptions, flight_info};
use crate::error::{Error, Result};
use crate::protocol::flight_data::hydrated_schema;
use crate::protocol::flight_sql::{SqlAction, ticket};
use crate::query::Outcome;
use crate::query::catalog::CATALOG;
use crate::store::{FlightRef, PutMode, PutTarget, QualifiedName};

/// GetFlightInfo of a Flight SQL command: runs a query (or finds its cached result) and describes the result
/// flight; describes a metadata command's result without building it.
pub(super) async fn get_flight_info(
    service: &FlightbayService,
    access: &Access,
    command: Command,
    descriptor: FlightDescriptor,
    request: &MetadataMap,
) -> Result<FlightInfo> {
    if let Some(schema) = metadata::schema(&command) {
        let endpoint = FlightEndpoint::new().with_ticket(arrow_flight::Ticket::new(ticket(command)));
        return Ok(FlightInfo::new()
            .try_with_schema(&schema)?
            .with_descriptor(descriptor)
            .with_endpoint(endpoint)
            .with_ordered(true));
    }
    let (outcome, query) = execute(service, access, command, request).await?;
    let names = service.store().names_of(outcome.flight.id());
    let options = InfoOptions {
        cache: Some(outcome.cache.as_str()),
        parts: parallel_endpoints(outcome.flight.meta.num_bytes, &query),
        ..Default::default()
    };
    flight_info(service.store(), &outcome.flight, &names, descriptor, options)
}

/// Results at least this large are offered as several row-range endpoints.
const BYTES_PER_ENDPOINT: u64 = 128 << 20;
/// The most endpoints a result is split into.
const MAX_ENDPOINTS: u64 = 4;

/// How many row-range endpoints a query result gets: ADBC fetches a FlightInfo's endpoints concurrently (and keeps
/// their order), which its Go decoder needs to keep up with one plain pyarrow stream. JDBC also fetches them
/// concurrently but loses their order, so a query that orders its rows gets one endpoint.
fn parallel_endpoints(bytes: u64, query: &str) -> Option<u32> {
    let words: Vec<String> = query
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    // Anything that reads "order by" (even in a string or a comment) keeps the result in one endpoint.
    let ordered = words.windows(2).any(|w| w[0] == "order" && w[1] == "by");
    let parts = bytes.div_ceil(BYTES_PER_ENDPOINT).clamp(1, MAX_ENDPOINTS);
    (!ordered && parts > 1).then_some(parts as u32)
}

/// GetSchema of a Flight SQL command: a query's result schema (the query runs, as for a CMD descriptor, so the
/// schema is the result flight's own) or a metadata command's.
pub(super) async fn get_schema(
    service: &FlightbayService,
    access: &Access,
    command: Command,
    request: &MetadataMap,
) -> Result<SchemaRef> {
    if let Some(schema) = metadata::schema(&command) {
        return Ok(schema);
    }
    let (outcome, _) = execute(service, access, command, request).await?;
    Ok(Arc::new(hydrated_schema(&outcome.flight.meta.schema)))
}

/// DoGet of a ticket holding a Flight SQL metadata command.
pub(super) fn do_get(service: &FlightbayService, access: &Access, command: Command) -> Result<Messages> {
    let schema = metadata::schema(&command).ok_or_else(|| {
        Error::invalid(format!(
            "{} is not a DoGet ticket: send it to GetFlightInfo and DoGet the tickets of its endpoints",
            command.type_url()
        ))
    })?;
    let batch = metadata::batch(service, access, command)?;
    Ok(hydrated(schema, futures::stream::iter([Ok(batch)]).boxed()))
}

/// DoAction of a Flight SQL action.
pub(super) async fn do_action(
    service: &FlightbayService,
    access: &Access,
    action: SqlAction,
    request: &MetadataMap,
) -> Result<Vec<arrow_flight::Result>> {
    let statements = &service.inner.prepared;
    match action {
        SqlAction::CreatePreparedStatement(create) => {
            no_transaction(create.transaction_id.as_ref())?;
            let (dataset, parameters) = describe_sql(service, access, create.query.clone(), request).await?;
            let handle = statements.create(create.query, access.subject());
            // JDBC takes an empty dataset schema for an update; a query's schema is never empty of bytes.
            let result = ActionCreatePreparedStatementResult {
                prepared_statement_handle: handle,
                dataset_schema: ipc_schema(&hydrated_schema(&dataset))?,
                parameter_schema: ipc_schema(&parameters)?,
            };
            Ok(vec![arrow_flight::Result {
                body: result.as_any().encode_to_vec().into(),
            }])
        }
        SqlAction::ClosePreparedStatement(close) => {
            statements.close(&close.prepared_statement_handle, access.subject());
            Ok(Vec::new())
        }
    }
}

/// What a DoPut with a Flight SQL descriptor asks for.
pub(super) enum PutRequest {
    /// `CommandStatementIngest`: an upload to a name, answered with the count of rows uploaded.
    Ingest(PutTarget),
    /// `CommandPreparedStatementQuery`: parameter values for a prepared statement.
    Bind(Bytes),
}

/// Reads a DoPut's Flight SQL command; SQL that changes data is refused.
pub(super) fn put_request(service: &FlightbayService, access: &Access, command: Command) -> Result<PutRequest> {
    match command {
        Command::CommandStatementIngest(ingest) => ingest_target(service, access, ingest).map(PutRequest::Ingest),
        Command::CommandPreparedStatementQuery(query) => Ok(PutRequest::Bind(query.prepared_statement_handle)),
        Command::CommandStatementUpdate(_) | Command::CommandPreparedStatementUpdate(_) => Err(read_only()),
        Command::Unknown(any) => Err(unknown(&any.type_url)),
        other => Err(Error::invalid(format!(
            "DoPut takes CommandStatementIngest or CommandPreparedStatementQuery (to bind parameters), not {}",
            other.type_url()
        ))),
    }
}

/// The DoPut answer to an ingest of `rows` rows.
pub(super) fn ingest_result(rows: u64) -> PutResult {
    let result = DoPutUpdateResult {
        record_count: i64::try_from(rows).unwrap_or(i64::MAX),
    };
    PutResult {
        app_metadata: result.encode_to_vec().into(),
    }
}

/// Binds the single row of `batches` as the parameter values of the prepared statement `handle`.
pub(super) fn bind(
    access: &Access,
    service: &FlightbayService,
    handle: Bytes,
    batches: &[RecordBatch],
) -> Result<PutResult> {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if rows != 1 {
        return Err(Error::invalid(format!(
            "a query takes one row of parameter values; {rows} rows were bound"
        )));
    }
    let batch = batches
        .iter()
        .find(|b| b.num_rows() == 1)
        .ok_or_else(|| Error::internal("the parameter row went missing"))?;
    let params = batch
        .columns()
        .iter()
        .map(|column| ScalarValue::try_from_array(column, 0))
        .collect::<datafusion::common::Result<Vec<_>>>()?;
    service.inner.prepared.bind(&handle, access.subject(), params)?;
    let result = DoPutPreparedStatementResult {
        prepared_statement_handle: Some(handle),
    };
    Ok(PutResult {
        app_metadata: result.encode_to_vec().into(),
    })
}

/// Runs a query command for `access`; returns the result and the query text.
async fn execute(
    service: &FlightbayService,
    access: &Access,
    command: Command,
    request: &MetadataMap,
) -> Result<(Outcome, String)> {
    match command {
        Command::CommandStatementQuery(query) => {
            no_transaction(query.transaction_id.as_ref())?;
            let outcome = derive_sql(service, access, query.query.clone(), Vec::new(), request).await?;
            Ok((outcome, query.query))
        }
        Command::CommandPreparedStatementQuery(query) => {
            let prepared = service
                .inner
                .prepared
                .get(&query.prepared_statement_handle, access.subject())?;
            let outcome = derive_sql(service, access, prepared.query.clone(), prepared.params, request).await?;
            Ok((outcome, prepared.query))
        }
        Command::CommandStatementUpdate(_) | Command::CommandPreparedStatementUpdate(_) => Err(read_only()),
        Command::CommandStatementSubstraitPlan(_) => Err(Error::unimplemented(
            "flightbay does not run Substrait plans; send SQL (CommandStatementQuery)",
        )),
        Command::CommandStatementIngest(_) => Err(Error::invalid("CommandStatementIngest is a DoPut descriptor")),
        Command::Unknown(any) => Err(unknown(&any.type_url)),
        other => Err(Error::invalid(format!(
            "{} is not a request for GetFlightInfo",
            other.type_url()
        ))),
    }
}

/// Where an ingest goes: catalog `flightbay`, schema = namespace, table = name. ADBC's modes map onto put modes:
/// `create` → `error`, `append` → `append` (the name must exist), `replace` → `replace`, `create_append` →
/// `append`.
fn ingest_target(service: &FlightbayService, access: &Access, ingest: CommandStatementIngest) -> Result<PutTarget> {
    no_transaction(ingest.transaction_id.as_ref())?;
    if ingest.temporary {
        return Err(Error::invalid(
            "flightbay has no temporary tables: every flight is shared; ingest without temporary",
        ));
    }
    if let Some(catalog) = ingest.catalog.as_deref().filter(|c| *c != CATALOG) {
        return Err(Error::not_found(format!(
            "catalog {catalog:?} does not exist; the only catalog is {CATALOG:?}"
        )));
    }
    let name = QualifiedName::try_new(ingest.schema.as_deref(), &ingest.table)?;
    let options = ingest.table_definition_options.unwrap_or_default();
    let if_exists = TableExistsOption::try_from(options.if_exists).unwrap_or(TableExistsOption::Unspecified);
    let if_not_exist = TableNotExistOption::try_from(options.if_not_exist).unwrap_or(TableNotExistOption::Unspecified);
    let mode = match if_exists {
        TableExistsOption::Append => PutMode::Append,
        TableExistsOption::Replace => PutMode::Replace,
        TableExistsOption::Fail | TableExistsOption::Unspecified => PutMode::Error,
    };
    let target = PutTarget { name, mode };
    access.put(&target)?;
    if if_not_exist == TableNotExistOption::Fail
        && service.store().resolve(&FlightRef::Name(target.name.clone())).is_err()
    {
        return Err(Error::not_found(format!(
            "table {} does not exist; ingest with mode \"create\" or \"create_append\" to create it",
            target.name
        )));
    }
    Ok(target)
}

fn no_transaction(transaction: Option<&Bytes>) -> Result<()> {
    match transaction {
        Some(_) => Err(Error::unimplemented(
            "flightbay has no transactions: every request is atomic on its own",
        )),
        None => Ok(()),
    }
}

fn read_only() -> Error {
    Error::invalid("flightbay SQL is read-only: send a query; to add data, upload it (DoPut, or ADBC's adbc_ingest)")
}

fn unknown(type_url: &str) -> Error {
    Error::unimplemented(format!("unknown Flight SQL command {type_url:?}"))
}

fn ipc_schema(schema: &Schema) -> Result<Bytes> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default()).try_into()?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_unordered_results_get_parallel_endpoints() {
        let mb = 1 << 20;
        assert_eq!(parallel_endpoints(10 * mb, "SELECT * FROM t"), None);
        assert_eq!(parallel_endpoints(200 * mb, "SELECT * FROM t"), Some(2));
        assert_eq!(parallel_endpoints(5000 * mb, "SELECT * FROM t"), Some(4));
        for ordered in [
            "SELECT * FROM t ORDER BY a",
            "select *\nfrom t order\n  by a desc",
            "SELECT * FROM t\"order\" by",
        ] {
            assert_eq!(parallel_endpoints(5000 * mb, ordered), None, "{ordered}");
        }
    }
}
