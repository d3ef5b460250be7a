//! The `flightbay` binary: parse the config, bind, and hand over to [`flightbay::server::run`].

use std::process::ExitCode;

use clap::Parser;
use flightbay::config::Cli;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Cli::parse().into_config();
    flightbay::telemetry::init(&config.log);
    let listener = match tokio::net::TcpListener::bind((config.host.as_str(), config.port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("flightbay: cannot listen on {}:{}: {e}", config.host, config.port);
            return ExitCode::FAILURE;
        }
    };
    match flightbay::server::run(listener, config, flightbay::server::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flightbay: {e}");
            ExitCode::FAILURE
        }
    }
}
