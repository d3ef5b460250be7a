//! The dashboard on the HTTP listener: the embedded page, and its JSON API with auth off and on (what each token
//! sees, and that nothing about flights answers without one).

use std::time::Duration;

use arrow_flight::{FlightClient, FlightDescriptor};
use flightbay::auth::{Grants, TokenAuthority};
use serde_json::{Value, json};

use crate::common::*;

/// Everything the flights table and lineage view show of one flight but its size and age, which the tests check
/// on their own.
fn shown(flight: &Value) -> Value {
    json!([
        flight["id"],
        flight["name"],
        flight["namespace"],
        flight["names"],
        flight["rows"],
        flight["state"],
        flight["pinned"],
        flight["hits"],
        flight["lineage"],
    ])
}

fn flights(view: &Value) -> &Vec<Value> {
    view["flights"].as_array().expect("a flights array")
}

fn upload_lineage() -> Value {
    json!({ "op": "upload", "params": { "mode": "error" }, "inputs": [] })
}

/// Derives a flight by CMD (GetFlightInfo) and returns its id and the info's byte count and cache status.
async fn derive(client: &mut FlightClient, cmd: &str) -> (u64, i64, String) {
    let info = client
        .get_flight_info(FlightDescriptor::new_cmd(cmd.to_string()))
        .await
        .unwrap();
    let meta = info_metadata(&info);
    (
        meta["id"].as_u64().unwrap(),
        info.total_bytes,
        meta["cache"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn the_page_is_embedded_and_served_with_a_strict_policy() {
    let (server, http) = TestServer::start_http(|_| {}).await;
    let page = http_request(&http, "/", &[]).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(page.body, include_str!("../src/dashboard/index.html"));
    let policy = page.header("content-security-policy").unwrap();
    assert!(policy.starts_with("default-src 'none'; script-src 'self';"), "{policy}");
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));

    for (path, content_type, body) in [
        (
            "/dashboard.js",
            "text/javascript; charset=utf-8",
            include_str!("../src/dashboard/dashboard.js"),
        ),
        (
            "/dashboard.css",
            "text/css; charset=utf-8",
            include_str!("../src/dashboard/dashboard.css"),
        ),
    ] {
        let answer = http_request(&http, path, &[]).await;
        assert_eq!(
            (answer.status, answer.header("content-type")),
            (200, Some(content_type)),
            "{path}"
        );
        assert_eq!(answer.body, body, "{path}");
    }
    let info = http_request(&http, "/api/info", &[]).await;
    assert_eq!(info.status, 200);
    assert_eq!(
        info.json(),
        json!({ "version": env!("CARGO_PKG_VERSION"), "auth": false })
    );
    server.shutdown_and_wait().await;
}

#[tokio::test]
async fn without_auth_the_api_reports_flights_lineage_the_stats_numbers_and_recent_calls() {
    let (server, http) = TestServer::start_http(|c| c.memory_limit = "64MiB".parse().unwrap()).await;
    let mut client = server.client().await;
    let trips = upload(&mut client, path(&["trips"]), vec![sample_batch(0, 1000)])
        .await
        .unwrap();
    let orders = upload(&mut client, path(&["sales", "orders"]), vec![sample_batch(0, 10)])
        .await
        .unwrap();
    let take = r#"{"op":"take","source":"trips","indices":[5,1]}"#;
    let (taken, taken_bytes, first) = derive(&mut client, take).await;
    let (again, _, second) = derive(&mut client, take).await;
    assert_eq!((first.as_str(), again, second.as_str()), ("miss", taken, "hit"));
    let missing = client.get_flight_info(path(&["missing"])).await.unwrap_err();
    assert_eq!(code(missing), tonic::Code::NotFound);
    action(&mut client, "spill", json!({ "name": "orders", "namespace": "sales" }))
        .await
        .unwrap();
    action(&mut client, "pin", json!({ "name": "trips" })).await.unwrap();
    let stats = action(&mut client, "stats", json!({})).await.unwrap();

    let answer = http_request(&http, "/api/dashboard", &[]).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    let view = answer.json();
    assert_eq!(
        (&view["auth"], &view["subject"], &view["grants"]),
        (&json!(false), &json!(null), &json!(null))
    );
    // The very numbers of the stats action (nothing ran in between).
    assert_eq!(view["stats"], stats);

    let (trips_id, orders_id) = (trips["id"].as_u64().unwrap(), orders["id"].as_u64().unwrap());
    let shown_flights: Vec<Value> = flights(&view).iter().map(shown).collect();
    assert_eq!(
        shown_flights,
        vec![
            json!([
                trips_id,
                "trips",
                "default",
                ["default.trips"],
                1000,
                "memory",
                true,
                0,
                upload_lineage()
            ]),
            json!([
                orders_id,
                "orders",
                "sales",
                ["sales.orders"],
                10,
                "spilled",
                false,
                0,
                upload_lineage()
            ]),
            json!([
                taken,
                null,
                null,
                [],
                2,
                "memory",
                false,
                1,
                { "op": "take", "params": { "indices": [5, 1] }, "inputs": [{ "id": trips_id, "dropped": false }] }
            ]),
        ]
    );
    let sizes: Vec<&Value> = flights(&view).iter().map(|f| &f["bytes"]).collect();
    assert_eq!(sizes, [&trips["num_bytes"], &orders["num_bytes"], &json!(taken_bytes)]);
    for flight in flights(&view) {
        let age = flight["age_seconds"].as_f64().unwrap();
        assert!((0.0..600.0).contains(&age), "{flight}");
        assert!(flight["created_at"].as_str().unwrap().ends_with('Z'), "{flight}");
    }

    // Newest first, with the status each call ended with.
    let recent: Vec<(&str, &str)> = view["recent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["method"].as_str().unwrap(), c["code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        recent,
        [
            ("DoAction", "OK"),
            ("DoAction", "OK"),
            ("DoAction", "OK"),
            ("GetFlightInfo", "NOT_FOUND"),
            ("GetFlightInfo", "OK"),
            ("GetFlightInfo", "OK"),
            ("DoPut", "OK"),
            ("DoPut", "OK"),
        ]
    );
    for call in view["recent"].as_array().unwrap() {
        let seconds = call["duration_seconds"].as_f64().unwrap();
        assert!((0.0..60.0).contains(&seconds), "{call}");
    }
    assert_eq!(view["recent_capacity"], 50);

    // A dropped input stays in its child's lineage, marked dropped.
    action(&mut client, "unpin", json!({ "name": "trips" })).await.unwrap();
    action(&mut client, "drop", json!({ "name": "trips" })).await.unwrap();
    let view = http_request(&http, "/api/dashboard", &[]).await.json();
    let ids: Vec<&Value> = flights(&view).iter().map(|f| &f["id"]).collect();
    assert_eq!(ids, [&json!(orders_id), &json!(taken)]);
    assert_eq!(
        flights(&view)[1]["lineage"]["inputs"],
        json!([{ "id": trips_id, "dropped": true }])
    );

    // The ring keeps the last 50 calls.
    for _ in 0..55 {
        action(&mut client, "health", json!({})).await.unwrap();
    }
    let view = http_request(&http, "/api/dashboard", &[]).await.json();
    let recent = view["recent"].as_array().unwrap();
    assert_eq!(recent.len(), 50);
    assert!(recent.iter().all(|c| c["method"] == "DoAction"), "{recent:?}");
    drop(client);
    server.shutdown_and_wait().await;
}

const SECRET: &str = "dashboard-secret-0123456789";

fn token(grants: &[&str]) -> String {
    TokenAuthority::try_new(SECRET, Duration::from_secs(600))
        .unwrap()
        .mint("tester", &Grants::parse(grants).unwrap())
        .unwrap()
}

/// `GET /api/dashboard` with `Authorization: Bearer <token>`.
async fn view_as(http: &str, token: &str) -> HttpAnswer {
    http_request(http, "/api/dashboard", &[("Authorization", &format!("Bearer {token}"))]).await
}

#[tokio::test]
async fn with_auth_the_api_needs_a_token_and_shows_only_what_it_can_read() {
    let (server, http) = TestServer::start_http(|c| c.jwt_secret = Some(SECRET.parse().unwrap())).await;
    let admin_token = token(&["*:admin"]);
    let mut admin = server.client().await;
    admin
        .add_header("authorization", &format!("Bearer {admin_token}"))
        .unwrap();
    let trips = upload(&mut admin, path(&["sales", "trips"]), vec![sample_batch(0, 100)])
        .await
        .unwrap()["id"]
        .as_u64()
        .unwrap();
    let plans = upload(&mut admin, path(&["beta", "plans"]), vec![sample_batch(0, 5)])
        .await
        .unwrap()["id"]
        .as_u64()
        .unwrap();
    let (taken, _, _) = derive(&mut admin, r#"{"op":"take","source":"sales.trips","indices":[0]}"#).await;
    let (both, _, _) = derive(
        &mut admin,
        "SELECT id FROM sales.trips UNION ALL SELECT id FROM beta.plans",
    )
    .await;
    // A name in beta for the sales upload: beta readers may read it too, and sales readers do not see the name.
    action(
        &mut admin,
        "rename",
        json!({ "id": trips, "name": "alias", "namespace": "beta" }),
    )
    .await
    .unwrap();

    // No token, a malformed one, one signed with another secret: 401 and not a word about flights.
    let foreign = TokenAuthority::try_new("another-secret-0123456789", Duration::from_secs(600))
        .unwrap()
        .mint("tester", &Grants::admin())
        .unwrap();
    for headers in [
        vec![],
        vec![("Authorization", "Bearer not-a-token".to_string())],
        vec![("Authorization", format!("Bearer {foreign}"))],
    ] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let refused = http_request(&http, "/api/dashboard", &headers).await;
        assert_eq!(refused.status, 401, "{headers:?}");
        assert_eq!(refused.header("www-authenticate"), Some("Bearer"));
        let body = refused.json();
        assert_eq!(body.as_object().unwrap().keys().collect::<Vec<_>>(), ["error"]);
        for word in ["trips", "plans", "alias", "sales", "beta", "\"id\""] {
            assert!(!refused.body.contains(word), "{word} in {}", refused.body);
        }
    }
    // The page itself holds no data and is served to anyone; it learns that it must ask for a token.
    assert_eq!(http_request(&http, "/", &[]).await.status, 200);
    assert_eq!(
        http_request(&http, "/api/info", &[]).await.json(),
        json!({ "version": env!("CARGO_PKG_VERSION"), "auth": true })
    );

    let sales = view_as(&http, &token(&["sales:read"])).await;
    assert_eq!(sales.status, 200);
    let sales = sales.json();
    assert_eq!(
        (&sales["subject"], &sales["grants"]),
        (&json!("tester"), &json!("sales:read"))
    );
    // Server-wide numbers need what the stats action needs.
    assert_eq!((&sales["stats"], &sales["recent"]), (&json!(null), &json!(null)));
    let names: Vec<Value> = flights(&sales)
        .iter()
        .map(|f| json!([f["id"], f["name"], f["namespace"], f["names"]]))
        .collect();
    assert_eq!(
        names,
        [
            json!([trips, "trips", "sales", ["sales.trips"]]),
            json!([taken, null, null, []])
        ]
    );

    let beta = view_as(&http, &token(&["beta:read"])).await.json();
    let names: Vec<Value> = flights(&beta)
        .iter()
        .map(|f| json!([f["id"], f["name"], f["namespace"], f["names"]]))
        .collect();
    assert_eq!(
        names,
        [
            json!([trips, "alias", "beta", ["beta.alias"]]),
            json!([plans, "plans", "beta", ["beta.plans"]]),
            json!([taken, null, null, []]),
            json!([both, null, null, []]),
        ]
    );

    let nobody = view_as(&http, &token(&[])).await.json();
    assert_eq!((&nobody["flights"], &nobody["stats"]), (&json!([]), &json!(null)));

    let everything = view_as(&http, &admin_token).await.json();
    let ids: Vec<&Value> = flights(&everything).iter().map(|f| &f["id"]).collect();
    assert_eq!(ids, [&json!(trips), &json!(plans), &json!(taken), &json!(both)]);
    assert_eq!(flights(&everything)[0]["names"], json!(["beta.alias", "sales.trips"]));
    let stats = action(&mut admin, "stats", json!({})).await.unwrap();
    assert_eq!(everything["stats"], stats);
    assert!(!everything["recent"].as_array().unwrap().is_empty());
    drop(admin);
    server.shutdown_and_wait().await;
}
