//! Requests of any shape and depth are answered, never crash the server: expressions nested deeper than the
//! limit are INVALID_ARGUMENT before they are parsed, and everything up to the limit computes on stacks sized
//! for it. After every case the server still answers and the store is unchanged.

use arrow_flight::FlightDescriptor;
use serde_json::json;
use tonic::Code;

use crate::common::*;

/// `n` copies of `term` joined by `sep`.
fn chain(term: &str, sep: &str, n: usize) -> String {
    vec![term; n].join(sep)
}

/// `open` n times, `core`, then `close` n times.
fn nest(open: &str, core: &str, close: &str, n: usize) -> String {
    format!("{}{core}{}", open.repeat(n), close.repeat(n))
}

/// Deep shapes, each refused with INVALID_ARGUMENT.
fn too_deep() -> Vec<(&'static str, String)> {
    let n = 2000;
    vec![
        ("sum chain", format!("SELECT {}", chain("1", "+", n))),
        (
            "or chain",
            format!("SELECT * FROM t WHERE {}", chain("id = 1", " OR ", n)),
        ),
        (
            "and chain",
            format!("SELECT * FROM t WHERE {}", chain("id > 1", " AND ", n)),
        ),
        ("string concat", format!("SELECT {}", chain("'a'", " || ", n))),
        ("casts", format!("SELECT 1{}", "::bigint".repeat(n))),
        ("parentheses", format!("SELECT {}", nest("(", "1", ")", n))),
        ("function calls", format!("SELECT {}", nest("abs(", "1", ")", n))),
        (
            "case",
            format!("SELECT {}", nest("CASE WHEN true THEN ", "1", " END", n)),
        ),
        ("not", format!("SELECT {}true", "NOT ".repeat(n))),
        ("unary minus", format!("SELECT {}1", "- ".repeat(n))),
        (
            "subqueries",
            format!("SELECT * FROM {}", nest("(SELECT * FROM ", "t", ")", n)),
        ),
        ("scalar subqueries", format!("SELECT {}", nest("(SELECT ", "1", ")", n))),
        (
            "in subqueries",
            format!(
                "SELECT * FROM t WHERE {}",
                nest("id IN (SELECT id FROM t WHERE ", "true", ")", 500)
            ),
        ),
        ("unions", format!("SELECT {}", chain("1", " UNION ALL SELECT ", n))),
        ("cross joins", format!("SELECT count(*) FROM {}", chain("t", ", ", n))),
        (
            "joins",
            format!("SELECT count(*) FROM t{}", " JOIN t USING (id)".repeat(n)),
        ),
        ("arrays", format!("SELECT {}", nest("[", "1", "]", n))),
        (
            "ctes",
            format!(
                "WITH {} SELECT * FROM c{}",
                (0..n)
                    .map(|i| if i == 0 {
                        "c0 AS (SELECT 1)".to_string()
                    } else {
                        format!("c{i} AS (SELECT * FROM c{})", i - 1)
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
                n - 1
            ),
        ),
    ]
}

#[tokio::test]
async fn deep_requests_are_refused_and_the_server_stays_up() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    upload(&mut client, path(&["t"]), vec![sample_batch(0, 10)])
        .await
        .unwrap();

    let mut commands: Vec<(String, String)> = too_deep()
        .into_iter()
        .flat_map(|(label, sql)| {
            let json = json!({"op": "sql", "query": sql}).to_string();
            [(format!("{label} (SQL)"), sql), (format!("{label} (sql op)"), json)]
        })
        .collect();
    let predicates = [
        chain("id = 1", " OR ", 2000),
        chain("id", " + ", 2000) + " > 0",
        nest("(", "id > 1", ")", 2000),
        nest("abs(", "id", ")", 2000) + " > 1",
    ];
    for p in predicates {
        commands.push((
            "filter".into(),
            json!({"op": "filter", "source": "t", "predicate": p}).to_string(),
        ));
    }
    // JSON nested past serde_json's recursion limit, in every place a value may go.
    commands.push((
        "json indices".into(),
        format!(
            r#"{{"op":"take","source":"t","indices":{}}}"#,
            nest("[", "0", "]", 5000)
        ),
    ));
    commands.push((
        "json source".into(),
        format!(r#"{{"op":"head","source":{}}}"#, nest("{\"a\":", "1", "}", 5000)),
    ));
    commands.push(("json top".into(), nest("{\"op\":", "1", "}", 100_000)));

    for (label, command) in &commands {
        let e = client
            .get_flight_info(FlightDescriptor::new_cmd(command.clone()))
            .await
            .expect_err(label);
        assert_eq!(code(e), Code::InvalidArgument, "{label}");
        let health = action(&mut client, "health", json!({})).await.unwrap();
        assert_eq!(health["status"], "ok", "{label}");
    }
    let e = client
        .get_flight_info(FlightDescriptor::new_cmd(format!("SELECT {}", chain("1", "+", 2000))))
        .await
        .unwrap_err();
    let message = e.to_string();
    assert!(
        message.contains("the limit is 1000") && message.contains("IN (…)"),
        "{message}"
    );
    assert_eq!(listed_ids(&mut client).await, vec![1], "nothing was computed");
    server.shutdown_and_wait().await;
}

#[tokio::test]
async fn wide_and_moderately_deep_requests_compute() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    upload(&mut client, path(&["t"]), vec![sample_batch(0, 10)])
        .await
        .unwrap();

    // At the limit: 999 operators nest 1000 levels deep, and the plan is built, optimized, hashed and run.
    let sql = format!("SELECT {} AS n", chain("1", "+", 1000));
    let got = fetch_all(&mut client, FlightDescriptor::new_cmd(sql)).await.unwrap();
    assert_eq!(pretty(&[got]), "+------+\n| n    |\n+------+\n| 1000 |\n+------+");

    let ids = (0..20_000).map(|i| i.to_string()).collect::<Vec<_>>().join(", ");
    let sql = format!("SELECT count(*) AS n FROM t WHERE id IN ({ids})");
    let got = fetch_all(&mut client, FlightDescriptor::new_cmd(sql)).await.unwrap();
    assert_eq!(pretty(&[got]), "+----+\n| n  |\n+----+\n| 10 |\n+----+");

    let predicate = chain("id = 3", " OR ", 300);
    let cmd = json!({"op": "filter", "source": "t", "predicate": predicate}).to_string();
    let got = fetch_all(&mut client, FlightDescriptor::new_cmd(cmd)).await.unwrap();
    assert_eq!(got.num_rows(), 1);
    server.shutdown_and_wait().await;
}
