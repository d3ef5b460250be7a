//! Custom actions: drop, rename, delete_namespace, lineage, stats, health, shutdown, and ListActions.

use futures::TryStreamExt;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn list_actions_describes_every_action() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let actions: Vec<_> = client.list_actions().await.unwrap().try_collect().await.unwrap();
    let kinds: Vec<&str> = actions.iter().map(|a| a.r#type.as_str()).collect();
    for kind in [
        "drop",
        "rename",
        "delete_namespace",
        "lineage",
        "stats",
        "health",
        "shutdown",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    for a in &actions {
        assert!(a.description.contains("->"), "{} has no body/result shape", a.r#type);
    }
    server.shutdown_and_wait().await;
}

#[tokio::test]
async fn drop_by_id_and_by_name() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    upload(&mut client, path(&["a"]), vec![sample_batch(0, 10)])
        .await
        .unwrap();
    upload(&mut client, path(&["ns", "b"]), vec![sample_batch(0, 10)])
        .await
        .unwrap();
    let used = action(&mut client, "stats", json!({})).await.unwrap()["store"]["resident_bytes"]
        .as_u64()
        .unwrap();
    assert!(used > 0);

    assert_eq!(
        action(&mut client, "drop", json!({"id": 1})).await.unwrap(),
        json!({"dropped": 1})
    );
    assert_eq!(
        code(client.get_flight_info(path(&["a"])).await.unwrap_err()),
        tonic::Code::NotFound
    );
    assert_eq!(
        code(client.get_flight_info(path(&["1"])).await.unwrap_err()),
        tonic::Code::NotFound
    );
    let e = action(&mut client, "drop", json!({"id": 1})).await.unwrap_err();
    assert_eq!(code(e), tonic::Code::NotFound);

    let r = action(&mut client, "drop", json!({"name": "b", "namespace": "ns"}))
        .await
        .unwrap();
    assert_eq!(r, json!({"dropped": 2}));
    assert!(listed_ids(&mut client).await.is_empty());
    let stats = action(&mut client, "stats", json!({})).await.unwrap();
    assert_eq!(
        stats["store"]["resident_bytes"], 0,
        "dropping returns the memory: {stats}"
    );
    // ids are never reused
    let put = upload(&mut client, path(&["a"]), vec![sample_batch(0, 1)])
        .await
        .unwrap();
    assert_eq!(put["id"], 3);
    server.shutdown_and_wait().await;
}

#[tokio::test]
async fn rename_points_a_name_at_an_id() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    upload(&mut client, path(&["a"]), vec![sample_batch(0, 10)])
        .await
        .unwrap();
    upload(&mut client, path(&["b"]), vec![sample_batch(0, 20)])
        .await
        .unwrap();
    let r = action(&mut client, "rename", json!({"id": 1, "name": "b"}))
        .await
        .unwrap();
    assert_eq!(r, json!({"id": 1, "name": "default.b", "previous": 2}));
    assert_eq!(fetch_all(&mut client, path(&["b"])).await.unwrap().num_rows(), 10);
    // flight 2 lost its name but is still there by id
    assert_eq!(fetch_all(&mut client, path(&["2"])).await.unwrap().num_rows(), 20);
    let info = client.get_flight_info(path(&["1"])).await.unwrap();
    assert_eq!(info_metadata(&info)["names"], json!(["default.a", "default.b"]));
    let e = action(&mut client, "rename", json!({"id": 99, "name": "c"}))
        .await
        .unwrap_err();
    assert_eq!(code(e), tonic::Code::NotFound);
    server.shutdown_and_wait().await;
}

#[tokio::test]
async fn delete_namespace_refuses_unless_forced() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    upload(&mut client, path(&["sales", "a"]), vec![sample_batch(0, 10)])
        .await
        .unwrap();
    upload(&mut client, path(&["sales", "b"]), vec![sample_batch(0, 10)])
        .await
        .unwrap();
    upload(&mut client, path(&["keep"]), vec![sample_batch(0, 10)])
        .await
        .unwrap();

    let e = action(&mut client, "delete_namespace", json!({"namespace": "sales"}))
        .await
        .unwrap_err();
    assert_eq!(code(e), tonic::Code::InvalidArgument);
    assert_eq!(listed_ids(&mut client).await, vec![1, 2, 3]);

    let r = action(
        &mut client,
        "delete_namespace",
        json!({"namespace": "sales", "force": true}),
    )
    .await
    .unwrap();
    assert_eq!(r, json!({"dropped": [1, 2]}));
    assert_eq!(listed_ids(&mut client).await, vec![3]);
    let e = action(&mut client, "delete_namespace", json!({"namespace": "sales"}))
        .await
        .unwrap_err();
    assert_eq!(code(e), tonic::Code::NotFound);
    server.shutdown_and_wait().await;
}

#[tokio::test]
async fn health_stats_and_lineage() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let health = action(&mut client, "health", json!({})).await.unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));

    upload(&mut client, path(&["t"]), vec![sample_batch(0, 10)])
        .await
        .unwrap();
    let append = arrow_flight::FlightDescriptor::new_cmd(r#"{"op":"put","name":"t","mode":"append"}"#);
    upload(&mut client, append, vec![sample_batch(10, 10)]).await.unwrap();
    let lineage = action(&mut client, "lineage", json!({"name": "t"})).await.unwrap();
    assert_eq!(lineage["id"], 2);
    assert_eq!(lineage["op"], "upload");
    assert_eq!(lineage["params"], json!({"mode": "append"}));
    assert_eq!(lineage["inputs"][0]["id"], 1);
    assert_eq!(lineage["inputs"][0]["inputs"], json!([]));

    let stats = action(&mut client, "stats", json!({})).await.unwrap();
    assert_eq!(stats["store"]["flights"], 2);
    assert_eq!(stats["store"]["names"], 1);
    assert_eq!(stats["store"]["memory_limit"], 1u64 << 30);
    server.shutdown_and_wait().await;
}

#[tokio::test]
async fn shutdown_action_stops_the_server() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let r = action(&mut client, "shutdown", json!({})).await.unwrap();
    assert_eq!(r, json!({"shutting_down": true}));
    server.wait_stopped().await;
}
