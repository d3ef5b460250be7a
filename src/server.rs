//! Transport: builds the tonic server around [`FlightbayService`], applies message limits and TCP settings, starts
//! the HTTP side listener ([`crate::http`]: metrics, health, the dashboard), and runs until a shutdown signal
//! (Ctrl-C, SIGTERM, the `shutdown` action, or the caller's future).
//!
//! gRPC Health v1 is served on the Flight port beside Flight ([`crate::health`]).
//!
//! Shutdown: health turns to draining, the Flight server stops accepting and finishes the requests in flight,
//! resident flights are written out, and only then does the HTTP listener stop, so probes see the drain.

use std::future::Future;
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightServiceServer;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::auth::{Authenticator, Grants, TokenAuthority, Users};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::health::Health;
use crate::http::HttpState;
use crate::metrics::Metrics;
use crate::query::Engine;
use crate::service::{DecodeStatusLayer, DoGetLayer, FlightbayService, RpcMetricsLayer};
use crate::store::{FlightStore, StoreConfig};

/// Serves Flight on `listener` (and HTTP on `--http-port`) until `shutdown` completes or a client sends the
/// `shutdown` action.
///
/// Tests call this on `127.0.0.1:0`; the binary calls it with [`shutdown_signal`].
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let addr = listener.local_addr()?;
    let store = FlightStore::open(StoreConfig {
        memory_limit: config.memory_limit_bytes(),
        high_water: config.spill_high_water,
        data_dir: config.data_dir.clone(),
        disk_limit: config.disk_limit_bytes(),
        durable: config.durable,
        ephemeral: config.ephemeral,
    })
    .await?;
    let engine = Engine::try_new(store.clone(), config.memory_limit_bytes())?;
    let stop = Arc::new(Notify::new());
    let auth = authenticator(&config)?;
    let tls = tls_config(&config)?;
    let service = FlightbayService::try_new(store.clone(), engine, config.clone(), Arc::clone(&stop), auth)?;
    let max_message = config.max_message_bytes();
    let do_get = DoGetLayer::new(service.clone(), max_message);
    let metrics = Arc::new(Metrics::new(service.clone()));
    let dashboard_service = service.clone();
    let flight = FlightServiceServer::new(service)
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);

    let (health, health_service) = Health::new().await;
    let http_listener = bind_http(&config).await?;
    let http_addr = http_listener.as_ref().map(TcpListener::local_addr).transpose()?;

    if let Some(path) = &config.ready_file {
        let mut contents = addr.to_string();
        if let Some(http) = http_addr {
            contents.push_str(&format!("\nhttp://{http}"));
        }
        write_ready_file(path, &contents)?;
    }
    tracing::info!(
        %addr,
        http = %http_addr.map_or_else(|| "off".to_string(), |a| a.to_string()),
        memory_limit = config.memory_limit_bytes(),
        data_dir = %config.data_dir.display(),
        "flightbay listening"
    );

    if let Some(warning) = plaintext_warning(addr, tls.is_some(), config.jwt_secret.is_some()) {
        tracing::warn!("{warning}");
        eprintln!("WARNING: {warning}");
    }

    // The HTTP listener runs until told to stop after the Flight server and the store have finished.
    let (http_stop, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let http = http_listener.map(|listener| {
        let state = HttpState {
            health: health.clone(),
            metrics: Arc::clone(&metrics),
            service: dashboard_service,
        };
        tokio::spawn(crate::http::serve(listener, state, async {
            // Err means the sender was dropped: `run` is unwinding, so stopping is right as well.
            let _ = http_stopped.await;
        }))
    });

    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let draining = health.clone();
    let signal = async move {
        tokio::select! {
            () = shutdown => {}
            () = stop.notified() => {}
        }
        tracing::info!("flightbay shutting down");
        draining.drain().await;
    };
    let mut builder = tonic::transport::Server::builder()
        .max_frame_size(H2_MAX_FRAME_BYTES)
        .initial_stream_window_size(H2_STREAM_WINDOW_BYTES)
        .initial_connection_window_size(H2_CONNECTION_WINDOW_BYTES);
    if let Some(tls) = tls {
        builder = builder
            .tls_config(tls)
            .map_err(|e| Error::invalid(format!("TLS configuration: {e}")))?;
    }
    // Outermost first: the metrics layer sees the status clients see and times DoGet's own route too.
    let served = builder
        .layer(RpcMetricsLayer::new(metrics.rpc()))
        .layer(DecodeStatusLayer)
        .layer(do_get)
        .add_service(flight)
        .add_service(health_service)
        .serve_with_incoming_shutdown(incoming, signal)
        .await
        .map_err(|e| Error::internal(format!("transport error: {e}")));
    // Every connection is closed: write resident flights out so a restart finds them.
    let closed = match served {
        Ok(()) => store.close().await,
        Err(e) => Err(e),
    };
    // Err means the HTTP task already ended (it failed); its result below says how.
    let _ = http_stop.send(());
    if let Some(http) = http {
        http.await
            .map_err(|e| Error::internal(format!("HTTP listener task: {e}")))??;
    }
    closed?;
    tracing::info!("flightbay stopped");
    Ok(())
}

/// The HTTP side listener on `--host`:`--http-port`, `None` when it is off.
async fn bind_http(config: &Config) -> Result<Option<TcpListener>> {
    let Some(port) = config.http_port.port() else {
        return Ok(None);
    };
    TcpListener::bind((config.host.as_str(), port))
        .await
        .map(Some)
        .map_err(|e| Error::invalid(format!("cannot listen on {}:{port} (--http-port): {e}", config.host)))
}

/// Largest HTTP/2 frame clients may send (DoPut). hyper's default (16 KiB, the protocol minimum) cuts a 3 MiB
/// Flight message into 128 frames, each parsed and copied on its own.
const H2_MAX_FRAME_BYTES: u32 = 1 << 20;
/// Per-stream and per-connection receive windows: large enough that one upload is not stalled waiting for
/// WINDOW_UPDATEs on loopback or a LAN (hyper defaults to 1 MiB and 5 MiB).
const H2_STREAM_WINDOW_BYTES: u32 = 8 << 20;
const H2_CONNECTION_WINDOW_BYTES: u32 = 16 << 20;

/// The authenticator when `--jwt-secret` is set. Without a users file, prints one admin token to stdout so the
/// operator can hand out (or mint, with `flightbay token`) narrower ones.
fn authenticator(config: &Config) -> Result<Option<Authenticator>> {
    let Some(secret) = &config.jwt_secret else {
        return Ok(None);
    };
    let tokens = TokenAuthority::try_new(secret.expose(), config.token_ttl)?;
    let users = config.users_file.as_deref().map(Users::load).transpose()?.map(Arc::new);
    match &users {
        Some(u) => tracing::info!(users = u.users.len(), "authentication on"),
        None => {
            let token = tokens.mint("admin", &Grants::admin())?;
            println!("flightbay admin token (valid {}s): {token}", config.token_ttl.as_secs());
        }
    }
    Ok(Some(Authenticator {
        tokens,
        users,
        throttle: Default::default(),
    }))
}

/// The warning printed when other machines can reach the server over plaintext.
fn plaintext_warning(addr: std::net::SocketAddr, tls: bool, auth: bool) -> Option<String> {
    if tls || addr.ip().is_loopback() {
        return None;
    }
    let what = if auth {
        "data and bearer tokens travel"
    } else {
        "data travels, and anyone can connect,"
    };
    Some(format!(
        "flightbay: listening on {addr} without TLS: {what} in plain text; set --tls-cert and --tls-key{}",
        if auth { "" } else { " (and --jwt-secret)" }
    ))
}

/// TLS settings from `--tls-cert`/`--tls-key`, with client certificates required when `--tls-client-ca` is set.
fn tls_config(config: &Config) -> Result<Option<ServerTlsConfig>> {
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
        return Ok(None);
    };
    let read = |path: &std::path::Path, what: &str| {
        std::fs::read(path).map_err(|e| Error::invalid(format!("cannot read {what} {}: {e}", path.display())))
    };
    let identity = Identity::from_pem(read(cert, "--tls-cert")?, read(key, "--tls-key")?);
    let mut tls = ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &config.tls_client_ca {
        tls = tls.client_ca_root(Certificate::from_pem(read(ca, "--tls-client-ca")?));
    }
    Ok(Some(tls))
}

/// Writes `contents` to `path` atomically (temp file + rename), so a watcher never reads a partial address.
fn write_ready_file(path: &std::path::Path, contents: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_beyond_loopback_warns() {
        let public: std::net::SocketAddr = "0.0.0.0:8815".parse().unwrap();
        let local: std::net::SocketAddr = "127.0.0.1:8815".parse().unwrap();
        let warning = plaintext_warning(public, false, false).unwrap();
        assert!(
            warning.contains("without TLS") && warning.contains("--tls-cert"),
            "{warning}"
        );
        assert!(
            plaintext_warning(public, false, true)
                .unwrap()
                .contains("bearer tokens")
        );
        assert_eq!(plaintext_warning(public, true, false), None);
        assert_eq!(plaintext_warning(local, false, false), None);
        assert_eq!(plaintext_warning("[::1]:1".parse().unwrap(), false, true), None);
    }
}
