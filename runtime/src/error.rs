//! The runtime's error type.

use std::path::PathBuf;

/// Everything that can go wrong in the runtime; messages name the object.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// No container/sandbox with this id.
    #[error("container {0} not found")]
    NotFound(String),
    /// A container with this id already exists.
    #[error("container {0} already exists")]
    AlreadyExists(String),
    /// The request or the OCI spec is invalid; names the field.
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// The offending field, e.g. `linux.resources.memory.limit`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The operation does not fit the container's state.
    #[error("container {id} is {state}: cannot {op}")]
    InvalidState {
        /// Container id.
        id: String,
        /// Its current state.
        state: String,
        /// The refused operation.
        op: String,
    },
    /// Creating or starting the container failed at a setup step; the
    /// message names the step and path, e.g. `exec "/bin/nope": no such file or directory`.
    #[error("container {id}: {message}")]
    Setup {
        /// Container id.
        id: String,
        /// Step, path and cause.
        message: String,
    },
    /// Waiting for the container timed out.
    #[error("container {id}: timed out waiting to {op}")]
    Timeout {
        /// Container id.
        id: String,
        /// What was awaited.
        op: String,
    },
    /// A file system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was attempted (`read`, `mkdir`, ...).
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A system call failed.
    #[error("{op}: {source}")]
    Sys {
        /// What was attempted, with its object.
        op: String,
        /// The errno.
        #[source]
        source: nix::Error,
    },
    /// The monitor broke its protocol or could not be started.
    #[error("monitor of {id}: {message}")]
    Monitor {
        /// Container or sandbox id.
        id: String,
        /// What went wrong.
        message: String,
    },
    /// A feature this runtime does not implement.
    #[error("unsupported: {0}")]
    Unsupported(String),
}

impl RuntimeError {
    /// Shorthand for an `Io` error.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        RuntimeError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Shorthand for a `Sys` error.
    pub(crate) fn sys(op: impl Into<String>, source: nix::Error) -> Self {
        RuntimeError::Sys {
            op: op.into(),
            source,
        }
    }
}
