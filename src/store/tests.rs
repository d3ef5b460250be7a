//! The store's invariants, tested on the store itself: the budget is never exceeded, eviction follows LRU order,
//! pinned flights stay, the background writer writes before memory is needed (superseded flights first), appends
//! share segments, the disk limit holds, and a durable store recovers exactly what it acknowledged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use futures::TryStreamExt;

use super::*;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("s", DataType::Utf8, false),
    ]))
}

/// `rows` rows starting at `start`: 8 + 8 + 4 bytes (id, offset, a 4-byte string) per row in memory.
fn batch(start: i64, rows: i64) -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(start..start + rows)),
            Arc::new(StringArray::from_iter_values(
                (start..start + rows).map(|i| format!("{:04}", i % 10_000)),
            )),
        ],
    )
    .unwrap()
}

const ROWS: i64 = 50_000;

/// Bytes of one flight of [`ROWS`] rows.
fn flight_bytes() -> usize {
    batch_bytes(&batch(0, ROWS))
}

async fn open(dir: &std::path::Path, memory_limit: usize, configure: impl FnOnce(&mut StoreConfig)) -> FlightStore {
    let mut config = StoreConfig {
        memory_limit,
        high_water: DEFAULT_HIGH_WATER,
        data_dir: dir.to_path_buf(),
        disk_limit: None,
        durable: false,
        ephemeral: false,
    };
    configure(&mut config);
    // A store dropped just before (a simulated crash) lets go of the directory's lock once its background task
    // notices; wait for that rather than fail.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match FlightStore::open(config.clone()).await {
            Ok(store) => return store,
            Err(e) if e.to_string().contains("another flightbay") && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("open: {e}"),
        }
    }
}

async fn put(store: &FlightStore, name: &str, mode: PutMode, batches: Vec<RecordBatch>) -> FlightId {
    let mut writer = store.writer(schema());
    for b in batches {
        writer.push(b).await.unwrap();
        assert!(store.budget().used() <= store.budget().limit(), "over the budget");
    }
    let pending = writer.finish().await.unwrap();
    let target = PutTarget {
        name: QualifiedName::parse(name).unwrap(),
        mode,
    };
    store.publish_upload(pending, Some(&target)).await.unwrap().id()
}

async fn rows_of(store: &FlightStore, id: FlightId) -> Vec<RecordBatch> {
    let flight = store.get(id).unwrap();
    store.read(&flight, None, None).try_collect().await.unwrap()
}

fn concat(batches: &[RecordBatch]) -> RecordBatch {
    arrow::compute::concat_batches(&schema(), batches).unwrap()
}

/// Polls `cond` for up to 10 s.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn has_file(store: &FlightStore, id: FlightId) -> bool {
    let st = store.state();
    let entry = st.flights.peek(&id).unwrap();
    st.on_disk(&entry.segments)
}

#[tokio::test]
async fn budget_holds_and_eviction_follows_lru_order() {
    let dir = tempfile::tempdir().unwrap();
    // With the high-water mark at the budget, nothing is written before a writer needs room, so what is written and
    // evicted then is exactly the least recently used flight.
    let store = open(dir.path(), flight_bytes() * 3 + flight_bytes() / 2, |c| {
        c.high_water = 1.0
    })
    .await;
    let a = put(&store, "a", PutMode::Error, vec![batch(0, ROWS)]).await;
    let b = put(&store, "b", PutMode::Error, vec![batch(1, ROWS)]).await;
    let c = put(&store, "c", PutMode::Error, vec![batch(2, ROWS)]).await;
    // a is used again: b is now the least recently used
    store.get(a).unwrap();
    let d = put(&store, "d", PutMode::Error, vec![batch(3, ROWS)]).await;
    assert!(store.budget().peak() <= store.budget().limit());
    assert_eq!(
        store.get(b).unwrap().state(),
        "spilled",
        "the least recently used flight left memory"
    );
    for id in [a, c, d] {
        assert_eq!(store.get(id).unwrap().state(), "memory", "flight {id}");
    }
    // everything reads back, spilled or not
    for (id, start) in [(a, 0), (b, 1), (c, 2), (d, 3)] {
        assert_eq!(concat(&rows_of(&store, id).await), batch(start, ROWS), "flight {id}");
    }
    store.close().await.unwrap();
}

#[tokio::test]
async fn pinned_flights_stay_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), flight_bytes() * 2 + flight_bytes() / 2, |_| {}).await;
    let a = put(&store, "a", PutMode::Error, vec![batch(0, ROWS)]).await;
    store.pin(a).await.unwrap();
    let b = put(&store, "b", PutMode::Error, vec![batch(1, ROWS)]).await;
    let c = put(&store, "c", PutMode::Error, vec![batch(2, ROWS)]).await;
    assert_eq!(store.get(a).unwrap().state(), "memory", "pinned");
    assert_eq!(store.get(b).unwrap().state(), "spilled");
    assert_eq!(store.get(c).unwrap().state(), "memory");
    assert!(store.spill(a).await.is_err(), "a pinned flight cannot be spilled");
    // pinning a spilled flight brings it back
    store.unpin(a).unwrap();
    store.pin(b).await.unwrap();
    assert_eq!(store.get(b).unwrap().state(), "memory");
    assert_eq!(store.stats().reloads, 1);
    store.close().await.unwrap();
}

#[tokio::test]
async fn the_background_writer_writes_before_memory_is_needed() {
    let dir = tempfile::tempdir().unwrap();
    // high water at half of a budget of four flights: after the third upload the oldest are written out
    let store = open(dir.path(), flight_bytes() * 4 + 1000, |c| c.high_water = 0.5).await;
    let a = put(&store, "a", PutMode::Error, vec![batch(0, ROWS)]).await;
    let b = put(&store, "b", PutMode::Error, vec![batch(1, ROWS)]).await;
    let c = put(&store, "c", PutMode::Error, vec![batch(2, ROWS)]).await;
    eventually("the least recently used flight written", || has_file(&store, a)).await;
    // written, and still in memory: nothing is evicted before room is needed
    assert_eq!(store.get(a).unwrap().state(), "memory");
    // one flight on disk brings what cannot be freed at once back under the mark: the writer stops there
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!has_file(&store, b) && !has_file(&store, c), "{:?}", store.stats());
    // the next uploads only drop the memory of flights already written: no writer waits
    put(&store, "d", PutMode::Error, vec![batch(3, ROWS)]).await;
    put(&store, "e", PutMode::Error, vec![batch(4, ROWS)]).await;
    assert_eq!(store.stats().writer_waits, 0, "{:?}", store.stats());
    assert_eq!(store.get(a).unwrap().state(), "spilled");
    assert_eq!(concat(&rows_of(&store, b).await), batch(1, ROWS));
    store.close().await.unwrap();
}

#[tokio::test]
async fn superseded_flights_are_written_first() {
    let dir = tempfile::tempdir().unwrap();
    // nothing is written until the high-water mark (60 % of five flights) is passed by the fourth upload
    let store = open(dir.path(), flight_bytes() * 5, |c| c.high_water = 0.6).await;
    let old = put(&store, "kept", PutMode::Error, vec![batch(0, ROWS)]).await;
    let first = put(&store, "x", PutMode::Error, vec![batch(1, ROWS)]).await;
    put(&store, "x", PutMode::Replace, vec![batch(2, ROWS)]).await;
    assert!(!has_file(&store, old) && !has_file(&store, first));
    put(&store, "y", PutMode::Error, vec![batch(3, ROWS)]).await;
    eventually("the superseded flight written", || has_file(&store, first)).await;
    assert!(
        !has_file(&store, old),
        "the superseded flight went first, though the other one is older"
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn appends_share_segments_in_memory_and_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), flight_bytes() * 10, |_| {}).await;
    let base = put(&store, "t", PutMode::Error, vec![batch(0, ROWS)]).await;
    store.spill(base).await.unwrap();
    let files_before = std::fs::read_dir(dir.path().join("flights")).unwrap().count();
    let appended = put(&store, "t", PutMode::Append, vec![batch(ROWS, 10)]).await;
    let flight = store.get(appended).unwrap();
    assert_eq!(flight.parts.len(), 2, "the parent's segment plus the new one");
    assert_eq!(flight.meta.lineage.inputs, vec![base]);
    assert_eq!(
        std::fs::read_dir(dir.path().join("flights")).unwrap().count(),
        files_before,
        "the parent's rows were not rewritten"
    );
    assert_eq!(concat(&rows_of(&store, appended).await), batch(0, ROWS + 10));
    // row ranges across the segment boundary
    let part: Vec<RecordBatch> = store
        .read(&flight, Some((ROWS as u64 - 3, 6)), Some(vec![0]))
        .try_collect()
        .await
        .unwrap();
    let ids = arrow::compute::concat_batches(&part[0].schema(), &part).unwrap();
    assert_eq!(
        ids.column(0).as_ref(),
        &Int64Array::from_iter_values(ROWS - 3..ROWS + 3) as &dyn arrow::array::Array
    );
    // dropping the parent keeps the shared segment for the child
    store.drop_flight(base).await.unwrap();
    assert_eq!(concat(&rows_of(&store, appended).await), batch(0, ROWS + 10));
    store.close().await.unwrap();
}

#[tokio::test]
async fn the_disk_limit_drops_recomputable_flights_then_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), flight_bytes() * 10, |c| {
        c.disk_limit = Some(flight_bytes() as u64 * 5 / 2)
    })
    .await;
    let upload = put(&store, "u", PutMode::Error, vec![batch(0, ROWS)]).await;
    store.spill(upload).await.unwrap();
    // a derived flight on disk
    let mut writer = store.derived_writer(schema());
    writer.push(batch(5, ROWS)).await.unwrap();
    let derived = store
        .publish_derived(
            writer.finish().await.unwrap(),
            Lineage {
                op: "take".into(),
                params: serde_json::json!({}),
                inputs: vec![upload],
            },
            None,
        )
        .await
        .unwrap()
        .id();
    store.spill(derived).await.unwrap();
    // a second upload only fits on disk once the derived flight is gone
    let second = put(&store, "v", PutMode::Error, vec![batch(1, ROWS)]).await;
    store.spill(second).await.unwrap();
    assert!(!store.contains(derived), "the recomputable flight was dropped");
    assert_eq!(store.stats().evictions.disk_limit_drops, 1);
    let third = put(&store, "w", PutMode::Error, vec![batch(2, ROWS)]).await;
    let e = store.spill(third).await.unwrap_err();
    assert!(matches!(e, Error::ResourceExhausted(_)), "{e}");
    assert_eq!(store.get(third).unwrap().state(), "memory", "refused, and still there");
    for (id, start) in [(upload, 0), (second, 1), (third, 2)] {
        assert_eq!(concat(&rows_of(&store, id).await), batch(start, ROWS));
    }
    store.close().await.unwrap();
}

/// The IPC messages pyarrow or any Flight client would send for `batches`.
fn messages(batches: &[RecordBatch]) -> Vec<arrow_flight::FlightData> {
    let options = arrow::ipc::writer::IpcWriteOptions::default();
    let generator = arrow::ipc::writer::IpcDataGenerator::default();
    let mut tracker = arrow::ipc::writer::DictionaryTracker::new(false);
    let mut out = vec![arrow_flight::FlightData::from(arrow_flight::SchemaAsIpc::new(
        &schema(),
        &options,
    ))];
    for b in batches {
        let (_, encoded) = generator
            .encode(b, &mut tracker, &options, &mut Default::default())
            .unwrap();
        out.push(encoded.into());
    }
    out
}

async fn durable_put(store: &FlightStore, name: &str, batches: &[RecordBatch]) -> FlightId {
    let log = store.upload_log().unwrap();
    assert!(log.is_some(), "a durable store logs uploads");
    for m in messages(batches) {
        log.as_ref()
            .unwrap()
            .append(&m.data_header, &m.data_body)
            .await
            .unwrap();
    }
    let mut writer = store.writer(schema()).with_log(log);
    for b in batches {
        writer.push(b.clone()).await.unwrap();
    }
    let pending = writer.finish().await.unwrap();
    let target = PutTarget {
        name: QualifiedName::parse(name).unwrap(),
        mode: PutMode::Error,
    };
    store.publish_upload(pending, Some(&target)).await.unwrap().id()
}

#[tokio::test]
async fn a_durable_store_recovers_what_it_acknowledged_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let durable = |c: &mut StoreConfig| c.durable = true;
    let store = open(dir.path(), flight_bytes() * 10, durable).await;
    let a = durable_put(&store, "a", &[batch(0, ROWS), batch(ROWS, 7)]).await;
    assert!(has_file(&store, a), "acknowledged means on disk");
    // an upload that never finishes: its log disappears with it
    let torn = store.upload_log().unwrap().unwrap();
    for m in messages(&[batch(9, 10)]) {
        torn.append(&m.data_header, &m.data_body).await.unwrap();
    }
    drop(torn);
    // a crash (no close): leftovers of an unfinished write are on disk too
    let flights = dir.path().join("flights");
    spill::write_raw(&flights.join("unfinished.arrows.tmp"), b"torn").unwrap();
    spill::write_raw(&flights.join("orphan.parquet"), b"no catalog entry").unwrap();
    drop(store);

    let store = open(dir.path(), flight_bytes() * 10, durable).await;
    assert_eq!(store.list().len(), 1);
    assert_eq!(concat(&rows_of(&store, a).await), batch(0, ROWS + 7));
    // (a conversion to Parquet may already be under way: its temp file is not a leftover)
    let left: Vec<String> = std::fs::read_dir(&flights)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".parquet.tmp"))
        .collect();
    assert_eq!(left.len(), 1, "only the acknowledged upload's file is left: {left:?}");
    // ids are never reused
    let b = durable_put(&store, "b", &[batch(1, 5)]).await;
    assert!(b > a);
    // the logs are converted to Parquet once nothing else is going on
    let formats = || -> Vec<Format> {
        let st = store.state();
        st.segments
            .values()
            .filter_map(|s| s.file.as_ref().map(|f| f.format))
            .collect()
    };
    eventually("the logs converted", || formats() == [Format::Parquet, Format::Parquet]).await;
    assert!(store.stats().conversions >= 1);
    assert_eq!(concat(&rows_of(&store, a).await), batch(0, ROWS + 7));
    store.close().await.unwrap();
    drop(store);
    let store = open(dir.path(), flight_bytes() * 10, durable).await;
    assert_eq!(concat(&rows_of(&store, b).await), batch(1, 5));
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_second_store_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1 << 20, |_| {}).await;
    let config = StoreConfig {
        memory_limit: 1 << 20,
        high_water: DEFAULT_HIGH_WATER,
        data_dir: dir.path().to_path_buf(),
        disk_limit: None,
        durable: false,
        ephemeral: false,
    };
    let e = FlightStore::open(config).await.unwrap_err();
    assert!(e.to_string().contains("another flightbay server"), "{e}");
    store.close().await.unwrap();
}

#[tokio::test]
async fn restart_keeps_names_lineage_and_segments_of_appends() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), flight_bytes() * 10, |_| {}).await;
    let base = put(&store, "sales.t", PutMode::Error, vec![batch(0, ROWS)]).await;
    let appended = put(&store, "sales.t", PutMode::Append, vec![batch(ROWS, 3)]).await;
    store.drop_flight(base).await.unwrap();
    store.close().await.unwrap();
    drop(store);
    let store = open(dir.path(), flight_bytes() * 10, |_| {}).await;
    assert_eq!(
        store
            .resolve(&FlightRef::Name(QualifiedName::parse("sales.t").unwrap()))
            .unwrap(),
        appended
    );
    assert!(!store.contains(base));
    assert_eq!(store.peek_meta(appended).unwrap().lineage.inputs, vec![base]);
    assert_eq!(concat(&rows_of(&store, appended).await), batch(0, ROWS + 3));
    store.close().await.unwrap();
}
