//! Authentication and authorization: the auth matrix (every cell asserted, and the store unchanged after every
//! refused call), Handshake with Basic credentials, and TLS / mutual TLS with certificates made in the test.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use arrow_flight::{FlightClient, FlightDescriptor, FlightInfo, HandshakeRequest, Ticket};
use flightbay::auth::{Claims, Grants, TokenAuthority, hash_password};
use futures::TryStreamExt;
use serde_json::json;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::common::{
    BIN, BinaryServer, TestServer, action, code, info_metadata, listed_ids, path, sample_batch, snapshot, upload,
};

const SECRET: &str = "auth-matrix-secret-0123456789";

fn authority(secret: &str) -> TokenAuthority {
    TokenAuthority::try_new(secret, Duration::from_secs(600)).unwrap()
}

fn token(grants: &[&str]) -> String {
    authority(SECRET)
        .mint("tester", &Grants::parse(grants).unwrap())
        .unwrap()
}

async fn auth_server() -> TestServer {
    TestServer::start_with(|c| c.jwt_secret = Some(SECRET.parse().unwrap())).await
}

/// A client sending `authorization: <header>` on every call (none when `header` is `None`).
async fn client(server: &TestServer, header: Option<String>) -> FlightClient {
    let mut c = server.client().await;
    if let Some(h) = header {
        c.add_header("authorization", &h).unwrap();
    }
    c
}

fn bearer(token: &str) -> Option<String> {
    Some(format!("Bearer {token}"))
}

fn ticket_of(info: &FlightInfo) -> Ticket {
    info.endpoint[0].ticket.clone().unwrap()
}

type Call<'a> = Pin<Box<dyn Future<Output = Result<(), arrow_flight::error::FlightError>> + 'a>>;

/// One RPC of the matrix, by label.
fn call<'a>(c: &'a mut FlightClient, op: &'a str, tickets: &'a Tickets) -> Call<'a> {
    Box::pin(async move {
        match op {
            "info sales.trips" => c.get_flight_info(path(&["sales", "trips"])).await.map(drop),
            "info default.weather" => c.get_flight_info(path(&["weather"])).await.map(drop),
            "info derived" => c
                .get_flight_info(path(&[&tickets.derived_id.to_string()]))
                .await
                .map(drop),
            "schema sales.trips" => c.get_schema(path(&["sales", "trips"])).await.map(drop),
            "get sales.trips" => drain(c.do_get(tickets.trips.clone()).await?).await,
            "get default.weather" => drain(c.do_get(tickets.weather.clone()).await?).await,
            "get derived" => drain(c.do_get(tickets.derived.clone()).await?).await,
            "put sales.new" => upload(c, path(&["sales", "new"]), vec![sample_batch(0, 3)])
                .await
                .map(drop),
            "put default.new" => upload(c, path(&["default", "new"]), vec![sample_batch(0, 3)])
                .await
                .map(drop),
            "sql sales" => c
                .get_flight_info(FlightDescriptor::new_cmd("SELECT count(*) AS n FROM sales.trips"))
                .await
                .map(drop),
            "sql default" => c
                .get_flight_info(FlightDescriptor::new_cmd("SELECT count(*) AS n FROM weather"))
                .await
                .map(drop),
            "sql by id of default" => c
                .get_flight_info(FlightDescriptor::new_cmd(format!(
                    "SELECT count(*) AS n FROM f{}",
                    tickets.weather_id
                )))
                .await
                .map(drop),
            "op sales named into default" => c
                .get_flight_info(FlightDescriptor::new_cmd(
                    r#"{"op":"head","source":"sales.trips","num_rows":1,"name":"peek"}"#,
                ))
                .await
                .map(drop),
            "list" => c
                .list_flights(Vec::<u8>::new())
                .await?
                .try_collect::<Vec<_>>()
                .await
                .map(drop),
            "list actions" => c.list_actions().await?.try_collect::<Vec<_>>().await.map(drop),
            "health" => action(c, "health", json!({})).await.map(drop),
            "lineage derived" => action(c, "lineage", json!({"id": tickets.derived_id})).await.map(drop),
            "drop sales.trips" => action(c, "drop", json!({"name": "sales.trips"})).await.map(drop),
            "rename into sales" => action(c, "rename", json!({"id": tickets.weather_id, "name": "sales.w"}))
                .await
                .map(drop),
            "pin sales.trips" => action(c, "pin", json!({"name": "sales.trips"})).await.map(drop),
            "delete_namespace sales" => action(c, "delete_namespace", json!({"namespace": "sales", "force": true}))
                .await
                .map(drop),
            "stats" => action(c, "stats", json!({})).await.map(drop),
            "shutdown" => action(c, "shutdown", json!({})).await.map(drop),
            other => panic!("unknown op {other}"),
        }
    })
}

async fn drain(s: arrow_flight::decode::FlightRecordBatchStream) -> Result<(), arrow_flight::error::FlightError> {
    s.try_collect::<Vec<_>>().await.map(drop)
}

struct Tickets {
    trips: Ticket,
    weather: Ticket,
    weather_id: u64,
    derived: Ticket,
    derived_id: u64,
}

/// Asserts `op` by `who` fails with `expected` and leaves the store exactly as it was.
async fn refused(
    server: &TestServer,
    admin: &mut FlightClient,
    who: Option<String>,
    op: &str,
    t: &Tickets,
    expected: Code,
) {
    let before = snapshot(admin).await;
    let mut c = client(server, who.clone()).await;
    let result = call(&mut c, op, t).await;
    let got = result.map(|_| "OK".to_string()).map_err(code);
    assert_eq!(got, Err(expected), "{op} as {who:?}");
    assert_eq!(snapshot(admin).await, before, "{op} as {who:?} changed the store");
}

async fn allowed(server: &TestServer, who: Option<String>, op: &str, t: &Tickets) {
    let mut c = client(server, who.clone()).await;
    if let Err(e) = call(&mut c, op, t).await {
        panic!("{op} as {who:?} should succeed: {e:?}");
    }
}

#[tokio::test]
async fn auth_matrix() {
    let server = auth_server().await;
    let mut admin = client(&server, bearer(&token(&["*:admin"]))).await;
    upload(&mut admin, path(&["sales", "trips"]), vec![sample_batch(0, 10)])
        .await
        .unwrap();
    let weather = upload(&mut admin, path(&["weather"]), vec![sample_batch(100, 5)])
        .await
        .unwrap();
    let trips_info = admin.get_flight_info(path(&["sales", "trips"])).await.unwrap();
    let weather_info = admin.get_flight_info(path(&["weather"])).await.unwrap();
    // A derived flight over both namespaces, named into sales: reading it needs read on sales AND default.
    let derived_info = admin
        .get_flight_info(FlightDescriptor::new_cmd(
            r#"{"op":"sql","query":"SELECT t.id, w.value FROM sales.trips t JOIN weather w ON t.id + 100 = w.id","name":"joined","namespace":"sales"}"#,
        ))
        .await
        .unwrap();
    let t = Tickets {
        trips: ticket_of(&trips_info),
        weather: ticket_of(&weather_info),
        weather_id: weather["id"].as_u64().unwrap(),
        derived: ticket_of(&derived_info),
        derived_id: info_metadata(&derived_info)["id"].as_u64().unwrap(),
    };
    let mut cells = 0;

    // 1. No, malformed, forged and expired credentials: UNAUTHENTICATED on every RPC.
    let expired = authority(SECRET)
        .mint_claims(&Claims {
            sub: "tester".into(),
            grants: Grants::admin(),
            iat: 1_000,
            exp: 2_000,
        })
        .unwrap();
    let forged = authority("some-other-secret-0123456789")
        .mint("tester", &Grants::admin())
        .unwrap();
    let bad_credentials = [
        None,
        Some("Bearer not-a-jwt".to_string()),
        Some("Token abc".to_string()),
        bearer(&forged),
        bearer(&expired),
        Some("Basic YWRtaW46YWRtaW4=".to_string()), // admin:admin, but this server has no users file
    ];
    let every_op = [
        "info sales.trips",
        "schema sales.trips",
        "get sales.trips",
        "put sales.new",
        "sql sales",
        "list",
        "list actions",
        "health",
        "drop sales.trips",
        "stats",
        "shutdown",
    ];
    for who in &bad_credentials {
        for op in every_op {
            refused(&server, &mut admin, who.clone(), op, &t, Code::Unauthenticated).await;
            cells += 1;
        }
    }

    // 2. Valid tokens without the grant: PERMISSION_DENIED, store unchanged.
    let sales_read = bearer(&token(&["sales:read"]));
    let sales_write = bearer(&token(&["sales:write"]));
    let default_read = bearer(&token(&["default:read"]));
    let both_read = bearer(&token(&["sales:read", "default:read"]));
    let sales_admin = bearer(&token(&["sales:admin"]));
    let everything_write = bearer(&token(&["*:write"]));
    let denied: &[(&Option<String>, &[&str])] = &[
        (
            &sales_read,
            &[
                "info default.weather",
                "get default.weather",
                "sql default",
                "sql by id of default",
                "info derived",
                "get derived",
                "lineage derived",
                "put sales.new",
                "put default.new",
                "drop sales.trips",
                "pin sales.trips",
                "rename into sales",
                "delete_namespace sales",
                "stats",
                "shutdown",
            ],
        ),
        (
            &default_read,
            &[
                "info sales.trips",
                "get sales.trips",
                "sql sales",
                "info derived",
                "get derived",
                "put default.new",
            ],
        ),
        (
            &sales_write,
            &[
                "put default.new",
                "op sales named into default",
                "rename into sales", // needs read on the weather flight's namespace too
                "info derived",
                "delete_namespace sales",
                "stats",
                "shutdown",
            ],
        ),
        (&both_read, &["put sales.new", "drop sales.trips", "stats", "shutdown"]),
        (&sales_admin, &["stats", "shutdown", "info default.weather"]),
        (&everything_write, &["delete_namespace sales", "stats", "shutdown"]),
    ];
    for (who, ops) in denied {
        for op in *ops {
            refused(&server, &mut admin, (*who).clone(), op, &t, Code::PermissionDenied).await;
            cells += 1;
        }
    }

    // ListFlights shows only what the caller can read.
    let visible = |header: Option<String>| {
        let server = &server;
        async move {
            let mut c = client(server, header).await;
            let mut ids = crate::common::listed_ids(&mut c).await;
            ids.sort();
            ids
        }
    };
    let trips_id = info_metadata(&trips_info)["id"].as_u64().unwrap();
    assert_eq!(visible(sales_read.clone()).await, vec![trips_id]);
    assert_eq!(visible(default_read.clone()).await, vec![t.weather_id]);
    assert_eq!(
        visible(both_read.clone()).await,
        vec![trips_id, t.weather_id, t.derived_id]
    );
    assert_eq!(visible(bearer(&token(&["other:admin"]))).await, Vec::<u64>::new());
    cells += 4;

    // 3. The allowed cells succeed.
    let ok: &[(&Option<String>, &[&str])] = &[
        (
            &sales_read,
            &[
                "info sales.trips",
                "schema sales.trips",
                "get sales.trips",
                "sql sales",
                "list",
                "list actions",
                "health",
            ],
        ),
        (
            &default_read,
            &[
                "info default.weather",
                "get default.weather",
                "sql default",
                "sql by id of default",
            ],
        ),
        (&both_read, &["info derived", "get derived", "lineage derived"]),
        (&sales_write, &["put sales.new", "pin sales.trips"]),
        (
            &everything_write,
            &["op sales named into default", "rename into sales", "put default.new"],
        ),
        (&sales_admin, &["drop sales.trips"]),
    ];
    for (who, ops) in ok {
        for op in *ops {
            allowed(&server, (*who).clone(), op, &t).await;
            cells += 1;
        }
    }
    // Once the input's name is gone, the upload and everything derived from it need a `*` grant.
    let admin_token = bearer(&token(&["*:admin"]));
    refused(
        &server,
        &mut admin,
        both_read.clone(),
        "info derived",
        &t,
        Code::PermissionDenied,
    )
    .await;
    allowed(&server, admin_token.clone(), "info derived", &t).await;
    allowed(&server, sales_admin.clone(), "delete_namespace sales", &t).await;
    allowed(&server, admin_token.clone(), "stats", &t).await;
    allowed(&server, admin_token, "shutdown", &t).await;
    cells += 5;
    assert_eq!(cells, 133);
    eprintln!("auth matrix: {cells} cells asserted");
    server.wait_stopped().await;
}

#[tokio::test]
async fn a_replaced_upload_stays_in_its_namespace() {
    let server = auth_server().await;
    let mut admin = client(&server, bearer(&token(&["*:admin"]))).await;
    let mut sales = client(&server, bearer(&token(&["sales:write"]))).await;
    let mut other = client(&server, bearer(&token(&["other:write"]))).await;
    let first = upload(&mut sales, path(&["sales", "a"]), vec![sample_batch(0, 4)])
        .await
        .unwrap();
    let head = sales
        .get_flight_info(FlightDescriptor::new_cmd(
            r#"{"op":"head","source":"sales.a","num_rows":2}"#,
        ))
        .await
        .unwrap();
    let head_id = info_metadata(&head)["id"].as_u64().unwrap().to_string();
    let replace = FlightDescriptor::new_cmd(r#"{"op":"put","name":"a","namespace":"sales","mode":"replace"}"#);
    upload(&mut sales, replace, vec![sample_batch(10, 4)]).await.unwrap();
    // The old version has no name now, but it was uploaded to sales: sales readers keep it and what came from it.
    let old_id = first["id"].as_u64().unwrap().to_string();
    for id in [&old_id, &head_id] {
        assert!(sales.get_flight_info(path(&[id])).await.is_ok());
        let denied = other.get_flight_info(path(&[id])).await.map(drop);
        assert_eq!(denied.map_err(code), Err(Code::PermissionDenied), "{id}");
    }
    // Pointing a name in `other` at it shares it with `other` (admin may; other:write alone may not read it).
    let rename = action(&mut other, "rename", json!({"id": first["id"], "name": "other.a"})).await;
    assert_eq!(rename.map(drop).map_err(code), Err(Code::PermissionDenied));
    action(&mut admin, "rename", json!({"id": first["id"], "name": "other.a"}))
        .await
        .unwrap();
    assert!(other.get_flight_info(path(&[&old_id])).await.is_ok());
    assert!(other.get_flight_info(path(&["other", "a"])).await.is_ok());
    server.shutdown_and_wait().await;
}

#[tokio::test]
async fn an_upload_keeps_its_namespace_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let start = || {
        let data = data.clone();
        TestServer::start_with(move |c| {
            c.jwt_secret = Some(SECRET.parse().unwrap());
            c.data_dir = data;
            c.ephemeral = false;
        })
    };
    let server = start().await;
    let mut sales = client(&server, bearer(&token(&["sales:write"]))).await;
    let first = upload(&mut sales, path(&["sales", "a"]), vec![sample_batch(0, 4)])
        .await
        .unwrap();
    // Also named in `other` (unnamed flights are not kept across restarts), then replaced in sales.
    let mut admin = client(&server, bearer(&token(&["*:admin"]))).await;
    action(&mut admin, "rename", json!({"id": first["id"], "name": "other.keep"}))
        .await
        .unwrap();
    let replace = FlightDescriptor::new_cmd(r#"{"op":"put","name":"a","namespace":"sales","mode":"replace"}"#);
    upload(&mut sales, replace, vec![sample_batch(10, 4)]).await.unwrap();
    drop((sales, admin));
    server.shutdown_and_wait().await;

    let server = start().await;
    let old_id = first["id"].as_u64().unwrap().to_string();
    let mut sales = client(&server, bearer(&token(&["sales:read"]))).await;
    if let Err(e) = sales.get_flight_info(path(&[&old_id])).await {
        panic!("flight {old_id} after restart: {e:?}");
    }
    let mut other = client(&server, bearer(&token(&["other:read"]))).await;
    assert!(other.get_flight_info(path(&[&old_id])).await.is_ok());
    let mut third = client(&server, bearer(&token(&["third:read"]))).await;
    let denied = third.get_flight_info(path(&[&old_id])).await.map(drop);
    assert_eq!(denied.map_err(code), Err(Code::PermissionDenied));
    server.shutdown_and_wait().await;
}

#[tokio::test]
async fn handshake_exchanges_basic_credentials_for_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.json");
    let users_json = json!({"users": {
        "ab": {"password_hash": hash_password("c").unwrap(), "grants": {"default": "write"}},
    }});
    std::fs::write(&users, users_json.to_string()).unwrap();
    let server = TestServer::start_with(|c| {
        c.jwt_secret = Some(SECRET.parse().unwrap());
        c.users_file = Some(users.clone());
    })
    .await;

    // pyarrow pads the base64 of "ab:c"; Go's RawStdEncoding (and so ADBC) does not.
    for (basic, name) in [("YWI6Yw==", "t1"), ("YWI6Yw", "t2")] {
        let mut c = client(&server, Some(format!("Basic {basic}"))).await;
        let payload = c.handshake(Vec::<u8>::new()).await.unwrap();
        let jwt = String::from_utf8(payload.to_vec()).unwrap();
        let mut with_token = client(&server, bearer(&jwt)).await;
        upload(&mut with_token, path(&[name]), vec![sample_batch(0, 2)])
            .await
            .unwrap();
        let denied = upload(&mut with_token, path(&["other", name]), vec![sample_batch(0, 2)]).await;
        assert_eq!(denied.map(drop).map_err(code), Err(Code::PermissionDenied));
        // Basic credentials also work on any call (the Go database/sql driver sends them every time).
        let put = upload(&mut c, path(&[&format!("u{name}")]), vec![sample_batch(0, 1)]).await;
        assert!(put.is_ok(), "{put:?}");
    }

    // The response header carries the token too (what pyarrow's authenticate_basic_token returns).
    let mut raw = arrow_flight::flight_service_client::FlightServiceClient::new(
        Channel::from_shared(format!("http://{}", server.addr))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    let mut request = tonic::Request::new(futures::stream::iter([HandshakeRequest::default()]));
    request
        .metadata_mut()
        .insert("authorization", "Basic YWI6Yw==".parse().unwrap());
    let response = raw.handshake(request).await.unwrap();
    let header = response.metadata().get("authorization").unwrap().to_str().unwrap();
    assert!(header.starts_with("Bearer ey"), "{header}");

    // Credentials in the payload (user:password) work as well; wrong ones do not.
    let mut anonymous = client(&server, None).await;
    assert!(anonymous.handshake(b"ab:c".to_vec()).await.is_ok());
    for bad in [
        Some("Basic YWI6ZA==".to_string()),
        Some("Basic eHk6Yw==".to_string()),
        None,
    ] {
        let mut c = client(&server, bad.clone()).await;
        let result = c.handshake(Vec::<u8>::new()).await.map(drop);
        assert_eq!(result.map_err(code), Err(Code::Unauthenticated), "{bad:?}");
    }
    server.shutdown_and_wait().await;
}

#[tokio::test]
async fn auth_off_ignores_credentials() {
    let server = TestServer::start().await;
    let mut c = client(&server, Some("Bearer garbage".into())).await;
    upload(&mut c, path(&["t"]), vec![sample_batch(0, 2)]).await.unwrap();
    assert!(c.handshake(b"anything".to_vec()).await.is_ok());
    assert!(action(&mut c, "stats", json!({})).await.is_ok());
    assert_eq!(listed_ids(&mut c).await, vec![1]);
    server.shutdown_and_wait().await;
}

/// A CA, a server certificate for 127.0.0.1/localhost and a client certificate, all made here (nothing committed).
struct Pki {
    ca_pem: String,
    server_cert: String,
    server_key: String,
    client_cert: String,
    client_key: String,
}

fn make_pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client_cert = CertificateParams::new(vec!["client".to_string()])
        .unwrap()
        .signed_by(&client_key, &issuer)
        .unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        server_cert: server_cert.pem(),
        server_key: server_key.serialize_pem(),
        client_cert: client_cert.pem(),
        client_key: client_key.serialize_pem(),
    }
}

async fn tls_client(server: &TestServer, tls: Option<ClientTlsConfig>) -> Result<FlightClient, String> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Channel::from_shared(format!("{scheme}://localhost:{}", server.addr.port())).unwrap();
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).map_err(|e| e.to_string())?;
    }
    let channel = endpoint
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(FlightClient::new(channel))
}

async fn health(c: Result<FlightClient, String>) -> Result<(), String> {
    let mut c = c?;
    action(&mut c, "health", json!({}))
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn tls_and_mutual_tls() {
    let pki = make_pki();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, body: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p
    };
    let (cert, key, ca) = (
        write("server.pem", &pki.server_cert),
        write("server.key", &pki.server_key),
        write("ca.pem", &pki.ca_pem),
    );
    let root = || {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&pki.ca_pem))
            .domain_name("localhost")
    };

    let server = TestServer::start_with(|c| {
        c.tls_cert = Some(cert.clone());
        c.tls_key = Some(key.clone());
    })
    .await;
    health(tls_client(&server, Some(root())).await).await.unwrap();
    assert!(
        health(tls_client(&server, None).await).await.is_err(),
        "plaintext to a TLS server"
    );
    let no_root = ClientTlsConfig::new().domain_name("localhost");
    assert!(
        health(tls_client(&server, Some(no_root)).await).await.is_err(),
        "unknown CA"
    );
    server.shutdown_and_wait().await;

    let server = TestServer::start_with(|c| {
        c.tls_cert = Some(cert.clone());
        c.tls_key = Some(key.clone());
        c.tls_client_ca = Some(ca.clone());
    })
    .await;
    assert!(
        health(tls_client(&server, Some(root())).await).await.is_err(),
        "mTLS without a client certificate"
    );
    let identity = Identity::from_pem(&pki.client_cert, &pki.client_key);
    health(tls_client(&server, Some(root().identity(identity))).await)
        .await
        .unwrap();
    server.shutdown_and_wait().await;
}

#[tokio::test]
async fn cli_client_over_tls_with_a_token() {
    let pki = make_pki();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, body: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p.to_str().unwrap().to_string()
    };
    let (cert, key, ca) = (
        write("server.pem", &pki.server_cert),
        write("server.key", &pki.server_key),
        write("ca.pem", &pki.ca_pem),
    );
    let server = BinaryServer::start(
        &dir.path().join("data"),
        &[
            "--ephemeral",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--jwt-secret",
            SECRET,
        ],
    );
    let port = server.addr.rsplit_once(':').unwrap().1;
    let url = format!("grpc+tls://localhost:{port}");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(BIN)
            .args(args)
            .env("FLIGHTBAY_URL", &url)
            .env_remove("FLIGHTBAY_TOKEN")
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let (code, token, err) = run(&["token", "--secret", SECRET, "--grant", "*:admin"]);
    assert_eq!(code, 0, "{err}");
    let token = token.trim();

    let (code, out, err) = run(&["stats", "--tls-ca", &ca, "--token", token]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["store"]["flights"],
        0
    );
    // No token: UNAUTHENTICATED (16) → exit 26. No CA: a local error before any call.
    let (code, _, err) = run(&["ls", "--tls-ca", &ca]);
    assert_eq!(code, 26, "{err}");
    assert!(err.starts_with("flightbay: UNAUTHENTICATED: "), "{err}");
    let (code, _, err) = run(&["ls", "--token", token]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--tls-ca"), "{err}");
    server.stop().await;
}
