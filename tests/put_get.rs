//! Upload, fetch, list and the put modes.

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use arrow_flight::FlightDescriptor;
use futures::TryStreamExt;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn put_then_get_by_name_and_id() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let batches = vec![sample_batch(0, 1000), sample_batch(1000, 500)];
    let put = upload(&mut client, path(&["trips"]), batches.clone()).await.unwrap();
    assert_eq!(put["id"], 1);
    assert_eq!(put["name"], "trips");
    assert_eq!(put["namespace"], "default");
    assert_eq!(put["num_rows"], 1500);
    assert!(put["num_bytes"].as_u64().unwrap() > 1500 * 8);

    let expected = pretty(&batches);
    for descriptor in [path(&["trips"]), path(&["default", "trips"]), path(&["1"])] {
        let got = fetch_all(&mut client, descriptor).await.unwrap();
        assert_eq!(pretty(&[got]), expected);
    }

    let info = client.get_flight_info(path(&["trips"])).await.unwrap();
    assert_eq!(info.total_records, 1500);
    assert_eq!(info.total_bytes, put["num_bytes"].as_i64().unwrap());
    assert_eq!(info.endpoint.len(), 1);
    assert!(info.endpoint[0].location.is_empty());
    assert_eq!(info.endpoint[0].ticket.as_ref().unwrap().ticket.as_ref(), b"1");
    assert_eq!(info.flight_descriptor, Some(path(&["trips"])));
    let meta = info_metadata(&info);
    assert_eq!(meta["id"], 1);
    assert_eq!(meta["name"], "trips");
    assert_eq!(meta["namespace"], "default");
    assert_eq!(meta["state"], "memory");
    assert_eq!(
        meta["lineage"],
        json!({"op": "upload", "params": {"mode": "error"}, "inputs": []})
    );

    let schema = client.get_schema(path(&["trips"])).await.unwrap();
    assert_eq!(schema.fields(), sample_schema().fields());
    server.shutdown_and_wait().await;
}

#[tokio::test]
async fn namespaces_and_list_globs() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    upload(&mut client, path(&["sales", "trips"]), vec![sample_batch(0, 10)])
        .await
        .unwrap();
    upload(&mut client, path(&["trips"]), vec![sample_batch(0, 20)])
        .await
        .unwrap();
    upload(&mut client, path(&["sales", "fares"]), vec![sample_batch(0, 30)])
        .await
        .unwrap();

    let rows = fetch_all(&mut client, path(&["sales", "trips"]))
        .await
        .unwrap()
        .num_rows();
    assert_eq!(rows, 10);
    assert_eq!(listed_ids(&mut client).await, vec![1, 2, 3]);

    async fn listed(c: &mut arrow_flight::FlightClient, pattern: &'static str) -> Vec<u64> {
        let infos: Vec<_> = c.list_flights(pattern).await.unwrap().try_collect().await.unwrap();
        infos.iter().map(|i| info_metadata(i)["id"].as_u64().unwrap()).collect()
    }
    assert_eq!(listed(&mut client, "sales.*").await, vec![1, 3]);
    assert_eq!(listed(&mut client, "trips").await, vec![1, 2]);
    assert_eq!(listed(&mut client, "default.*").await, vec![2]);
    assert_eq!(listed(&mut client, "nothing*").await, Vec::<u64>::new());

    let infos: Vec<_> = client.list_flights("").await.unwrap().try_collect().await.unwrap();
    assert_eq!(infos[0].flight_descriptor, Some(path(&["sales", "trips"])));
    assert_eq!(infos[0].total_records, 10);
    server.shutdown_and_wait().await;
}

#[tokio::test]
async fn put_modes() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let cmd = |mode: &str| FlightDescriptor::new_cmd(json!({"op": "put", "name": "t", "mode": mode}).to_string());
    upload(&mut client, path(&["t"]), vec![sample_batch(0, 100)])
        .await
        .unwrap();

    // error (the default): refused, nothing changes
    let e = upload(&mut client, path(&["t"]), vec![sample_batch(0, 5)])
        .await
        .unwrap_err();
    assert_eq!(code(e), tonic::Code::AlreadyExists);
    let e = upload(&mut client, cmd("error"), vec![sample_batch(0, 5)])
        .await
        .unwrap_err();
    assert_eq!(code(e), tonic::Code::AlreadyExists);
    assert_eq!(listed_ids(&mut client).await, vec![1]);

    // replace: the name moves, the old flight stays reachable by id
    let put = upload(&mut client, cmd("replace"), vec![sample_batch(100, 7)])
        .await
        .unwrap();
    assert_eq!(put["id"], 2);
    assert_eq!(fetch_all(&mut client, path(&["t"])).await.unwrap().num_rows(), 7);
    assert_eq!(fetch_all(&mut client, path(&["1"])).await.unwrap().num_rows(), 100);

    // append: a new flight with old rows then new rows, sharing the old batches
    let before = action(&mut client, "stats", json!({})).await.unwrap()["store"]["resident_bytes"]
        .as_u64()
        .unwrap();
    let put = upload(&mut client, cmd("append"), vec![sample_batch(200, 3)])
        .await
        .unwrap();
    assert_eq!(put["id"], 3);
    assert_eq!(put["num_rows"], 10);
    let after = action(&mut client, "stats", json!({})).await.unwrap()["store"]["resident_bytes"]
        .as_u64()
        .unwrap();
    let appended_bytes = (after - before) as f64;
    let new_batch_bytes = flightbay::store::batch_bytes(&sample_batch(200, 3)) as f64;
    assert!(
        appended_bytes <= new_batch_bytes * 1.01,
        "append copied old data: {appended_bytes} > {new_batch_bytes}"
    );
    let all = fetch_all(&mut client, path(&["t"])).await.unwrap();
    assert_eq!(pretty(&[all]), pretty(&[sample_batch(100, 7), sample_batch(200, 3)]));
    let info = client.get_flight_info(path(&["t"])).await.unwrap();
    assert_eq!(info_metadata(&info)["lineage"]["inputs"], json!([2]));
    assert_eq!(fetch_all(&mut client, path(&["2"])).await.unwrap().num_rows(), 7);

    // append to a name that does not exist creates it
    let put = upload(
        &mut client,
        FlightDescriptor::new_cmd(r#"{"op":"put","name":"fresh","namespace":"ns","mode":"append"}"#),
        vec![sample_batch(0, 4)],
    )
    .await
    .unwrap();
    assert_eq!(
        (put["name"].as_str(), put["namespace"].as_str()),
        (Some("fresh"), Some("ns"))
    );
    server.shutdown_and_wait().await;
}

#[tokio::test]
async fn server_default_put_mode_is_configurable() {
    let server = TestServer::start_with(|c| c.default_put_mode = flightbay::store::PutMode::Replace).await;
    let mut client = server.client().await;
    upload(&mut client, path(&["t"]), vec![sample_batch(0, 1)])
        .await
        .unwrap();
    let put = upload(&mut client, path(&["t"]), vec![sample_batch(0, 2)])
        .await
        .unwrap();
    assert_eq!(put["id"], 2);
    assert_eq!(fetch_all(&mut client, path(&["t"])).await.unwrap().num_rows(), 2);
    server.shutdown_and_wait().await;
}

#[tokio::test]
async fn row_range_tickets_and_partitions() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let batches = vec![sample_batch(0, 400), sample_batch(400, 600)];
    upload(&mut client, path(&["t"]), batches).await.unwrap();

    let ranged: Vec<RecordBatch> = client
        .do_get(arrow_flight::Ticket::new("1@390+20"))
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(pretty(&ranged), pretty(&[sample_batch(390, 20)]));

    let info = client
        .get_flight_info(FlightDescriptor::new_cmd(
            r#"{"op":"partition","source":"t","parts":3}"#,
        ))
        .await
        .unwrap();
    assert_eq!(info.endpoint.len(), 3);
    assert_eq!(info_metadata(&info)["id"], 1);
    let tickets: Vec<String> = info
        .endpoint
        .iter()
        .map(|e| String::from_utf8(e.ticket.clone().unwrap().ticket.to_vec()).unwrap())
        .collect();
    assert_eq!(tickets, ["1@0+333", "1@333+333", "1@666+334"]);
    let all = fetch(&mut client, &info).await.unwrap();
    assert_eq!(pretty(&all), pretty(&[sample_batch(0, 1000)]));
    assert_eq!(listed_ids(&mut client).await, vec![1], "partition makes no new flight");
    server.shutdown_and_wait().await;
}

#[tokio::test]
async fn large_batches_go_out_in_small_messages() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    // ~12 MB in one batch: must come back in messages under grpc-go's 4 MiB limit.
    upload(&mut client, path(&["big"]), vec![sample_batch(0, 400_000)])
        .await
        .unwrap();
    let ticket = arrow_flight::Ticket::new("1");
    let messages: Vec<arrow_flight::FlightData> = client
        .inner_mut()
        .do_get(ticket)
        .await
        .unwrap()
        .into_inner()
        .try_collect()
        .await
        .unwrap();
    assert!(
        messages.len() > 4,
        "expected the batch split into several messages, got {}",
        messages.len()
    );
    for m in &messages {
        assert!(
            prost::Message::encoded_len(m) < 4 * 1024 * 1024,
            "message of {} bytes",
            m.data_body.len()
        );
    }
    let got = fetch_all(&mut client, path(&["big"])).await.unwrap();
    assert_eq!(got, sample_batch(0, 400_000));
    server.shutdown_and_wait().await;
}

#[tokio::test]
async fn concurrent_uploads_from_eight_tasks() {
    let server = TestServer::start().await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let mut client = server.client().await;
        tasks.push(tokio::spawn(async move {
            let name = format!("t{i}");
            let put = upload(
                &mut client,
                path(&[&name]),
                vec![sample_batch(i * 1000, 1000 + i as usize)],
            )
            .await
            .unwrap();
            (name, put["id"].as_u64().unwrap())
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    let mut client = server.client().await;
    let mut unique: Vec<u64> = ids.iter().map(|(_, id)| *id).collect();
    unique.sort();
    assert_eq!(unique, (1..=8).collect::<Vec<_>>());
    for (name, id) in ids {
        let i: usize = name[1..].parse().unwrap();
        let by_name = fetch_all(&mut client, path(&[&name])).await.unwrap();
        assert_eq!(by_name, sample_batch(i as i64 * 1000, 1000 + i));
        assert_eq!(fetch_all(&mut client, path(&[&id.to_string()])).await.unwrap(), by_name);
    }
    server.shutdown_and_wait().await;
}

#[tokio::test]
async fn empty_upload_makes_an_empty_flight() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let put = upload(&mut client, path(&["empty"]), vec![]).await.unwrap();
    assert_eq!(put["num_rows"], 0);
    let got = fetch_all(&mut client, path(&["empty"])).await.unwrap();
    assert_eq!(got.num_rows(), 0);
    assert_eq!(got.schema().fields(), sample_schema().fields());
    server.shutdown_and_wait().await;
}

#[tokio::test]
async fn dictionary_columns_come_back_as_their_values() {
    use arrow::array::{Array, ArrayRef, DictionaryArray, Int64Array, StringArray};
    use arrow::datatypes::Int32Type;
    use arrow_flight::encode::{DictionaryHandling, FlightDataEncoderBuilder};

    let server = TestServer::start().await;
    let mut client = server.client().await;
    let labels: DictionaryArray<Int32Type> = (0..5000).map(|i| ["a", "bb", "ccc"][i % 3]).collect();
    let batch = RecordBatch::try_from_iter([
        ("label", Arc::new(labels) as ArrayRef),
        ("n", Arc::new(Int64Array::from_iter_values(0..5000)) as ArrayRef),
    ])
    .unwrap();
    let stream = FlightDataEncoderBuilder::new()
        .with_dictionary_handling(DictionaryHandling::Resend)
        .with_flight_descriptor(Some(path(&["dict"])))
        .build(futures::stream::iter([Ok(batch.clone())]));
    let _: Vec<_> = client.do_put(stream).await.unwrap().try_collect().await.unwrap();
    let stored = client.get_schema(path(&["dict"])).await.unwrap();
    assert!(
        matches!(
            stored.field(0).data_type(),
            arrow::datatypes::DataType::Dictionary(_, _)
        ),
        "stored as uploaded: {stored:?}"
    );

    for ticket in ["1", "1@1001+2000"] {
        let got: Vec<RecordBatch> = client
            .do_get(arrow_flight::Ticket::new(ticket))
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        let got = arrow::compute::concat_batches(&got[0].schema(), &got).unwrap();
        let (offset, len) = if ticket == "1" { (0, 5000) } else { (1001, 2000) };
        let expected: StringArray = (offset..offset + len)
            .map(|i| Some(["a", "bb", "ccc"][i % 3]))
            .collect();
        assert_eq!(got.column(0).data_type(), &arrow::datatypes::DataType::Utf8, "{ticket}");
        assert_eq!(got.column(0).as_ref(), &expected as &dyn Array, "{ticket}");
        assert_eq!(
            got.column(1).as_ref(),
            batch.column(1).slice(offset, len).as_ref(),
            "{ticket}"
        );
    }
    server.shutdown_and_wait().await;
}
