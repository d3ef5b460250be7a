//! What one namespace must not learn about another: appends and joins do not launder rows across namespaces,
//! SQL does not reveal the schemas of unreadable flights (in errors or `information_schema`), and password
//! guessing is throttled.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, Int64Array, StringArray};
use arrow::record_batch::RecordBatch;
use arrow_flight::{FlightClient, FlightDescriptor};
use base64::Engine as _;
use flightbay::auth::{Grants, TokenAuthority, hash_password};
use serde_json::json;
use tonic::Code;

use crate::common::*;

const SECRET: &str = "leaks-secret-0123456789abcdef";

fn token(grants: &[&str]) -> String {
    TokenAuthority::try_new(SECRET, Duration::from_secs(600))
        .unwrap()
        .mint("tester", &Grants::parse(grants).unwrap())
        .unwrap()
}

async fn as_user(server: &TestServer, grants: &[&str]) -> FlightClient {
    let mut c = server.client().await;
    c.add_header("authorization", &format!("Bearer {}", token(grants)))
        .unwrap();
    c
}

/// A batch with columns named so that any leak of them is easy to spot.
fn secret_batch(rows: i64) -> RecordBatch {
    RecordBatch::try_from_iter([
        ("k", Arc::new(Int64Array::from_iter_values(0..rows)) as ArrayRef),
        (
            "secret_payload",
            Arc::new(StringArray::from_iter_values((0..rows).map(|i| format!("beta-{i}")))) as ArrayRef,
        ),
    ])
    .unwrap()
}

fn public_batch(rows: i64) -> RecordBatch {
    RecordBatch::try_from_iter([
        ("k", Arc::new(Int64Array::from_iter_values(0..rows)) as ArrayRef),
        (
            "secret_payload",
            Arc::new(StringArray::from_iter_values((0..rows).map(|i| format!("alpha-{i}")))) as ArrayRef,
        ),
    ])
    .unwrap()
}

/// beta.secret (5 rows), alpha.own (2 rows), alpha.copy = head of beta.secret, alpha.joined = a join of
/// alpha.own with beta.secret; all made by an admin.
async fn setup(server: &TestServer) -> FlightClient {
    let mut admin = as_user(server, &["*:admin"]).await;
    upload(&mut admin, path(&["beta", "secret"]), vec![secret_batch(5)])
        .await
        .unwrap();
    upload(&mut admin, path(&["alpha", "own"]), vec![public_batch(2)])
        .await
        .unwrap();
    let copy = r#"{"op":"head","source":"beta.secret","num_rows":5,"name":"copy","namespace":"alpha"}"#;
    admin.get_flight_info(FlightDescriptor::new_cmd(copy)).await.unwrap();
    let join = json!({"op": "join", "source": "alpha.own", "right": "beta.secret", "keys": "k", "join_type": "inner",
                      "right_suffix": "_r", "name": "joined", "namespace": "alpha"});
    admin
        .get_flight_info(FlightDescriptor::new_cmd(join.to_string()))
        .await
        .unwrap();
    admin
}

fn append(name: &str) -> FlightDescriptor {
    FlightDescriptor::new_cmd(json!({"op": "put", "name": name, "namespace": "alpha", "mode": "append"}).to_string())
}

#[tokio::test]
async fn appends_do_not_launder_another_namespace() {
    let server = TestServer::start_with(|c| c.jwt_secret = Some(SECRET.parse().unwrap())).await;
    let mut admin = setup(&server).await;
    let mut writer = as_user(&server, &["alpha:write"]).await;
    let before = listed_ids(&mut admin).await;

    // Appending to a flight derived from beta needs read on beta: refused, nothing published.
    for name in ["copy", "joined"] {
        let rows = if name == "copy" {
            public_batch(1)
        } else {
            admin_schema_row(&mut admin, name).await
        };
        let e = upload(&mut writer, append(name), vec![rows]).await.unwrap_err();
        assert_eq!(code(e), Code::PermissionDenied, "{name}");
    }
    assert_eq!(listed_ids(&mut admin).await, before);

    // An append someone allowed made carries its parent's requirement: alpha readers cannot read it.
    upload(&mut admin, append("copy"), vec![public_batch(1)]).await.unwrap();
    let joined_row = admin_schema_row(&mut admin, "joined").await;
    upload(&mut admin, append("joined"), vec![joined_row]).await.unwrap();
    let mut reader = as_user(&server, &["alpha:read"]).await;
    for name in ["copy", "joined"] {
        let e = fetch_all(&mut reader, path(&["alpha", name])).await.unwrap_err();
        assert_eq!(code(e), Code::PermissionDenied, "{name}");
        let sql = format!("SELECT * FROM alpha.{name}");
        let e = reader
            .get_flight_info(FlightDescriptor::new_cmd(sql))
            .await
            .unwrap_err();
        assert_eq!(code(e), Code::PermissionDenied, "{name}");
    }

    // Appending to alpha's own upload still works for alpha, and alpha reads the result.
    let put = upload(&mut writer, append("own"), vec![public_batch(1)]).await.unwrap();
    assert_eq!(put["num_rows"], 3);
    let got = fetch_all(&mut reader, path(&["alpha", "own"])).await.unwrap();
    assert_eq!(got.num_rows(), 3);
    // ... and with both grants the appended copy reads fine (6 rows: 5 of beta, 1 appended).
    let mut both = as_user(&server, &["alpha:read", "beta:read"]).await;
    assert_eq!(
        fetch_all(&mut both, path(&["alpha", "copy"])).await.unwrap().num_rows(),
        6
    );
    server.shutdown_and_wait().await;
}

/// One row with the schema of `alpha.<name>`, fetched as admin.
async fn admin_schema_row(admin: &mut FlightClient, name: &str) -> RecordBatch {
    fetch_all(admin, path(&["alpha", name])).await.unwrap().slice(0, 1)
}

#[tokio::test]
async fn sql_does_not_reveal_unreadable_schemas() {
    let server = TestServer::start_with(|c| c.jwt_secret = Some(SECRET.parse().unwrap())).await;
    let mut admin = setup(&server).await;
    let secret_id = info_metadata(&admin.get_flight_info(path(&["beta", "secret"])).await.unwrap())["id"].clone();
    let mut alpha = as_user(&server, &["alpha:read"]).await;

    for sql in [
        "SELECT nosuch FROM beta.secret".to_string(),
        "SELECT * FROM beta.secret".to_string(),
        "SELECT nosuch FROM beta.does_not_exist".to_string(),
        "SELECT nosuch FROM alpha.copy".to_string(),
        "SELECT nosuch FROM alpha.joined".to_string(),
        format!("SELECT nosuch FROM f{secret_id}"),
        "SELECT o.k FROM alpha.own o JOIN beta.secret s ON o.k = s.nosuch".to_string(),
    ] {
        let e = alpha
            .get_flight_info(FlightDescriptor::new_cmd(sql.clone()))
            .await
            .unwrap_err();
        let message = e.to_string();
        assert!(
            !message.contains("secret_payload") && !message.contains("Valid fields"),
            "{sql}: {message}"
        );
        assert_eq!(code(e), Code::PermissionDenied, "{sql}");
    }
    // Ops by name: a missing name and an unreadable one answer alike.
    for source in ["beta.secret", "beta.does_not_exist"] {
        let op = json!({"op": "select", "source": source, "columns": ["nosuch"]}).to_string();
        let e = alpha.get_flight_info(FlightDescriptor::new_cmd(op)).await.unwrap_err();
        assert_eq!(code(e), Code::PermissionDenied, "{source}");
    }

    // information_schema lists only what the caller can read.
    let tables = "SELECT table_schema || '.' || table_name AS t FROM information_schema.tables \
                  WHERE table_catalog = 'flightbay' AND table_schema <> 'information_schema' ORDER BY t";
    let got = fetch_all(&mut alpha, FlightDescriptor::new_cmd(tables)).await.unwrap();
    assert_eq!(
        pretty(&[got]),
        "+-----------+\n| t         |\n+-----------+\n| alpha.own |\n+-----------+"
    );
    let columns = "SELECT table_schema || '.' || table_name || '.' || column_name AS c \
                   FROM information_schema.columns WHERE table_catalog = 'flightbay' ORDER BY c";
    let got = fetch_all(&mut alpha, FlightDescriptor::new_cmd(columns)).await.unwrap();
    assert_eq!(
        pretty(&[got]),
        "+--------------------------+\n\
         | c                        |\n\
         +--------------------------+\n\
         | alpha.own.k              |\n\
         | alpha.own.secret_payload |\n\
         +--------------------------+"
    );
    // The admin still sees everything.
    let got = fetch_all(&mut admin, FlightDescriptor::new_cmd(tables)).await.unwrap();
    assert_eq!(got.num_rows(), 4);
    server.shutdown_and_wait().await;
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

async fn login(server: &TestServer, user: &str, password: &str) -> Code {
    let mut c = server.client().await;
    c.add_header("authorization", &basic(user, password)).unwrap();
    match action(&mut c, "health", json!({})).await {
        Ok(_) => Code::Ok,
        Err(e) => code(e),
    }
}

#[tokio::test]
async fn password_guessing_is_throttled() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.json");
    let file = json!({"users": {
        "alice": {"password_hash": hash_password("right").unwrap(), "grants": {"alpha": "read"}},
        "bob": {"password_hash": hash_password("bobs").unwrap(), "grants": {"alpha": "read"}},
    }});
    std::fs::write(&users, file.to_string()).unwrap();
    let server = TestServer::start_with(|c| {
        c.jwt_secret = Some(SECRET.parse().unwrap());
        c.users_file = Some(users.clone());
    })
    .await;

    assert_eq!(login(&server, "alice", "right").await, Code::Ok);
    for _ in 0..5 {
        assert_eq!(login(&server, "alice", "guess").await, Code::Unauthenticated);
    }
    // Locked: even the right password is refused for a while, without a hash being computed.
    assert_eq!(login(&server, "alice", "right").await, Code::ResourceExhausted);
    // Unknown users are throttled exactly like known ones.
    for _ in 0..5 {
        assert_eq!(login(&server, "mallory", "guess").await, Code::Unauthenticated);
    }
    assert_eq!(login(&server, "mallory", "guess").await, Code::ResourceExhausted);
    // Per peer: 20 failures from this address (10 so far) lock it out for every user name.
    for i in 0..10 {
        assert_eq!(
            login(&server, &format!("user{i}"), "guess").await,
            Code::Unauthenticated
        );
    }
    assert_eq!(login(&server, "bob", "bobs").await, Code::ResourceExhausted);
    // DoGet logs in through the same check, with the peer's address.
    let mut c = server.client().await;
    c.add_header("authorization", &basic("bob", "bobs")).unwrap();
    let refused = c.do_get(arrow_flight::Ticket::new("1")).await.err().map(code);
    assert_eq!(refused, Some(Code::ResourceExhausted));
    // Bearer tokens are not affected.
    let mut c = as_user(&server, &["alpha:read"]).await;
    action(&mut c, "health", json!({})).await.unwrap();
    server.shutdown_and_wait().await;
}

#[tokio::test]
async fn information_schema_answers_are_not_shared_between_callers() {
    let server = TestServer::start_with(|c| c.jwt_secret = Some(SECRET.parse().unwrap())).await;
    let mut admin = setup(&server).await;
    let tables = "SELECT count(*) AS n FROM information_schema.tables WHERE table_catalog = 'flightbay' \
                  AND table_schema <> 'information_schema'";
    // The admin asks first; alpha's identical query must not get the admin's cached answer.
    let got = fetch_all(&mut admin, FlightDescriptor::new_cmd(tables)).await.unwrap();
    assert_eq!(pretty(&[got]), "+---+\n| n |\n+---+\n| 4 |\n+---+");
    let mut alpha = as_user(&server, &["alpha:read"]).await;
    let got = fetch_all(&mut alpha, FlightDescriptor::new_cmd(tables)).await.unwrap();
    assert_eq!(pretty(&[got]), "+---+\n| n |\n+---+\n| 1 |\n+---+");
    // A new flight shows up at once: the catalog is never answered from an old result.
    upload(&mut admin, path(&["alpha", "fresh"]), vec![public_batch(1)])
        .await
        .unwrap();
    let got = fetch_all(&mut alpha, FlightDescriptor::new_cmd(tables)).await.unwrap();
    assert_eq!(pretty(&[got]), "+---+\n| n |\n+---+\n| 2 |\n+---+");
    server.shutdown_and_wait().await;
}
