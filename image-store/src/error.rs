//! The crate's error type. The shim maps each variant to a gRPC code, so the
//! variants follow what a caller can act on, not where the error arose.

use std::path::PathBuf;

/// Everything that can go wrong in the image pipeline.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The image reference (or name/ID) given by the caller is malformed.
    #[error("invalid image reference {input:?}: {reason}")]
    InvalidReference {
        /// What the caller gave.
        input: String,
        /// Why it is not valid.
        reason: String,
    },

    /// The registry has no such tag, manifest or blob.
    #[error("{what} not found in registry {registry} for {reference}")]
    NotFound {
        /// The registry host.
        registry: String,
        /// The image reference being pulled.
        reference: String,
        /// What was looked for or checked.
        what: String,
    },

    /// The registry refused our credentials (or we had none).
    #[error("unauthorized to pull {reference} from registry {registry}: {detail}")]
    Unauthorized {
        /// The registry host.
        registry: String,
        /// The image reference being pulled.
        reference: String,
        /// Details, including any status and body snippet.
        detail: String,
    },

    /// A manifest, index or layer has a media type cria does not pull.
    #[error("unsupported media type {media_type:?} for {reference}: {detail}")]
    UnsupportedMediaType {
        /// The media type in question.
        media_type: String,
        /// The image reference being pulled.
        reference: String,
        /// Details, including any status and body snippet.
        detail: String,
    },

    /// An index or manifest list has no entry for this node's platform.
    #[error("no image for platform {wanted} in {reference}; offered: {offered}")]
    NoMatchingPlatform {
        /// The image reference being pulled.
        reference: String,
        /// The platform asked for.
        wanted: String,
        /// The platforms the index offers.
        offered: String,
    },

    /// Downloaded content does not match the digest (or size) it was addressed by.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was looked for or checked.
        what: String,
        /// What the manifest or caller said.
        expected: String,
        /// What arrived.
        actual: String,
    },

    /// The registry answered with an unexpected status or could not be reached.
    #[error("registry {registry}: {detail}")]
    Registry {
        /// The registry host.
        registry: String,
        /// Details, including any status and body snippet.
        detail: String,
    },

    /// A manifest, index or config could not be parsed.
    #[error("invalid {what} for {reference}: {detail}")]
    InvalidContent {
        /// What was looked for or checked.
        what: String,
        /// The image reference being pulled.
        reference: String,
        /// Details, including any status and body snippet.
        detail: String,
    },

    /// A local file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// The operation.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The layer unpacker failed.
    #[error("unpacking layer {digest}: {source}")]
    Unpack {
        /// The layer blob digest.
        digest: String,
        /// The underlying error.
        #[source]
        source: UnpackError,
    },

    /// The metadata database failed.
    #[error("image metadata: {0}")]
    Metadata(String),

    /// Registry client configuration (certificates, keys) is unusable.
    #[error("registry configuration for {host}: {detail}")]
    Config {
        /// The registry host (or file) the setting is for.
        host: String,
        /// What is wrong with it.
        detail: String,
    },
}

impl ImageError {
    /// Wraps an I/O error with the operation and path it concerns.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ImageError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

impl From<redb::Error> for ImageError {
    fn from(e: redb::Error) -> Self {
        ImageError::Metadata(e.to_string())
    }
}

macro_rules! redb_into_image_error {
    ($($t:ty),*) => {$(
        impl From<$t> for ImageError {
            fn from(e: $t) -> Self {
                ImageError::Metadata(e.to_string())
            }
        }
    )*};
}
redb_into_image_error!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// The error a [`crate::LayerUnpacker`] returns: any error, boxed, so the
/// unpacker's own error types stay its own.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UnpackError(#[source] pub Box<dyn std::error::Error + Send + Sync + 'static>);

impl UnpackError {
    /// Wraps any error (or a message) as an unpack error.
    pub fn new(e: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        UnpackError(e.into())
    }
}

impl From<std::io::Error> for UnpackError {
    fn from(e: std::io::Error) -> Self {
        UnpackError(Box::new(e))
    }
}
