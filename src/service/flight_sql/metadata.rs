//! Flight SQL metadata results: server info, type info, and the catalog as the caller may see it.
//!
//! The catalog is `flightbay`, each namespace is a schema and each name a table of type `TABLE`. Flights reached
//! only by id (`f42` in SQL) are not listed: every query result is such a flight, and a BI tool's tree of them
//! would bury the named tables; SQL still reads them.

use std::sync::{Arc, LazyLock};

use arrow::array::{RecordBatch, new_empty_array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow_flight::sql::metadata::{
    SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::{
    Command, Nullable, Searchable, SqlInfo, SqlSupportedCaseSensitivity, SqlSupportedTransaction, XdbcDataType,
    XdbcDatetimeSubcode,
};

use super::super::FlightbayService;
use super::super::auth::Access;
use crate::error::{Error, Result};
use crate::protocol::flight_data::hydrated_schema;
use crate::query::catalog::CATALOG;

/// The table type of every listed name.
const TABLE: &str = "TABLE";

/// The schema of a metadata command's result; `None` when `command` is not a metadata command.
pub(super) fn schema(command: &Command) -> Option<SchemaRef> {
    Some(match command {
        Command::CommandGetSqlInfo(c) => c.clone().into_builder(&SQL_INFO).schema(),
        Command::CommandGetXdbcTypeInfo(c) => (*c).into_builder(&XDBC_TYPES).schema(),
        Command::CommandGetCatalogs(c) => (*c).into_builder().schema(),
        Command::CommandGetDbSchemas(c) => c.clone().into_builder().schema(),
        Command::CommandGetTables(c) => c.clone().into_builder().schema(),
        Command::CommandGetTableTypes(c) => (*c).into_builder().schema(),
        Command::CommandGetPrimaryKeys(_) => Arc::clone(&PRIMARY_KEYS),
        Command::CommandGetImportedKeys(_)
        | Command::CommandGetExportedKeys(_)
        | Command::CommandGetCrossReference(_) => Arc::clone(&FOREIGN_KEYS),
        _ => return None,
    })
}

/// The result of a metadata command for `access`.
pub(super) fn batch(service: &FlightbayService, access: &Access, command: Command) -> Result<RecordBatch> {
    let batch = match command {
        Command::CommandGetSqlInfo(c) => c.into_builder(&SQL_INFO).build()?,
        Command::CommandGetXdbcTypeInfo(c) => c.into_builder(&XDBC_TYPES).build()?,
        Command::CommandGetCatalogs(c) => {
            let mut builder = c.into_builder();
            builder.append(CATALOG);
            builder.build()?
        }
        Command::CommandGetDbSchemas(c) => {
            let mut builder = c.into_builder();
            for (namespace, _) in visible(service, access) {
                builder.append(CATALOG, namespace);
            }
            builder.build()?
        }
        Command::CommandGetTables(c) => {
            let mut builder = c.into_builder();
            for (namespace, tables) in visible(service, access) {
                for (name, schema) in tables {
                    builder.append(CATALOG, &namespace, name, TABLE, &schema)?;
                }
            }
            builder.build()?
        }
        Command::CommandGetTableTypes(c) => {
            let mut builder = c.into_builder();
            builder.append(TABLE);
            builder.build()?
        }
        command => {
            let schema = schema(&command)
                .ok_or_else(|| Error::internal(format!("{} is not a metadata command", command.type_url())))?;
            // Names are not keys: flightbay has no primary or foreign keys, so these are empty (BI tools show an
            // error tab for UNIMPLEMENTED).
            let columns = schema.fields().iter().map(|f| new_empty_array(f.data_type())).collect();
            RecordBatch::try_new(schema, columns)?
        }
    };
    Ok(batch)
}

/// Namespaces the caller may read, each with its names the caller may read and their schemas (as DoGet sends
/// them), sorted.
fn visible(service: &FlightbayService, access: &Access) -> Vec<(String, Vec<(String, Schema)>)> {
    let store = service.store();
    let mut namespaces: Vec<_> = store
        .namespaces()
        .into_iter()
        .filter(|(namespace, _)| access.can_read_namespace(namespace))
        .map(|(namespace, names)| {
            let mut tables: Vec<_> = names
                .into_iter()
                .filter(|(_, id)| access.can_read(*id))
                .filter_map(|(name, id)| Some((name, hydrated_schema(&store.peek_meta(id)?.schema))))
                .collect();
            tables.sort_by(|a, b| a.0.cmp(&b.0));
            (namespace, tables)
        })
        .collect();
    namespaces.sort_by(|a, b| a.0.cmp(&b.0));
    namespaces
}

/// What `GetSqlInfo` answers. An empty request gets every entry.
static SQL_INFO: LazyLock<SqlInfoData> = LazyLock::new(|| {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "flightbay");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerArrowVersion, arrow::ARROW_VERSION);
    // Uploads (CommandStatementIngest) change data; SQL itself is read-only.
    b.append(SqlInfo::FlightSqlServerReadOnly, false);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(
        SqlInfo::FlightSqlServerTransaction,
        SqlSupportedTransaction::None as i32,
    );
    b.append(SqlInfo::FlightSqlServerCancel, false);
    b.append(SqlInfo::FlightSqlServerBulkIngestion, true);
    b.append(SqlInfo::FlightSqlServerIngestTransactionsSupported, false);
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, false);
    b.append(SqlInfo::SqlDdlTable, false);
    // DataFusion folds unquoted identifiers to lower case.
    b.append(
        SqlInfo::SqlIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityLowercase as i32,
    );
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.append(SqlInfo::SqlAllTablesAreSelectable, true);
    b.append(SqlInfo::SqlSearchStringEscape, "\\");
    let keywords: Vec<String> = datafusion::sql::sqlparser::keywords::ALL_KEYWORDS
        .iter()
        .map(|k| k.to_string())
        .collect();
    b.append(SqlInfo::SqlKeywords, keywords);
    let functions = crate::query::function_names();
    for (info, section) in [
        (SqlInfo::SqlNumericFunctions, "Math Functions"),
        (SqlInfo::SqlStringFunctions, "String Functions"),
        (SqlInfo::SqlDatetimeFunctions, "Time and Date Functions"),
    ] {
        let names: Vec<String> = functions
            .iter()
            .filter(|(_, s)| *s == Some(section))
            .map(|(name, _)| name.clone())
            .collect();
        b.append(info, names);
    }
    b.build()
        .unwrap_or_else(|e| panic!("the static SqlInfo table is malformed: {e}"))
});

/// What `GetXdbcTypeInfo` answers: the SQL types DataFusion accepts in `CAST` and literals.
static XDBC_TYPES: LazyLock<XdbcTypeInfoData> = LazyLock::new(|| {
    let mut b = XdbcTypeInfoDataBuilder::new();
    let types: [(&str, XdbcDataType, Option<i32>, Option<XdbcDatetimeSubcode>); 13] = [
        ("BOOLEAN", XdbcDataType::XdbcBit, Some(1), None),
        ("TINYINT", XdbcDataType::XdbcTinyint, Some(3), None),
        ("SMALLINT", XdbcDataType::XdbcSmallint, Some(5), None),
        ("INTEGER", XdbcDataType::XdbcInteger, Some(10), None),
        ("BIGINT", XdbcDataType::XdbcBigint, Some(19), None),
        ("REAL", XdbcDataType::XdbcReal, Some(7), None),
        ("DOUBLE", XdbcDataType::XdbcDouble, Some(15), None),
        ("DECIMAL", XdbcDataType::XdbcDecimal, Some(38), None),
        ("VARCHAR", XdbcDataType::XdbcVarchar, None, None),
        ("BYTEA", XdbcDataType::XdbcVarbinary, None, None),
        // XDBC_SUBCODE_DATE is an alias of XDBC_SUBCODE_YEAR (1), which prost keeps.
        (
            "DATE",
            XdbcDataType::XdbcDate,
            None,
            Some(XdbcDatetimeSubcode::XdbcSubcodeYear),
        ),
        (
            "TIME",
            XdbcDataType::XdbcTime,
            None,
            Some(XdbcDatetimeSubcode::XdbcSubcodeTime),
        ),
        (
            "TIMESTAMP",
            XdbcDataType::XdbcTimestamp,
            None,
            Some(XdbcDatetimeSubcode::XdbcSubcodeTimestamp),
        ),
    ];
    for (name, data_type, column_size, datetime_subcode) in types {
        let text = matches!(data_type, XdbcDataType::XdbcVarchar);
        let numeric = column_size.is_some() && !matches!(data_type, XdbcDataType::XdbcBit);
        b.append(XdbcTypeInfo {
            type_name: name.to_string(),
            data_type,
            column_size,
            literal_prefix: (text || datetime_subcode.is_some()).then(|| "'".to_string()),
            literal_suffix: (text || datetime_subcode.is_some()).then(|| "'".to_string()),
            create_params: matches!(data_type, XdbcDataType::XdbcDecimal)
                .then(|| vec!["precision".to_string(), "scale".to_string()]),
            nullable: Nullable::NullabilityNullable,
            case_sensitive: text,
            searchable: Searchable::Full,
            unsigned_attribute: numeric.then_some(false),
            fixed_prec_scale: false,
            auto_increment: numeric.then_some(false),
            local_type_name: Some(name.to_string()),
            minimum_scale: None,
            maximum_scale: None,
            sql_data_type: if datetime_subcode.is_some() {
                XdbcDataType::XdbcDatetime
            } else {
                data_type
            },
            datetime_subcode,
            num_prec_radix: numeric.then_some(10),
            interval_precision: None,
        });
    }
    b.build()
        .unwrap_or_else(|e| panic!("the static XdbcTypeInfo table is malformed: {e}"))
});

/// `GetPrimaryKeys`' result schema (FlightSql.proto).
static PRIMARY_KEYS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ]))
});

/// `GetImportedKeys`', `GetExportedKeys`' and `GetCrossReference`'s result schema (FlightSql.proto).
static FOREIGN_KEYS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("pk_catalog_name", DataType::Utf8, true),
        Field::new("pk_db_schema_name", DataType::Utf8, true),
        Field::new("pk_table_name", DataType::Utf8, false),
        Field::new("pk_column_name", DataType::Utf8, false),
        Field::new("fk_catalog_name", DataType::Utf8, true),
        Field::new("fk_db_schema_name", DataType::Utf8, true),
        Field::new("fk_table_name", DataType::Utf8, false),
        Field::new("fk_column_name", DataType::Utf8, false),
        Field::new("key_sequence", DataType::Int32, false),
        Field::new("fk_key_name", DataType::Utf8, true),
        Field::new("pk_key_name", DataType::Utf8, true),
        Field::new("update_rule", DataType::UInt8, false),
        Field::new("delete_rule", DataType::UInt8, false),
    ]))
});
