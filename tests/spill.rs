//! The memory budget, spilling to Parquet, reload, pinning, the disk limit, restart and crash durability.

use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use arrow_flight::{FlightClient, FlightDescriptor};
use serde_json::{Value, json};
use tonic::Code;

use crate::common::*;

/// ~20 MB of rows.
const ROWS_20MB: usize = 600_000;

async fn store_stats(client: &mut FlightClient) -> Value {
    action(client, "stats", json!({})).await.unwrap()["store"].clone()
}

async fn state_of(client: &mut FlightClient, id: u64) -> String {
    let info = client.get_flight_info(path(&[&id.to_string()])).await.unwrap();
    info_metadata(&info)["state"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn ten_uploads_over_a_64mib_budget_all_read_back() {
    let budget = 64u64 << 20;
    let server = TestServer::start_with(|c| c.memory_limit = "64MiB".parse().unwrap()).await;
    let mut client = server.client().await;
    let flight = |i: usize| sample_batch((i * ROWS_20MB) as i64, ROWS_20MB);
    for i in 0..10 {
        let put = upload(&mut client, path(&[&format!("t{i}")]), vec![flight(i)])
            .await
            .unwrap();
        assert!(put["num_bytes"].as_u64().unwrap() > 18 << 20);
        let stats = store_stats(&mut client).await;
        assert!(stats["resident_bytes"].as_u64().unwrap() <= budget, "{stats}");
    }
    let stats = store_stats(&mut client).await;
    assert!(stats["flights_spilled"].as_u64().unwrap() >= 7, "{stats}");
    assert!(stats["evictions"]["memory"].as_u64().unwrap() >= 7);
    assert_eq!(state_of(&mut client, 1).await, "spilled");

    // every flight reads back identical, spilled or not
    for i in 0..10 {
        let got = fetch_all(&mut client, path(&[&format!("t{i}")])).await.unwrap();
        assert_eq!(got, flight(i), "flight t{i}");
    }
    // row ranges of a spilled flight skip straight to the rows
    assert_eq!(state_of(&mut client, 1).await, "spilled");
    let info = client
        .get_flight_info(FlightDescriptor::new_cmd(r#"{"op":"partition","source":1,"parts":4}"#))
        .await
        .unwrap();
    let parts = fetch(&mut client, &info).await.unwrap();
    let schema = parts[0].schema();
    assert_eq!(arrow::compute::concat_batches(&schema, &parts).unwrap(), flight(0));

    // SQL joining a spilled flight (t0) with the most recent, resident one (t9)
    assert_eq!(state_of(&mut client, 10).await, "memory");
    let sql = "SELECT count(*) AS n, sum(a.id) AS s FROM t0 a JOIN t9 b ON a.id + 5400000 = b.id WHERE a.id < 1000";
    let info = client.get_flight_info(FlightDescriptor::new_cmd(sql)).await.unwrap();
    let rows = fetch(&mut client, &info).await.unwrap();
    assert_eq!(
        pretty(&rows),
        "+------+--------+\n| n    | s      |\n+------+--------+\n| 1000 | 499500 |\n+------+--------+"
    );

    let stats = store_stats(&mut client).await;
    assert!(stats["peak_resident_bytes"].as_u64().unwrap() <= budget, "{stats}");
    server.shutdown_and_wait().await;
}

#[tokio::test]
async fn forced_spill_reload_and_pinning() {
    let server = TestServer::start_with(|c| c.memory_limit = "48MiB".parse().unwrap()).await;
    let mut client = server.client().await;
    let data = sample_batch(0, ROWS_20MB);
    upload(&mut client, path(&["a"]), vec![data.clone()]).await.unwrap();
    upload(&mut client, path(&["b"]), vec![sample_batch(1, 100)])
        .await
        .unwrap();

    let r = action(&mut client, "spill", json!({"name": "a"})).await.unwrap();
    assert_eq!(r, json!({"id": 1, "state": "spilled"}));
    let stats = store_stats(&mut client).await;
    assert!(
        stats["resident_bytes"].as_u64().unwrap() < 1 << 20,
        "memory released: {stats}"
    );
    assert_eq!(stats["evictions"]["forced"], 1);
    assert_eq!(
        fetch_all(&mut client, path(&["a"])).await.unwrap(),
        data,
        "DoGet streams from the file"
    );
    assert_eq!(state_of(&mut client, 1).await, "spilled", "DoGet does not reload");

    // a streaming op reads it from disk and leaves it there
    let info = client
        .get_flight_info(FlightDescriptor::new_cmd(r#"{"op":"head","source":"a","num_rows":3}"#))
        .await
        .unwrap();
    assert_eq!(
        pretty(&fetch(&mut client, &info).await.unwrap()),
        pretty(&[data.slice(0, 3)])
    );
    assert_eq!(state_of(&mut client, 1).await, "spilled");
    // an op that needs every row at once reads it and, since it fits, brings it back
    let info = client
        .get_flight_info(FlightDescriptor::new_cmd(
            r#"{"op":"take","source":"a","indices":[0,1,2]}"#,
        ))
        .await
        .unwrap();
    assert_eq!(
        pretty(&fetch(&mut client, &info).await.unwrap()),
        pretty(&[data.slice(0, 3)])
    );
    assert_eq!(state_of(&mut client, 1).await, "memory");
    assert_eq!(store_stats(&mut client).await["reloads"], 1);

    // pinned flights stay in memory under pressure; unpinned ones go
    action(&mut client, "spill", json!({"id": 1})).await.unwrap();
    assert_eq!(
        action(&mut client, "pin", json!({"id": 1})).await.unwrap(),
        json!({"id": 1, "pinned": true})
    );
    assert_eq!(state_of(&mut client, 1).await, "memory", "pin reloads");
    let e = action(&mut client, "spill", json!({"id": 1})).await.unwrap_err();
    assert_eq!(code(e), Code::InvalidArgument);
    upload(&mut client, path(&["c"]), vec![sample_batch(2, ROWS_20MB)])
        .await
        .unwrap();
    upload(&mut client, path(&["d"]), vec![sample_batch(3, ROWS_20MB)])
        .await
        .unwrap();
    assert_eq!(
        state_of(&mut client, 1).await,
        "memory",
        "pinned flight was not spilled"
    );
    assert_eq!(state_of(&mut client, 3).await, "spilled");
    action(&mut client, "unpin", json!({"id": 1})).await.unwrap();
    action(&mut client, "spill", json!({"id": 1})).await.unwrap();
    assert_eq!(state_of(&mut client, 1).await, "spilled", "unpinned flight can go");
    for (name, start) in [("a", 0), ("c", 2), ("d", 3)] {
        assert_eq!(
            fetch_all(&mut client, path(&[name])).await.unwrap(),
            sample_batch(start, ROWS_20MB)
        );
    }
    server.shutdown_and_wait().await;
}

#[tokio::test]
async fn flights_larger_than_the_budget_go_straight_to_disk() {
    let server = TestServer::start_with(|c| c.memory_limit = "8MiB".parse().unwrap()).await;
    let mut client = server.client().await;
    let batches: Vec<RecordBatch> = (0..4).map(|i| sample_batch(i * 200_000, 200_000)).collect();
    upload(&mut client, path(&["huge"]), batches.clone()).await.unwrap();
    assert_eq!(state_of(&mut client, 1).await, "spilled");
    let stats = store_stats(&mut client).await;
    assert_eq!(stats["evictions"]["too_large"], 1);
    assert!(stats["peak_resident_bytes"].as_u64().unwrap() <= 8 << 20);
    let got = fetch_all(&mut client, path(&["huge"])).await.unwrap();
    assert_eq!(
        got,
        arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap()
    );
    // SQL over it scans the file
    let info = client
        .get_flight_info(FlightDescriptor::new_cmd(
            "SELECT count(*) AS n, max(id) AS m FROM huge",
        ))
        .await
        .unwrap();
    assert_eq!(
        pretty(&fetch(&mut client, &info).await.unwrap()),
        "+--------+--------+\n| n      | m      |\n+--------+--------+\n| 800000 | 799999 |\n+--------+--------+"
    );
    // appending to a spilled flight keeps every row
    let append = FlightDescriptor::new_cmd(r#"{"op":"put","name":"huge","mode":"append"}"#);
    let put = upload(&mut client, append, vec![sample_batch(800_000, 10)])
        .await
        .unwrap();
    assert_eq!(put["num_rows"], 800_010);
    let got = fetch_all(&mut client, path(&["huge"])).await.unwrap();
    assert_eq!(got.num_rows(), 800_010);
    assert_eq!(got.slice(800_000, 10), sample_batch(800_000, 10));
    server.shutdown_and_wait().await;
}

#[tokio::test]
async fn disk_limit_drops_recomputable_results_first_then_refuses() {
    let server = TestServer::start_with(|c| {
        c.memory_limit = "24MiB".parse().unwrap();
        c.disk_limit = Some("40MiB".parse().unwrap());
    })
    .await;
    let mut client = server.client().await;
    // a derived flight as large as its input (a streaming op: a sort would need more memory than this budget)
    let sort = || FlightDescriptor::new_cmd(r#"{"op":"slice","source":"base","offset":1}"#);
    upload(&mut client, path(&["base"]), vec![sample_batch(0, ROWS_20MB)])
        .await
        .unwrap();
    action(&mut client, "spill", json!({"name": "base"})).await.unwrap();
    // a derived flight as large as its input, forced to disk too
    let info = client.get_flight_info(sort()).await.unwrap();
    let derived = info_metadata(&info)["id"].as_u64().unwrap();
    action(&mut client, "spill", json!({"id": derived})).await.unwrap();
    assert_eq!(store_stats(&mut client).await["flights_spilled"], 2);

    // spilling another upload only fits by deleting the recomputable derived flight
    upload(&mut client, path(&["u2"]), vec![sample_batch(1, ROWS_20MB)])
        .await
        .unwrap();
    action(&mut client, "spill", json!({"name": "u2"})).await.unwrap();
    let stats = store_stats(&mut client).await;
    assert_eq!(stats["evictions"]["disk_limit_drops"], 1, "{stats}");
    assert!(stats["spilled_bytes"].as_u64().unwrap() <= 40 << 20, "{stats}");
    assert_eq!(
        code(client.get_flight_info(path(&[&derived.to_string()])).await.unwrap_err()),
        Code::NotFound
    );
    // the same request computes it again
    let again = client.get_flight_info(sort()).await.unwrap();
    assert_eq!(info_metadata(&again)["cache"], "miss");
    assert_eq!(
        fetch(&mut client, &again)
            .await
            .unwrap()
            .iter()
            .map(|b| b.num_rows())
            .sum::<usize>(),
        ROWS_20MB - 1
    );

    // uploads are never dropped: with memory and disk full the next upload is refused
    let e = upload(
        &mut client,
        path(&["u3"]),
        vec![sample_batch(2, ROWS_20MB), sample_batch(3, ROWS_20MB)],
    )
    .await
    .unwrap_err();
    let message = e.to_string();
    assert_eq!(code(e), Code::ResourceExhausted, "{message}");
    assert!(message.contains("flightbay: "), "{message}");
    // everything acknowledged is intact, and the refused upload left nothing
    assert_eq!(
        fetch_all(&mut client, path(&["base"])).await.unwrap(),
        sample_batch(0, ROWS_20MB)
    );
    assert_eq!(
        fetch_all(&mut client, path(&["u2"])).await.unwrap(),
        sample_batch(1, ROWS_20MB)
    );
    assert_eq!(
        code(client.get_flight_info(path(&["u3"])).await.unwrap_err()),
        Code::NotFound
    );
    server.shutdown_and_wait().await;
}

// ---- restart and crash: the real binary ----

#[tokio::test]
async fn restart_finds_every_flight_name_and_lineage() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = BinaryServer::start(&data, &[]);
    let mut client = server.client().await;
    upload(&mut client, path(&["sales", "trips"]), vec![sample_batch(0, 5000)])
        .await
        .unwrap();
    upload(&mut client, path(&["other"]), vec![sample_batch(9, 10)])
        .await
        .unwrap();
    let info = client
        .get_flight_info(FlightDescriptor::new_cmd(
            r#"{"op":"sql","query":"SELECT name, count(*) AS n FROM sales.trips GROUP BY name ORDER BY name","name":"counts"}"#,
        ))
        .await
        .unwrap();
    let counts = fetch(&mut client, &info).await.unwrap();
    action(&mut client, "drop", json!({"name": "other"})).await.unwrap();
    let lineage_before = action(&mut client, "lineage", json!({"name": "counts"})).await.unwrap();
    drop(client);
    server.stop().await;

    let server = BinaryServer::start(&data, &[]);
    let mut client = server.client().await;
    assert_eq!(listed_ids(&mut client).await, vec![1, 3]);
    assert_eq!(
        fetch_all(&mut client, path(&["sales", "trips"])).await.unwrap(),
        sample_batch(0, 5000)
    );
    let again = fetch_all(&mut client, path(&["counts"])).await.unwrap();
    assert_eq!(pretty(&[again]), pretty(&counts));
    let lineage_after = action(&mut client, "lineage", json!({"name": "counts"})).await.unwrap();
    assert_eq!(lineage_after, lineage_before);
    assert_eq!(state_of(&mut client, 1).await, "spilled");
    let put = upload(&mut client, path(&["next"]), vec![sample_batch(0, 1)])
        .await
        .unwrap();
    assert!(put["id"].as_u64().unwrap() > 3, "ids never go back: {put}");
    drop(client);
    server.stop().await;
}

#[tokio::test]
async fn durable_uploads_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut acknowledged: Vec<(u64, RecordBatch)> = Vec::new();
    for round in 0..20 {
        let server = BinaryServer::start(&data, &["--durable"]);
        let mut client = server.client().await;
        // everything acknowledged before is back, byte for byte
        for (id, batch) in &acknowledged {
            let got = fetch_all(&mut client, path(&[&id.to_string()])).await.unwrap();
            assert_eq!(&got, batch, "round {round}: flight {id}");
        }
        let batch = sample_batch(round * 1000, 3000 + round as usize);
        let put = upload(&mut client, path(&[&format!("r{round}")]), vec![batch.clone()])
            .await
            .unwrap();
        let id = put["id"].as_u64().unwrap();
        assert!(acknowledged.iter().all(|(old, _)| *old < id), "ids only grow");
        acknowledged.push((id, batch));
        drop(client);
        server.kill9();
    }
    let server = BinaryServer::start(&data, &["--durable"]);
    let mut client = server.client().await;
    assert_eq!(listed_ids(&mut client).await.len(), 20);
    drop(client);
    server.stop().await;
}

#[tokio::test]
async fn kill_during_a_large_spill_leaves_a_consistent_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = BinaryServer::start(&data, &["--memory-limit", "16MiB"]);
    let mut client = server.client().await;
    upload(&mut client, path(&["small"]), vec![sample_batch(0, 1000)])
        .await
        .unwrap();
    action(&mut client, "spill", json!({"name": "small"})).await.unwrap();
    // a large upload that goes to disk while we kill the server
    let batches: Vec<RecordBatch> = (0..12).map(|i| sample_batch(i * 100_000, 100_000)).collect();
    let addr = server.addr.clone();
    let upload_task = tokio::spawn(async move {
        let mut c = FlightClient::new(connect(addr).await);
        upload(&mut c, path(&["large"]), batches).await
    });
    // wait until the spill file is being written
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let writing = std::fs::read_dir(data.join("flights"))
            .map(|d| d.flatten().any(|e| e.path().to_string_lossy().ends_with(".tmp")))
            .unwrap_or(false);
        if writing || upload_task.is_finished() {
            break;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(client);
    server.kill9();
    let killed_at = std::time::SystemTime::now();
    let _ = upload_task.await;

    let server = BinaryServer::start(&data, &["--memory-limit", "16MiB"]);
    let mut client = server.client().await;
    let ids = listed_ids(&mut client).await;
    assert!(ids.contains(&1), "{ids:?}");
    for id in ids {
        fetch_all(&mut client, path(&[&id.to_string()])).await.unwrap();
    }
    assert_eq!(
        fetch_all(&mut client, path(&["small"])).await.unwrap(),
        sample_batch(0, 1000)
    );
    // The restarted server may be writing temp files of its own (an idle conversion); the killed one's are gone.
    let leftovers: Vec<_> = std::fs::read_dir(data.join("flights"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().to_string_lossy().ends_with(".tmp"))
        .filter(|e| e.metadata().and_then(|m| m.modified()).is_ok_and(|t| t < killed_at))
        .map(|e| e.file_name())
        .collect();
    assert!(
        leftovers.is_empty(),
        "temp files of the killed server left behind: {leftovers:?}"
    );
    drop(client);
    server.stop().await;
}
