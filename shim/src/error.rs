//! The one place where errors of cria's crates become gRPC statuses.
//!
//! Handlers return `Result<_, ShimError>` and let `?` gather the crates'
//! errors; the tonic boundary converts with `Status::from`. The code chosen
//! for each error is what a client can act on, explained beside each arm;
//! the message is the error's own text (it already names the object).

use cria_image_store::{ImageError, UnpackError};
use cria_overlay::OverlayError;
use cria_runtime::RuntimeError;
use tonic::{Code, Status};

/// Every error a CRI handler in criad can end with.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// From the image pipeline (references, registries, content, metadata).
    #[error(transparent)]
    Image(#[from] ImageError),
    /// From snapshots and rootfs mounts.
    #[error(transparent)]
    Overlay(#[from] OverlayError),
    /// From the container runtime (monitor, namespaces, cgroups, exec).
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The request itself is malformed (a required field is missing, …).
    #[error("{0}")]
    InvalidArgument(String),
    /// A bug or an impossible state inside criad.
    #[error("{0}")]
    Internal(String),
    /// A blocking task the handler waited on panicked or was cancelled.
    #[error("{op}: background task failed: {detail}")]
    Task {
        /// What the task was doing.
        op: &'static str,
        /// The join error.
        detail: String,
    },
}

impl ShimError {
    /// A blocking-task failure for `op`.
    pub fn task(op: &'static str, e: tokio::task::JoinError) -> ShimError {
        ShimError::Task {
            op,
            detail: e.to_string(),
        }
    }

    /// The gRPC code for this error.
    pub fn code(&self) -> Code {
        match self {
            ShimError::Image(e) => image_code(e),
            ShimError::Overlay(e) => overlay_code(e),
            ShimError::Runtime(e) => runtime_code(e),
            ShimError::InvalidArgument(_) => Code::InvalidArgument,
            ShimError::Internal(_) | ShimError::Task { .. } => Code::Internal,
        }
    }
}

impl From<ShimError> for Status {
    fn from(e: ShimError) -> Status {
        let code = e.code();
        // Internal errors are ours to fix: log them where they happen so the
        // daemon log has them even if the client drops the status.
        if code == Code::Internal {
            tracing::error!(error = %e, "internal error");
        }
        Status::new(code, e.to_string())
    }
}

/// Disk full (or quota) is a resource problem, not a bug.
fn io_code(e: &std::io::Error) -> Code {
    match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => Code::ResourceExhausted,
        _ => Code::Internal,
    }
}

fn image_code(e: &ImageError) -> Code {
    match e {
        // The caller's reference is malformed: retrying it cannot help.
        ImageError::InvalidReference { .. } => Code::InvalidArgument,
        // The registry has no such tag, manifest or blob.
        ImageError::NotFound { .. } => Code::NotFound,
        // The registry refused the credentials (or wanted some and got none).
        // kubelet shows the message either way; Unauthenticated tells a
        // person to look at credentials, which is the fix in both cases.
        ImageError::Unauthorized { .. } => Code::Unauthenticated,
        // Schema 1 or an unknown media type: the image is unusable for cria
        // whatever the node's state, so it is the argument that is wrong.
        // (Not Unimplemented: clients read that as "RPC not supported".)
        ImageError::UnsupportedMediaType { .. } => Code::InvalidArgument,
        // The image exists, but not for this platform: there is no image to
        // pull, as containerd reports it too.
        ImageError::NoMatchingPlatform { .. } => Code::NotFound,
        // Bytes did not hash to the digest they were addressed by: corrupted
        // content (on the registry or in transit). Nothing was kept.
        ImageError::DigestMismatch { .. } => Code::DataLoss,
        // The registry could not be reached or failed (5xx, reset, timeout):
        // worth retrying later.
        ImageError::Registry { .. } => Code::Unavailable,
        // A manifest, index or config that does not parse is corrupt content.
        ImageError::InvalidContent { .. } => Code::DataLoss,
        ImageError::Io { source, .. } => io_code(source),
        ImageError::Unpack { source, .. } => unpack_code(source),
        // Our own database failed.
        ImageError::Metadata(_) => Code::Internal,
        // Certificates or keys under certs.d are unusable: the node must be
        // fixed before pulls from that registry can work.
        ImageError::Config { .. } => Code::FailedPrecondition,
    }
}

/// The unpacker is ours (see layer_unpacker.rs): it boxes an
/// [`OverlayError`], so the code follows the overlay error inside.
fn unpack_code(e: &UnpackError) -> Code {
    match e.0.downcast_ref::<OverlayError>() {
        Some(overlay) => overlay_code(overlay),
        None => match e.0.downcast_ref::<std::io::Error>() {
            Some(io) => io_code(io),
            None => Code::Internal,
        },
    }
}

fn runtime_code(e: &RuntimeError) -> Code {
    match e {
        RuntimeError::NotFound(_) => Code::NotFound,
        RuntimeError::AlreadyExists(_) => Code::AlreadyExists,
        // The spec the shim built names a bad field: the request was wrong.
        RuntimeError::InvalidArgument { .. } => Code::InvalidArgument,
        // Start of a running container, exec in a stopped one, …
        RuntimeError::InvalidState { .. } => Code::FailedPrecondition,
        RuntimeError::Timeout { .. } => Code::DeadlineExceeded,
        RuntimeError::Unsupported(_) => Code::Unimplemented,
        // A setup step failed (e.g. exec of a missing binary, a mount of a
        // missing path): as other runtimes report it, Unknown with a message
        // naming the step and path; kubelet shows that message.
        RuntimeError::Setup { .. } => Code::Unknown,
        RuntimeError::Io { source, .. } => io_code(source),
        RuntimeError::Sys { .. } | RuntimeError::Monitor { .. } => Code::Internal,
    }
}

fn overlay_code(e: &OverlayError) -> Code {
    match e {
        // A diff ID (hence chain ID) that is not sha256: the image config
        // names something cria cannot verify.
        OverlayError::InvalidChainId { .. } | OverlayError::UnsupportedDiffId { .. } => {
            Code::InvalidArgument
        }
        // A hostile or malformed layer (path traversal, symlink or hardlink
        // escape): the image is unusable anywhere. Nothing was kept.
        OverlayError::BadEntry { .. } => Code::InvalidArgument,
        // The uncompressed layer is not what the config promised, or the
        // stream could not be decompressed/parsed: corrupt content.
        OverlayError::DiffIdMismatch { .. } | OverlayError::Stream { .. } => Code::DataLoss,
        // A snapshot a container needs is gone: the image must be pulled again.
        OverlayError::NotCommitted { .. } => Code::FailedPrecondition,
        OverlayError::Io { source, .. } | OverlayError::Mount { source, .. } => io_code(source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    fn code_of(e: impl Into<ShimError>) -> (Code, String) {
        let status = Status::from(e.into());
        (status.code(), status.message().to_string())
    }

    #[test]
    fn image_errors_map_to_actionable_codes() {
        let s = |x: &str| x.to_string();
        let cases: Vec<(ImageError, Code)> = vec![
            (
                ImageError::InvalidReference {
                    input: s("UPPER"),
                    reason: s("uppercase"),
                },
                Code::InvalidArgument,
            ),
            (
                ImageError::NotFound {
                    registry: s("127.0.0.1:5000"),
                    reference: s("127.0.0.1:5000/x:nope"),
                    what: s("manifest"),
                },
                Code::NotFound,
            ),
            (
                ImageError::Unauthorized {
                    registry: s("r"),
                    reference: s("r/x"),
                    detail: s("401"),
                },
                Code::Unauthenticated,
            ),
            (
                ImageError::UnsupportedMediaType {
                    media_type: s("application/vnd.docker.distribution.manifest.v1+json"),
                    reference: s("r/x"),
                    detail: s("schema 1"),
                },
                Code::InvalidArgument,
            ),
            (
                ImageError::NoMatchingPlatform {
                    reference: s("r/x"),
                    wanted: s("linux/amd64"),
                    offered: s("linux/arm64"),
                },
                Code::NotFound,
            ),
            (
                ImageError::DigestMismatch {
                    what: s("blob"),
                    expected: s("sha256:aa"),
                    actual: s("sha256:bb"),
                },
                Code::DataLoss,
            ),
            (
                ImageError::Registry {
                    registry: s("r"),
                    detail: s("connection refused"),
                },
                Code::Unavailable,
            ),
            (ImageError::Metadata(s("db")), Code::Internal),
            (
                ImageError::Config {
                    host: s("r"),
                    detail: s("bad key"),
                },
                Code::FailedPrecondition,
            ),
        ];
        for (e, want) in cases {
            let text = e.to_string();
            let (code, msg) = code_of(e);
            assert_eq!(code, want, "{text}");
            // The status carries the error's own message, naming the object.
            assert_eq!(msg, text);
        }
    }

    #[test]
    fn disk_full_is_resource_exhausted_other_io_is_internal() {
        let full = ImageError::Io {
            op: "writing",
            path: "/x".into(),
            source: io::Error::from_raw_os_error(libc::ENOSPC),
        };
        assert_eq!(code_of(full).0, Code::ResourceExhausted);
        let other = ImageError::Io {
            op: "writing",
            path: "/x".into(),
            source: io::Error::from_raw_os_error(libc::EIO),
        };
        assert_eq!(code_of(other).0, Code::Internal);
    }

    #[test]
    fn unpack_errors_follow_the_overlay_error_inside() {
        let unpack = |o: OverlayError| ImageError::Unpack {
            digest: "sha256:ab".to_string(),
            source: UnpackError::new(o),
        };
        let hostile = unpack(OverlayError::BadEntry {
            entry: "../../etc/passwd".into(),
            reason: "escapes the snapshot".into(),
        });
        let (code, msg) = code_of(hostile);
        assert_eq!(code, Code::InvalidArgument);
        assert!(msg.contains("../../etc/passwd"), "{msg}");
        let corrupt = unpack(OverlayError::DiffIdMismatch {
            chain_id: "sha256:ab".into(),
            expected: "sha256:cd".into(),
            actual: "sha256:ef".into(),
        });
        assert_eq!(code_of(corrupt).0, Code::DataLoss);
        let other = ImageError::Unpack {
            digest: "sha256:ab".to_string(),
            source: UnpackError::new("unpack task failed: panic"),
        };
        assert_eq!(code_of(other).0, Code::Internal);
    }

    #[test]
    fn overlay_errors_map_directly() {
        let missing = OverlayError::NotCommitted {
            chain_id: "sha256:ab".into(),
        };
        assert_eq!(code_of(missing).0, Code::FailedPrecondition);
        let mount = OverlayError::Mount {
            op: "mounting overlay on",
            target: "/x".into(),
            source: io::Error::from_raw_os_error(libc::EINVAL),
        };
        assert_eq!(code_of(mount).0, Code::Internal);
    }
}
