//! Living at the memory budget: every accepted type round-trips exactly through spill, reload and restart; faults
//! (disk full during write-behind, a disconnect mid-upload, kill -9 during uploads and conversions, a restart at the
//! disk limit, a drop during a query) lose nothing acknowledged and answer with the right code; one data directory,
//! one server; DataFusion's spill files stay in the data directory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::*;
use arrow::buffer::ScalarBuffer;
use arrow::datatypes::*;
use arrow::record_batch::RecordBatch;
use arrow_flight::encode::{DictionaryHandling, FlightDataEncoderBuilder};
use arrow_flight::{FlightClient, FlightDescriptor};
use futures::TryStreamExt;
use serde_json::{Value, json};
use tonic::Code;

use crate::common::*;

/// Columns of the types that once did not survive a spill (union, month-day-nano interval, run-end encoding), and
/// of the nested, view and large types next to them.
fn every_type_batch(rows: usize) -> RecordBatch {
    let ids: Vec<i32> = (0..rows as i32).collect();
    let union = UnionArray::try_new(
        [
            (0, Arc::new(Field::new("i", DataType::Int32, true))),
            (1, Arc::new(Field::new("s", DataType::Utf8, true))),
        ]
        .into_iter()
        .collect(),
        ScalarBuffer::from(ids.iter().map(|i| (i % 2) as i8).collect::<Vec<_>>()),
        Some(ScalarBuffer::from(ids.iter().map(|i| i / 2).collect::<Vec<_>>())),
        vec![
            Arc::new(Int32Array::from_iter_values(0..rows.div_ceil(2) as i32)),
            Arc::new(StringArray::from_iter_values((0..rows / 2).map(|i| format!("u{i}")))),
        ],
    )
    .unwrap();
    let run_ends: Vec<i32> = (1..=rows.div_ceil(3) as i32)
        .map(|r| (r * 3).min(rows as i32))
        .collect();
    let ree = RunArray::<Int32Type>::try_new(
        &Int32Array::from(run_ends.clone()),
        &StringArray::from_iter_values(run_ends.iter().map(|r| format!("run{r}"))),
    )
    .unwrap();
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("id", Arc::new(Int32Array::from(ids.clone()))),
        ("union", Arc::new(union)),
        (
            "interval_mdn",
            Arc::new(IntervalMonthDayNanoArray::from_iter_values(
                ids.iter()
                    .map(|i| IntervalMonthDayNano::new(*i, -i, i64::from(*i) * 1_000_000_007)),
            )),
        ),
        ("run_end", Arc::new(ree)),
        (
            "dictionary",
            Arc::new(
                ids.iter()
                    .map(|i| ["x", "y", "z"][*i as usize % 3])
                    .collect::<DictionaryArray<Int16Type>>(),
            ),
        ),
        (
            "list",
            Arc::new(ListArray::from_iter_primitive::<Int64Type, _, _>(
                ids.iter()
                    .map(|i| (i % 5 != 0).then(|| vec![Some(i64::from(*i)), None])),
            )),
        ),
        (
            "utf8_view",
            Arc::new(StringViewArray::from_iter(
                ids.iter()
                    .map(|i| (i % 7 != 0).then(|| format!("a longer string value number {i}"))),
            )),
        ),
        (
            "large_utf8",
            Arc::new(LargeStringArray::from_iter_values(ids.iter().map(|i| i.to_string()))),
        ),
        (
            "decimal256",
            Arc::new(
                Decimal256Array::from_iter_values(ids.iter().map(|i| i256::from_i128(i128::from(*i) << 70)))
                    .with_precision_and_scale(76, 10)
                    .unwrap(),
            ),
        ),
        (
            "ts_ns_tz",
            Arc::new(
                TimestampNanosecondArray::from_iter_values(ids.iter().map(|i| i64::from(*i) * 1_000_000_001))
                    .with_timezone("America/New_York"),
            ),
        ),
        (
            "duration_ms",
            Arc::new(DurationMillisecondArray::from_iter_values(
                ids.iter().map(|i| i64::from(-*i)),
            )),
        ),
        (
            "fixed_binary",
            Arc::new(FixedSizeBinaryArray::try_from_iter(ids.iter().map(|i| i.to_le_bytes())).unwrap()),
        ),
        (
            "float16",
            arrow::compute::cast(
                &Float32Array::from_iter_values(ids.iter().map(|i| *i as f32 / 4.0)),
                &DataType::Float16,
            )
            .unwrap(),
        ),
    ];
    RecordBatch::try_from_iter(columns).unwrap()
}

/// What DoGet sends for `batch`: dictionary columns as their values (see `dictionary_columns_come_back_as_their_values`).
fn as_served(batch: &RecordBatch) -> RecordBatch {
    let columns: Vec<(String, ArrayRef)> = batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(f, c)| match f.data_type() {
            DataType::Dictionary(_, value) => (f.name().clone(), arrow::compute::cast(c, value).unwrap()),
            _ => (f.name().clone(), Arc::clone(c)),
        })
        .collect();
    RecordBatch::try_from_iter(columns).unwrap()
}

async fn put_batches(client: &mut FlightClient, name: &str, batches: Vec<RecordBatch>) -> Value {
    let schema = batches[0].schema();
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .with_dictionary_handling(DictionaryHandling::Resend)
        .with_flight_descriptor(Some(path(&[name])))
        .build(futures::stream::iter(batches.into_iter().map(Ok)));
    let results: Vec<_> = client.do_put(stream).await.unwrap().try_collect().await.unwrap();
    serde_json::from_slice(&results[0].app_metadata).unwrap()
}

/// Every row of `name`, concatenated.
async fn get_all(client: &mut FlightClient, name: &str) -> RecordBatch {
    let info = client.get_flight_info(path(&[name])).await.unwrap();
    let schema = Arc::new(info.clone().try_decode_schema().unwrap());
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let batches: Vec<RecordBatch> = client.do_get(ticket).await.unwrap().try_collect().await.unwrap();
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    match batches.len() {
        0 => RecordBatch::try_new_with_options(schema, vec![], &RecordBatchOptions::new().with_row_count(Some(0)))
            .unwrap_or_else(|_| RecordBatch::new_empty(Arc::new(Schema::empty()))),
        _ if batches[0].num_columns() == 0 => RecordBatch::try_new_with_options(
            batches[0].schema(),
            vec![],
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )
        .unwrap(),
        _ => arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap(),
    }
}

async fn state_of(client: &mut FlightClient, name: &str) -> String {
    let info = client.get_flight_info(path(&[name])).await.unwrap();
    info_metadata(&info)["state"].as_str().unwrap().to_string()
}

fn zero_columns(rows: usize) -> RecordBatch {
    RecordBatch::try_new_with_options(
        Arc::new(Schema::empty()),
        vec![],
        &RecordBatchOptions::new().with_row_count(Some(rows)),
    )
    .unwrap()
}

#[tokio::test]
async fn every_type_round_trips_through_spill_reload_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let batches = vec![every_type_batch(3000), every_type_batch(1000)];
    let expected = as_served(&arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap());

    let server = BinaryServer::start(&data, &["--durable"]);
    let mut client = server.client().await;
    put_batches(&mut client, "types", batches.clone()).await;
    let zero = put_batches(&mut client, "zero", vec![zero_columns(7)]).await;
    assert_eq!(zero["num_rows"], 7);
    assert_eq!(get_all(&mut client, "types").await, expected, "from memory");
    for name in ["types", "zero"] {
        action(&mut client, "spill", json!({ "name": name })).await.unwrap();
        assert_eq!(state_of(&mut client, name).await, "spilled");
    }
    assert_eq!(get_all(&mut client, "types").await, expected, "from disk");
    assert_eq!(
        get_all(&mut client, "zero").await.num_rows(),
        7,
        "zero columns, from disk"
    );
    // row ranges of the spilled flight
    let info = client
        .get_flight_info(FlightDescriptor::new_cmd(
            r#"{"op":"partition","source":"types","parts":3}"#,
        ))
        .await
        .unwrap();
    let parts = fetch(&mut client, &info).await.unwrap();
    assert_eq!(
        arrow::compute::concat_batches(&parts[0].schema(), &parts).unwrap(),
        expected
    );
    // reloaded into memory
    let info = client.get_flight_info(path(&["types"])).await.unwrap();
    assert_eq!(info_metadata(&info)["pinned"], false);
    action(&mut client, "pin", json!({"name": "types"})).await.unwrap();
    assert_eq!(state_of(&mut client, "types").await, "memory");
    let info = client.get_flight_info(path(&["types"])).await.unwrap();
    assert_eq!(info_metadata(&info)["pinned"], true);
    assert_eq!(get_all(&mut client, "types").await, expected, "reloaded");
    // SQL reads every type
    let info = client
        .get_flight_info(FlightDescriptor::new_cmd(
            "SELECT count(*) AS n, max(id) AS m FROM types",
        ))
        .await
        .unwrap();
    assert_eq!(
        pretty(&fetch(&mut client, &info).await.unwrap()),
        "+------+------+\n| n    | m    |\n+------+------+\n| 4000 | 2999 |\n+------+------+"
    );
    drop(client);
    server.stop().await;

    // a graceful restart, then a crash: both come back exactly
    for crash in [false, true] {
        let server = BinaryServer::start(&data, &["--durable"]);
        let mut client = server.client().await;
        assert_eq!(
            get_all(&mut client, "types").await,
            expected,
            "after restart (crash: {crash})"
        );
        assert_eq!(get_all(&mut client, "zero").await.num_rows(), 7, "crash: {crash}");
        drop(client);
        if crash {
            server.kill9();
        } else {
            server.stop().await;
        }
    }
}

#[tokio::test]
async fn a_disconnect_mid_upload_leaves_no_log_behind() {
    let server = TestServer::start_with(|c| {
        c.ephemeral = false;
        c.durable = true;
    })
    .await;
    let mut client = server.client().await;
    upload(&mut client, path(&["kept"]), vec![sample_batch(0, 100)])
        .await
        .unwrap();
    let flights = server.data_dir().join("flights");
    let files = || -> Vec<String> {
        std::fs::read_dir(&flights)
            .unwrap()
            .flatten()
            .filter(|e| e.path().is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    };
    // the upload's log is converted to Parquet in the background, and the log file retired after that; wait for
    // both so the directory is settled
    let deadline = Instant::now() + Duration::from_secs(20);
    while store_stats(&mut client).await["conversions"] != 1 || files().iter().any(|f| !f.ends_with(".parquet")) {
        assert!(Instant::now() < deadline, "the log was not converted: {:?}", files());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = files();
    // batches arrive (and are logged), then the client goes away without finishing
    let batches = (0..4).map(|i| sample_batch(i * 50_000, 50_000)).collect();
    let call = hanging_upload(server.addr, upload_messages(path(&["torn"]), batches).await).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !files().iter().any(|f| f.ends_with(".tmp")) {
        assert!(
            Instant::now() < deadline,
            "the upload's log never appeared: {:?}",
            files()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    let deadline = Instant::now() + Duration::from_secs(10);
    while files() != before {
        assert!(
            Instant::now() < deadline,
            "the log was left behind: {:?} (before: {before:?})",
            files()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(listed_ids(&mut client).await, vec![1], "nothing published");
    server.shutdown_and_wait().await;
}

async fn store_stats(client: &mut FlightClient) -> Value {
    action(client, "stats", json!({})).await.unwrap()["store"].clone()
}

#[tokio::test]
async fn a_full_disk_during_write_behind_refuses_only_when_memory_is_full() {
    // room in memory for two 20 MB flights, on disk for one
    let server = TestServer::start_with(|c| {
        c.memory_limit = "44MiB".parse().unwrap();
        c.disk_limit = Some("30MiB".parse().unwrap());
    })
    .await;
    let mut client = server.client().await;
    let rows = 600_000;
    for i in 0..3 {
        upload(
            &mut client,
            path(&[&format!("t{i}")]),
            vec![sample_batch(i * rows as i64, rows)],
        )
        .await
        .unwrap();
    }
    // t0 went to disk to make room for t2; t1 cannot follow (the disk is full), so the next upload has no room
    let e = upload(&mut client, path(&["t3"]), vec![sample_batch(3 * rows as i64, rows)])
        .await
        .unwrap_err();
    let message = e.to_string();
    assert_eq!(code(e), Code::ResourceExhausted, "{message}");
    assert!(message.contains("disk limit"), "{message}");
    let stats = store_stats(&mut client).await;
    assert!(stats["spilled_bytes"].as_u64().unwrap() <= 30 << 20, "{stats}");
    assert!(stats["resident_bytes"].as_u64().unwrap() <= 44 << 20, "{stats}");
    // everything acknowledged is intact, the refused upload left nothing, and the server keeps serving
    for i in 0..3 {
        let got = fetch_all(&mut client, path(&[&format!("t{i}")])).await.unwrap();
        assert_eq!(got, sample_batch(i * rows as i64, rows), "t{i}");
    }
    assert_eq!(listed_ids(&mut client).await, vec![1, 2, 3]);
    let leftovers: Vec<_> = std::fs::read_dir(server.data_dir())
        .unwrap()
        .flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
        .filter(|e| e.path().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // dropping a flight makes room again
    action(&mut client, "drop", json!({"name": "t0"})).await.unwrap();
    upload(&mut client, path(&["t3"]), vec![sample_batch(3 * rows as i64, rows)])
        .await
        .unwrap();
    server.shutdown_and_wait().await;
}

#[tokio::test]
async fn a_graceful_restart_at_the_disk_limit_keeps_every_acknowledged_upload() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args = ["--memory-limit", "24MiB", "--disk-limit", "48MiB"];
    let server = BinaryServer::start(&data, &args);
    let mut client = server.client().await;
    let mut acknowledged = Vec::new();
    for i in 0..15 {
        let batch = sample_batch(i * 100_000, 200_000);
        match upload(&mut client, path(&[&format!("t{i}")]), vec![batch.clone()]).await {
            Ok(put) => acknowledged.push((put["id"].as_u64().unwrap(), batch)),
            Err(e) => assert_eq!(code(e), Code::ResourceExhausted),
        }
    }
    assert!(acknowledged.len() >= 5, "{} uploads acknowledged", acknowledged.len());
    assert!(acknowledged.len() < 15, "the disk limit was reached");
    drop(client);
    server.stop().await;

    let server = BinaryServer::start(&data, &args);
    let mut client = server.client().await;
    let listed = listed_ids(&mut client).await;
    assert_eq!(listed, acknowledged.iter().map(|(id, _)| *id).collect::<Vec<_>>());
    for (id, batch) in &acknowledged {
        assert_eq!(
            &fetch_all(&mut client, path(&[&id.to_string()])).await.unwrap(),
            batch,
            "flight {id}"
        );
    }
    drop(client);
    server.stop().await;
}

#[tokio::test]
async fn sql_over_a_flight_dropped_meanwhile_answers_a_result_or_not_found() {
    let server = TestServer::start_with(|c| c.memory_limit = "256MiB".parse().unwrap()).await;
    let mut client = server.client().await;
    let mut codes = std::collections::BTreeMap::new();
    for round in 0..40 {
        let name = format!("t{round}");
        let batch = sample_batch(0, 50_000);
        upload(&mut client, path(&[&name]), vec![batch]).await.unwrap();
        action(&mut client, "spill", json!({ "name": name })).await.unwrap();
        let sql = format!("SELECT count(*) AS n, sum(id) AS s FROM {name} WHERE value > {round}");
        let mut query_client = server.client().await;
        let query = tokio::spawn(async move {
            let info = query_client.get_flight_info(FlightDescriptor::new_cmd(sql)).await?;
            fetch(&mut query_client, &info).await
        });
        tokio::time::sleep(Duration::from_micros(200 * (round % 10))).await;
        action(&mut client, "drop", json!({ "name": name })).await.unwrap();
        let code = match query.await.unwrap() {
            Ok(rows) => {
                assert_eq!(rows[0].num_rows(), 1);
                Code::Ok
            }
            Err(e) => code(e),
        };
        assert!(matches!(code, Code::Ok | Code::NotFound), "round {round}: {code:?}");
        *codes.entry(format!("{code:?}")).or_insert(0) += 1;
    }
    assert!(!codes.is_empty(), "{codes:?}");
    server.shutdown_and_wait().await;
}

#[tokio::test]
async fn a_second_server_on_a_live_data_dir_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first = BinaryServer::start(&data, &[]);
    let mut client = first.client().await;
    upload(&mut client, path(&["t"]), vec![sample_batch(0, 10)])
        .await
        .unwrap();
    let second = std::process::Command::new(BIN)
        .args(["--port", "0", "--http-port", "off", "--log", "warn", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("another flightbay server is using the data directory"),
        "{stderr}"
    );
    // the first one is untouched
    assert_eq!(fetch_all(&mut client, path(&["t"])).await.unwrap(), sample_batch(0, 10));
    drop(client);
    first.stop().await;
}

#[tokio::test]
async fn datafusion_spills_count_against_the_disk_limit() {
    let sql = "SELECT count(*) AS n FROM (SELECT name, id, count(*) FROM \
               (SELECT * FROM t0 UNION ALL SELECT * FROM t1 UNION ALL SELECT * FROM t2) GROUP BY name, id)";
    for (limit, fits) in [("1MiB", false), ("400MiB", true)] {
        let server = TestServer::start_with(|c| {
            c.memory_limit = "40MiB".parse().unwrap();
            c.disk_limit = Some(limit.parse().unwrap());
        })
        .await;
        let mut client = server.client().await;
        for i in 0..3 {
            upload(
                &mut client,
                path(&[&format!("t{i}")]),
                vec![sample_batch(i * 300_000, 300_000)],
            )
            .await
            .unwrap();
        }
        // the flights fill most of the budget: the aggregation has to spill
        let result = client.get_flight_info(FlightDescriptor::new_cmd(sql)).await;
        if fits {
            let rows = fetch(&mut client, &result.unwrap()).await.unwrap();
            assert_eq!(
                pretty(&rows),
                "+--------+\n| n      |\n+--------+\n| 900000 |\n+--------+"
            );
        } else {
            let e = result.unwrap_err();
            let message = e.to_string();
            assert_eq!(code(e), Code::ResourceExhausted, "{message}");
            assert!(message.contains("disk"), "{message}");
        }
        server.shutdown_and_wait().await;
    }
}

#[tokio::test]
async fn sort_by_gives_the_same_stable_order_in_memory_and_through_the_spilling_sort() {
    let rows = 400_000;
    let batches: Vec<RecordBatch> = (0..8).map(|i| sample_batch(i * 50_000, 50_000)).collect();
    // name ascending (13 values: ties everywhere), value descending with nulls last, ties in input order
    let mut expected: Vec<i64> = (0..rows as i64).collect();
    let name = |i: i64| format!("name-{}", i % 13);
    let value = |i: i64| (i % 7 != 0).then_some(i as f64 * 0.5);
    expected.sort_by(|&a, &b| {
        name(a).cmp(&name(b)).then_with(|| match (value(a), value(b)) {
            (Some(x), Some(y)) => y.total_cmp(&x),
            (x, y) => y.is_none().cmp(&x.is_none()).reverse(),
        })
    });
    let op = r#"{"op":"sort_by","source":"t","keys":[["name","ascending"],["value","descending"]],"null_placement":"at_end"}"#;
    // 1 GiB: sorted in memory. 20 MiB with the 14 MB input spilled: its rows and the in-memory sort's working
    // memory (40 bytes a row) do not fit together, so the sort goes through DataFusion's, reading from disk.
    for limit in ["1GiB", "20MiB"] {
        let server = TestServer::start_with(|c| c.memory_limit = limit.parse().unwrap()).await;
        let mut client = server.client().await;
        upload(&mut client, path(&["t"]), batches.clone()).await.unwrap();
        action(&mut client, "spill", json!({"name": "t"})).await.unwrap();
        let sorted = fetch_all(&mut client, FlightDescriptor::new_cmd(op)).await.unwrap();
        let ids = sorted.column(0).as_primitive::<Int64Type>().values().to_vec();
        assert_eq!(ids.len(), rows, "{limit}");
        assert!(ids == expected, "{limit}: the order differs");
        server.shutdown_and_wait().await;
    }
}

/// Uploads run while the server is killed; after each restart every acknowledged upload is back byte for byte,
/// nothing half-uploaded is listed, and ids only grow.
#[tokio::test]
async fn kill_9_during_durable_uploads_and_conversions_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args = ["--durable", "--memory-limit", "32MiB"];
    let mut acknowledged: Vec<(u64, RecordBatch)> = Vec::new();
    // Uploads whose answer the kill cut off may or may not have been committed; those that were are whole.
    let mut unanswered: Vec<(u64, RecordBatch)> = Vec::new();
    let mut highest = 0;
    for round in 0..8u64 {
        let server = BinaryServer::start(&data, &args);
        let mut client = server.client().await;
        let listed = listed_ids(&mut client).await;
        for (id, batch) in &acknowledged {
            assert!(
                listed.contains(id),
                "round {round}: acknowledged flight {id} is missing"
            );
            assert_eq!(
                &fetch_all(&mut client, path(&[&id.to_string()])).await.unwrap(),
                batch,
                "flight {id}"
            );
        }
        for id in &listed {
            if !acknowledged.iter().any(|(a, _)| a == id) {
                let got = fetch_all(&mut client, path(&[&id.to_string()])).await.unwrap();
                let whole = unanswered.iter().any(|(_, b)| *b == got);
                assert!(whole, "round {round}: flight {id} is not an upload that was sent whole");
                acknowledged.push((*id, got));
                highest = highest.max(*id);
            }
        }
        acknowledged.sort_by_key(|(id, _)| *id);
        // uploads in the background; the kill lands during one of them or during a conversion
        let addr = server.addr.clone();
        let uploads = tokio::spawn(async move {
            let mut c = FlightClient::new(connect(addr).await);
            let mut done = Vec::new();
            for i in 0..50u64 {
                let batch = sample_batch((round * 1000 + i) as i64 * 10_000, 20_000 + (i as usize % 7) * 5000);
                match upload(&mut c, path(&[&format!("r{round}_{i}")]), vec![batch.clone()]).await {
                    Ok(put) => done.push((Some(put["id"].as_u64().unwrap()), batch)),
                    Err(_) => {
                        done.push((None, batch));
                        break;
                    }
                }
            }
            done
        });
        tokio::time::sleep(Duration::from_millis(150 + 97 * round)).await;
        drop(client);
        server.kill9();
        let done = uploads.await.unwrap();
        unanswered.clear();
        for (id, batch) in done {
            match id {
                Some(id) => {
                    assert!(id > highest, "ids only grow: {id} after {highest}");
                    highest = id;
                    acknowledged.push((id, batch));
                }
                None => unanswered.push((0, batch)),
            }
        }
    }
    let server = BinaryServer::start(&data, &args);
    let mut client = server.client().await;
    let listed = listed_ids(&mut client).await;
    assert!(acknowledged.iter().all(|(id, _)| listed.contains(id)), "{listed:?}");
    drop(client);
    server.stop().await;
    let leftovers: Vec<_> = std::fs::read_dir(data.join("flights"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
