//! The HTTP side listener (`--http-port`, the ready file's second line), `/health` and the drain on shutdown.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::*;

#[tokio::test]
async fn the_ready_file_names_both_listeners_and_health_answers() {
    let dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start(&dir.path().join("data"), &["--ephemeral"]);
    assert!(server.addr.starts_with("127.0.0.1:"), "{}", server.addr);
    assert!(server.http.starts_with("127.0.0.1:"), "{}", server.http);
    assert_ne!(server.addr, server.http);

    let (status, content_type, body) = http_get(&server.http, "/health").await;
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body,
        json!({ "status": "serving", "version": env!("CARGO_PKG_VERSION") })
    );

    assert_eq!(http_get(&server.http, "/no-such-page").await.0, 404);
    // Flight still answers beside it.
    let mut client = server.client().await;
    assert_eq!(action(&mut client, "health", json!({})).await.unwrap()["status"], "ok");
    drop(client);
    server.stop().await;
}

#[tokio::test]
async fn http_port_off_leaves_one_line_in_the_ready_file() {
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let ready_file = ready.clone();
    let server = TestServer::start_with(move |c| c.ready_file = Some(ready_file)).await;
    assert_eq!(wait_for_ready_file(&ready).await, server.addr.to_string());
    server.shutdown_and_wait().await;
}

#[test]
fn a_taken_http_port_is_a_clear_startup_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN)
        .args([
            "--port",
            "0",
            "--http-port",
            &port,
            "--ephemeral",
            "--log",
            "warn",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{port} (--http-port)")),
        "{stderr}"
    );
    let bad = std::process::Command::new(BIN)
        .args(["--http-port", "on"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}

#[tokio::test]
async fn health_turns_to_draining_while_requests_finish_on_shutdown() {
    let (mut server, http) = TestServer::start_http(|_| {}).await;
    assert_eq!(http_get(&http, "/health").await.0, 200);

    // An upload that never ends keeps the Flight server draining once shutdown begins.
    let mut client = server.client().await;
    let upload = hanging_upload(
        server.addr,
        upload_messages(path(&["slow"]), vec![sample_batch(0, 1000)]).await,
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while action(&mut client, "stats", json!({})).await.unwrap()["store"]["resident_bytes"] == 0 {
        assert!(Instant::now() < deadline, "the upload never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(client);

    server.begin_shutdown();
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        let (status, _, body) = http_get(&http, "/health").await;
        if status == 503 {
            break body;
        }
        assert_eq!(status, 200);
        assert!(Instant::now() < deadline, "health never turned to draining");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["status"], "draining");

    upload.abort();
    server.shutdown_and_wait().await;
    // The HTTP listener stopped with the server.
    assert!(tokio::net::TcpStream::connect(&http).await.is_err());
}

/// The value of the sample `name{labels}` in an OpenMetrics scrape (0 when absent).
fn sample(scrape: &str, name_and_labels: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().expect("a number"))
}

#[tokio::test]
async fn metrics_count_calls_by_method_and_status_and_read_the_stats_counters() {
    let (server, http) = TestServer::start_http(|c| c.memory_limit = "64MiB".parse().unwrap()).await;
    let mut client = server.client().await;
    upload(&mut client, path(&["t"]), vec![sample_batch(0, 1000)])
        .await
        .unwrap();
    let missing = client.get_flight_info(path(&["missing"])).await.unwrap_err();
    assert_eq!(code(missing), tonic::Code::NotFound);
    let sql = arrow_flight::FlightDescriptor::new_cmd("SELECT id FROM t WHERE id < 10");
    for _ in 0..2 {
        assert_eq!(fetch_all(&mut client, sql.clone()).await.unwrap().num_rows(), 10);
    }
    action(&mut client, "spill", json!({ "name": "t" })).await.unwrap();

    let (status, content_type, scrape) = http_get(&http, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(scrape.ends_with("# EOF\n"), "{scrape}");
    let calls = |method: &str, code: &str| {
        sample(
            &scrape,
            &format!("flightbay_rpc_duration_seconds_count{{method=\"{method}\",code=\"{code}\"}}"),
        )
    };
    assert_eq!(calls("DoPut", "OK"), 1.0);
    assert_eq!(calls("GetFlightInfo", "NOT_FOUND"), 1.0);
    assert_eq!(calls("GetFlightInfo", "OK"), 2.0);
    assert_eq!(calls("DoGet", "OK"), 2.0);
    assert_eq!(calls("DoAction", "OK"), 1.0);
    assert!(sample(&scrape, "flightbay_rpc_received_bytes_total{method=\"DoPut\"}") > 0.0);
    assert!(sample(&scrape, "flightbay_rpc_sent_bytes_total{method=\"DoGet\"}") > 0.0);
    assert_eq!(sample(&scrape, "flightbay_cache_misses_total"), 1.0);
    assert_eq!(sample(&scrape, "flightbay_cache_hits_total"), 1.0);
    assert_eq!(sample(&scrape, "flightbay_cache_computations_total"), 1.0);
    assert_eq!(sample(&scrape, "flightbay_flights"), 2.0);
    assert_eq!(sample(&scrape, "flightbay_flights_by_state{state=\"spilled\"}"), 1.0);
    assert_eq!(sample(&scrape, "flightbay_evictions_total{reason=\"forced\"}"), 1.0);
    assert_eq!(sample(&scrape, "flightbay_memory_limit_bytes"), (64 << 20) as f64);

    // The same counters as the stats action.
    let stats = action(&mut client, "stats", json!({})).await.unwrap();
    let (_, _, scrape) = http_get(&http, "/metrics").await;
    let store = &stats["store"];
    assert_eq!(
        sample(&scrape, "flightbay_spilled_bytes"),
        store["spilled_bytes"].as_f64().unwrap()
    );
    assert_eq!(
        sample(&scrape, "flightbay_spills_total"),
        store["spills"].as_f64().unwrap()
    );
    assert_eq!(sample(&scrape, "flightbay_names"), store["names"].as_f64().unwrap());
    drop(client);
    server.shutdown_and_wait().await;
}

#[tokio::test]
async fn a_download_the_client_abandons_counts_as_cancelled() {
    let (server, http) = TestServer::start_http(|_| {}).await;
    let mut client = server.client().await;
    // Large enough that the answer is many messages, so dropping after the first cuts it short.
    let batches = (0..8).map(|i| sample_batch(i * 100_000, 100_000)).collect();
    upload(&mut client, path(&["big"]), batches).await.unwrap();
    let info = client.get_flight_info(path(&["big"])).await.unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let mut stream = client.do_get(ticket).await.unwrap();
    futures::StreamExt::next(&mut stream).await.unwrap().unwrap();
    drop(stream);
    drop(client);

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, _, scrape) = http_get(&http, "/metrics").await;
        if sample(
            &scrape,
            "flightbay_rpc_duration_seconds_count{method=\"DoGet\",code=\"CANCELLED\"}",
        ) == 1.0
        {
            assert_eq!(
                sample(
                    &scrape,
                    "flightbay_rpc_duration_seconds_count{method=\"DoGet\",code=\"OK\"}"
                ),
                0.0
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the abandoned download was not counted:\n{scrape}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.shutdown_and_wait().await;
}

#[tokio::test]
async fn grpc_health_answers_on_the_flight_port_without_a_token() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    // Auth on: Flight calls need a token, probes do not.
    let server =
        TestServer::start_with(|c| c.jwt_secret = Some("observability-secret-0123456789".parse().unwrap())).await;
    let mut health = HealthClient::new(connect(server.addr).await);
    for service in ["", "arrow.flight.protocol.FlightService"] {
        let answer = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(answer.status, ServingStatus::Serving as i32, "{service:?}");
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    let mut client = server.client().await;
    let refused = client
        .list_flights(Vec::<u8>::new())
        .await
        .err()
        .expect("refused without a token");
    assert_eq!(code(refused), tonic::Code::Unauthenticated);
    drop((health, client));
    server.shutdown_and_wait().await;
}
