//! The client subcommands of the `flightbay` binary: `ls`, `put`, `get`, `sql`, `drop` and `stats` against a
//! running server, for people at a terminal and for scripts.
//!
//! Each takes `--url` (`FLIGHTBAY_URL`, default `grpc://127.0.0.1:8815`; `grpc+tls://` with `--tls-ca`) and
//! `--token` (`FLIGHTBAY_TOKEN`). A
//! failed call prints one line, `flightbay: NOT_FOUND: no flight is named default.trips`, and exits with
//! `10 + the gRPC status code` (NOT_FOUND 15, ALREADY_EXISTS 16, UNAVAILABLE 24 for a server that cannot be
//! reached, …); a local problem (a file that cannot be read or written) exits with 1 and usage errors with 2.
//! Uploads and downloads that take longer than a moment show a progress bar on stderr when it is a terminal.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::{RecordBatch, RecordBatchReader};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::{Action, FlightClient, FlightDescriptor, FlightInfo};
use clap::{Args, Subcommand};
use futures::{StreamExt, TryStreamExt};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};

use crate::store::PutMode;

/// Where the server is and who is calling.
#[derive(Clone, Debug, Args)]
pub struct Connection {
    /// The server: grpc://host:port, or grpc+tls://host:port with --tls-ca.
    #[arg(long, env = "FLIGHTBAY_URL", default_value = "grpc://127.0.0.1:8815")]
    pub url: String,
    /// CA certificate (PEM) that a grpc+tls:// server's certificate must chain to.
    #[arg(long, env = "FLIGHTBAY_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// A bearer token (see `flightbay token`), when the server has authentication on.
    #[arg(long, env = "FLIGHTBAY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// The client subcommands.
#[derive(Clone, Debug, Subcommand)]
pub enum ClientCommand {
    /// List flights (id, name, rows, bytes, state), optionally only names matching GLOB ("sales.*", "t?ips").
    Ls {
        /// A glob over "namespace.name" (or just "name" in the default namespace); `*` and `?` are wildcards.
        glob: Option<String>,
        /// Server and credentials.
        #[command(flatten)]
        connection: Connection,
    },
    /// Upload a .parquet, .csv or .arrow file as a named flight.
    Put {
        /// The file to upload.
        file: PathBuf,
        /// The name ("trips" or "sales.trips").
        #[arg(long)]
        name: String,
        /// What to do when the name exists (the server's default when unset).
        #[arg(long, value_enum)]
        mode: Option<PutMode>,
        /// Server and credentials.
        #[command(flatten)]
        connection: Connection,
    },
    /// Fetch a flight by name or id: a table on the terminal, or a .parquet, .csv or .arrow file with -o.
    Get {
        /// A name ("trips", "sales.trips") or a flight id ("42").
        flight: String,
        /// Write to this file instead (format from its extension).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Server and credentials.
        #[command(flatten)]
        connection: Connection,
    },
    /// Run a SQL query (or fetch its cached result): a table on the terminal, or a file with -o.
    Sql {
        /// The query.
        query: String,
        /// Write to this file instead (format from its extension).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Server and credentials.
        #[command(flatten)]
        connection: Connection,
    },
    /// Drop a flight by name or id (and every name pointing at it).
    Drop {
        /// A name or a flight id.
        flight: String,
        /// Server and credentials.
        #[command(flatten)]
        connection: Connection,
    },
    /// Print the server's counters (the `stats` action) as JSON.
    Stats {
        /// Server and credentials.
        #[command(flatten)]
        connection: Connection,
    },
}

/// Why a client subcommand failed, and so its exit code.
#[derive(Debug)]
pub enum CliError {
    /// The server answered with a gRPC status (or could not be reached: UNAVAILABLE).
    Status(tonic::Status),
    /// A local problem: a file, a format, an argument.
    Local(String),
}

impl CliError {
    /// `10 + code` for gRPC statuses, 1 for local problems.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Status(s) => 10 + s.code() as u8,
            CliError::Local(_) => 1,
        }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Status(s) => write!(f, "{}: {}", crate::metrics::code_name(s.code() as i32), s.message()),
            CliError::Local(m) => f.write_str(m),
        }
    }
}

impl From<FlightError> for CliError {
    fn from(e: FlightError) -> Self {
        match e {
            FlightError::Tonic(status) => CliError::Status(*status),
            other => CliError::Local(other.to_string()),
        }
    }
}

impl From<arrow::error::ArrowError> for CliError {
    fn from(e: arrow::error::ArrowError) -> Self {
        CliError::Local(e.to_string())
    }
}

impl From<parquet::errors::ParquetError> for CliError {
    fn from(e: parquet::errors::ParquetError) -> Self {
        CliError::Local(e.to_string())
    }
}

type CliResult<T> = std::result::Result<T, CliError>;

/// Runs `command` and returns what to print on stdout.
pub async fn run(command: ClientCommand) -> CliResult<String> {
    match command {
        ClientCommand::Ls { glob, connection } => ls(&mut connect(&connection).await?, glob.as_deref()).await,
        ClientCommand::Put {
            file,
            name,
            mode,
            connection,
        } => put(&mut connect(&connection).await?, &file, &name, mode).await,
        ClientCommand::Get {
            flight,
            output,
            connection,
        } => {
            let mut client = connect(&connection).await?;
            let info = client.get_flight_info(descriptor_of(&flight)).await?;
            deliver(&mut client, info, output.as_deref()).await
        }
        ClientCommand::Sql {
            query,
            output,
            connection,
        } => {
            let mut client = connect(&connection).await?;
            let info = client.get_flight_info(FlightDescriptor::new_cmd(query)).await?;
            deliver(&mut client, info, output.as_deref()).await
        }
        ClientCommand::Drop { flight, connection } => {
            let body = match flight.parse::<u64>() {
                Ok(id) => json!({ "id": id }),
                Err(_) => json!({ "name": flight }),
            };
            let answer = action(&mut connect(&connection).await?, "drop", &body).await?;
            Ok(format!("dropped flight {}", answer["dropped"]))
        }
        ClientCommand::Stats { connection } => {
            let answer = action(&mut connect(&connection).await?, "stats", &json!({})).await?;
            serde_json::to_string_pretty(&answer).map_err(|e| CliError::Local(e.to_string()))
        }
    }
}

async fn connect(connection: &Connection) -> CliResult<FlightClient> {
    let url = &connection.url;
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("grpc+tls://") {
        ("https", rest)
    } else if let Some(rest) = url.strip_prefix("grpc://").or_else(|| url.strip_prefix("grpc+tcp://")) {
        ("http", rest)
    } else {
        return Err(CliError::Local(format!(
            "unsupported URL {url:?}: expected grpc://host:port or grpc+tls://host:port"
        )));
    };
    let mut endpoint = tonic::transport::Endpoint::from_shared(format!("{scheme}://{rest}"))
        .map_err(|e| CliError::Local(format!("bad URL {url:?}: {e}")))?;
    if scheme == "https" {
        let ca = connection.tls_ca.as_deref().ok_or_else(|| {
            CliError::Local("grpc+tls:// needs --tls-ca: the CA certificate the server's certificate chains to".into())
        })?;
        let pem = std::fs::read(ca).map_err(|e| CliError::Local(format!("cannot read {}: {e}", ca.display())))?;
        let host = endpoint.uri().host().unwrap_or_default().to_string();
        endpoint = endpoint
            .tls_config(
                tonic::transport::ClientTlsConfig::new()
                    .ca_certificate(tonic::transport::Certificate::from_pem(pem))
                    .domain_name(host),
            )
            .map_err(|e| CliError::Local(format!("TLS settings: {e}")))?;
    }
    let channel = endpoint.connect().await.map_err(|e| {
        CliError::Status(tonic::Status::unavailable(format!(
            "cannot reach {}: {e}",
            connection.url
        )))
    })?;
    let mut client = FlightClient::new(channel);
    if let Some(token) = &connection.token {
        client.add_header("authorization", &format!("Bearer {token}"))?;
    }
    Ok(client)
}

/// `PATH ["42"]` for an id, `PATH ["ns", "name"]` for `ns.name`, `PATH ["name"]` otherwise.
fn descriptor_of(flight: &str) -> FlightDescriptor {
    match flight.split_once('.') {
        Some((namespace, name)) => FlightDescriptor::new_path(vec![namespace.to_string(), name.to_string()]),
        None => FlightDescriptor::new_path(vec![flight.to_string()]),
    }
}

async fn action(client: &mut FlightClient, kind: &str, body: &Value) -> CliResult<Value> {
    let body = serde_json::to_vec(body).map_err(|e| CliError::Local(e.to_string()))?;
    let results: Vec<_> = client.do_action(Action::new(kind, body)).await?.try_collect().await?;
    let first = results
        .first()
        .ok_or_else(|| CliError::Local(format!("the {kind} action answered nothing")))?;
    serde_json::from_slice(first).map_err(|e| CliError::Local(format!("the {kind} action's answer: {e}")))
}

async fn ls(client: &mut FlightClient, glob: Option<&str>) -> CliResult<String> {
    let infos: Vec<FlightInfo> = client.list_flights(Vec::<u8>::new()).await?.try_collect().await?;
    let mut lines = vec![format!(
        "{:>6}  {:<32}  {:>12}  {:>14}  {}",
        "id", "name", "rows", "bytes", "state"
    )];
    for info in &infos {
        let meta: Value = serde_json::from_slice(&info.app_metadata).unwrap_or_default();
        let name = match (meta["namespace"].as_str(), meta["name"].as_str()) {
            (Some(ns), Some(name)) if ns != crate::store::DEFAULT_NAMESPACE => format!("{ns}.{name}"),
            (_, Some(name)) => name.to_string(),
            _ => "-".to_string(),
        };
        if let Some(glob) = glob
            && !glob_matches(glob, &name)
        {
            continue;
        }
        lines.push(format!(
            "{:>6}  {:<32}  {:>12}  {:>14}  {}",
            meta["id"],
            name,
            info.total_records,
            info.total_bytes,
            meta["state"].as_str().unwrap_or("-")
        ));
    }
    Ok(lines.join("\n"))
}

/// Whether `text` matches `glob` (`*`: any run of characters, `?`: one character).
fn glob_matches(glob: &str, text: &str) -> bool {
    fn go(g: &[char], t: &[char]) -> bool {
        match (g.first(), t.first()) {
            (None, None) => true,
            (Some('*'), _) => go(&g[1..], t) || (!t.is_empty() && go(g, &t[1..])),
            (Some('?'), Some(_)) => go(&g[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => go(&g[1..], &t[1..]),
            _ => false,
        }
    }
    let g: Vec<char> = glob.chars().collect();
    let t: Vec<char> = text.chars().collect();
    go(&g, &t)
}

async fn put(client: &mut FlightClient, file: &Path, name: &str, mode: Option<PutMode>) -> CliResult<String> {
    let (schema, batches) = read_file(file)?;
    let (namespace, name) = match name.split_once('.') {
        Some((ns, n)) => (Some(ns), n),
        None => (None, name),
    };
    let mut command = json!({ "op": "put", "name": name });
    if let Some(ns) = namespace {
        command["namespace"] = json!(ns);
    }
    if let Some(mode) = mode {
        command["mode"] = json!(mode.as_str());
    }
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let progress = Progress::new("uploading", rows as u64);
    let counted = progress.clone();
    let batches = futures::stream::iter(batches).map(move |b| {
        counted.add(b.num_rows() as u64);
        Ok(b)
    });
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .with_flight_descriptor(Some(FlightDescriptor::new_cmd(command.to_string())))
        .build(batches);
    let results: Vec<_> = client.do_put(stream).await?.try_collect().await?;
    progress.finish();
    let answer: Value = results
        .first()
        .and_then(|r| serde_json::from_slice(&r.app_metadata).ok())
        .ok_or_else(|| CliError::Local("the upload answered no PutResult".into()))?;
    Ok(format!(
        "uploaded {} rows ({} bytes) as flight {} named {}",
        answer["num_rows"],
        answer["num_bytes"],
        answer["id"],
        answer["name"].as_str().unwrap_or("-")
    ))
}

/// Fetches every endpoint of `info`, then prints it as a table or writes it to `output`.
async fn deliver(client: &mut FlightClient, info: FlightInfo, output: Option<&Path>) -> CliResult<String> {
    let schema: SchemaRef = Arc::new(info.clone().try_decode_schema()?);
    let progress = Progress::new("downloading", u64::try_from(info.total_records).unwrap_or(0));
    let mut batches = Vec::new();
    for endpoint in &info.endpoint {
        let Some(ticket) = endpoint.ticket.clone() else {
            continue;
        };
        let mut stream = client.do_get(ticket).await?;
        while let Some(batch) = stream.try_next().await? {
            progress.add(batch.num_rows() as u64);
            batches.push(batch);
        }
    }
    progress.finish();
    match output {
        None => Ok(arrow::util::pretty::pretty_format_batches(&batches)?.to_string()),
        Some(path) => {
            write_file(path, &schema, &batches)?;
            let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
            Ok(format!("wrote {rows} rows to {}", path.display()))
        }
    }
}

/// A transfer's progress in rows, drawn on stderr only once the transfer has lasted [`Progress::MOMENT`] and only
/// when stderr is a terminal (indicatif hides it otherwise), so quick commands and scripts print nothing extra.
#[derive(Clone)]
struct Progress {
    bar: ProgressBar,
    started: Instant,
    /// Whether the bar was given its terminal yet (once).
    shown: Arc<AtomicBool>,
}

impl Progress {
    const MOMENT: Duration = Duration::from_millis(500);

    fn new(what: &'static str, total_rows: u64) -> Self {
        let bar = ProgressBar::hidden();
        bar.set_length(total_rows);
        bar.set_message(what);
        if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {human_pos}/{human_len} rows, {elapsed}") {
            bar.set_style(style.progress_chars("=> "));
        }
        Self {
            bar,
            started: Instant::now(),
            shown: Arc::new(AtomicBool::new(false)),
        }
    }

    fn add(&self, rows: u64) {
        self.bar.inc(rows);
        if self.started.elapsed() >= Self::MOMENT && !self.shown.swap(true, Ordering::Relaxed) {
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
        }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// The file formats, by extension.
enum Format {
    Parquet,
    Csv,
    Arrow,
}

fn format_of(path: &Path) -> CliResult<Format> {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("parquet") => Ok(Format::Parquet),
        Some("csv") => Ok(Format::Csv),
        Some("arrow" | "ipc" | "feather") => Ok(Format::Arrow),
        _ => Err(CliError::Local(format!(
            "{}: unknown format; use a .parquet, .csv or .arrow file",
            path.display()
        ))),
    }
}

fn open(path: &Path) -> CliResult<File> {
    File::open(path).map_err(|e| CliError::Local(format!("cannot read {}: {e}", path.display())))
}

fn read_file(path: &Path) -> CliResult<(SchemaRef, Vec<RecordBatch>)> {
    match format_of(path)? {
        Format::Parquet => {
            let reader =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(open(path)?)?.build()?;
            let schema = reader.schema();
            Ok((schema, reader.collect::<Result<_, _>>()?))
        }
        Format::Csv => {
            let format = arrow::csv::reader::Format::default().with_header(true);
            let (schema, _) = format.infer_schema(open(path)?, Some(10_000))?;
            let schema = Arc::new(schema);
            let reader = arrow::csv::ReaderBuilder::new(Arc::clone(&schema))
                .with_format(format)
                .build(open(path)?)?;
            Ok((schema, reader.collect::<Result<_, _>>()?))
        }
        Format::Arrow => {
            let reader = arrow::ipc::reader::FileReader::try_new(open(path)?, None)?;
            let schema = reader.schema();
            Ok((schema, reader.collect::<Result<_, _>>()?))
        }
    }
}

fn write_file(path: &Path, schema: &SchemaRef, batches: &[RecordBatch]) -> CliResult<()> {
    let format = format_of(path)?;
    let file = File::create(path).map_err(|e| CliError::Local(format!("cannot write {}: {e}", path.display())))?;
    match format {
        Format::Parquet => {
            let mut writer = parquet::arrow::ArrowWriter::try_new(file, Arc::clone(schema), None)?;
            for b in batches {
                writer.write(b)?;
            }
            writer.close()?;
        }
        Format::Csv => {
            let mut writer = arrow::csv::WriterBuilder::new().with_header(true).build(file);
            for b in batches {
                writer.write(b)?;
            }
        }
        Format::Arrow => {
            let mut writer = arrow::ipc::writer::FileWriter::try_new(file, schema)?;
            for b in batches {
                writer.write(b)?;
            }
            writer.finish()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_matches("*", "trips"));
        assert!(glob_matches("sales.*", "sales.trips"));
        assert!(glob_matches("t?ips", "trips"));
        assert!(!glob_matches("t?ips", "tips"));
        assert!(!glob_matches("sales.*", "trips"));
    }

    #[test]
    fn exit_codes_follow_the_grpc_code() {
        assert_eq!(CliError::Status(tonic::Status::not_found("x")).exit_code(), 15);
        assert_eq!(CliError::Status(tonic::Status::unavailable("x")).exit_code(), 24);
        assert_eq!(CliError::Local("x".into()).exit_code(), 1);
    }
}
