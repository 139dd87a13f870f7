//! Errors of the shared-memory platform.

use std::path::PathBuf;

use xennet_ring::DomId;

/// Why a platform operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ShmError {
    /// A file or directory operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The domain's files exist and belong to a live process.
    #[error("domain {0} already exists (owned by a running process)")]
    DomainExists(DomId),
    /// No files for this domain.
    #[error("domain {0} does not exist")]
    NoSuchDomain(DomId),
    /// A file has the wrong size or magic.
    #[error("{0}: not a valid xennet domain file")]
    BadFile(PathBuf),
    /// Another domain's file is larger or smaller than the platform accepts (checked
    /// before it is mapped).
    #[error("{path}: {size} bytes; a domain's file here must be {limit}")]
    PeerFileSize {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// What it may be.
        limit: &'static str,
    },
    /// Another domain's file could not be guarded against truncation (the SIGBUS
    /// handler is missing or every guard slot is in use), so it is not mapped.
    #[error("{0}: cannot guard the mapping against truncation; not mapped")]
    Unguarded(PathBuf),
    /// Sizes out of range.
    #[error("invalid size: {0}")]
    BadSize(&'static str),
    /// No free event-channel port.
    #[error("no free event-channel port")]
    NoFreePort,
    /// The port is not in the state the operation needs.
    #[error("event-channel port {0} is not usable for this operation")]
    BadPort(u32),
}

impl ShmError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ShmError::Io {
            path: path.into(),
            source,
        }
    }
}
