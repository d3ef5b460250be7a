//! Transport: builds the tonic server around [`FlightbayService`], applies message limits and TCP settings, and
//! runs until a shutdown signal (Ctrl-C, SIGTERM, the `shutdown` action, or the caller's future).

use std::future::Future;
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightServiceServer;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tonic::transport::server::TcpIncoming;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::query::Engine;
use crate::service::FlightbayService;
use crate::store::{FlightStore, StoreConfig};

/// Serves Flight on `listener` until `shutdown` completes or a client sends the `shutdown` action.
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
        data_dir: config.data_dir.clone(),
        disk_limit: config.disk_limit_bytes(),
        durable: config.durable,
        ephemeral: config.ephemeral,
    })
    .await?;
    let engine = Engine::try_new(store.clone(), config.memory_limit_bytes())?;
    let stop = Arc::new(Notify::new());
    let service = FlightbayService::new(store.clone(), engine, config.clone(), Arc::clone(&stop));
    let max_message = config.max_message_bytes();
    let flight = FlightServiceServer::new(service)
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);

    if let Some(path) = &config.ready_file {
        write_ready_file(path, &addr.to_string())?;
    }
    tracing::info!(
        %addr,
        memory_limit = config.memory_limit_bytes(),
        data_dir = %config.data_dir.display(),
        "flightbay listening"
    );

    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let signal = async move {
        tokio::select! {
            () = shutdown => {}
            () = stop.notified() => {}
        }
        tracing::info!("flightbay shutting down");
    };
    tonic::transport::Server::builder()
        .add_service(flight)
        .serve_with_incoming_shutdown(incoming, signal)
        .await
        .map_err(|e| Error::internal(format!("transport error: {e}")))?;
    // Every connection is closed: write resident flights out so a restart finds them.
    store.close().await?;
    tracing::info!("flightbay stopped");
    Ok(())
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
