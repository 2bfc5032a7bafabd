//! One error type for the engine. Each variant carries the facts a person needs
//! (expected and actual values, the offending entry path); `py/errors.rs` maps
//! variants onto the Python exception tree with a stable slug.

use std::io;
use std::path::{Path, PathBuf};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A digest (of the blob, or of the uncompressed stream) is not what was promised.
    #[error("{what} mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        what: &'static str,
        expected: String,
        actual: String,
    },

    #[error("size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch { expected: u64, actual: String },

    #[error("unsupported digest algorithm {0:?}: supported are sha256, sha512, blake3")]
    UnsupportedAlgorithm(String),

    #[error("invalid digest {digest:?}: {reason}")]
    InvalidDigest { digest: String, reason: String },

    /// The stream is neither a supported compression format nor a tar archive.
    #[error("unsupported layer format: {found}; supported are gzip, zstd, bzip2, xz and uncompressed tar")]
    UnsupportedCompression { found: String },

    #[error("corrupt {format} stream: {source}")]
    Decompress {
        format: &'static str,
        #[source]
        source: io::Error,
    },

    /// An entry that would land outside the target, or otherwise may not be created.
    #[error("unsafe layer entry {path:?}: {reason}")]
    UnsafePath { path: String, reason: String },

    #[error("malformed tar archive: {0}")]
    BadTar(String),

    #[error(
        "decompression ratio over the limit: {uncompressed} bytes out of {compressed} compressed \
         (limit {limit}x); refusing a possible decompression bomb"
    )]
    RatioExceeded {
        compressed: u64,
        uncompressed: u64,
        limit: f64,
    },

    #[error("layer exceeds a limit: {0}")]
    LimitExceeded(String),

    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("{0}")]
    InvalidArgument(String),

    #[error("the sink is closed: {0}")]
    Closed(&'static str),

    /// A bug in towline (a worker thread panicked): never the layer's fault.
    #[error("internal error: {0}; this is a bug in towline, please report it")]
    Internal(String),
}

impl Error {
    pub fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn unsafe_path(path: &[u8], reason: impl Into<String>) -> Self {
        Error::UnsafePath {
            path: String::from_utf8_lossy(path).into_owned(),
            reason: reason.into(),
        }
    }

    pub fn bad_tar(reason: impl Into<String>) -> Self {
        Error::BadTar(reason.into())
    }

    pub fn panicked(thread: &str) -> Self {
        Error::Internal(format!("the {thread} thread panicked"))
    }

    /// Stable identifier used by Python callers (`TowlineError.slug`).
    pub fn slug(&self) -> &'static str {
        match self {
            Error::DigestMismatch { what, .. } => {
                if *what == "diff_id" {
                    "diff_id_mismatch"
                } else {
                    "digest_mismatch"
                }
            }
            Error::SizeMismatch { .. } => "size_mismatch",
            Error::UnsupportedAlgorithm(_) => "unsupported_algorithm",
            Error::InvalidDigest { .. } => "invalid_digest",
            Error::UnsupportedCompression { .. } => "unsupported_compression",
            Error::Decompress { .. } => "corrupt_stream",
            Error::UnsafePath { .. } => "unsafe_path",
            Error::BadTar(_) => "bad_tar",
            Error::RatioExceeded { .. } => "decompression_bomb",
            Error::LimitExceeded(_) => "limit_exceeded",
            Error::Io { .. } => "io",
            Error::InvalidArgument(_) => "invalid_argument",
            Error::Closed(_) => "closed",
            Error::Internal(_) => "internal",
        }
    }
}

/// Errors travel inside `io::Error` through `Read` impls (the decoders read from
/// our chunk channel); this recovers the original engine error on the way out.
pub fn into_io(err: Error) -> io::Error {
    io::Error::other(err)
}

pub fn from_io(err: io::Error, format: &'static str) -> Error {
    if !err.get_ref().is_some_and(|inner| inner.is::<Error>()) {
        return Error::Decompress {
            format,
            source: err,
        };
    }
    match err.into_inner().map(|inner| inner.downcast::<Error>()) {
        Some(Ok(engine)) => *engine,
        // Unreachable: the type was checked above; keep a truthful error anyway.
        _ => Error::Internal("an I/O error lost its engine error while unwrapping".into()),
    }
}
