//! Logging setup: `tracing` with the filter from `--log` / `FLIGHTBAY_LOG`.

/// Installs the global subscriber (once; later calls are ignored so tests can call it freely).
pub fn init(filter: &str) {
    let filter =
        tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Err means a subscriber is already installed (a second server in the same process); keeping it is right.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
