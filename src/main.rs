//! The `flightbay` binary: parse the config, bind, and hand over to [`flightbay::server::run`]; or run one of the
//! small credential subcommands (`token`, `hash-password`) or a client subcommand ([`flightbay::cli`]).

use std::process::ExitCode;

/// mimalloc returns freed flight buffers to the system where glibc's malloc kept them (see Cargo.toml).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use flightbay::config::{Cli, CliCommand};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(CliCommand::Client(command)) = cli.command {
        return match flightbay::cli::run(command).await {
            Ok(out) => {
                println!("{out}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("flightbay: {e}");
                ExitCode::from(e.exit_code())
            }
        };
    }
    let printed = match &cli.command {
        Some(CliCommand::Token(args)) => Some(flightbay::auth::mint_from_args(args)),
        Some(CliCommand::HashPassword) => Some(flightbay::auth::hash_from_reader(std::io::stdin().lock())),
        Some(CliCommand::Serve(_) | CliCommand::Client(_)) | None => None,
    };
    match printed {
        Some(Ok(line)) => {
            println!("{line}");
            return ExitCode::SUCCESS;
        }
        Some(Err(e)) => {
            eprintln!("flightbay: {e}");
            return ExitCode::FAILURE;
        }
        None => {}
    }
    let config = cli.into_config();
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
