//! Micro-benchmarks of flightbay's hot paths, through the public library API: parsing tickets and CMD
//! descriptors, inserting a flight into the store and looking it up, framing a stored flight into gRPC messages
//! (what DoGet does; arrow-flight's copying encoder next to it) and decoding Flight messages into batches (what
//! DoPut does).
//!
//! ```text
//! cargo bench --bench hot_paths                 # all of them (release profile)
//! cargo bench --bench hot_paths -- encode       # only names containing "encode"
//! ```
//!
//! The data is the benchmark table of `benches/flight_bench.py` (id int64, ts timestamp[ms], sensor int32, value
//! float64, label string), 1M rows in 65 536-row batches that went through the Flight IPC decoder, so the stored
//! batches are slices of received message buffers exactly as after a DoPut.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, Float64Array, Int32Array, Int64Array, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::ipc::writer::StreamEncoder;
use arrow::record_batch::RecordBatch;
use arrow_flight::FlightData;
use arrow_flight::decode::{DecodedPayload, FlightDataDecoder};
use arrow_flight::encode::{FlightDataEncoder, FlightDataEncoderBuilder};
use arrow_flight::error::FlightError;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use futures::executor::block_on;
use futures::{StreamExt, TryStreamExt};

use flightbay::protocol::flight_data::{encode_batch, split_for_wire};
use flightbay::protocol::{Command, Ticket};
use flightbay::store::{FlightId, FlightRef, FlightStore, PutMode, PutTarget, QualifiedName, StoreConfig, batch_bytes};
use tokio::runtime::Runtime;

const ROWS: usize = 1_000_000;
const CHUNK_ROWS: usize = 65_536;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), false),
        Field::new("sensor", DataType::Int32, false),
        Field::new("value", DataType::Float64, false),
        Field::new("label", DataType::Utf8, false),
    ]))
}

/// Deterministic columns (a small LCG stands in for numpy's generator; the values only need to look like data).
fn table(rows: usize) -> Vec<RecordBatch> {
    let schema = schema();
    let mut state: u64 = 42;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        state >> 33
    };
    (0..rows)
        .step_by(CHUNK_ROWS)
        .map(|start| {
            let n = CHUNK_ROWS.min(rows - start);
            let ids = start as i64..(start + n) as i64;
            let columns: Vec<ArrayRef> = vec![
                Arc::new(Int64Array::from_iter_values(ids.clone())),
                Arc::new(TimestampMillisecondArray::from_iter_values(
                    ids.clone().map(|i| 1_704_067_200_000 + i * 100),
                )),
                Arc::new(Int32Array::from_iter_values((0..n).map(|_| (next() % 100) as i32))),
                Arc::new(Float64Array::from_iter_values(
                    (0..n).map(|_| next() as f64 / 2_147_483_648.0),
                )),
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|_| format!("label-{}", next() % 20)),
                )),
            ];
            RecordBatch::try_new(Arc::clone(&schema), columns).expect("valid batch")
        })
        .collect()
}

/// arrow-flight's encoder as DoGet used it before it framed stored buffers itself (and still does for dictionary
/// flights): batches cut into row slices of about 2 MiB by sliced size, the encoder's own splitting turned off.
fn split_flight_data_encoder(schema: SchemaRef, batches: Vec<RecordBatch>) -> FlightDataEncoder {
    let pieces = batches.into_iter().flat_map(split_for_wire).map(Ok);
    FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .with_max_flight_data_size(usize::MAX)
        .build(futures::stream::iter(pieces))
}

/// Every message arrow-flight's encoder sends for `batches` (the input of the DoPut benchmark).
fn flight_data_messages(schema: SchemaRef, batches: Vec<RecordBatch>) -> Vec<FlightData> {
    block_on(split_flight_data_encoder(schema, batches).try_collect()).expect("encodes")
}

/// Drains an encoder the way a server does (each message dropped once sent); returns the body bytes.
fn drain(encoder: FlightDataEncoder) -> usize {
    block_on(
        encoder
            .map(|m| m.expect("encodes").data_body.len())
            .fold(0, |n, len| async move { n + len }),
    )
}

/// DoGet's own path: each batch cut to size, encoded with the stored buffers as bodies, framed for gRPC; returns
/// the bytes framed.
fn frame_like_do_get(schema: &Schema, batches: impl Iterator<Item = RecordBatch>) -> usize {
    let mut encoder = StreamEncoder::try_new(schema).expect("encoder");
    batches
        .flat_map(split_for_wire)
        .flat_map(|piece| encode_batch(&mut encoder, &piece).expect("encodes"))
        .map(|message| message.into_grpc_chunks().iter().map(|c| c.len()).sum::<usize>())
        .sum()
}

/// Decodes Flight messages into batches the way DoPut does.
fn decode(messages: Vec<FlightData>) -> Vec<RecordBatch> {
    let stream = futures::stream::iter(messages.into_iter().map(Ok::<_, FlightError>));
    let decoder = FlightDataDecoder::new(stream);
    block_on(
        decoder
            .try_filter_map(|d| async move {
                Ok(match d.payload {
                    DecodedPayload::RecordBatch(b) => Some(b),
                    _ => None,
                })
            })
            .try_collect(),
    )
    .expect("decodes")
}

/// An ephemeral store with room for everything the benchmarks insert (nothing spills), in a temp dir.
fn store(rt: &Runtime, dir: &tempfile::TempDir) -> FlightStore {
    let config = StoreConfig::ephemeral(usize::MAX / 2, dir.path().to_path_buf());
    rt.block_on(FlightStore::open(config)).expect("store opens")
}

/// Uploads `batches` under `name` (replacing it) the way DoPut does: writer, push each batch, finish, publish.
async fn insert(store: &FlightStore, batches: &[RecordBatch], name: &QualifiedName) -> FlightId {
    let mut writer = store.writer(schema());
    for batch in batches {
        writer.push(batch.clone()).await.expect("within budget");
    }
    let pending = writer.finish().await.expect("finishes");
    let target = PutTarget {
        name: name.clone(),
        mode: PutMode::Replace,
    };
    store
        .publish_upload(pending, Some(&target))
        .await
        .expect("publishes")
        .id()
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn parsing(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    g.bench_function("ticket_whole", |b| b.iter(|| Ticket::try_decode(black_box(b"42"))));
    g.bench_function("ticket_range", |b| {
        b.iter(|| Ticket::try_decode(black_box(b"42@1000000+500000")))
    });
    g.bench_function("ticket_encode", |b| {
        b.iter(|| black_box(Ticket::range(FlightId(42), 1_000_000, 500_000)).encode())
    });
    let sql = b"SELECT sensor, avg(value) AS mean_value, count(*) AS n FROM bench GROUP BY sensor";
    g.bench_function("command_sql", |b| b.iter(|| Command::try_decode(black_box(sql))));
    let partition = br#"{"op":"partition","source":42,"parts":8}"#;
    g.bench_function("command_partition", |b| {
        b.iter(|| Command::try_decode(black_box(partition)))
    });
    let sort =
        br#"{"op":"sort_by","source":"sales.trips","keys":[["fare","descending"],"city"],"null_placement":"at_end"}"#;
    g.bench_function("command_sort_by", |b| b.iter(|| Command::try_decode(black_box(sort))));
    g.finish();
}

fn store_ops(c: &mut Criterion) {
    let batches = decode(flight_data_messages(schema(), table(ROWS)));
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store(&rt, &dir);
    // A store that already holds 1 000 named flights, so lookups go through populated maps.
    let small = &batches[..1];
    for i in 0..1_000 {
        let name = QualifiedName::parse(&format!("ns{}.flight{i}", i % 10)).expect("valid name");
        rt.block_on(insert(&store, small, &name));
    }
    let name = QualifiedName::parse("bench").expect("valid name");
    let id = rt.block_on(insert(&store, &batches, &name));

    let mut g = c.benchmark_group("store");
    g.bench_function("insert_1m_rows_16_batches", |b| {
        // Timed: writer, 16 pushes (accounting each batch), finish and publish. Not timed: dropping it again.
        let target = QualifiedName::parse("insert").expect("valid name");
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let id = insert(&store, &batches, &target).await;
                    total += start.elapsed();
                    store.drop_flight(id).await.expect("exists");
                }
                total
            })
        })
    });
    let by_name = FlightRef::Name(name.clone());
    g.bench_function("lookup_by_name", |b| b.iter(|| store.lookup(black_box(&by_name))));
    g.bench_function("get_by_id", |b| b.iter(|| store.get(black_box(id))));
    g.finish();
}

fn wire(c: &mut Criterion) {
    let stored = decode(flight_data_messages(schema(), table(ROWS)));
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store(&rt, &dir);
    let id = rt.block_on(insert(
        &store,
        &stored,
        &QualifiedName::parse("bench").expect("valid name"),
    ));
    let flight = store.get(id).expect("exists");
    let loaded = rt.block_on(store.load(&flight)).expect("the flight is in memory");
    let resident = || loaded.batches.iter();
    let bytes: usize = resident().map(batch_bytes).sum();

    let mut g = c.benchmark_group("wire");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.sample_size(20);
    g.bench_function("frame_stored_flight_like_do_get", |b| {
        b.iter(|| frame_like_do_get(&flight.meta.schema, resident().cloned()))
    });
    g.bench_function("encode_stored_flight_flight_data_encoder", |b| {
        b.iter(|| {
            drain(split_flight_data_encoder(
                Arc::clone(&flight.meta.schema),
                resident().cloned().collect(),
            ))
        })
    });
    g.bench_function("encode_stored_flight_encoder_default_split", |b| {
        b.iter(|| {
            let batches = resident().cloned().map(Ok).collect::<Vec<_>>();
            drain(
                FlightDataEncoderBuilder::new()
                    .with_schema(Arc::clone(&flight.meta.schema))
                    .build(futures::stream::iter(batches)),
            )
        })
    });
    let messages = flight_data_messages(Arc::clone(&flight.meta.schema), resident().cloned().collect());
    g.bench_function("decode_messages_like_do_put", |b| {
        b.iter_batched(|| messages.clone(), |m| decode(m).len(), BatchSize::LargeInput)
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = parsing, store_ops, wire
}
criterion_main!(benches);
