//! The bad-input corpus: a table of hostile or malformed requests and the gRPC code each must get. After every
//! case the server still answers and what a client can observe of the store (ids, names, rows) is unchanged.
//! It holds every case of issue 17 (deep expressions, append laundering, schema leaks, lying IPC bodies,
//! undecodable protobuf, non-UTF-8 strings, oversized messages, non-object action bodies, query timeouts).

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, Int64Array, StringArray};
use arrow::record_batch::RecordBatch;
use arrow_flight::{FlightClient, FlightData, FlightDescriptor, Ticket};
use base64::Engine as _;
use bytes::Bytes;
use flightbay::auth::{Grants, TokenAuthority};
use futures::TryStreamExt;
use serde_json::json;
use tonic::Code;

use crate::common::*;
use crate::hostile::{HEAVY_SQL, field, raw_path, raw_put_as, raw_unary_as};

const SECRET: &str = "corpus-secret-0123456789abcdef";

/// Who sends a case.
#[derive(Clone, Copy, Debug)]
enum Who {
    Admin,
    /// `alpha:write` (and so read) only.
    Alpha,
    /// No credentials.
    Nobody,
    /// Basic credentials of an unknown user.
    Stranger,
}

/// One request.
#[derive(Debug)]
enum Request {
    Info(FlightDescriptor),
    Schema(FlightDescriptor),
    Get(Vec<u8>),
    Action(&'static str, Vec<u8>),
    Put(FlightDescriptor, Vec<RecordBatch>),
    /// Raw protobuf bytes as the request of a unary or server-streaming RPC.
    Raw(&'static str, Vec<u8>),
    /// Raw protobuf messages as a DoPut stream.
    RawPut(Vec<Bytes>),
}

struct Case {
    label: String,
    who: Who,
    request: Request,
    expected: Code,
}

fn case(label: impl Into<String>, who: Who, request: Request, expected: Code) -> Case {
    Case {
        label: label.into(),
        who,
        request,
        expected,
    }
}

fn cmd(text: impl Into<String>) -> FlightDescriptor {
    FlightDescriptor::new_cmd(text.into())
}

fn chain(term: &str, sep: &str, n: usize) -> String {
    vec![term; n].join(sep)
}

fn nest(open: &str, core: &str, close: &str, n: usize) -> String {
    format!("{}{core}{}", open.repeat(n), close.repeat(n))
}

fn kv_batch(rows: i64, tag: &str) -> RecordBatch {
    RecordBatch::try_from_iter([
        ("k", Arc::new(Int64Array::from_iter_values(0..rows)) as ArrayRef),
        (
            "secret_payload",
            Arc::new(StringArray::from_iter_values((0..rows).map(|i| format!("{tag}-{i}")))) as ArrayRef,
        ),
    ])
    .unwrap()
}

fn encoded_upload(name: &str, batches: Vec<RecordBatch>) -> Vec<FlightData> {
    let encoded = arrow_flight::encode::FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(path(&[name])))
        .build(futures::stream::iter(batches.into_iter().map(Ok)));
    futures::executor::block_on(encoded.try_collect::<Vec<_>>()).unwrap()
}

fn protobuf(messages: Vec<FlightData>) -> Vec<Bytes> {
    messages
        .into_iter()
        .map(|m| Bytes::from(prost::Message::encode_to_vec(&m)))
        .collect()
}

fn cases(secret_id: u64) -> Vec<Case> {
    use Code::*;
    use Request::*;
    use Who::*;
    let mut out = Vec::new();
    let long = "x".repeat(200);

    // Descriptors that do not parse, for both RPCs that take one.
    let bad_descriptors = vec![
        path(&["a", "b", "c"]),
        path(&[]),
        path(&["f12"]),
        path(&["a b"]),
        path(&[&long]),
        path(&["99999999999999999999999"]),
        path(&[""]),
        path(&["ns", ""]),
        path(&["1ns", "t"]),
        cmd("{not json"),
        cmd(""),
        cmd("   "),
        FlightDescriptor::new_cmd(vec![0xffu8, 0xfe]),
        cmd(r#"{"op":"explode","source":1}"#),
        cmd(r#"{"op":"put","name":"t"}"#),
        cmd(r#"{"op":"take","source":"default.t","indices":[0],"extra":1}"#),
        cmd(r#"{"op":"take","source":"default.t","indices":[-1]}"#),
        cmd(r#"{"op":"take","source":"default.t"}"#),
        cmd(r#"{"op":"slice","source":"default.t","offset":"x"}"#),
        cmd(r#"{"op":"sort_by","source":"default.t","keys":[["id","sideways"]]}"#),
        cmd(r#"{"op":"join","source":"default.t","right":"default.t","keys":"id","join_type":"diagonal"}"#),
        cmd(r#"{"op":"partition","source":"default.t","parts":0}"#),
        cmd(r#"{"op":"partition","source":"default.t","parts":100000}"#),
        cmd(r#"{"op":"resample","source":"default.t","time_column":"ts","every":"1fortnight"}"#),
        cmd(r#"{"op":"sql","query":"SELECT 1","name":"a b"}"#),
        cmd(r#"{"op":"sql","query":"SELECT 1","namespace":"x"}"#),
        cmd(r#"[{"op":"sql","query":"SELECT 1"}]"#),
        cmd(r#"{"op":1}"#),
        cmd("SELEC nothing"),
        cmd("DROP TABLE t"),
        cmd("CREATE TABLE x AS SELECT 1"),
        cmd("INSERT INTO t VALUES (1)"),
        cmd("SET datafusion.execution.batch_size = 1"),
        cmd("SELECT nosuch FROM t"),
        cmd("SELECT * FROM t WHERE"),
        cmd("SELECT 'unterminated"),
        cmd("SELECT 1; SELECT 2"),
    ];
    for d in bad_descriptors {
        out.push(case(format!("info {d:?}"), Admin, Info(d.clone()), InvalidArgument));
        out.push(case(format!("schema {d:?}"), Admin, Schema(d), InvalidArgument));
    }
    // Deep shapes (issue 17, item 1).
    let deep = [
        format!("SELECT {}", chain("1", "+", 2000)),
        format!("SELECT * FROM t WHERE {}", chain("id = 1", " OR ", 2000)),
        format!("SELECT {}", nest("(", "1", ")", 2000)),
        format!("SELECT {}", nest("abs(", "1", ")", 2000)),
        format!("SELECT {}", nest("CASE WHEN true THEN ", "1", " END", 2000)),
        format!("SELECT * FROM {}", nest("(SELECT * FROM ", "t", ")", 2000)),
        format!("SELECT {}", chain("1", " UNION ALL SELECT ", 2000)),
        format!("SELECT count(*) FROM {}", chain("t", ", ", 2000)),
        format!("SELECT 1{}", "::bigint".repeat(2000)),
    ];
    for sql in deep {
        let label = format!("deep sql {}…", &sql[..40.min(sql.len())]);
        out.push(case(label.clone(), Admin, Info(cmd(sql.clone())), InvalidArgument));
        let op = json!({"op": "sql", "query": sql}).to_string();
        out.push(case(format!("{label} (op)"), Admin, Schema(cmd(op)), InvalidArgument));
    }
    for p in [chain("id = 1", " OR ", 2000), nest("(", "id > 1", ")", 2000)] {
        let op = json!({"op": "filter", "source": "t", "predicate": p}).to_string();
        out.push(case("deep filter predicate", Admin, Info(cmd(op)), InvalidArgument));
    }
    out.push(case(
        "deep json",
        Admin,
        Info(cmd(format!(
            r#"{{"op":"take","source":"t","indices":{}}}"#,
            nest("[", "0", "]", 5000)
        ))),
        InvalidArgument,
    ));

    // Unknown things.
    for d in [
        path(&["nope"]),
        path(&["99"]),
        path(&["ns", "t"]),
        cmd(r#"{"op":"head","source":"nope"}"#),
    ] {
        out.push(case(format!("info {d:?}"), Admin, Info(d), NotFound));
    }
    out.push(case(
        "sql over a missing flight",
        Admin,
        Info(cmd("SELECT * FROM nope")),
        NotFound,
    ));
    out.push(case(
        "sql over a missing id",
        Admin,
        Info(cmd("SELECT * FROM f999")),
        NotFound,
    ));
    for t in [&b"99"[..], b"1@5000+10"] {
        out.push(case(format!("get {t:?}"), Admin, Get(t.to_vec()), NotFound));
    }
    for t in [
        &b"garbage"[..],
        b"\xff\x00",
        b"",
        b"1@x+1",
        b"-4",
        b"1@1",
        b"1@+1",
        b"1@1+",
    ] {
        out.push(case(format!("get {t:?}"), Admin, Get(t.to_vec()), InvalidArgument));
    }

    // Action bodies: objects only (item 5), unknown fields refused.
    for (kind, body) in [
        ("drop", &b"[1]"[..]),
        ("drop", b"1"),
        ("drop", b"\"t\""),
        ("drop", b"null"),
        ("drop", b"{"),
        ("drop", b"{}"),
        ("drop", br#"{"id":1,"name":"t"}"#),
        ("drop", br#"{"id":1,"force":true}"#),
        ("drop", br#"{"id":-1}"#),
        ("pin", b"[1]"),
        ("spill", b"[1]"),
        ("lineage", b"[1]"),
        ("rename", br#"[1,"x"]"#),
        ("rename", br#"{"id":1,"name":"a b"}"#),
        ("rename", br#"{"id":1,"name":"f3"}"#),
        ("delete_namespace", br#"["default",true]"#),
        ("delete_namespace", br#"{"namespace":"a b"}"#),
        ("stats", b"[]"),
        ("stats", br#"{"x":1}"#),
        ("health", b"[]"),
    ] {
        out.push(case(
            format!("action {kind} {}", String::from_utf8_lossy(body)),
            Admin,
            Action(kind, body.to_vec()),
            InvalidArgument,
        ));
    }
    out.push(case(
        "action unknown",
        Admin,
        Action("explode", b"{}".to_vec()),
        Unimplemented,
    ));
    out.push(case(
        "drop missing",
        Admin,
        Action("drop", br#"{"name":"nope"}"#.to_vec()),
        NotFound,
    ));

    // Uploads with bad targets or bad bytes.
    for d in [
        path(&["f12"]),
        path(&["a b"]),
        path(&["7"]),
        cmd(r#"{"op":"put","name":"x","mode":"sometimes"}"#),
        cmd(r#"{"op":"put"}"#),
        cmd("{broken"),
        cmd("SELECT 1"),
    ] {
        out.push(case(
            format!("put {d:?}"),
            Admin,
            Put(d, vec![sample_batch(0, 3)]),
            InvalidArgument,
        ));
    }
    out.push(case(
        "put into an existing name",
        Admin,
        Put(path(&["t"]), vec![sample_batch(0, 3)]),
        AlreadyExists,
    ));
    out.push(case(
        "append with another schema",
        Admin,
        Put(
            cmd(r#"{"op":"put","name":"t","mode":"append"}"#),
            vec![kv_batch(2, "x")],
        ),
        InvalidArgument,
    ));
    out.push(case(
        "a message over --max-message-size",
        Admin,
        Put(path(&["big"]), vec![sample_batch(0, 20_000)]),
        ResourceExhausted,
    ));
    for cut in [1usize, 8, 64] {
        let mut messages = encoded_upload("short", vec![sample_batch(0, 100)]);
        let body = messages[1].data_body.clone();
        messages[1].data_body = body.slice(..body.len() - cut);
        out.push(case(
            format!("ipc body {cut} bytes short"),
            Admin,
            RawPut(protobuf(messages)),
            InvalidArgument,
        ));
    }
    let mut messages = encoded_upload("schemaless", vec![sample_batch(0, 100)]);
    messages[0].data_header = Bytes::from_static(b"\x00garbage header");
    out.push(case(
        "garbage schema header",
        Admin,
        RawPut(protobuf(messages)),
        InvalidArgument,
    ));
    let mut messages = encoded_upload("oddtype", vec![sample_batch(0, 10)]);
    let mut header = messages[0].data_header.to_vec();
    // Corrupt the schema's type ids until arrow's conversion meets one it does not know.
    for b in header.iter_mut().skip(24).step_by(5) {
        *b = 0xd2;
    }
    messages[0].data_header = header.into();
    out.push(case(
        "schema with unknown types",
        Admin,
        RawPut(protobuf(messages)),
        InvalidArgument,
    ));

    // Bytes that are not the RPC's protobuf message, and strings that are not UTF-8 (item 5).
    let garbage = vec![0xff_u8, 0xff, 0xff, 0xff, 0x0f];
    for method in [
        "GetFlightInfo",
        "GetSchema",
        "DoAction",
        "DoGet",
        "ListFlights",
        "ListActions",
    ] {
        out.push(case(
            format!("garbage {method}"),
            Admin,
            Raw(method, garbage.clone()),
            InvalidArgument,
        ));
    }
    out.push(case(
        "non-UTF-8 path",
        Admin,
        Raw("GetFlightInfo", raw_path(&[b"\xff\xfe"])),
        InvalidArgument,
    ));
    out.push(case(
        "non-UTF-8 namespace",
        Admin,
        Raw("GetSchema", raw_path(&[b"\xc3\x28", b"t"])),
        InvalidArgument,
    ));
    out.push(case(
        "non-UTF-8 action type",
        Admin,
        Raw("DoAction", field(1, b"dr\xffop")),
        InvalidArgument,
    ));
    out.push(case(
        "garbage DoPut",
        Admin,
        RawPut(vec![Bytes::from(garbage.clone())]),
        InvalidArgument,
    ));
    out.push(case(
        "non-UTF-8 DoPut path",
        Admin,
        RawPut(vec![Bytes::from(field(1, &raw_path(&[b"\xff"])))]),
        InvalidArgument,
    ));

    // Authorization: laundering through appends and joins (item 2), schema leaks (item 4), credentials.
    for name in ["copy", "joined"] {
        let d = cmd(json!({"op": "put", "name": name, "namespace": "alpha", "mode": "append"}).to_string());
        let batch = if name == "copy" {
            kv_batch(1, "alpha")
        } else {
            joined_row()
        };
        out.push(case(
            format!("append to alpha.{name}"),
            Alpha,
            Put(d, vec![batch]),
            PermissionDenied,
        ));
    }
    for sql in [
        "SELECT nosuch FROM beta.secret".to_string(),
        "SELECT * FROM beta.does_not_exist".to_string(),
        "SELECT nosuch FROM alpha.copy".to_string(),
        format!("SELECT nosuch FROM f{secret_id}"),
        "SELECT o.k FROM alpha.own o JOIN beta.secret s ON o.k = s.nosuch".to_string(),
    ] {
        out.push(case(format!("leak: {sql}"), Alpha, Info(cmd(sql)), PermissionDenied));
    }
    for source in ["beta.secret", "beta.does_not_exist"] {
        let op = json!({"op": "select", "source": source, "columns": ["nosuch"]}).to_string();
        out.push(case(
            format!("leak: select from {source}"),
            Alpha,
            Info(cmd(op)),
            PermissionDenied,
        ));
    }
    out.push(case(
        "info beta.secret",
        Alpha,
        Info(path(&["beta", "secret"])),
        PermissionDenied,
    ));
    out.push(case(
        "put beta.x",
        Alpha,
        Put(path(&["beta", "x"]), vec![sample_batch(0, 1)]),
        PermissionDenied,
    ));
    out.push(case(
        "stats without admin",
        Alpha,
        Action("stats", b"{}".to_vec()),
        PermissionDenied,
    ));
    for (kind, name) in [
        ("drop", "beta.secret"),
        ("drop", "beta.does_not_exist"),
        ("pin", "beta.does_not_exist"),
        ("spill", "beta.secret"),
        ("lineage", "beta.does_not_exist"),
    ] {
        let body = json!({ "name": name }).to_string().into_bytes();
        out.push(case(
            format!("{kind} {name}"),
            Alpha,
            Action(kind, body),
            PermissionDenied,
        ));
    }
    out.push(case("no credentials", Nobody, Info(path(&["t"])), Unauthenticated));
    out.push(case(
        "unknown user",
        Stranger,
        Action("health", b"{}".to_vec()),
        Unauthenticated,
    ));

    // A computation past --query-timeout (item 6).
    out.push(case("query timeout", Admin, Info(cmd(HEAVY_SQL)), DeadlineExceeded));
    out
}

/// One row with the schema of alpha.joined (k, secret_payload, secret_payload_r).
fn joined_row() -> RecordBatch {
    RecordBatch::try_from_iter([
        ("k", Arc::new(Int64Array::from_iter_values(0..1)) as ArrayRef),
        ("secret_payload", Arc::new(StringArray::from(vec!["a"])) as ArrayRef),
        ("secret_payload_r", Arc::new(StringArray::from(vec!["b"])) as ArrayRef),
    ])
    .unwrap()
}

/// The `authorization` header `who` sends.
fn header(who: Who) -> Option<String> {
    let grants: &[&str] = match who {
        Who::Admin => &["*:admin"],
        Who::Alpha => &["alpha:write"],
        Who::Nobody => return None,
        Who::Stranger => {
            let basic = base64::engine::general_purpose::STANDARD.encode("stranger:guess");
            return Some(format!("Basic {basic}"));
        }
    };
    let token = TokenAuthority::try_new(SECRET, Duration::from_secs(600))
        .unwrap()
        .mint("corpus", &Grants::parse(grants).unwrap())
        .unwrap();
    Some(format!("Bearer {token}"))
}

async fn client_for(server: &TestServer, who: Who) -> FlightClient {
    let mut c = server.client().await;
    if let Some(h) = header(who) {
        c.add_header("authorization", &h).unwrap();
    }
    c
}

async fn send(server: &TestServer, who: Who, request: Request) -> Code {
    let mut c = client_for(server, who).await;
    let result = match request {
        Request::Info(d) => c.get_flight_info(d).await.map(drop),
        Request::Schema(d) => c.get_schema(d).await.map(drop),
        Request::Get(t) => match c.do_get(Ticket::new(t)).await {
            Ok(s) => s.try_collect::<Vec<_>>().await.map(drop),
            Err(e) => Err(e),
        },
        Request::Action(kind, body) => match c.do_action(arrow_flight::Action::new(kind, body)).await {
            Ok(s) => s.try_collect::<Vec<_>>().await.map(drop),
            Err(e) => Err(e),
        },
        Request::Put(d, batches) => upload(&mut c, d, batches).await.map(drop),
        Request::Raw(method, bytes) => return raw_unary_as(server, header(who).as_deref(), method, &bytes).await,
        Request::RawPut(messages) => return raw_put_as(server, header(who).as_deref(), messages).await,
    };
    match result {
        Ok(()) => Code::Ok,
        Err(e) => code(e),
    }
}

#[tokio::test]
async fn every_bad_input_gets_its_code_and_changes_nothing() {
    let server = TestServer::start_with(|c| {
        c.jwt_secret = Some(SECRET.parse().unwrap());
        c.max_message_size = "256KiB".parse().unwrap();
        c.query_timeout = Duration::from_millis(500);
    })
    .await;
    let mut admin = client_for(&server, Who::Admin).await;
    upload(&mut admin, path(&["t"]), vec![sample_batch(0, 2000)])
        .await
        .unwrap();
    upload(&mut admin, path(&["beta", "secret"]), vec![kv_batch(5, "beta")])
        .await
        .unwrap();
    upload(&mut admin, path(&["alpha", "own"]), vec![kv_batch(2, "alpha")])
        .await
        .unwrap();
    let copy = r#"{"op":"head","source":"beta.secret","num_rows":5,"name":"copy","namespace":"alpha"}"#;
    admin.get_flight_info(cmd(copy)).await.unwrap();
    let join = json!({"op": "join", "source": "alpha.own", "right": "beta.secret", "keys": "k",
                      "join_type": "inner", "right_suffix": "_r", "name": "joined", "namespace": "alpha"});
    admin.get_flight_info(cmd(join.to_string())).await.unwrap();
    let secret_id = info_metadata(&admin.get_flight_info(path(&["beta", "secret"])).await.unwrap())["id"]
        .as_u64()
        .unwrap();
    let before = snapshot(&mut admin).await;

    let cases = cases(secret_id);
    let total = cases.len();
    let mut wrong = Vec::new();
    for c in cases {
        let got = send(&server, c.who, c.request).await;
        if got != c.expected {
            wrong.push(format!("{}: expected {:?}, got {:?}", c.label, c.expected, got));
        }
        let health = action(&mut admin, "health", json!({})).await;
        assert!(health.is_ok(), "the server stopped answering after {}", c.label);
        assert_eq!(
            snapshot(&mut admin).await,
            before,
            "the store changed after {}",
            c.label
        );
    }
    println!(
        "bad-input corpus: {total} cases, {} with the right code",
        total - wrong.len()
    );
    assert!(
        wrong.is_empty(),
        "{} of {total} cases got the wrong code:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    server.shutdown_and_wait().await;
}
