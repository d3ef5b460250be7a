//! Black-box tests of the real `flightbay` binary.

use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::common::*;

#[test]
fn help_lists_every_flag() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--host",
        "--port",
        "--data-dir",
        "--memory-limit",
        "--max-message-size",
        "--default-put-mode",
        "--ready-file",
        "--http-port",
        "--log",
        "--disk-limit",
        "--durable",
        "--ephemeral",
        "--tls-cert",
        "--tls-key",
        "--tls-client-ca",
        "--jwt-secret",
        "--token-ttl",
        "--users-file",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help:\n{help}");
        let env = format!(
            "FLIGHTBAY_{}",
            flag.trim_start_matches("--").replace('-', "_").to_uppercase()
        );
        assert!(help.contains(&env), "{env} missing from --help");
    }
    let serve = Command::new(BIN).args(["serve", "--help"]).output().unwrap();
    assert!(String::from_utf8(serve.stdout).unwrap().contains("--ready-file"));
    let bad = Command::new(BIN).args(["--memory-limit", "lots"]).output().unwrap();
    assert!(!bad.status.success());
}

#[tokio::test]
async fn binary_serves_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start(&dir.path().join("data"), &["serve", "--memory-limit", "64MiB"]);
    assert!(server.addr.starts_with("127.0.0.1:"), "{}", server.addr);
    let mut client = server.client().await;
    let put = upload(&mut client, path(&["t"]), vec![sample_batch(0, 100)])
        .await
        .unwrap();
    assert_eq!(put["id"], 1);
    let stats = action(&mut client, "stats", json!({})).await.unwrap();
    assert_eq!(stats["store"]["memory_limit"], 64 << 20);

    // SIGTERM must end in a graceful, successful exit.
    server.stop().await;
}

#[test]
fn token_and_hash_password_subcommands() {
    let secret = "cli-test-secret-0123456789";
    let out = Command::new(BIN)
        .args([
            "token",
            "--secret",
            secret,
            "--user",
            "etl",
            "--grant",
            "sales:read",
            "--grant",
            "*:write",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap();
    let authority = flightbay::auth::TokenAuthority::try_new(secret, Duration::from_secs(60)).unwrap();
    let claims = authority.verify(token.trim()).unwrap();
    assert_eq!(claims.sub, "etl");
    assert_eq!(
        claims.grants,
        flightbay::auth::Grants::parse(&["sales:read", "*:write"]).unwrap()
    );
    let bad = Command::new(BIN)
        .args(["token", "--secret", secret, "--grant", "sales:owner"])
        .output()
        .unwrap();
    assert!(!bad.status.success());

    let mut child = Command::new(BIN)
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"hunter2\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let hash = String::from_utf8(out.stdout).unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
}

#[tokio::test]
async fn client_subcommands_round_trip_files_and_exit_with_the_grpc_code() {
    let dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start(&dir.path().join("data"), &["--ephemeral"]);
    let url = format!("grpc://{}", server.addr);
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .env("FLIGHTBAY_URL", &url)
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let file = |name: &str| dir.path().join(name).to_str().unwrap().to_string();

    // A Parquet file and a CSV file go up…
    let parquet_in = file("in.parquet");
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&parquet_in).unwrap(), sample_schema(), None)
            .unwrap();
    writer.write(&sample_batch(0, 100)).unwrap();
    writer.close().unwrap();
    let (code, out, err) = run(&["put", &parquet_in, "--name", "trips"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("uploaded 100 rows") && out.trim().ends_with("as flight 1 named trips"),
        "{out}"
    );
    let csv = "city,n\nOslo,3\nLima,5\n";
    std::fs::write(file("in.csv"), csv).unwrap();
    let (code, _, err) = run(&["put", &file("in.csv"), "--name", "sales.cities"]);
    assert_eq!(code, 0, "{err}");

    let (code, out, _) = run(&["ls"]);
    assert_eq!(code, 0);
    assert!(out.contains("trips") && out.contains("sales.cities"), "{out}");
    let (_, out, _) = run(&["ls", "sales.*"]);
    assert!(out.contains("sales.cities") && !out.contains("trips"), "{out}");

    // …and come back the same.
    let (code, _, err) = run(&["get", "trips", "-o", &file("out.parquet")]);
    assert_eq!(code, 0, "{err}");
    let back: Vec<_> = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(file("out.parquet")).unwrap(),
    )
    .unwrap()
    .build()
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap();
    assert_eq!(pretty(&back), pretty(&[sample_batch(0, 100)]));
    let (code, _, err) = run(&["get", "sales.cities", "-o", &file("out.csv")]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(file("out.csv")).unwrap(), csv);
    let (_, out, _) = run(&["get", "sales.cities"]);
    assert_eq!(
        out.trim(),
        "+------+---+\n| city | n |\n+------+---+\n| Oslo | 3 |\n| Lima | 5 |\n+------+---+"
    );

    // SQL to the terminal and to a file.
    let (code, out, err) = run(&["sql", "SELECT count(*) AS rows FROM trips"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("| 100  |"), "{out}");
    let (code, out, err) = run(&["sql", "SELECT id FROM trips WHERE id < 3", "-o", &file("q.arrow")]);
    assert_eq!(
        (code, out.trim()),
        (0, format!("wrote 3 rows to {}", file("q.arrow")).as_str()),
        "{err}"
    );
    let reader = arrow::ipc::reader::FileReader::try_new(std::fs::File::open(file("q.arrow")).unwrap(), None).unwrap();
    let batches: Vec<_> = reader.collect::<Result<_, _>>().unwrap();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 3);

    let (code, out, _) = run(&["stats"]);
    assert_eq!(code, 0);
    let stats: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(stats["store"]["names"], 2);

    // Errors: one line with the gRPC code, and an exit code of 10 + that code.
    let (code, _, err) = run(&["put", &parquet_in, "--name", "trips"]);
    assert_eq!(code, 16, "{err}");
    assert!(err.starts_with("flightbay: ALREADY_EXISTS: "), "{err}");
    let (code, out, _) = run(&["drop", "trips"]);
    assert_eq!((code, out.trim()), (0, "dropped flight 1"));
    let (code, _, err) = run(&["get", "trips"]);
    assert_eq!(code, 15, "{err}");
    assert!(
        err.starts_with("flightbay: NOT_FOUND: ") && err.trim().lines().count() == 1,
        "{err}"
    );
    let (code, _, err) = run(&["get", "trips", "--url", "grpc://127.0.0.1:1"]);
    assert_eq!(code, 24, "{err}");
    assert!(
        err.starts_with("flightbay: UNAVAILABLE: cannot reach grpc://127.0.0.1:1"),
        "{err}"
    );
    let (code, _, err) = run(&["put", &file("in.txt"), "--name", "x"]);
    assert_eq!(code, 1, "{err}");

    server.stop().await;
}
