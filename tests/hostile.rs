//! Hostile bytes and heavy work: requests that are not protobuf, not UTF-8, over the size limit, or with IPC
//! bodies that lie about their length get the right code; action bodies are objects only; computations obey
//! deadlines, cancellation and admission control.

use std::time::Duration;

use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::{FlightData, FlightDescriptor};
use bytes::{Buf, BufMut, Bytes};
use futures::StreamExt;
use serde_json::json;
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

use crate::common::*;

/// A codec that sends bytes as they are: what a broken or hostile client puts on the wire.
#[derive(Clone, Copy, Default)]
pub struct RawCodec;

pub struct RawEncoder;
pub struct RawDecoder;

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

/// Sends `body` as the one request message of a unary or server-streaming RPC and returns the status code.
pub async fn raw_unary(server: &TestServer, method: &str, body: &[u8]) -> Code {
    raw_unary_as(server, None, method, body).await
}

/// [`raw_unary`] with an `authorization` header.
pub async fn raw_unary_as(server: &TestServer, auth: Option<&str>, method: &str, body: &[u8]) -> Code {
    let mut grpc = tonic::client::Grpc::new(connect(server.addr).await);
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::try_from(format!("/arrow.flight.protocol.FlightService/{method}")).unwrap();
    let mut request = tonic::Request::new(Bytes::copy_from_slice(body));
    if let Some(auth) = auth {
        request.metadata_mut().insert("authorization", auth.parse().unwrap());
    }
    final_code(grpc.server_streaming(request, path, RawCodec).await).await
}

/// Sends `messages` as a DoPut stream of raw protobuf messages and returns the status code.
pub async fn raw_put(server: &TestServer, messages: Vec<Bytes>) -> Code {
    raw_put_as(server, None, messages).await
}

/// [`raw_put`] with an `authorization` header.
pub async fn raw_put_as(server: &TestServer, auth: Option<&str>, messages: Vec<Bytes>) -> Code {
    let mut grpc = tonic::client::Grpc::new(connect(server.addr).await);
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static("/arrow.flight.protocol.FlightService/DoPut");
    let mut request = tonic::Request::new(futures::stream::iter(messages));
    if let Some(auth) = auth {
        request.metadata_mut().insert("authorization", auth.parse().unwrap());
    }
    final_code(grpc.streaming(request, path, RawCodec).await).await
}

/// The status a streaming call ends with: its error, the first error in its stream, or OK.
async fn final_code(result: Result<tonic::Response<tonic::Streaming<Bytes>>, tonic::Status>) -> Code {
    match result {
        Ok(response) => {
            let mut stream = response.into_inner();
            while let Some(message) = stream.next().await {
                if let Err(status) = message {
                    return status.code();
                }
            }
            Code::Ok
        }
        Err(status) => status.code(),
    }
}

/// A protobuf length-delimited field.
pub fn field(number: u32, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    prost::encoding::encode_key(number, prost::encoding::WireType::LengthDelimited, &mut out);
    prost::encoding::encode_varint(bytes.len() as u64, &mut out);
    out.extend_from_slice(bytes);
    out
}

/// A PATH `FlightDescriptor` (type = 1) with raw path elements.
pub fn raw_path(elements: &[&[u8]]) -> Vec<u8> {
    let mut out = vec![0x08, 0x01];
    for e in elements {
        out.extend(field(3, e));
    }
    out
}

fn encoded(messages: Vec<FlightData>) -> Vec<Bytes> {
    messages
        .into_iter()
        .map(|m| Bytes::from(prost::Message::encode_to_vec(&m)))
        .collect()
}

fn put_messages(name: &str, batches: Vec<arrow::record_batch::RecordBatch>) -> Vec<FlightData> {
    let encoded = arrow_flight::encode::FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(path(&[name])))
        .build(futures::stream::iter(batches.into_iter().map(Ok)));
    futures::executor::block_on(futures::TryStreamExt::try_collect::<Vec<_>>(encoded)).unwrap()
}

#[tokio::test]
async fn undecodable_requests_are_invalid_arguments() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    upload(&mut client, path(&["t"]), vec![sample_batch(0, 10)])
        .await
        .unwrap();

    let garbage = [0xff_u8, 0xff, 0xff, 0xff, 0x0f];
    for method in ["GetFlightInfo", "GetSchema", "DoAction", "DoGet", "ListFlights"] {
        assert_eq!(
            raw_unary(&server, method, &garbage).await,
            Code::InvalidArgument,
            "{method}"
        );
    }
    // Strings that are not UTF-8: a PATH element, an action type, a namespace in a two-element path.
    assert_eq!(
        raw_unary(&server, "GetFlightInfo", &raw_path(&[b"\xff\xfe"])).await,
        Code::InvalidArgument
    );
    assert_eq!(
        raw_unary(&server, "GetSchema", &raw_path(&[b"ns", b"\xc3\x28"])).await,
        Code::InvalidArgument
    );
    let action = field(1, b"dr\xffop");
    assert_eq!(raw_unary(&server, "DoAction", &action).await, Code::InvalidArgument);
    // DoPut: a FlightData that does not decode, and one whose descriptor has a non-UTF-8 path.
    assert_eq!(
        raw_put(&server, vec![Bytes::copy_from_slice(&garbage)]).await,
        Code::InvalidArgument
    );
    let descriptor = field(1, &raw_path(&[b"\xff"]));
    assert_eq!(
        raw_put(&server, vec![Bytes::from(descriptor)]).await,
        Code::InvalidArgument
    );

    assert_eq!(listed_ids(&mut client).await, vec![1]);
    assert_eq!(fetch_all(&mut client, path(&["t"])).await.unwrap(), sample_batch(0, 10));
    server.shutdown_and_wait().await;
}

#[tokio::test]
async fn lying_ipc_bodies_are_invalid_arguments() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    upload(&mut client, path(&["t"]), vec![sample_batch(0, 10)])
        .await
        .unwrap();
    for cut in [1_usize, 8, 64] {
        let mut messages = put_messages("u", vec![sample_batch(0, 100)]);
        let body = messages[1].data_body.clone();
        messages[1].data_body = body.slice(..body.len() - cut);
        assert_eq!(
            raw_put(&server, encoded(messages)).await,
            Code::InvalidArgument,
            "cut {cut}"
        );
    }
    // A header whose body length is negative.
    let mut messages = put_messages("u", vec![sample_batch(0, 100)]);
    messages[1].data_body = Bytes::new();
    assert_eq!(raw_put(&server, encoded(messages)).await, Code::InvalidArgument);
    assert_eq!(listed_ids(&mut client).await, vec![1]);
    server.shutdown_and_wait().await;
}

#[tokio::test]
async fn a_message_over_the_limit_is_resource_exhausted() {
    let server = TestServer::start_with(|c| c.max_message_size = "64KiB".parse().unwrap()).await;
    let mut client = server.client().await;
    // About 150 KB in one message: one batch, under arrow-flight's 2 MiB split size.
    let e = upload(&mut client, path(&["big"]), vec![sample_batch(0, 5000)])
        .await
        .unwrap_err();
    let status = match e {
        arrow_flight::error::FlightError::Tonic(s) => s,
        other => panic!("{other:?}"),
    };
    assert_eq!(status.code(), Code::ResourceExhausted, "{status}");
    assert!(status.message().contains("--max-message-size"), "{status}");
    upload(&mut client, path(&["small"]), vec![sample_batch(0, 10)])
        .await
        .unwrap();
    assert_eq!(listed_ids(&mut client).await, vec![1]);
    server.shutdown_and_wait().await;
}

#[tokio::test]
async fn action_bodies_are_objects() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    upload(&mut client, path(&["t"]), vec![sample_batch(0, 10)])
        .await
        .unwrap();
    for (kind, body) in [
        ("drop", "[1]"),
        ("drop", "1"),
        ("drop", "\"t\""),
        ("drop", "null"),
        ("pin", "[1]"),
        ("rename", "[1, \"x\"]"),
        ("delete_namespace", "[\"default\", true]"),
        ("drop", "{\"id\": 1, \"force\": true}"),
        ("stats", "[]"),
    ] {
        let e = client
            .do_action(arrow_flight::Action::new(kind, body.as_bytes().to_vec()))
            .await
            .err()
            .unwrap_or_else(|| panic!("{kind} {body} was accepted"));
        assert_eq!(code(e), Code::InvalidArgument, "{kind} {body}");
    }
    assert_eq!(listed_ids(&mut client).await, vec![1], "flight 1 was not dropped");
    server.shutdown_and_wait().await;
}

/// A query that runs for minutes in a debug build and can be stopped between batches: a three-way cross join.
pub const HEAVY_SQL: &str = "SELECT sum(a.id * b.id + c.id) AS s FROM t a, t b, t c";

/// The `compute` counters of `stats`.
pub async fn compute_stats(client: &mut arrow_flight::FlightClient) -> serde_json::Value {
    action(client, "stats", json!({})).await.unwrap()["compute"].clone()
}

/// Waits (at most 30 s) until `stats.compute` satisfies `done`.
pub async fn wait_for(
    client: &mut arrow_flight::FlightClient,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    for _ in 0..600 {
        let stats = compute_stats(client).await;
        if done(&stats) {
            return stats;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "compute stats never reached the expected state: {}",
        compute_stats(client).await
    );
}

#[tokio::test]
async fn query_timeout_stops_the_computation() {
    let server = TestServer::start_with(|c| c.query_timeout = Duration::from_millis(300)).await;
    let mut client = server.client().await;
    upload(&mut client, path(&["t"]), vec![sample_batch(0, 2000)])
        .await
        .unwrap();
    let e = client
        .get_flight_info(FlightDescriptor::new_cmd(HEAVY_SQL))
        .await
        .unwrap_err();
    assert_eq!(code(e), Code::DeadlineExceeded);
    let stats = wait_for(&mut client, |s| s["running"] == 0).await;
    assert_eq!(stats["timed_out"], 1);
    assert_eq!(listed_ids(&mut client).await, vec![1], "nothing was published");
    // The server keeps computing other requests.
    let got = fetch_all(&mut client, FlightDescriptor::new_cmd("SELECT count(*) AS n FROM t"))
        .await
        .unwrap();
    assert_eq!(pretty(&[got]), "+------+\n| n    |\n+------+\n| 2000 |\n+------+");
    server.shutdown_and_wait().await;
}

#[tokio::test]
async fn client_deadlines_and_disconnects_stop_the_computation() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    upload(&mut client, path(&["t"]), vec![sample_batch(0, 2000)])
        .await
        .unwrap();

    // grpc-timeout: the client's deadline passes, the server stops.
    let mut raw = FlightServiceClient::new(connect(server.addr).await);
    let mut request = tonic::Request::new(FlightDescriptor::new_cmd(HEAVY_SQL));
    request.set_timeout(Duration::from_millis(300));
    let status = raw.get_flight_info(request).await.unwrap_err();
    assert!(
        matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{status}"
    );
    let stats = wait_for(&mut client, |s| s["running"] == 0).await;
    assert_eq!(
        stats["cancelled"].as_u64().unwrap() + stats["timed_out"].as_u64().unwrap(),
        1
    );

    // A client that goes away: the call is dropped while computing.
    let mut raw = FlightServiceClient::new(connect(server.addr).await);
    let call = tokio::spawn(async move { raw.get_flight_info(FlightDescriptor::new_cmd(HEAVY_SQL)).await });
    wait_for(&mut client, |s| s["running"] == 1).await;
    call.abort();
    let stats = wait_for(&mut client, |s| s["running"] == 0).await;
    assert_eq!(
        stats["cancelled"].as_u64().unwrap() + stats["timed_out"].as_u64().unwrap(),
        2
    );
    assert_eq!(listed_ids(&mut client).await, vec![1], "nothing was published");
    server.shutdown_and_wait().await;
}

#[tokio::test]
async fn a_full_server_answers_unavailable_with_a_retry_hint() {
    let server = TestServer::start_with(|c| {
        c.max_concurrent_queries = Some(1);
        c.max_queued_queries = 0;
    })
    .await;
    let mut client = server.client().await;
    upload(&mut client, path(&["t"]), vec![sample_batch(0, 2000)])
        .await
        .unwrap();

    let mut raw = FlightServiceClient::new(connect(server.addr).await);
    let heavy = tokio::spawn(async move { raw.get_flight_info(FlightDescriptor::new_cmd(HEAVY_SQL)).await });
    wait_for(&mut client, |s| s["running"] == 1).await;

    let mut raw = FlightServiceClient::new(connect(server.addr).await);
    let status = raw
        .get_flight_info(FlightDescriptor::new_cmd("SELECT 1 AS one"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status}");
    assert_eq!(status.metadata().get("grpc-retry-pushback-ms").unwrap(), "1000");
    assert!(status.message().contains("--max-concurrent-queries"), "{status}");
    // PATH requests and actions do not compute and are still served.
    assert_eq!(fetch_all(&mut client, path(&["t"])).await.unwrap().num_rows(), 2000);

    heavy.abort();
    let stats = wait_for(&mut client, |s| s["running"] == 0).await;
    assert_eq!(stats["rejected"], 1);
    let got = fetch_all(&mut client, FlightDescriptor::new_cmd("SELECT 1 AS one"))
        .await
        .unwrap();
    assert_eq!(pretty(&[got]), "+-----+\n| one |\n+-----+\n| 1   |\n+-----+");
    server.shutdown_and_wait().await;
}
