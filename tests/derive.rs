//! Derived flights: SQL and JSON ops, the result cache, single-flight and lineage.

use arrow::record_batch::RecordBatch;
use arrow_flight::{FlightClient, FlightDescriptor, FlightInfo};
use serde_json::{Value, json};
use tonic::Code;

use crate::common::*;

fn cmd(s: impl Into<String>) -> FlightDescriptor {
    FlightDescriptor::new_cmd(s.into())
}

async fn derive(client: &mut FlightClient, command: &str) -> (Value, Vec<RecordBatch>) {
    let info: FlightInfo = client.get_flight_info(cmd(command)).await.unwrap();
    let batches = fetch(client, &info).await.unwrap();
    (info_metadata(&info), batches)
}

async fn stats(client: &mut FlightClient) -> Value {
    action(client, "stats", json!({})).await.unwrap()["engine"]["cache"].clone()
}

async fn setup() -> (TestServer, FlightClient) {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    upload(
        &mut client,
        path(&["t"]),
        vec![sample_batch(0, 1000), sample_batch(1000, 1000)],
    )
    .await
    .unwrap();
    (server, client)
}

#[tokio::test]
async fn sql_results_are_new_flights() {
    let (server, mut client) = setup().await;
    let (meta, batches) = derive(
        &mut client,
        "SELECT name, count(*) AS n FROM t GROUP BY name ORDER BY name LIMIT 3",
    )
    .await;
    assert_eq!(meta["id"], 2);
    assert_eq!(meta["cache"], "miss");
    assert_eq!(meta["lineage"]["op"], "sql");
    assert_eq!(meta["lineage"]["inputs"], json!([1]));
    assert_eq!(
        pretty(&batches),
        "+---------+-----+\n\
         | name    | n   |\n\
         +---------+-----+\n\
         | name-0  | 154 |\n\
         | name-1  | 154 |\n\
         | name-10 | 154 |\n\
         +---------+-----+"
    );
    // the result is an ordinary flight: fetch it by id, list it, query it
    let by_id = fetch_all(&mut client, path(&["2"])).await.unwrap();
    assert_eq!(by_id.num_rows(), 3);
    assert_eq!(listed_ids(&mut client).await, vec![1, 2]);
    let (_, sum) = derive(&mut client, "SELECT sum(n) AS total FROM f2").await;
    assert_eq!(pretty(&sum), "+-------+\n| total |\n+-------+\n| 462   |\n+-------+");
    // namespaces are schemas
    upload(&mut client, path(&["sales", "t"]), vec![sample_batch(0, 10)])
        .await
        .unwrap();
    let (_, n) = derive(&mut client, "SELECT count(*) AS n FROM sales.t").await;
    assert_eq!(pretty(&n), "+----+\n| n  |\n+----+\n| 10 |\n+----+");
    server.shutdown_and_wait().await;
}

#[tokio::test]
async fn equivalent_sql_hits_the_cache() {
    let (server, mut client) = setup().await;
    let (a, _) = derive(&mut client, "SELECT id FROM t WHERE id < 10").await;
    let (b, _) = derive(&mut client, "select  id\nFROM   t   where id<10").await;
    assert_eq!(a["cache"], "miss");
    assert_eq!(b["cache"], "hit");
    assert_eq!(a["id"], b["id"]);
    // the same query through the flight id form shares nothing with a different input
    upload(&mut client, path(&["u"]), vec![sample_batch(0, 20)])
        .await
        .unwrap();
    let (c, rows) = derive(&mut client, "SELECT id FROM u WHERE id < 10").await;
    assert_eq!(c["cache"], "miss");
    assert_ne!(c["id"], a["id"]);
    assert_eq!(rows.iter().map(|b| b.num_rows()).sum::<usize>(), 10);
    let s = stats(&mut client).await;
    assert_eq!(
        (s["hits"].as_u64(), s["misses"].as_u64(), s["computations"].as_u64()),
        (Some(1), Some(2), Some(2))
    );
    server.shutdown_and_wait().await;
}

#[tokio::test]
async fn replace_upload_makes_the_same_sql_miss() {
    let (server, mut client) = setup().await;
    let query = "SELECT count(*) AS n FROM t";
    let (first, rows) = derive(&mut client, query).await;
    assert_eq!(pretty(&rows), "+------+\n| n    |\n+------+\n| 2000 |\n+------+");
    let replace = cmd(r#"{"op":"put","name":"t","mode":"replace"}"#);
    upload(&mut client, replace, vec![sample_batch(0, 5)]).await.unwrap();
    let (second, rows) = derive(&mut client, query).await;
    assert_eq!(second["cache"], "miss");
    assert_ne!(second["id"], first["id"]);
    assert_eq!(pretty(&rows), "+---+\n| n |\n+---+\n| 5 |\n+---+");
    // the old result still exists, by id, unchanged
    let old = fetch_all(&mut client, path(&[&first["id"].to_string()])).await.unwrap();
    assert_eq!(pretty(&[old]), "+------+\n| n    |\n+------+\n| 2000 |\n+------+");
    server.shutdown_and_wait().await;
}

#[tokio::test]
async fn dropped_results_are_recomputed_and_volatile_ones_never_cached() {
    let (server, mut client) = setup().await;
    let op = r#"{"op":"take","source":"t","indices":[5,1]}"#;
    let (a, _) = derive(&mut client, op).await;
    action(&mut client, "drop", json!({"id": a["id"]})).await.unwrap();
    let (b, rows) = derive(&mut client, op).await;
    assert_eq!(b["cache"], "miss");
    assert_ne!(a["id"], b["id"]);
    assert_eq!(pretty(&rows), pretty(&[sample_batch(5, 1), sample_batch(1, 1)]));

    let (r1, _) = derive(&mut client, "SELECT random() AS r, id FROM t LIMIT 1").await;
    let (r2, _) = derive(&mut client, "SELECT random() AS r, id FROM t LIMIT 1").await;
    assert_eq!(
        (r1["cache"].as_str(), r2["cache"].as_str()),
        (Some("miss"), Some("miss"))
    );
    assert_ne!(r1["id"], r2["id"]);
    let (f1, _) = derive(
        &mut client,
        r#"{"op":"filter","source":"t","predicate":"random() < 2"}"#,
    )
    .await;
    let (f2, _) = derive(
        &mut client,
        r#"{"op":"filter","source":"t","predicate":"random() < 2"}"#,
    )
    .await;
    assert_ne!(f1["id"], f2["id"]);
    assert_eq!(stats(&mut client).await["uncacheable"], 4);
    server.shutdown_and_wait().await;
}

#[tokio::test]
async fn sixteen_concurrent_identical_requests_compute_once() {
    let (server, _client) = setup().await;
    let query = "SELECT name, avg(value) AS v, max(id) AS m FROM t GROUP BY name ORDER BY name";
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let mut client = server.client().await;
        tasks.push(tokio::spawn(async move {
            let info = client.get_flight_info(cmd(query)).await.unwrap();
            info_metadata(&info)
        }));
    }
    let mut ids = Vec::new();
    let mut misses = 0;
    for t in tasks {
        let meta = t.await.unwrap();
        ids.push(meta["id"].as_u64().unwrap());
        misses += usize::from(meta["cache"] == "miss");
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "every caller got the same flight");
    assert_eq!(misses, 1);
    let mut client = server.client().await;
    let s = stats(&mut client).await;
    assert_eq!(s["computations"], 1);
    assert_eq!(s["hits"], 15);
    assert_eq!(listed_ids(&mut client).await, vec![1, 2]);
    server.shutdown_and_wait().await;
}

#[tokio::test]
async fn named_results_and_lineage() {
    let (server, mut client) = setup().await;
    let (sorted, _) = derive(
        &mut client,
        r#"{"op":"sort_by","source":"t","keys":[["id","descending"]],"name":"by_id"}"#,
    )
    .await;
    assert_eq!(sorted["name"], "by_id");
    let (head, rows) = derive(
        &mut client,
        r#"{"op":"head","source":"by_id","num_rows":2,"name":"top","namespace":"x"}"#,
    )
    .await;
    assert_eq!(pretty(&rows), pretty(&[sample_batch(1999, 1), sample_batch(1998, 1)]));
    assert_eq!(
        (head["name"].as_str(), head["namespace"].as_str()),
        (Some("top"), Some("x"))
    );
    // a hit still moves the requested name
    let (again, _) = derive(
        &mut client,
        r#"{"op":"head","source":"by_id","num_rows":2,"name":"again"}"#,
    )
    .await;
    assert_eq!(again["cache"], "hit");
    assert_eq!(again["id"], head["id"]);
    assert_eq!(again["names"], json!(["default.again", "x.top"]));

    let lineage = action(&mut client, "lineage", json!({"name": "top", "namespace": "x"}))
        .await
        .unwrap();
    assert_eq!(lineage["op"], "head");
    assert_eq!(lineage["params"], json!({"num_rows": 2}));
    assert_eq!(lineage["inputs"][0]["op"], "sort_by");
    assert_eq!(
        lineage["inputs"][0]["params"],
        json!({"keys": [["id", "descending"]], "null_placement": "at_end"})
    );
    assert_eq!(lineage["inputs"][0]["inputs"][0]["id"], 1);
    assert_eq!(lineage["inputs"][0]["inputs"][0]["op"], "upload");
    server.shutdown_and_wait().await;
}

#[tokio::test]
async fn ops_over_ids_names_and_partitions() {
    let (server, mut client) = setup().await;
    let (_, sliced) = derive(&mut client, r#"{"op":"slice","source":1,"offset":998,"length":4}"#).await;
    assert_eq!(pretty(&sliced), pretty(&[sample_batch(998, 4)]));
    let (_, selected) = derive(&mut client, r#"{"op":"select","source":"f1","columns":["name","id"]}"#).await;
    assert_eq!(
        selected[0]
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect::<Vec<_>>(),
        ["name", "id"]
    );
    let (_, dropped) = derive(
        &mut client,
        r#"{"op":"drop_columns","source":"t","columns":["ts","value"]}"#,
    )
    .await;
    assert_eq!(dropped[0].num_columns(), 2);
    let (_, renamed) = derive(
        &mut client,
        r#"{"op":"rename_columns","source":"t","names":{"id":"key"}}"#,
    )
    .await;
    assert_eq!(renamed[0].schema().field(0).name(), "key");
    let (filtered, rows) = derive(
        &mut client,
        r#"{"op":"filter","source":"t","predicate":"id % 500 = 0 AND value IS NOT NULL"}"#,
    )
    .await;
    assert_eq!(
        pretty(&rows),
        pretty(&[sample_batch(500, 1), sample_batch(1000, 1), sample_batch(1500, 1)])
    );
    assert_eq!(
        filtered["lineage"]["params"],
        json!({"predicate": "id % 500 = 0 AND value IS NOT NULL"})
    );
    let (s1, a) = derive(&mut client, r#"{"op":"shuffle","source":"t","seed":11}"#).await;
    let (s2, _) = derive(&mut client, r#"{"op":"shuffle","source":"t","seed":11}"#).await;
    let (_, c) = derive(&mut client, r#"{"op":"shuffle","source":"t","seed":12}"#).await;
    assert_eq!(s1["id"], s2["id"]);
    assert_ne!(pretty(&a), pretty(&c));
    let mut ids: Vec<i64> = a
        .iter()
        .flat_map(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<arrow::array::Int64Array>()
                .unwrap()
                .values()
                .to_vec()
        })
        .collect();
    ids.sort();
    assert_eq!(ids, (0..2000).collect::<Vec<_>>());
    server.shutdown_and_wait().await;
}

#[tokio::test]
async fn bad_derive_requests() {
    let (server, mut client) = setup().await;
    for (command, expected) in [
        ("SELEC 1", Code::InvalidArgument),
        ("SELECT nope FROM t", Code::InvalidArgument),
        ("SELECT * FROM missing", Code::NotFound),
        ("SELECT * FROM sales.missing", Code::NotFound),
        ("SELECT * FROM f99", Code::NotFound),
        ("CREATE TABLE x AS SELECT 1", Code::InvalidArgument),
        ("INSERT INTO t VALUES (1, 'a', 1.0, now())", Code::InvalidArgument),
        ("DROP TABLE t", Code::InvalidArgument),
        ("COPY t TO 'out.parquet'", Code::InvalidArgument),
        ("SET datafusion.execution.batch_size = 1", Code::InvalidArgument),
        (r#"{"op":"take","source":"missing","indices":[1]}"#, Code::NotFound),
        (r#"{"op":"take","source":1,"indices":[2000]}"#, Code::InvalidArgument),
        (r#"{"op":"take","source":1,"indices":[-1]}"#, Code::InvalidArgument),
        (r#"{"op":"slice","source":1,"offset":-1}"#, Code::InvalidArgument),
        (
            r#"{"op":"filter","source":1,"predicate":"nope > 1"}"#,
            Code::InvalidArgument,
        ),
        (
            r#"{"op":"filter","source":1,"predicate":"id + 1"}"#,
            Code::InvalidArgument,
        ),
        (r#"{"op":"sort_by","source":1,"keys":"nope"}"#, Code::InvalidArgument),
        (
            r#"{"op":"select","source":1,"columns":["nope"]}"#,
            Code::InvalidArgument,
        ),
        (
            r#"{"op":"join","source":1,"right":1,"keys":"nope"}"#,
            Code::InvalidArgument,
        ),
        (
            r#"{"op":"join","source":1,"right":1,"keys":"id"}"#,
            Code::InvalidArgument,
        ),
        (
            r#"{"op":"resample","source":1,"time_column":"ts","every":"1h","aggregations":{"value":"mode"}}"#,
            Code::InvalidArgument,
        ),
        (
            r#"{"op":"resample","source":1,"time_column":"ts","every":"often","aggregation_func":"sum"}"#,
            Code::InvalidArgument,
        ),
        (
            r#"{"op":"resample","source":1,"time_column":"id","every":"1h","aggregation_func":"sum"}"#,
            Code::InvalidArgument,
        ),
        (
            r#"{"op":"resample","source":1,"time_column":"ts","every":"1h","aggregations":{"name":"mean"}}"#,
            Code::InvalidArgument,
        ),
    ] {
        let e = client.get_flight_info(cmd(command)).await.unwrap_err();
        assert_eq!(code(e), expected, "{command}");
    }
    let e = client.get_flight_info(cmd("SELECT nope FROM t")).await.unwrap_err();
    assert!(
        e.to_string().contains("nope"),
        "DataFusion's message reaches the client: {e}"
    );
    assert_eq!(
        listed_ids(&mut client).await,
        vec![1],
        "no failed request left a flight"
    );
    server.shutdown_and_wait().await;
}

#[tokio::test]
async fn query_over_the_memory_budget_is_resource_exhausted() {
    let server = TestServer::start_with(|c| {
        c.memory_limit = "4MiB".parse().unwrap();
        c.disk_limit = Some("16MiB".parse().unwrap());
    })
    .await;
    let mut client = server.client().await;
    for i in 0..4 {
        upload(&mut client, path(&["big"]), vec![sample_batch(i * 50_000, 50_000)])
            .await
            .map(|_| ())
            .or_else(|e| {
                if code(e) == Code::AlreadyExists {
                    Ok(())
                } else {
                    Err(())
                }
            })
            .unwrap();
    }
    let e = client
        .get_flight_info(cmd("SELECT a.id, b.name FROM big a JOIN big b ON a.name = b.name"))
        .await
        .unwrap_err();
    let message = e.to_string();
    assert_eq!(code(e), Code::ResourceExhausted);
    assert!(message.contains("flightbay: "), "{message}");
    server.shutdown_and_wait().await;
}

#[tokio::test]
async fn order_by_works_under_a_small_budget() {
    let server = TestServer::start_with(|c| c.memory_limit = "4MiB".parse().unwrap()).await;
    let mut client = server.client().await;
    upload(&mut client, path(&["t"]), vec![sample_batch(0, 3000)])
        .await
        .unwrap();
    let (_, rows) = derive(&mut client, "SELECT id FROM t ORDER BY id DESC LIMIT 2").await;
    assert_eq!(
        pretty(&rows),
        "+------+\n| id   |\n+------+\n| 2999 |\n| 2998 |\n+------+"
    );
    let (_, all) = derive(&mut client, "SELECT id, name FROM t ORDER BY name, id DESC").await;
    assert_eq!(all.iter().map(|b| b.num_rows()).sum::<usize>(), 3000);
    server.shutdown_and_wait().await;
}

#[tokio::test]
async fn cache_hits_of_native_ops_do_not_recompute() {
    let (server, mut client) = setup().await;
    for _ in 0..3 {
        derive(
            &mut client,
            r#"{"op":"sort_by","source":"t","keys":[["value","descending"]]}"#,
        )
        .await;
        derive(&mut client, r#"{"op":"filter","source":"t","predicate":"id > 5"}"#).await;
    }
    let s = stats(&mut client).await;
    assert_eq!(
        (s["computations"].as_u64(), s["hits"].as_u64()),
        (Some(2), Some(4)),
        "{s}"
    );
    server.shutdown_and_wait().await;
}
