//! The error type of the overlay crate.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while unpacking layers, managing snapshots or
/// mounting a rootfs.
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    /// A chain ID is not `sha256:<64 hex>` (or the bare hex).
    #[error("invalid chain id {id:?}: expected sha256:<64 lower-case hex digits>")]
    InvalidChainId {
        /// The offending ID as given.
        id: String,
    },

    /// A diff ID is not a `sha256:` digest this crate can verify.
    #[error("unsupported diff id {digest:?}: only sha256:<64 hex> is supported")]
    UnsupportedDiffId {
        /// The offending digest as given.
        digest: String,
    },

    /// A tar entry was refused: it would write outside the snapshot, or it is
    /// malformed. Nothing of the layer is kept.
    #[error("layer entry {entry:?} refused: {reason}")]
    BadEntry {
        /// The entry's path as written in the archive (lossy UTF-8).
        entry: String,
        /// Why it was refused.
        reason: String,
    },

    /// The uncompressed stream does not hash to the expected diff ID.
    #[error("layer {chain_id}: diff id mismatch: expected {expected}, got {actual}")]
    DiffIdMismatch {
        /// The snapshot being created.
        chain_id: String,
        /// The diff ID the image config promised.
        expected: String,
        /// The digest of the bytes actually received.
        actual: String,
    },

    /// Reading, decompressing or parsing the layer stream failed (this
    /// includes a digest or size mismatch reported by the caller's reader).
    #[error("layer {chain_id}: reading the layer stream: {source}")]
    Stream {
        /// The snapshot being created.
        chain_id: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A snapshot a rootfs needs is not committed.
    #[error("snapshot {chain_id} is not committed")]
    NotCommitted {
        /// The missing snapshot.
        chain_id: String,
    },

    /// A filesystem operation on a path failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done, e.g. `creating directory`.
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// Mounting or unmounting a rootfs failed.
    #[error("{op} {target}: {source}")]
    Mount {
        /// What was being done, e.g. `mounting overlay on`.
        op: &'static str,
        /// The mount point.
        target: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl OverlayError {
    /// Builds an [`OverlayError::Io`] from any error convertible to `io::Error`.
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
        source: impl Into<io::Error>,
    ) -> Self {
        OverlayError::Io {
            op,
            path: path.into(),
            source: source.into(),
        }
    }

    /// Builds an [`OverlayError::BadEntry`] for the entry path `entry`.
    pub(crate) fn bad_entry(entry: &[u8], reason: impl Into<String>) -> Self {
        OverlayError::BadEntry {
            entry: String::from_utf8_lossy(entry).into_owned(),
            reason: reason.into(),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = OverlayError> = std::result::Result<T, E>;
