//! Bad input gets the right gRPC code, the server stays up, and nothing stored changes.

use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::{FlightDescriptor, Ticket};
use futures::TryStreamExt;
use serde_json::json;
use std::sync::Arc;
use tonic::Code;

use crate::common::*;

async fn get_code(client: &mut arrow_flight::FlightClient, ticket: &[u8]) -> Code {
    match client.do_get(Ticket::new(ticket.to_vec())).await {
        Ok(stream) => code(stream.try_collect::<Vec<_>>().await.unwrap_err()),
        Err(e) => code(e),
    }
}

#[tokio::test]
async fn unknown_things_are_not_found() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    upload(&mut client, path(&["t"]), vec![sample_batch(0, 10)])
        .await
        .unwrap();
    for d in [path(&["nope"]), path(&["99"]), path(&["ns", "t"])] {
        assert_eq!(
            code(client.get_flight_info(d.clone()).await.unwrap_err()),
            Code::NotFound,
            "{d:?}"
        );
        assert_eq!(code(client.get_schema(d).await.unwrap_err()), Code::NotFound);
    }
    assert_eq!(get_code(&mut client, b"99").await, Code::NotFound);
    assert_eq!(
        get_code(&mut client, b"1@5+10").await,
        Code::NotFound,
        "range beyond the flight"
    );
    let e = action(&mut client, "drop", json!({"name": "nope"})).await.unwrap_err();
    assert_eq!(code(e), Code::NotFound);
    let partition = FlightDescriptor::new_cmd(r#"{"op":"partition","source":"nope","parts":2}"#);
    assert_eq!(
        code(client.get_flight_info(partition).await.unwrap_err()),
        Code::NotFound
    );
    assert_eq!(listed_ids(&mut client).await, vec![1]);
    server.shutdown_and_wait().await;
}

#[tokio::test]
async fn malformed_requests_are_invalid_arguments() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    upload(&mut client, path(&["t"]), vec![sample_batch(0, 10)])
        .await
        .unwrap();

    let long = "x".repeat(200);
    for d in [
        path(&["a", "b", "c"]),
        path(&[]),
        path(&["f12"]),
        path(&["a b"]),
        path(&[&long]),
        FlightDescriptor::new_cmd("{not json"),
        FlightDescriptor::new_cmd(r#"{"op":"explode","source":1}"#),
        FlightDescriptor::new_cmd(r#"{"op":"put","name":"t"}"#),
        FlightDescriptor::new_cmd(vec![0xffu8, 0xfe]),
    ] {
        assert_eq!(
            code(client.get_flight_info(d.clone()).await.unwrap_err()),
            Code::InvalidArgument,
            "{d:?}"
        );
    }
    for t in [&b"garbage"[..], b"\xff\x00", b"", b"1@x+1", b"-4"] {
        assert_eq!(get_code(&mut client, t).await, Code::InvalidArgument, "{t:?}");
    }
    for (kind, body) in [
        ("drop", &b"{"[..]),
        ("drop", b"{}"),
        ("rename", br#"{"id":1,"name":"a b"}"#),
    ] {
        let e = client
            .do_action(arrow_flight::Action::new(kind, body.to_vec()))
            .await
            .err()
            .expect("action fails");
        assert_eq!(code(e), Code::InvalidArgument, "{kind}");
    }
    let e = client
        .do_action(arrow_flight::Action::new("explode", "{}"))
        .await
        .err()
        .unwrap();
    assert_eq!(code(e), Code::Unimplemented);

    // uploads with bad targets
    for d in [
        path(&["f12"]),
        path(&["a b"]),
        path(&[&long]),
        path(&["7"]),
        FlightDescriptor::new_cmd(r#"{"op":"put","name":"x","mode":"sometimes"}"#),
        FlightDescriptor::new_cmd(r#"{"op":"put"}"#),
        FlightDescriptor::new_cmd("{broken"),
    ] {
        let e = upload(&mut client, d.clone(), vec![sample_batch(0, 3)])
            .await
            .unwrap_err();
        assert_eq!(code(e), Code::InvalidArgument, "{d:?}");
    }
    assert_eq!(listed_ids(&mut client).await, vec![1]);
    assert_eq!(fetch_all(&mut client, path(&["t"])).await.unwrap(), sample_batch(0, 10));
    server.shutdown_and_wait().await;
}

#[tokio::test]
async fn append_with_another_schema_is_refused() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    upload(&mut client, path(&["t"]), vec![sample_batch(0, 10)])
        .await
        .unwrap();
    let other = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("id", DataType::Int32, false)])),
        vec![Arc::new(arrow::array::Int32Array::from(vec![1, 2]))],
    )
    .unwrap();
    let cmd = FlightDescriptor::new_cmd(r#"{"op":"put","name":"t","mode":"append"}"#);
    let e = upload(&mut client, cmd, vec![other]).await.unwrap_err();
    assert_eq!(code(e), Code::InvalidArgument);
    assert_eq!(listed_ids(&mut client).await, vec![1]);
    assert_eq!(fetch_all(&mut client, path(&["t"])).await.unwrap(), sample_batch(0, 10));
    server.shutdown_and_wait().await;
}

/// The messages of a replace upload of "t".
async fn replace_t(batches: Vec<RecordBatch>) -> Vec<arrow_flight::FlightData> {
    upload_messages(
        FlightDescriptor::new_cmd(r#"{"op":"put","name":"t","mode":"replace"}"#),
        batches,
    )
    .await
}

#[tokio::test]
async fn failed_upload_leaves_nothing_behind() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    upload(&mut client, path(&["t"]), vec![sample_batch(0, 10)])
        .await
        .unwrap();
    let used = action(&mut client, "stats", json!({})).await.unwrap()["store"]["resident_bytes"].clone();

    // 1. the client disconnects after two batches
    let call = hanging_upload(
        server.addr,
        replace_t(vec![sample_batch(0, 1000), sample_batch(1000, 1000)]).await,
    )
    .await;
    // let the batches arrive, then go away
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    assert_eq!(listed_ids(&mut client).await, vec![1], "after disconnect");
    // 2. a corrupt message in the middle of the stream
    let mut messages = replace_t(vec![sample_batch(0, 1000), sample_batch(1000, 1000)]).await;
    messages[2].data_header = bytes::Bytes::from_static(b"\x00garbage header");
    let mut raw = arrow_flight::flight_service_client::FlightServiceClient::new(connect(server.addr).await);
    let result = raw.do_put(futures::stream::iter(messages)).await;
    assert_eq!(result.unwrap_err().code(), Code::InvalidArgument);

    // the server is still up, the name did not move, no flight appeared, the memory came back
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(listed_ids(&mut client).await, vec![1]);
    assert_eq!(fetch_all(&mut client, path(&["t"])).await.unwrap(), sample_batch(0, 10));
    let stats = action(&mut client, "stats", json!({})).await.unwrap();
    assert_eq!(stats["store"]["resident_bytes"], used);
    let put = upload(&mut client, path(&["u"]), vec![sample_batch(0, 1)])
        .await
        .unwrap();
    assert_eq!(put["id"], 2, "the failed uploads consumed no id");
    server.shutdown_and_wait().await;
}

#[tokio::test]
async fn unsupported_rpcs_are_unimplemented() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let e = client.poll_flight_info(path(&["t"])).await.unwrap_err();
    assert_eq!(code(e), Code::Unimplemented);
    let input = FlightDataEncoderBuilder::new().build(futures::stream::iter(vec![Ok(sample_batch(0, 1))]));
    let e = match client.do_exchange(input).await {
        Ok(s) => s.try_collect::<Vec<_>>().await.unwrap_err(),
        Err(e) => e,
    };
    assert_eq!(code(e), Code::Unimplemented);
    // Handshake is accepted while auth is off.
    client.handshake("anything").await.unwrap();
    server.shutdown_and_wait().await;
}
