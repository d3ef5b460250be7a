//! One [`Error`] type for the crate and the single exhaustive mapping from it to a gRPC [`tonic::Status`].

use datafusion::error::DataFusionError;

/// Longest message sent to a client; longer ones are cut (DataFusion plans can be very long).
const MAX_MESSAGE_LEN: usize = 4096;

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in flightbay, by what the client should do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flight, name, namespace or ticket that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Bad JSON, SQL, schema or arguments.
    #[error("{0}")]
    InvalidArgument(String),
    /// A name that is taken.
    #[error("{0}")]
    AlreadyExists(String),
    /// Memory and disk are both full.
    #[error("flightbay: {0}")]
    ResourceExhausted(String),
    /// A feature flightbay does not offer.
    #[error("{0}")]
    Unimplemented(String),
    /// The request was cancelled.
    #[error("{0}")]
    Cancelled(String),
    /// No credentials, or credentials that are not valid (bad signature, expired, unknown user, wrong password).
    #[error("{0}")]
    Unauthenticated(String),
    /// Valid credentials without the grant the request needs.
    #[error("{0}")]
    PermissionDenied(String),
    /// A bug or an unexpected failure.
    #[error("{0}")]
    Internal(String),
    /// The server is busy (every computation slot and queue place taken, or too many password checks at once);
    /// the same request may succeed after `retry_after_ms`, which travels as `grpc-retry-pushback-ms`.
    #[error("flightbay: {message}")]
    Unavailable {
        /// What is busy.
        message: String,
        /// When a retry makes sense.
        retry_after_ms: u64,
    },
    /// The client's deadline (`grpc-timeout`) or `--query-timeout` passed; the computation was stopped.
    #[error("flightbay: {0}")]
    DeadlineExceeded(String),
    /// An error from DataFusion, classified when mapped to a status.
    #[error(transparent)]
    DataFusion(#[from] Box<DataFusionError>),
    /// An Arrow error (decoding, casting, …).
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),
    /// A Parquet error while spilling or reloading.
    #[error(transparent)]
    Parquet(#[from] parquet::errors::ParquetError),
    /// File system I/O.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// [`Error::NotFound`].
    pub fn not_found(msg: impl Into<String>) -> Self {
        Self::NotFound(msg.into())
    }
    /// [`Error::InvalidArgument`].
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::InvalidArgument(msg.into())
    }
    /// [`Error::Internal`].
    pub fn internal(msg: impl Into<String>) -> Self {
        Self::Internal(msg.into())
    }
    /// [`Error::Unauthenticated`].
    pub fn unauthenticated(msg: impl Into<String>) -> Self {
        Self::Unauthenticated(msg.into())
    }
    /// [`Error::PermissionDenied`].
    pub fn denied(msg: impl Into<String>) -> Self {
        Self::PermissionDenied(msg.into())
    }
    /// [`Error::Unimplemented`].
    pub fn unimplemented(msg: impl Into<String>) -> Self {
        Self::Unimplemented(msg.into())
    }
}

impl From<DataFusionError> for Error {
    fn from(e: DataFusionError) -> Self {
        // Our own errors travel through DataFusion streams wrapped as External; unwrap them back.
        match e {
            DataFusionError::External(inner) => match inner.downcast::<Error>() {
                Ok(ours) => *ours,
                Err(other) => Self::DataFusion(Box::new(DataFusionError::External(other))),
            },
            other => Self::DataFusion(Box::new(other)),
        }
    }
}

impl From<arrow_flight::error::FlightError> for Error {
    fn from(e: arrow_flight::error::FlightError) -> Self {
        use arrow_flight::error::FlightError as F;
        match e {
            F::Arrow(e) => Self::Arrow(e),
            F::NotYetImplemented(m) => Self::Unimplemented(m),
            F::Tonic(status) => Self::Cancelled(format!("client stream failed: {}", status.message())),
            F::ProtocolError(m) | F::DecodeError(m) => Self::InvalidArgument(m),
            F::ExternalError(e) => match e.downcast::<Error>() {
                Ok(ours) => *ours,
                Err(other) => Self::InvalidArgument(other.to_string()),
            },
        }
    }
}

/// The gRPC code for a DataFusion error, looking at its root cause first.
fn datafusion_code(e: &DataFusionError) -> tonic::Code {
    use tonic::Code;
    if is_spill_disk_limit(e) {
        return Code::ResourceExhausted;
    }
    match e.find_root() {
        DataFusionError::ResourcesExhausted(_) => Code::ResourceExhausted,
        DataFusionError::SQL(..)
        | DataFusionError::Plan(_)
        | DataFusionError::SchemaError(..)
        | DataFusionError::NotImplemented(_)
        | DataFusionError::Configuration(_) => Code::InvalidArgument,
        DataFusionError::ArrowError(e, _) => arrow_code(e),
        DataFusionError::Execution(_) => Code::InvalidArgument,
        DataFusionError::External(inner) => match inner.downcast_ref::<Error>() {
            Some(ours) => ours.code(),
            None => Code::Internal,
        },
        _ => Code::Internal,
    }
}

/// DataFusion reports its spill files outgrowing their limit (flightbay's `--disk-limit`) only as this I/O error text.
const SPILL_DISK_LIMIT: &str = "spilling process has exceeded the allowable limit";

/// Whether `e` is DataFusion's spill files reaching the disk limit.
fn is_spill_disk_limit(e: &DataFusionError) -> bool {
    match e.find_root() {
        DataFusionError::ArrowError(a, _) => {
            matches!(a.as_ref(), arrow::error::ArrowError::IoError(m, _) if m.contains(SPILL_DISK_LIMIT))
        }
        DataFusionError::IoError(io) => io.to_string().contains(SPILL_DISK_LIMIT),
        _ => false,
    }
}

fn arrow_code(e: &arrow::error::ArrowError) -> tonic::Code {
    use arrow::error::ArrowError as A;
    match e {
        A::IoError(m, _) if m.contains(SPILL_DISK_LIMIT) => tonic::Code::ResourceExhausted,
        A::ExternalError(_) | A::IoError(..) | A::MemoryError(_) => tonic::Code::Internal,
        _ => tonic::Code::InvalidArgument,
    }
}

impl Error {
    /// The gRPC code clients see for this error. Exhaustive on purpose: a new variant must pick its code.
    pub fn code(&self) -> tonic::Code {
        use tonic::Code;
        match self {
            Error::NotFound(_) => Code::NotFound,
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::AlreadyExists(_) => Code::AlreadyExists,
            Error::ResourceExhausted(_) => Code::ResourceExhausted,
            Error::Unimplemented(_) => Code::Unimplemented,
            Error::Cancelled(_) => Code::Cancelled,
            Error::Unauthenticated(_) => Code::Unauthenticated,
            Error::PermissionDenied(_) => Code::PermissionDenied,
            Error::Internal(_) => Code::Internal,
            Error::Unavailable { .. } => Code::Unavailable,
            Error::DeadlineExceeded(_) => Code::DeadlineExceeded,
            Error::DataFusion(e) => datafusion_code(e),
            Error::Arrow(e) => arrow_code(e),
            Error::Parquet(_) => Code::Internal,
            Error::Io(e) if e.kind() == std::io::ErrorKind::StorageFull => Code::ResourceExhausted,
            Error::Io(_) => Code::Internal,
        }
    }

    fn message(&self) -> String {
        let msg = match self {
            Error::DataFusion(e) if is_spill_disk_limit(e) => {
                "flightbay: the query's spill files reached the disk limit; raise --disk-limit or drop flights".into()
            }
            Error::DataFusion(e) => match e.find_root() {
                DataFusionError::ResourcesExhausted(m) => format!("flightbay: query exceeds the memory budget: {m}"),
                DataFusionError::External(inner) => match inner.downcast_ref::<Error>() {
                    Some(ours) => ours.to_string(),
                    None => inner.to_string(),
                },
                root => root.to_string(),
            },
            other => other.to_string(),
        };
        cap(msg)
    }
}

fn cap(mut msg: String) -> String {
    if msg.len() > MAX_MESSAGE_LEN {
        let mut end = MAX_MESSAGE_LEN;
        while !msg.is_char_boundary(end) {
            end -= 1;
        }
        msg.truncate(end);
        msg.push('…');
    }
    msg
}

impl Error {
    /// What a failed read of a client's request stream means: a message over `--max-message-size` is
    /// RESOURCE_EXHAUSTED, bytes that do not decode as the RPC's protobuf message are INVALID_ARGUMENT (tonic
    /// reports both as other codes), and anything else is the client going away (CANCELLED).
    pub fn from_client_stream(status: tonic::Status) -> Self {
        let message = status.message();
        if message.starts_with("Error, decoded message length too large") {
            return Self::ResourceExhausted(format!(
                "{message}; the server's --max-message-size bounds one message, so send smaller batches"
            ));
        }
        if status.code() == tonic::Code::ResourceExhausted {
            return Self::ResourceExhausted(message.to_string());
        }
        if status.code() == tonic::Code::Internal && is_decode_failure(message) {
            return Self::InvalidArgument(format!("request stream: {message}"));
        }
        Self::Cancelled(format!("upload stream failed: {message}"))
    }
}

/// Whether a tonic status message is prost's report of bytes that are not the expected protobuf message.
pub fn is_decode_failure(message: &str) -> bool {
    message.starts_with("failed to decode Protobuf message")
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        let retry_after_ms = match &e {
            Error::Unavailable { retry_after_ms, .. } => Some(*retry_after_ms),
            _ => None,
        };
        let code = e.code();
        let message = e.message();
        match code {
            tonic::Code::Internal | tonic::Code::Unknown | tonic::Code::DataLoss => {
                tracing::warn!(%message, "request failed")
            }
            _ => tracing::info!(?code, %message, "request rejected"),
        }
        let mut status = tonic::Status::new(code, message);
        if let Some(ms) = retry_after_ms {
            // The gRPC retry design's server pushback: clients that implement retries wait this long.
            status
                .metadata_mut()
                .insert("grpc-retry-pushback-ms", tonic::metadata::MetadataValue::from(ms));
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_messages() {
        let s: tonic::Status = Error::not_found("flight 9 does not exist").into();
        assert_eq!(s.code(), tonic::Code::NotFound);
        let s: tonic::Status = Error::ResourceExhausted("memory budget exceeded".into()).into();
        assert_eq!(s.message(), "flightbay: memory budget exceeded");
        let df = DataFusionError::Context("outer".into(), Box::new(DataFusionError::Plan("no column x".into())));
        let s: tonic::Status = Error::from(df).into();
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert!(s.message().contains("no column x"));
        let s: tonic::Status = Error::unauthenticated("no token").into();
        assert_eq!(s.code(), tonic::Code::Unauthenticated);
        let s: tonic::Status = Error::denied("needs write on sales").into();
        assert_eq!(s.code(), tonic::Code::PermissionDenied);
        let long: tonic::Status = Error::invalid("x".repeat(10_000)).into();
        assert!(long.message().len() <= MAX_MESSAGE_LEN + 3);
    }

    #[test]
    fn spill_files_over_the_disk_limit_are_resource_exhausted() {
        let io = std::io::Error::other(
            "The used disk space during the spilling process has exceeded the allowable limit of 1.0 MB.",
        );
        let arrow = arrow::error::ArrowError::IoError(io.to_string(), io);
        let s: tonic::Status = Error::from(DataFusionError::ArrowError(Box::new(arrow), None)).into();
        assert_eq!(s.code(), tonic::Code::ResourceExhausted);
        assert!(s.message().contains("--disk-limit"), "{}", s.message());
    }

    #[test]
    fn busy_and_late_have_their_codes() {
        let s: tonic::Status = Error::Unavailable {
            message: "8 computations running".into(),
            retry_after_ms: 250,
        }
        .into();
        assert_eq!(s.code(), tonic::Code::Unavailable);
        assert_eq!(s.message(), "flightbay: 8 computations running");
        assert_eq!(s.metadata().get("grpc-retry-pushback-ms").unwrap(), "250");
        let s: tonic::Status = Error::DeadlineExceeded("query timed out".into()).into();
        assert_eq!(s.code(), tonic::Code::DeadlineExceeded);
    }

    #[test]
    fn client_stream_failures_are_classified() {
        let big = tonic::Status::out_of_range(
            "Error, decoded message length too large: found 9 bytes, the limit is: 4 bytes",
        );
        assert_eq!(Error::from_client_stream(big).code(), tonic::Code::ResourceExhausted);
        let garbage = tonic::Status::internal("failed to decode Protobuf message: invalid wire type");
        assert_eq!(Error::from_client_stream(garbage).code(), tonic::Code::InvalidArgument);
        let gone = tonic::Status::cancelled("h2 protocol error");
        assert_eq!(Error::from_client_stream(gone).code(), tonic::Code::Cancelled);
    }

    #[test]
    fn our_errors_survive_datafusion_wrapping() {
        let wrapped = DataFusionError::External(Box::new(Error::not_found("flight 3 does not exist")));
        assert!(matches!(Error::from(wrapped), Error::NotFound(_)));
    }
}
