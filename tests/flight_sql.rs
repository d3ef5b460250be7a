//! Flight SQL on the Flight port, through arrow-flight's own Flight SQL client: queries and prepared statements
//! are cached flights shared with plain CMD SQL, metadata commands answer with the spec schemas, ingest maps onto
//! put modes, and bad requests get clear codes without publishing anything.

use std::sync::Arc;

use arrow::array::{Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow_flight::error::FlightError;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{
    Any, CommandGetDbSchemas, CommandGetPrimaryKeys, CommandGetTables, CommandGetXdbcTypeInfo,
    CommandPreparedStatementQuery, CommandStatementIngest, ProstMessageExt, SqlInfo, TableDefinitionOptions,
    TableExistsOption, TableNotExistOption,
};
use arrow_flight::{FlightDescriptor, FlightInfo, Ticket};
use futures::TryStreamExt;
use prost::Message;
use tonic::Code;
use tonic::transport::Channel;

use crate::common::*;

async fn sql_client(server: &TestServer) -> FlightSqlServiceClient<Channel> {
    FlightSqlServiceClient::new(connect(server.addr).await)
}

/// Every batch of every endpoint, checking that each stream's schema is the one the FlightInfo announced.
async fn collect(client: &mut FlightSqlServiceClient<Channel>, info: &FlightInfo) -> Vec<RecordBatch> {
    let announced = info.clone().try_decode_schema().unwrap();
    let mut out = Vec::new();
    for endpoint in &info.endpoint {
        let ticket = endpoint.ticket.clone().unwrap();
        let batches: Vec<RecordBatch> = client.do_get(ticket).await.unwrap().try_collect().await.unwrap();
        for b in &batches {
            assert_eq!(
                b.schema().fields(),
                announced.fields(),
                "FlightInfo and DoGet schemas differ"
            );
        }
        out.extend(batches);
    }
    out
}

fn flight_id(info: &FlightInfo) -> u64 {
    info_metadata(info)["id"].as_u64().unwrap()
}

fn sql_code(e: FlightError) -> Code {
    match e {
        FlightError::Tonic(status) => status.code(),
        other => panic!("expected a gRPC status, got {other:?}"),
    }
}

async fn setup() -> (TestServer, FlightSqlServiceClient<Channel>) {
    let server = TestServer::start().await;
    let mut plain = server.client().await;
    upload(&mut plain, path(&["trips"]), vec![sample_batch(0, 10)])
        .await
        .unwrap();
    upload(&mut plain, path(&["sales", "orders"]), vec![sample_batch(100, 5)])
        .await
        .unwrap();
    let client = sql_client(&server).await;
    (server, client)
}

#[tokio::test]
async fn a_query_is_the_same_flight_as_the_same_cmd_sql() {
    let (server, mut client) = setup().await;
    let query = "SELECT id, name FROM trips WHERE id >= 7 ORDER BY id";
    let info = client.execute(query.to_string(), None).await.unwrap();
    assert_eq!(info_metadata(&info)["cache"], "miss");
    let batches = collect(&mut client, &info).await;
    assert_eq!(
        pretty(&batches),
        "+----+--------+\n| id | name   |\n+----+--------+\n| 7  | name-7 |\n| 8  | name-8 |\n| 9  | name-9 |\n+----+--------+"
    );
    let mut plain = server.client().await;
    let again = plain.get_flight_info(FlightDescriptor::new_cmd(query)).await.unwrap();
    assert_eq!(info_metadata(&again)["cache"], "hit");
    assert_eq!(flight_id(&again), flight_id(&info));
    // And the other way round: the Flight SQL request is a hit too.
    let third = client.execute(query.to_string(), None).await.unwrap();
    assert_eq!(
        (info_metadata(&third)["cache"].clone(), flight_id(&third)),
        ("hit".into(), flight_id(&info))
    );
    server.shutdown_and_wait().await;
}

#[tokio::test]
async fn prepared_statements_bind_parameters_and_share_the_cache() {
    let (server, mut client) = setup().await;
    let mut plain = server.client().await;
    let literal = plain
        .get_flight_info(FlightDescriptor::new_cmd(
            "SELECT id FROM trips WHERE id > 6 ORDER BY id",
        ))
        .await
        .unwrap();
    let mut statement = client
        .prepare("SELECT id FROM trips WHERE id > ? ORDER BY id".to_string(), None)
        .await
        .unwrap();
    assert_eq!(statement.dataset_schema().unwrap().field(0).name(), "id");
    let parameters = statement.parameter_schema().unwrap().clone();
    assert_eq!(parameters.fields().len(), 1);
    assert_eq!(parameters.field(0).data_type(), &DataType::Int64);
    let bind = |value: Arc<dyn Array>| {
        let schema = Arc::new(Schema::new(vec![Field::new("$1", value.data_type().clone(), true)]));
        RecordBatch::try_new(schema, vec![value]).unwrap()
    };
    statement
        .set_parameters(bind(Arc::new(Int64Array::from(vec![6]))))
        .unwrap();
    let info = statement.execute().await.unwrap();
    // The bound value makes the same plan as the literal: one flight.
    assert_eq!(flight_id(&info), flight_id(&literal));
    assert_eq!(info_metadata(&info)["cache"], "hit");
    let rows: usize = collect(&mut client, &info)
        .await
        .iter()
        .map(RecordBatch::num_rows)
        .sum();
    assert_eq!(rows, 3);
    // A string that casts to the parameter's type is accepted; one that does not is INVALID_ARGUMENT.
    statement
        .set_parameters(bind(Arc::new(StringArray::from(vec!["8"]))))
        .unwrap();
    let info = statement.execute().await.unwrap();
    assert_eq!(collect(&mut client, &info).await[0].num_rows(), 1);
    let before = listed_ids(&mut plain).await;
    statement
        .set_parameters(bind(Arc::new(StringArray::from(vec!["eight"]))))
        .unwrap();
    assert_eq!(sql_code(statement.execute().await.unwrap_err()), Code::InvalidArgument);
    // Two values for one placeholder, and two rows of values.
    let two = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("$1", DataType::Int64, true),
            Field::new("$2", DataType::Int64, true),
        ])),
        vec![Arc::new(Int64Array::from(vec![1])), Arc::new(Int64Array::from(vec![2]))],
    )
    .unwrap();
    statement.set_parameters(two).unwrap();
    assert_eq!(sql_code(statement.execute().await.unwrap_err()), Code::InvalidArgument);
    statement
        .set_parameters(bind(Arc::new(Int64Array::from(vec![1, 2]))))
        .unwrap();
    assert_eq!(sql_code(statement.execute().await.unwrap_err()), Code::InvalidArgument);
    assert_eq!(
        listed_ids(&mut plain).await,
        before,
        "a refused execution published something"
    );

    // A closed handle, and one that never existed, are NOT_FOUND; closing again is harmless.
    let mut unbound = client
        .prepare("SELECT count(*) FROM trips".to_string(), None)
        .await
        .unwrap();
    assert_eq!(
        collect(&mut client, &unbound.execute().await.unwrap()).await[0].num_rows(),
        1
    );
    let handle = CommandPreparedStatementQuery {
        prepared_statement_handle: prepared_handle(&mut client, "SELECT 2").await,
    };
    close(&mut client, &handle.prepared_statement_handle).await;
    close(&mut client, &handle.prepared_statement_handle).await;
    let descriptor = FlightDescriptor::new_cmd(handle.as_any().encode_to_vec());
    assert_eq!(
        code(plain.get_flight_info(descriptor).await.unwrap_err()),
        Code::NotFound
    );
    let never = CommandPreparedStatementQuery {
        prepared_statement_handle: vec![7u8; 16].into(),
    };
    let descriptor = FlightDescriptor::new_cmd(never.as_any().encode_to_vec());
    assert_eq!(
        code(plain.get_flight_info(descriptor).await.unwrap_err()),
        Code::NotFound
    );
    server.shutdown_and_wait().await;
}

/// A prepared statement's raw handle, through the action itself.
async fn prepared_handle(client: &mut FlightSqlServiceClient<Channel>, query: &str) -> bytes::Bytes {
    let request = arrow_flight::sql::ActionCreatePreparedStatementRequest {
        query: query.to_string(),
        transaction_id: None,
    };
    let action = arrow_flight::Action::new("CreatePreparedStatement", request.as_any().encode_to_vec());
    let results: Vec<_> = client.do_action(action).await.unwrap().try_collect().await.unwrap();
    assert_eq!(results.len(), 1);
    let any = Any::decode(results[0].body.clone()).unwrap();
    let result: arrow_flight::sql::ActionCreatePreparedStatementResult = any.unpack().unwrap().unwrap();
    assert!(
        !result.dataset_schema.is_empty(),
        "JDBC reads an empty dataset schema as an update"
    );
    result.prepared_statement_handle
}

async fn close(client: &mut FlightSqlServiceClient<Channel>, handle: &bytes::Bytes) {
    let request = arrow_flight::sql::ActionClosePreparedStatementRequest {
        prepared_statement_handle: handle.clone(),
    };
    let action = arrow_flight::Action::new("ClosePreparedStatement", request.as_any().encode_to_vec());
    let results: Vec<_> = client.do_action(action).await.unwrap().try_collect().await.unwrap();
    assert!(results.is_empty());
}

#[tokio::test]
async fn metadata_commands_answer_with_the_spec_schemas() {
    let (server, mut client) = setup().await;
    let info = client.get_catalogs().await.unwrap();
    let catalogs = collect(&mut client, &info).await;
    assert_eq!(
        pretty(&catalogs),
        "+--------------+\n| catalog_name |\n+--------------+\n| flightbay    |\n+--------------+"
    );

    let info = client
        .get_db_schemas(CommandGetDbSchemas {
            catalog: Some("flightbay".into()),
            db_schema_filter_pattern: None,
        })
        .await
        .unwrap();
    let schemas = collect(&mut client, &info).await;
    assert_eq!(
        pretty(&schemas),
        "+--------------+----------------+\n| catalog_name | db_schema_name |\n+--------------+----------------+\n\
         | flightbay    | default        |\n| flightbay    | sales          |\n+--------------+----------------+"
    );

    let info = client
        .get_tables(CommandGetTables {
            catalog: None,
            db_schema_filter_pattern: Some("sal%".into()),
            table_name_filter_pattern: None,
            table_types: vec!["TABLE".into()],
            include_schema: true,
        })
        .await
        .unwrap();
    let tables = collect(&mut client, &info).await;
    assert_eq!(tables[0].num_columns(), 5);
    assert_eq!(tables[0].num_rows(), 1);
    let names = tables[0].column(2).as_any().downcast_ref::<StringArray>().unwrap();
    assert_eq!(names.value(0), "orders");
    let ipc = tables[0]
        .column(4)
        .as_any()
        .downcast_ref::<arrow::array::BinaryArray>()
        .unwrap();
    let schema = Schema::try_from(arrow_flight::IpcMessage(bytes::Bytes::copy_from_slice(ipc.value(0)))).unwrap();
    assert_eq!(schema.fields(), sample_schema().fields());
    let info = client
        .get_tables(CommandGetTables {
            include_schema: false,
            ..Default::default()
        })
        .await
        .unwrap();
    let tables = collect(&mut client, &info).await;
    assert_eq!((tables[0].num_columns(), tables[0].num_rows()), (4, 2));

    let info = client.get_table_types().await.unwrap();
    assert_eq!(
        pretty(&collect(&mut client, &info).await),
        "+------------+\n| table_type |\n+------------+\n| TABLE      |\n+------------+"
    );

    let info = client
        .get_sql_info(vec![SqlInfo::FlightSqlServerName, SqlInfo::FlightSqlServerReadOnly])
        .await
        .unwrap();
    let info_rows = collect(&mut client, &info).await;
    assert_eq!(info_rows[0].num_rows(), 2);
    let all = client.get_sql_info(vec![]).await.unwrap();
    assert!(collect(&mut client, &all).await[0].num_rows() > 15);

    let info = client
        .get_xdbc_type_info(CommandGetXdbcTypeInfo { data_type: None })
        .await
        .unwrap();
    let types = collect(&mut client, &info).await;
    let names = types[0].column(0).as_any().downcast_ref::<StringArray>().unwrap();
    assert!(names.iter().any(|n| n == Some("BIGINT")), "{names:?}");

    let info = client
        .get_primary_keys(CommandGetPrimaryKeys {
            catalog: None,
            db_schema: None,
            table: "trips".into(),
        })
        .await
        .unwrap();
    assert_eq!(info.clone().try_decode_schema().unwrap().fields().len(), 6);
    assert!(collect(&mut client, &info).await.iter().all(|b| b.num_rows() == 0));
    let info = client
        .get_imported_keys(arrow_flight::sql::CommandGetImportedKeys {
            catalog: None,
            db_schema: None,
            table: "trips".into(),
        })
        .await
        .unwrap();
    assert_eq!(info.clone().try_decode_schema().unwrap().fields().len(), 13);
    assert!(collect(&mut client, &info).await.iter().all(|b| b.num_rows() == 0));
    server.shutdown_and_wait().await;
}

fn ingest(
    table: &str,
    schema: Option<&str>,
    if_not_exist: TableNotExistOption,
    if_exists: TableExistsOption,
) -> CommandStatementIngest {
    CommandStatementIngest {
        table_definition_options: Some(TableDefinitionOptions {
            if_not_exist: if_not_exist.into(),
            if_exists: if_exists.into(),
        }),
        table: table.into(),
        schema: schema.map(String::from),
        catalog: None,
        temporary: false,
        transaction_id: None,
        options: Default::default(),
    }
}

#[tokio::test]
async fn ingest_maps_adbc_modes_onto_put_modes() {
    use TableExistsOption as E;
    use TableNotExistOption as N;
    let (server, mut client) = setup().await;
    let mut plain = server.client().await;
    let rows = |start, n| futures::stream::iter([Ok(sample_batch(start, n))]);
    let create = ingest("fresh", Some("lab"), N::Create, E::Fail);
    assert_eq!(client.execute_ingest(create.clone(), rows(0, 4)).await.unwrap(), 4);
    assert_eq!(
        sql_code(client.execute_ingest(create, rows(0, 4)).await.unwrap_err()),
        Code::AlreadyExists
    );
    let append = ingest("fresh", Some("lab"), N::Fail, E::Append);
    assert_eq!(client.execute_ingest(append, rows(4, 3)).await.unwrap(), 3);
    let info = plain.get_flight_info(path(&["lab", "fresh"])).await.unwrap();
    assert_eq!(info.total_records, 7);
    let missing = ingest("absent", None, N::Fail, E::Append);
    assert_eq!(
        sql_code(client.execute_ingest(missing, rows(0, 1)).await.unwrap_err()),
        Code::NotFound
    );
    let replace = ingest("fresh", Some("lab"), N::Create, E::Replace);
    assert_eq!(client.execute_ingest(replace, rows(0, 2)).await.unwrap(), 2);
    assert_eq!(
        plain
            .get_flight_info(path(&["lab", "fresh"]))
            .await
            .unwrap()
            .total_records,
        2
    );
    let create_append = ingest("grown", None, N::Create, E::Append);
    client.execute_ingest(create_append.clone(), rows(0, 2)).await.unwrap();
    client.execute_ingest(create_append, rows(2, 2)).await.unwrap();
    assert_eq!(plain.get_flight_info(path(&["grown"])).await.unwrap().total_records, 4);
    // The ingested table is queryable by its schema-qualified name.
    let info = client
        .execute("SELECT count(*) AS n FROM lab.fresh".into(), None)
        .await
        .unwrap();
    assert_eq!(
        pretty(&collect(&mut client, &info).await),
        "+---+\n| n |\n+---+\n| 2 |\n+---+"
    );
    let before = listed_ids(&mut plain).await;
    let mut temporary = ingest("tmp", None, N::Create, E::Fail);
    temporary.temporary = true;
    assert_eq!(
        sql_code(client.execute_ingest(temporary, rows(0, 1)).await.unwrap_err()),
        Code::InvalidArgument
    );
    let mut elsewhere = ingest("t", None, N::Create, E::Fail);
    elsewhere.catalog = Some("other".into());
    assert_eq!(
        sql_code(client.execute_ingest(elsewhere, rows(0, 1)).await.unwrap_err()),
        Code::NotFound
    );
    assert_eq!(listed_ids(&mut plain).await, before);
    server.shutdown_and_wait().await;
}

#[tokio::test]
async fn bad_flight_sql_requests_get_clear_codes_and_publish_nothing() {
    let (server, mut client) = setup().await;
    let mut plain = server.client().await;
    let before = listed_ids(&mut plain).await;
    // A Flight SQL type whose body is not that message.
    let torn = Any {
        type_url: arrow_flight::sql::CommandStatementQuery::type_url().into(),
        value: vec![0x0a, 0x40, b'S'].into(),
    };
    let cmd = |any: &Any| FlightDescriptor::new_cmd(any.encode_to_vec());
    assert_eq!(
        code(plain.get_flight_info(cmd(&torn)).await.unwrap_err()),
        Code::InvalidArgument
    );
    assert_eq!(
        code(plain.do_get(Ticket::new(torn.encode_to_vec())).await.unwrap_err()),
        Code::InvalidArgument
    );
    let unknown = Any {
        type_url: "type.googleapis.com/arrow.flight.protocol.sql.CommandFromTheFuture".into(),
        value: Default::default(),
    };
    assert_eq!(
        code(plain.get_flight_info(cmd(&unknown)).await.unwrap_err()),
        Code::Unimplemented
    );
    // SQL that changes data, as an update or as a query.
    assert_eq!(
        sql_code(
            client
                .execute_update("DELETE FROM trips".into(), None)
                .await
                .unwrap_err()
        ),
        Code::InvalidArgument
    );
    for ddl in [
        "CREATE TABLE x (a INT)",
        "INSERT INTO trips VALUES (1, 'a', 1.0)",
        "DROP TABLE trips",
    ] {
        assert_eq!(
            sql_code(client.execute(ddl.into(), None).await.unwrap_err()),
            Code::InvalidArgument,
            "{ddl}"
        );
        assert_eq!(
            sql_code(client.prepare(ddl.into(), None).await.unwrap_err()),
            Code::InvalidArgument,
            "{ddl}"
        );
    }
    // A query as a DoGet ticket, transactions, and a malformed action body.
    let query = arrow_flight::sql::CommandStatementQuery {
        query: "SELECT 1".into(),
        transaction_id: None,
    };
    assert_eq!(
        code(
            plain
                .do_get(Ticket::new(query.as_any().encode_to_vec()))
                .await
                .unwrap_err()
        ),
        Code::InvalidArgument
    );
    let in_transaction = arrow_flight::sql::CommandStatementQuery {
        query: "SELECT 1".into(),
        transaction_id: Some(vec![1].into()),
    };
    assert_eq!(
        code(plain.get_flight_info(cmd(&in_transaction.as_any())).await.unwrap_err()),
        Code::Unimplemented
    );
    let garbage = arrow_flight::Action::new("CreatePreparedStatement", vec![0xff, 0x01]);
    match plain.do_action(garbage).await {
        Err(e) => assert_eq!(code(e), Code::InvalidArgument),
        Ok(_) => panic!("a malformed CreatePreparedStatement was accepted"),
    }
    assert_eq!(listed_ids(&mut plain).await, before);
    // Plain Flight is untouched: SQL text that starts with a newline is still SQL.
    let info = plain
        .get_flight_info(FlightDescriptor::new_cmd("\nSELECT 41 + 1 AS x"))
        .await
        .unwrap();
    assert_eq!(fetch(&mut plain, &info).await.unwrap()[0].num_rows(), 1);
    server.shutdown_and_wait().await;
}

#[tokio::test]
async fn metadata_and_statements_show_only_what_the_caller_may_read() {
    use flightbay::auth::{Grants, TokenAuthority};
    const SECRET: &str = "flight-sql-secret-0123456789";
    let server = TestServer::start_with(|c| c.jwt_secret = Some(SECRET.parse().unwrap())).await;
    let authority = TokenAuthority::try_new(SECRET, std::time::Duration::from_secs(600)).unwrap();
    let token = |subject: &str, grants: &[&str]| authority.mint(subject, &Grants::parse(grants).unwrap()).unwrap();
    let mut admin = server.client().await;
    admin
        .add_header("authorization", &format!("Bearer {}", token("root", &["*:admin"])))
        .unwrap();
    upload(&mut admin, path(&["trips"]), vec![sample_batch(0, 10)])
        .await
        .unwrap();
    upload(&mut admin, path(&["secret", "salaries"]), vec![sample_batch(0, 3)])
        .await
        .unwrap();

    let mut reader = sql_client(&server).await;
    reader.set_token(token("ann", &["default:read"]));
    let info = reader.get_db_schemas(CommandGetDbSchemas::default()).await.unwrap();
    let schemas = collect(&mut reader, &info).await;
    assert_eq!(schemas[0].num_rows(), 1, "{}", pretty(&schemas));
    let info = reader.get_tables(CommandGetTables::default()).await.unwrap();
    let tables = collect(&mut reader, &info).await;
    assert_eq!(pretty(&tables).matches("salaries").count(), 0);
    assert_eq!(tables[0].num_rows(), 1);
    assert_eq!(
        sql_code(
            reader
                .execute("SELECT * FROM secret.salaries".into(), None)
                .await
                .unwrap_err()
        ),
        Code::PermissionDenied
    );
    // A handle prepared by ann is not bob's, even with the same grants.
    let handle = prepared_handle(&mut reader, "SELECT count(*) FROM trips").await;
    let mut bob = server.client().await;
    bob.add_header("authorization", &format!("Bearer {}", token("bob", &["default:read"])))
        .unwrap();
    let query = CommandPreparedStatementQuery {
        prepared_statement_handle: handle,
    };
    let descriptor = FlightDescriptor::new_cmd(query.as_any().encode_to_vec());
    assert_eq!(
        code(bob.get_flight_info(descriptor.clone()).await.unwrap_err()),
        Code::NotFound
    );
    let mut ann = server.client().await;
    ann.add_header("authorization", &format!("Bearer {}", reader.token().unwrap()))
        .unwrap();
    let info = ann.get_flight_info(descriptor).await.unwrap();
    assert_eq!(collect(&mut reader, &info).await[0].num_rows(), 1);
    // Without credentials nothing is answered.
    let mut anonymous = sql_client(&server).await;
    assert_eq!(
        sql_code(anonymous.get_catalogs().await.unwrap_err()),
        Code::Unauthenticated
    );
    server.shutdown_and_wait().await;
}

#[tokio::test]
async fn list_actions_includes_the_flight_sql_actions() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let actions: Vec<_> = client.list_actions().await.unwrap().try_collect().await.unwrap();
    let kinds: Vec<&str> = actions.iter().map(|a| a.r#type.as_str()).collect();
    assert!(
        kinds.contains(&"CreatePreparedStatement") && kinds.contains(&"ClosePreparedStatement"),
        "{kinds:?}"
    );
    server.shutdown_and_wait().await;
}
