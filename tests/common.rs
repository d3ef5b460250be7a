//! The [`TestServer`] fixture and helpers shared by every test module.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::{Action, FlightClient, FlightData, FlightDescriptor, FlightInfo};
use flightbay::Config;
use flightbay::config::HttpPort;
use futures::{StreamExt, TryStreamExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A flightbay server running in this process on an ephemeral port, with its own temp data dir.
pub struct TestServer {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<flightbay::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(configure: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config {
            port: 0,
            // Tests that want the HTTP listener use `start_http`, on a free port.
            http_port: HttpPort::Off,
            data_dir: dir.path().join("data"),
            memory_limit: "1GiB".parse().expect("size"),
            log: "warn".into(),
            // Nothing survives these servers, so shutdown need not write resident flights to disk.
            ephemeral: true,
            ..Config::default()
        };
        configure(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(flightbay::server::run(listener, config, async {
            // Err means the fixture was dropped without shutdown_and_wait: stop as well.
            let _ = rx.await;
        }));
        Self {
            addr,
            shutdown: Some(tx),
            handle: Some(handle),
            _dir: dir,
        }
    }

    /// A server with its HTTP listener on a free port; returns it with the listener's `host:port`, read from the
    /// ready file's second line.
    pub async fn start_http(configure: impl FnOnce(&mut Config)) -> (Self, String) {
        let ready = tempfile::NamedTempFile::new().expect("temp file").into_temp_path();
        let ready_path = ready.to_path_buf();
        std::fs::remove_file(&ready_path).expect("remove the placeholder");
        let server = Self::start_with(|c| {
            c.http_port = HttpPort::Port(0);
            c.ready_file = Some(ready_path.clone());
            configure(c);
        })
        .await;
        let contents = wait_for_ready_file(&ready_path).await;
        let http = ready_lines(&contents).1.expect("an HTTP line in the ready file");
        (server, http)
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> std::path::PathBuf {
        self._dir.path().join("data")
    }

    pub async fn client(&self) -> FlightClient {
        FlightClient::new(connect(self.addr).await)
    }

    /// Starts a graceful shutdown without waiting for it (see [`Self::shutdown_and_wait`]).
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            // Err means the server already stopped; there is nothing left to begin.
            let _ = tx.send(());
        }
    }

    /// Stops the server and waits until it has finished.
    pub async fn shutdown_and_wait(mut self) {
        if let Some(tx) = self.shutdown.take() {
            // Err means the server already stopped (e.g. through the shutdown action); waiting is still right.
            let _ = tx.send(());
        }
        if let Some(handle) = self.handle.take() {
            handle.await.expect("server task").expect("server result");
        }
    }

    /// Whether the server task has ended (e.g. after the `shutdown` action).
    pub async fn wait_stopped(mut self) {
        if let Some(handle) = self.handle.take() {
            tokio::time::timeout(std::time::Duration::from_secs(10), handle)
                .await
                .expect("server stopped in time")
                .expect("server task")
                .expect("server result");
        }
    }
}

/// A deterministic batch: id (int64), name (utf8), value (float64, every 7th null), ts (timestamp µs, UTC).
pub fn sample_batch(start: i64, rows: usize) -> RecordBatch {
    let ids: Vec<i64> = (start..start + rows as i64).collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids.clone())),
        Arc::new(StringArray::from_iter_values(
            ids.iter().map(|i| format!("name-{}", i % 13)),
        )),
        Arc::new(Float64Array::from_iter(
            ids.iter().map(|i| (i % 7 != 0).then_some(*i as f64 * 0.5)),
        )),
        Arc::new(TimestampMicrosecondArray::from_iter_values(ids.iter().map(|i| i * 1_000_000)).with_timezone("UTC")),
    ];
    RecordBatch::try_new(sample_schema(), columns).expect("batch")
}

pub fn sample_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("value", DataType::Float64, true),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
    ]))
}

pub fn path(parts: &[&str]) -> FlightDescriptor {
    FlightDescriptor::new_path(parts.iter().map(|s| s.to_string()).collect())
}

/// Uploads `batches` under `descriptor` and returns the PutResult JSON.
pub async fn upload(
    client: &mut FlightClient,
    descriptor: FlightDescriptor,
    batches: Vec<RecordBatch>,
) -> Result<serde_json::Value, FlightError> {
    let schema = batches.first().map(|b| b.schema()).unwrap_or_else(sample_schema);
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .with_flight_descriptor(Some(descriptor))
        .build(futures::stream::iter(batches.into_iter().map(Ok)));
    let results: Vec<_> = client.do_put(stream).await?.try_collect().await?;
    assert_eq!(results.len(), 1, "DoPut answers exactly one PutResult");
    Ok(serde_json::from_slice(&results[0].app_metadata).expect("PutResult JSON"))
}

/// Fetches every endpoint of `info` in order.
pub async fn fetch(client: &mut FlightClient, info: &FlightInfo) -> Result<Vec<RecordBatch>, FlightError> {
    let mut out = Vec::new();
    for endpoint in &info.endpoint {
        let ticket = endpoint.ticket.clone().expect("ticket");
        let batches: Vec<RecordBatch> = client.do_get(ticket).await?.try_collect().await?;
        out.extend(batches);
    }
    Ok(out)
}

/// Fetches a flight by descriptor (GetFlightInfo, then DoGet of each endpoint), concatenated into one batch.
pub async fn fetch_all(client: &mut FlightClient, descriptor: FlightDescriptor) -> Result<RecordBatch, FlightError> {
    let info = client.get_flight_info(descriptor).await?;
    let schema = Arc::new(info.clone().try_decode_schema()?);
    let batches = fetch(client, &info).await?;
    Ok(arrow::compute::concat_batches(&schema, &batches)?)
}

pub fn info_metadata(info: &FlightInfo) -> serde_json::Value {
    serde_json::from_slice(&info.app_metadata).expect("FlightInfo JSON")
}

/// Runs a custom action and parses its single JSON result.
pub async fn action(
    client: &mut FlightClient,
    kind: &str,
    body: serde_json::Value,
) -> Result<serde_json::Value, FlightError> {
    let results: Vec<_> = client
        .do_action(Action::new(kind, serde_json::to_vec(&body).expect("json")))
        .await?
        .try_collect()
        .await?;
    assert_eq!(results.len(), 1, "actions answer exactly one result");
    Ok(serde_json::from_slice(&results[0]).expect("action JSON"))
}

/// The gRPC code of a failed call.
pub fn code(e: FlightError) -> tonic::Code {
    match e {
        FlightError::Tonic(status) => status.code(),
        other => panic!("expected a gRPC status, got {other:?}"),
    }
}

/// Ids of every listed flight.
pub async fn listed_ids(client: &mut FlightClient) -> Vec<u64> {
    let infos: Vec<FlightInfo> = client
        .list_flights(Vec::<u8>::new())
        .await
        .expect("list")
        .try_collect()
        .await
        .expect("list items");
    infos
        .iter()
        .map(|i| info_metadata(i)["id"].as_u64().expect("id"))
        .collect()
}

/// Pretty-printed batches, for readable asserts.
pub fn pretty(batches: &[RecordBatch]) -> String {
    arrow::util::pretty::pretty_format_batches(batches)
        .expect("pretty")
        .to_string()
}

/// The binary Cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_flightbay");

/// The contents of the ready file at `path` once the server has written it (it does so by rename, so at once whole).
pub async fn wait_for_ready_file(path: &std::path::Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            return s;
        }
        assert!(Instant::now() < deadline, "server did not write {}", path.display());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The ready file's lines: the Flight `host:port`, and the HTTP listener's `host:port` (without `http://`) when on.
pub fn ready_lines(contents: &str) -> (String, Option<String>) {
    let mut lines = contents.lines();
    let flight = lines.next().unwrap_or_default().trim().to_string();
    let http = lines
        .next()
        .map(|l| l.trim().strip_prefix("http://").expect("http:// line").to_string());
    (flight, http)
}

/// A minimal HTTP/1.1 GET (no client library needed for a few endpoints): returns the status code, the
/// `Content-Type` and the body.
pub async fn http_get(addr: &str, path: &str) -> (u16, String, String) {
    let answer = http_request(addr, path, &[]).await;
    let content_type = answer.header("content-type").unwrap_or_default().to_string();
    (answer.status, content_type, answer.body)
}

/// An HTTP answer read by [`http_request`].
pub struct HttpAnswer {
    pub status: u16,
    /// Header lines as `(name, value)`, names as sent.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpAnswer {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// A minimal HTTP/1.1 GET of `path` with extra request `headers`.
pub async fn http_request(addr: &str, path: &str, headers: &[(&str, &str)]) -> HttpAnswer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect HTTP");
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
    let status = head
        .split_whitespace()
        .nth(1)
        .expect("status")
        .parse()
        .expect("status code");
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked { dechunk(body) } else { body.to_string() };
    HttpAnswer { status, headers, body }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}

/// The real `flightbay` binary on an ephemeral port: `extra` arguments first (a subcommand, flags), then the port,
/// an ephemeral HTTP port, a ready file and `--data-dir data`. Killed on drop if a test fails before it stops it.
pub struct BinaryServer {
    child: Child,
    /// `host:port` from the ready file.
    pub addr: String,
    /// The HTTP listener's `host:port` from the ready file.
    pub http: String,
}

impl BinaryServer {
    pub fn start(data: &std::path::Path, extra: &[&str]) -> Self {
        let ready = data.with_extension(format!("ready-{}", uuid_like()));
        let child = Command::new(BIN)
            .args(extra)
            .args(["--port", "0", "--http-port", "0", "--log", "warn"])
            .arg("--ready-file")
            .arg(&ready)
            .arg("--data-dir")
            .arg(data)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let contents = loop {
            if let Ok(s) = std::fs::read_to_string(&ready)
                && !s.is_empty()
            {
                break s;
            }
            assert!(Instant::now() < deadline, "server did not start");
            std::thread::sleep(Duration::from_millis(10));
        };
        let _ = std::fs::remove_file(&ready);
        let (addr, http) = ready_lines(&contents);
        Self {
            child,
            addr,
            http: http.expect("an HTTP line in the ready file"),
        }
    }

    /// A Flight client connected to it.
    pub async fn client(&self) -> FlightClient {
        FlightClient::new(connect(&self.addr).await)
    }

    /// SIGTERM, then waits (at most 60 s) for a successful exit.
    pub async fn stop(mut self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "{status:?}");
                return;
            }
            assert!(Instant::now() < deadline, "no exit after SIGTERM");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL: a crash.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for BinaryServer {
    fn drop(&mut self) {
        // Err means it already exited.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn uuid_like() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// A gRPC channel to the server at `addr` (`127.0.0.1:port`).
pub async fn connect(addr: impl std::fmt::Display) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect")
}

/// The messages a client sends to upload `batches` to `descriptor`.
pub async fn upload_messages(descriptor: FlightDescriptor, batches: Vec<RecordBatch>) -> Vec<FlightData> {
    FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(descriptor))
        .build(futures::stream::iter(batches.into_iter().map(Ok)))
        .try_collect()
        .await
        .expect("encode")
}

/// Starts a DoPut that sends `messages` and then neither ends nor sends more. Aborting the returned task drops the
/// call, and the client resets the HTTP/2 stream: a client that went away mid-upload.
pub async fn hanging_upload(addr: impl std::fmt::Display, messages: Vec<FlightData>) -> JoinHandle<()> {
    let mut raw = FlightServiceClient::new(connect(addr).await);
    let input = futures::stream::iter(messages).chain(futures::stream::pending());
    tokio::spawn(async move {
        let _ = raw.do_put(input).await;
    })
}

/// Everything a client could observe about the store: (id, names, rows) of every flight, sorted.
pub async fn snapshot(admin: &mut FlightClient) -> Vec<(u64, serde_json::Value, i64)> {
    let infos: Vec<FlightInfo> = admin
        .list_flights(Vec::<u8>::new())
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let mut out: Vec<_> = infos
        .iter()
        .map(|i| {
            let m = info_metadata(i);
            (m["id"].as_u64().unwrap(), m["names"].clone(), i.total_records)
        })
        .collect();
    out.sort_by_key(|(id, _, _)| *id);
    out
}
