//! Errors a person can act on: every failure that reaches the user passes
//! through [`CliError`], whose messages say what went wrong and what to do.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tonic::Code;

/// What the CLI reports before exiting non-zero.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The socket is missing or nobody listens on it.
    #[error("cannot connect to criad at {}: is it running? start it with `sudo criad` or `sudo systemctl start criad`", path.display())]
    DaemonUnreachable { path: PathBuf },
    /// The socket exists but this user may not open it.
    #[error("permission denied on {}: run as root (sudo)", path.display())]
    PermissionDenied { path: PathBuf },
    /// Connecting failed for another reason.
    #[error("cannot connect to criad at {}: {detail}", path.display())]
    Connect { path: PathBuf, detail: String },
    /// The runtime did not answer in time.
    #[error("{op}: no answer from the runtime within {}s (raise --timeout)", after.as_secs_f64())]
    Timeout { op: &'static str, after: Duration },
    /// The registry has no such image (or no such repository).
    #[error("{0}")]
    ImageNotFound(String),
    /// The runtime refused or failed an RPC.
    #[error("{op}: {message}")]
    Rpc {
        op: &'static str,
        code: Code,
        message: String,
    },
    /// No container, pod or image matches what the user typed.
    #[error("no such {kind}: {query}")]
    NotFound { kind: &'static str, query: String },
    /// A prefix matches more than one object.
    #[error("{kind} {query:?} is ambiguous, it matches: {}", candidates.join(", "))]
    Ambiguous {
        kind: &'static str,
        query: String,
        candidates: Vec<String>,
    },
    /// The command line is well-formed for clap but still makes no sense.
    #[error("{0}")]
    Usage(String),
    /// The runtime refused Exec/Attach, which interactive mode needs.
    #[error("interactive mode needs the runtime's streaming support: {0}")]
    NeedsStreaming(String),
}

impl CliError {
    /// The process exit status for this error: 125 for usage errors, as docker does, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 125,
            _ => 1,
        }
    }

    /// Turns a failed connection (from tonic's transport) into an actionable error.
    pub fn from_connect(path: &Path, err: &(dyn std::error::Error + 'static)) -> CliError {
        match find_io_kind(err) {
            Some(io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused) => {
                CliError::DaemonUnreachable {
                    path: path.to_path_buf(),
                }
            }
            Some(io::ErrorKind::PermissionDenied) => CliError::PermissionDenied {
                path: path.to_path_buf(),
            },
            _ => CliError::Connect {
                path: path.to_path_buf(),
                detail: error_chain(err),
            },
        }
    }

    /// Turns a failed RPC into an error naming the operation.
    pub fn from_status(op: &'static str, path: &Path, status: tonic::Status) -> CliError {
        if status.code() == Code::Unavailable {
            if let Some(kind) = std::error::Error::source(&status).and_then(find_io_kind) {
                if matches!(
                    kind,
                    io::ErrorKind::NotFound
                        | io::ErrorKind::ConnectionRefused
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::BrokenPipe
                ) {
                    return CliError::DaemonUnreachable {
                        path: path.to_path_buf(),
                    };
                }
            }
        }
        let message = match status.code() {
            Code::Unimplemented => {
                format!("the runtime does not implement this ({})", status.message())
            }
            _ => status.message().to_string(),
        };
        CliError::Rpc {
            op,
            code: status.code(),
            message,
        }
    }

    /// Explains an unimplemented Exec/Attach RPC as missing streaming support, in the runtime's words.
    pub fn streaming_refused(self) -> CliError {
        match self {
            CliError::Rpc {
                op,
                message,
                code: Code::Unimplemented,
            } => CliError::NeedsStreaming(format!("{op} failed: {message}")),
            other => other,
        }
    }

    /// The gRPC code when this error came from the runtime.
    pub fn code(&self) -> Option<Code> {
        match self {
            CliError::Rpc { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Finds the first `io::Error` in a source chain and returns its kind.
fn find_io_kind(err: &(dyn std::error::Error + 'static)) -> Option<io::ErrorKind> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return Some(io.kind());
        }
        cur = e.source();
    }
    None
}

/// Renders an error and its sources as one line.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("transport error")]
    struct Wrapper(#[source] io::Error);

    #[test]
    fn missing_socket_says_how_to_start_the_daemon() {
        let err = Wrapper(io::Error::from(io::ErrorKind::NotFound));
        let msg = CliError::from_connect(Path::new("/run/cria/cria.sock"), &err).to_string();
        assert_eq!(
            msg,
            "cannot connect to criad at /run/cria/cria.sock: is it running? start it with `sudo criad` or `sudo systemctl start criad`"
        );
    }

    #[test]
    fn eacces_says_run_as_root() {
        let err = Wrapper(io::Error::from(io::ErrorKind::PermissionDenied));
        let e = CliError::from_connect(Path::new("/x.sock"), &err);
        assert_eq!(
            e.to_string(),
            "permission denied on /x.sock: run as root (sudo)"
        );
        assert_eq!(e.exit_code(), 1);
    }

    #[test]
    fn usage_errors_exit_125() {
        assert_eq!(CliError::Usage("bad".into()).exit_code(), 125);
    }

    #[test]
    fn status_keeps_the_daemon_message() {
        let e = CliError::from_status(
            "remove image",
            Path::new("/x"),
            tonic::Status::not_found("image \"x\" not found"),
        );
        assert_eq!(e.to_string(), "remove image: image \"x\" not found");
        assert_eq!(e.code(), Some(Code::NotFound));
    }
}
