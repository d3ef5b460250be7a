//! Every setting of the server: one clap struct whose doc comments are the `--help` text.
//!
//! Each flag has an `FLIGHTBAY_*` environment variable and a default that works without a config file.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::auth::{Secret, parse_duration};
use crate::store::PutMode;

/// flightbay: an Arrow Flight server where every upload and every query result is a numbered, immutable flight.
#[derive(Debug, Parser)]
#[command(name = "flightbay", version, about, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<CliCommand>,
    /// Server settings when no subcommand is given.
    #[command(flatten)]
    pub serve: Config,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum CliCommand {
    /// Run the Flight server (the default).
    Serve(Box<Config>),
    /// Mint a bearer token for scripts (signed with the server's --jwt-secret).
    Token(TokenArgs),
    /// Read a password from stdin and print its argon2 hash for the users file.
    HashPassword,
    /// Client subcommands against a running server.
    #[command(flatten)]
    Client(crate::cli::ClientCommand),
}

/// Arguments of `flightbay token`.
#[derive(Clone, Debug, Args)]
pub struct TokenArgs {
    /// The server's JWT secret.
    #[arg(long, env = "FLIGHTBAY_JWT_SECRET", hide_env_values = true)]
    pub secret: Secret,
    /// The token's subject (user name).
    #[arg(long, default_value = "script")]
    pub user: String,
    /// A grant "namespace:level" (level: read, write or admin; namespace "*" means all). Repeatable.
    #[arg(long = "grant", required = true)]
    pub grants: Vec<String>,
    /// How long the token is valid ("30m", "12h", "7d").
    #[arg(long, env = "FLIGHTBAY_TOKEN_TTL", default_value = "12h", value_parser = parse_duration)]
    pub ttl: Duration,
}

impl Cli {
    /// The server config, whichever way it was given.
    pub fn into_config(self) -> Config {
        match self.command {
            Some(CliCommand::Serve(config)) => *config,
            Some(CliCommand::Token(_) | CliCommand::HashPassword | CliCommand::Client(_)) | None => self.serve,
        }
    }
}

/// Server settings.
#[derive(Clone, Debug, Args)]
pub struct Config {
    /// Address to bind. Keep 127.0.0.1 unless clients on other machines need the server.
    #[arg(long, env = "FLIGHTBAY_HOST", default_value = "127.0.0.1")]
    pub host: String,

    /// Port to listen on; 0 picks a free port (see --ready-file).
    #[arg(long, env = "FLIGHTBAY_PORT", default_value_t = 8815)]
    pub port: u16,

    /// Directory for spill files and the catalog.
    #[arg(long, env = "FLIGHTBAY_DATA_DIR", default_value = "./flightbay-data")]
    pub data_dir: PathBuf,

    /// Memory for flight data: bytes ("512MiB", "4GiB", "2GB", "1000000") or a share of RAM ("25%").
    #[arg(long, env = "FLIGHTBAY_MEMORY_LIMIT", default_value = "25%")]
    pub memory_limit: ByteSize,

    /// Share of --memory-limit that data not yet on disk may fill before the background writer starts writing the
    /// least recently used flights to Parquet ("80%", or a fraction like 0.8). Lower keeps more room ready for
    /// bursts; higher writes less.
    #[arg(long, env = "FLIGHTBAY_SPILL_HIGH_WATER", default_value = "80%", value_parser = parse_share)]
    pub spill_high_water: f64,

    /// Bytes of spill files allowed on disk ("100GiB"); when reached, recomputable derived flights are deleted
    /// first, then requests needing more disk fail with RESOURCE_EXHAUSTED. Unlimited by default.
    #[arg(long, env = "FLIGHTBAY_DISK_LIMIT")]
    pub disk_limit: Option<ByteSize>,

    /// Acknowledge an upload only once it is on disk (fsynced), so it survives a crash.
    #[arg(long, env = "FLIGHTBAY_DURABLE")]
    pub durable: bool,

    /// Keep nothing across restarts: ignore and never write the catalog; remove spill files at exit.
    #[arg(long, env = "FLIGHTBAY_EPHEMERAL", conflicts_with = "durable")]
    pub ephemeral: bool,

    /// Largest gRPC message accepted or sent, both directions ("256MiB").
    #[arg(long, env = "FLIGHTBAY_MAX_MESSAGE_SIZE", default_value = "256MiB")]
    pub max_message_size: ByteSize,

    /// What an upload does when its name exists: error (refuse), replace (move the name) or append.
    #[arg(long, env = "FLIGHTBAY_DEFAULT_PUT_MODE", value_enum, default_value_t = PutMode::Error)]
    pub default_put_mode: PutMode,

    /// Port of the HTTP side listener on --host (the dashboard at /, /metrics, /health); 0 picks a free port, "off"
    /// turns it off.
    #[arg(long, env = "FLIGHTBAY_HTTP_PORT", default_value = "8816")]
    pub http_port: HttpPort,

    /// Once listening, write the bound Flight "host:port" to this file, and the HTTP listener's "http://host:port"
    /// as a second line when it is on (for scripts and tests using --port 0).
    #[arg(long, env = "FLIGHTBAY_READY_FILE")]
    pub ready_file: Option<PathBuf>,

    /// Log filter, e.g. "info" or "flightbay=debug".
    #[arg(long, env = "FLIGHTBAY_LOG", default_value = "info")]
    pub log: String,

    /// TLS certificate chain (PEM); with --tls-key, clients connect with grpc+tls://. Plaintext when unset.
    #[arg(long, env = "FLIGHTBAY_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// TLS private key (PEM) for --tls-cert.
    #[arg(long, env = "FLIGHTBAY_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// CA certificate(s) (PEM) that client certificates must chain to (mutual TLS); clients without one are refused.
    #[arg(long, env = "FLIGHTBAY_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// Secret (16+ bytes) that signs bearer tokens; setting it turns authentication on. Off when unset.
    #[arg(long, env = "FLIGHTBAY_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<Secret>,

    /// How long tokens issued by Handshake are valid ("30m", "12h", "7d").
    #[arg(long, env = "FLIGHTBAY_TOKEN_TTL", default_value = "12h", value_parser = parse_duration)]
    pub token_ttl: Duration,

    /// JSON file of users with argon2 password hashes and grants, for Basic credentials. Without it (and with
    /// --jwt-secret) one admin token is printed at startup.
    #[arg(long, env = "FLIGHTBAY_USERS_FILE", requires = "jwt_secret")]
    pub users_file: Option<PathBuf>,

    /// Longest a SQL query or op may queue and compute ("30s", "10m"; "off" for no limit); past it the computation
    /// is stopped and the request fails with DEADLINE_EXCEEDED. A client's shorter gRPC deadline wins.
    #[arg(long, env = "FLIGHTBAY_QUERY_TIMEOUT", default_value = "10m", value_parser = parse_timeout)]
    pub query_timeout: Duration,

    /// SQL queries and ops computed at once; more wait in the queue. Default: four per CPU core (most requests are
    /// short or answered from the cache, and should not wait behind a long one).
    #[arg(long, env = "FLIGHTBAY_MAX_CONCURRENT_QUERIES")]
    pub max_concurrent_queries: Option<usize>,

    /// Requests that may wait for a computation slot; beyond them a request is refused at once with UNAVAILABLE
    /// and a retry hint (grpc-retry-pushback-ms).
    #[arg(long, env = "FLIGHTBAY_MAX_QUEUED_QUERIES", default_value_t = 64)]
    pub max_queued_queries: usize,
}

/// Parses `--query-timeout`: a duration, or `off` / `0` / `none` for no limit (zero).
pub fn parse_timeout(s: &str) -> Result<Duration, String> {
    match s.trim() {
        "off" | "none" | "0" => Ok(Duration::ZERO),
        other => parse_duration(other),
    }
}

impl Default for Config {
    fn default() -> Self {
        Cli::parse_from(["flightbay"]).into_config()
    }
}

impl Config {
    /// The memory limit in bytes.
    pub fn memory_limit_bytes(&self) -> usize {
        self.memory_limit.resolve(total_memory())
    }

    /// The disk limit in bytes, if any.
    pub fn disk_limit_bytes(&self) -> Option<u64> {
        self.disk_limit.map(|d| d.resolve(u64::MAX) as u64)
    }

    /// The message limit in bytes.
    pub fn max_message_bytes(&self) -> usize {
        self.max_message_size.resolve(total_memory())
    }

    /// `--query-timeout`, `None` when off.
    pub fn query_timeout_limit(&self) -> Option<Duration> {
        (!self.query_timeout.is_zero()).then_some(self.query_timeout)
    }

    /// `--max-concurrent-queries`, or four per CPU core when unset or 0.
    pub fn max_concurrent_queries_resolved(&self) -> usize {
        match self.max_concurrent_queries {
            Some(n) if n > 0 => n,
            _ => 4 * std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

/// `--http-port`: a port (0 picks a free one) or off.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum HttpPort {
    /// No HTTP listener.
    Off,
    /// Listen on this port (0: any free port).
    Port(u16),
}

impl HttpPort {
    /// The port to bind, `None` when off.
    pub fn port(self) -> Option<u16> {
        match self {
            HttpPort::Off => None,
            HttpPort::Port(p) => Some(p),
        }
    }
}

impl FromStr for HttpPort {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "off" | "none" | "false" => Ok(HttpPort::Off),
            t => t
                .parse()
                .map(HttpPort::Port)
                .map_err(|_| format!("bad HTTP port {s:?}: expected 0-65535 or \"off\"")),
        }
    }
}

impl fmt::Display for HttpPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpPort::Off => f.write_str("off"),
            HttpPort::Port(p) => write!(f, "{p}"),
        }
    }
}

/// A size given as bytes or as a percentage of physical memory.
#[derive(Copy, Clone, Debug, PartialEq)]
pub enum ByteSize {
    /// An absolute number of bytes.
    Bytes(u64),
    /// A share of physical memory, in percent.
    Percent(f64),
}

impl ByteSize {
    /// Bytes, resolving a percentage against `total`.
    pub fn resolve(self, total: u64) -> usize {
        let bytes = match self {
            ByteSize::Bytes(b) => b,
            ByteSize::Percent(p) => (total as f64 * p / 100.0) as u64,
        };
        usize::try_from(bytes).unwrap_or(usize::MAX)
    }
}

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if let Some(p) = t.strip_suffix('%') {
            let p: f64 = p.trim().parse().map_err(|_| format!("bad percentage {s:?}"))?;
            if !(p > 0.0 && p <= 100.0) {
                return Err(format!("percentage {s:?} must be in (0, 100]"));
            }
            return Ok(ByteSize::Percent(p));
        }
        let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let num: f64 = num
            .parse()
            .map_err(|_| format!("bad size {s:?}: expected e.g. 512MiB, 4GiB or 25%"))?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1_000,
            "kib" => 1 << 10,
            "m" | "mb" => 1_000_000,
            "mib" => 1 << 20,
            "g" | "gb" => 1_000_000_000,
            "gib" => 1 << 30,
            "t" | "tb" => 1_000_000_000_000,
            "tib" => 1 << 40,
            other => return Err(format!("unknown size unit {other:?} in {s:?}")),
        };
        Ok(ByteSize::Bytes((num * mult as f64) as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ByteSize::Bytes(b) => write!(f, "{b}"),
            ByteSize::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// Parses a share given as a percentage ("80%") or a fraction ("0.8") into a fraction in [0, 1].
pub fn parse_share(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let value = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|p| p / 100.0),
        None => t.parse::<f64>(),
    }
    .map_err(|_| format!("bad share {s:?}: expected e.g. 80% or 0.8"))?;
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("share {s:?} must be between 0% and 100%"))
    }
}

/// Physical memory in bytes (from /proc/meminfo; 8 GiB when unknown).
pub fn total_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(8 << 30, |kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!("512MiB".parse::<ByteSize>().unwrap(), ByteSize::Bytes(512 << 20));
        assert_eq!("4GiB".parse::<ByteSize>().unwrap(), ByteSize::Bytes(4 << 30));
        assert_eq!("2GB".parse::<ByteSize>().unwrap(), ByteSize::Bytes(2_000_000_000));
        assert_eq!("1000".parse::<ByteSize>().unwrap(), ByteSize::Bytes(1000));
        assert_eq!("1.5 KiB".parse::<ByteSize>().unwrap(), ByteSize::Bytes(1536));
        assert_eq!("25%".parse::<ByteSize>().unwrap().resolve(1000), 250);
        for bad in ["", "x", "12XB", "0%", "150%", "-1"] {
            assert!(bad.parse::<ByteSize>().is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults() {
        let c = Config::default();
        assert_eq!(c.port, 8815);
        assert_eq!(c.host, "127.0.0.1");
        assert_eq!(c.http_port, HttpPort::Port(8816));
        assert_eq!(c.max_message_bytes(), 256 << 20);
        assert_eq!(c.default_put_mode, PutMode::Error);
        assert_eq!(c.spill_high_water, 0.8);
        assert_eq!(parse_share("50%"), Ok(0.5));
        assert_eq!(parse_share("0.25"), Ok(0.25));
        assert!(parse_share("120%").is_err() && parse_share("x").is_err());
        let c = Cli::parse_from(["flightbay", "serve", "--port", "0"]).into_config();
        assert_eq!(c.port, 0);
        assert!(c.jwt_secret.is_none() && c.tls_cert.is_none());
        assert_eq!(c.token_ttl, Duration::from_secs(12 * 3600));
        assert_eq!(c.query_timeout_limit(), Some(Duration::from_secs(600)));
        assert_eq!(c.max_queued_queries, 64);
        assert!(c.max_concurrent_queries_resolved() >= 1);
        let c = Cli::parse_from(["flightbay", "--query-timeout", "off", "--max-concurrent-queries", "3"]).into_config();
        assert_eq!(c.query_timeout_limit(), None);
        assert_eq!(c.max_concurrent_queries_resolved(), 3);
        assert_eq!(parse_timeout("30s"), Ok(Duration::from_secs(30)));
        assert!(parse_timeout("soon").is_err());
        let c = Cli::parse_from(["flightbay", "--http-port", "off"]).into_config();
        assert_eq!(c.http_port.port(), None);
        let c = Cli::parse_from(["flightbay", "serve", "--http-port", "0"]).into_config();
        assert_eq!(c.http_port.port(), Some(0));
        for bad in ["", "x", "65536", "-1"] {
            assert!(bad.parse::<HttpPort>().is_err(), "{bad}");
        }
    }
}
