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
