//! Bad input gets the right gRPC code, the server stays up, and nothing stored changes.

use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::{FlightDescriptor, Ticket};
use futures::{StreamExt, TryStreamExt};
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

/// Starts a replace upload of "t" that sends `messages` and then either hangs (to be cancelled) or ends.
async fn broken_upload(server: &TestServer, messages: Vec<arrow_flight::FlightData>, hang: bool) {
    let mut raw = arrow_flight::flight_service_client::FlightServiceClient::new(
        tonic::transport::Channel::from_shared(format!("http://{}", server.addr))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    let input = futures::stream::iter(messages).chain(
        futures::stream::once(async move {
            if hang {
                std::future::pending::<()>().await;
            }
            arrow_flight::FlightData::default()
        })
        .filter(move |_| std::future::ready(!hang)),
    );
    let call = tokio::spawn(async move { raw.do_put(input).await.map(|_| ()) });
    if hang {
        // Let the batches arrive, then drop the call: the client resets the HTTP/2 stream (a disconnect).
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        call.abort();
        assert!(call.await.unwrap_err().is_cancelled());
    } else {
        let result = call.await.unwrap();
        assert_eq!(result.unwrap_err().code(), Code::InvalidArgument);
    }
}

fn upload_messages(batches: Vec<RecordBatch>) -> Vec<arrow_flight::FlightData> {
    let cmd = FlightDescriptor::new_cmd(r#"{"op":"put","name":"t","mode":"replace"}"#);
    let encoded = FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(cmd))
        .build(futures::stream::iter(batches.into_iter().map(Ok)));
    futures::executor::block_on(encoded.try_collect::<Vec<_>>()).unwrap()
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
    broken_upload(
        &server,
        upload_messages(vec![sample_batch(0, 1000), sample_batch(1000, 1000)]),
        true,
    )
    .await;
    assert_eq!(listed_ids(&mut client).await, vec![1], "after disconnect");
    // 2. a corrupt message in the middle of the stream
    let mut messages = upload_messages(vec![sample_batch(0, 1000), sample_batch(1000, 1000)]);
    messages[2].data_header = bytes::Bytes::from_static(b"\x00garbage header");
    broken_upload(&server, messages, false).await;

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
