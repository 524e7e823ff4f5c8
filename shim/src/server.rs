//! The CRI socket and the gRPC server on it.
//!
//! [`claim_socket`] makes the socket path usable (parent dirs, stale socket
//! removed, a live one refused), [`bind`] listens on it with mode 0600 and
//! [`serve`] runs RuntimeService, ImageService and cria's PullProgress until
//! the shutdown future fires, then finishes in-flight calls (bounded) and
//! removes the socket.

use std::future::Future;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cria_proto::{ImageServiceServer, PullProgressServer, RuntimeServiceServer};
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;

use crate::daemon::Daemon;
use crate::h2_authority::AuthorityFix;
use crate::image_service::ImageServiceImpl;
use crate::progress_service::ProgressService;
use crate::runtime_service::RuntimeServiceImpl;

/// How long in-flight calls may run on after a shutdown signal; long-lived
/// streams (events, progress watches) would otherwise hold criad forever.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Why the socket could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Something else is listening on the socket.
    #[error("another process is serving on {0}; is criad already running? stop it or pick another --socket")]
    InUse(PathBuf),
    /// The path exists and is not a socket; criad will not delete it.
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    /// A file operation on the socket path failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("serving on {path}: {source}")]
    Serve {
        /// The socket.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: tonic::transport::Error,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ServerError + 'a {
    move |source| ServerError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Makes `path` free for a new socket: creates missing parent directories
/// (mode 0700; existing ones are left as they are), removes a stale socket
/// left by a crashed criad, and refuses when something still answers on it.
pub fn claim_socket(path: &Path) -> Result<(), ServerError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(io_err("creating directory", parent))?;
    }
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("inspecting", path)(e)),
    };
    if !meta.file_type().is_socket() {
        return Err(ServerError::NotASocket(path.to_path_buf()));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(ServerError::InUse(path.to_path_buf())),
        // Nobody listens: a leftover of a criad that did not exit cleanly.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            tracing::info!(socket = %path.display(), "removing stale socket");
            std::fs::remove_file(path).map_err(io_err("removing stale socket", path))
        }
        Err(e) => Err(io_err("probing socket", path)(e)),
    }
}

/// Listens on `path` (claimed with [`claim_socket`]) and makes the socket
/// 0600: CRI gives full control of the node, so only root may connect.
pub fn bind(path: &Path) -> Result<UnixListener, ServerError> {
    let listener = UnixListener::bind(path).map_err(io_err("binding", path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(io_err("chmod 0600", path))?;
    Ok(listener)
}

/// Serves the CRI services and PullProgress on `listener` until `shutdown`
/// completes, then lets in-flight calls finish (up to [`SHUTDOWN_GRACE`])
/// and removes the socket at `path` if it is still ours.
pub async fn serve(
    daemon: Arc<Daemon>,
    runtime: RuntimeServiceImpl,
    listener: UnixListener,
    path: &Path,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    // The inode identifies our socket: a newer criad may have replaced it.
    let ours = std::fs::metadata(path).map(|m| m.ino()).ok();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let router = tonic::transport::Server::builder()
        .add_service(RuntimeServiceServer::new(runtime))
        .add_service(ImageServiceServer::new(ImageServiceImpl::new(
            daemon.clone(),
        )))
        .add_service(PullProgressServer::new(ProgressService::new(
            daemon.pulls.clone(),
        )));
    // Every connection goes through AuthorityFix, so clients that send the
    // socket path as :authority (crictl/critest ≤ 1.26) are served too.
    let incoming = futures::StreamExt::map(UnixListenerStream::new(listener), |conn| {
        conn.map(AuthorityFix::new)
    });
    let mut server = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async {
        let _ = stop_rx.await;
    }));
    tracing::info!(socket = %path.display(), "serving CRI");

    let result = tokio::select! {
        joined = &mut server => Some(joined),
        () = shutdown => None,
    };
    let result = match result {
        Some(joined) => joined,
        None => {
            tracing::info!("shutting down: no new calls, finishing in-flight ones");
            let _ = stop_tx.send(());
            // Progress watches would otherwise run until the grace period ends.
            daemon.pulls.close();
            match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
                Ok(joined) => joined,
                Err(_) => {
                    tracing::warn!(grace = ?SHUTDOWN_GRACE, "in-flight calls still running; stopping anyway");
                    server.abort();
                    Ok(Ok(()))
                }
            }
        }
    };
    remove_socket(path, ours);
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(source)) => Err(ServerError::Serve {
            path: path.to_path_buf(),
            source,
        }),
        Err(join) => {
            tracing::error!(error = %join, "server task failed");
            Ok(())
        }
    }
}

/// Removes the socket if it is still the one we bound (same inode).
fn remove_socket(path: &Path, ours: Option<u64>) {
    let current = std::fs::symlink_metadata(path).map(|m| m.ino()).ok();
    if current.is_some() && current == ours {
        if let Err(e) = std::fs::remove_file(path) {
            tracing::warn!(socket = %path.display(), error = %e, "removing socket failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_socket_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cria.sock");
        // A bound-then-closed socket leaves its file behind, like a crash.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        claim_socket(&path).unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn a_live_socket_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cria.sock");
        let _live = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let err = claim_socket(&path).unwrap_err();
        assert!(matches!(err, ServerError::InUse(_)), "{err}");
        assert!(path.exists());
    }

    #[test]
    fn a_regular_file_is_never_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cria.sock");
        std::fs::write(&path, "precious").unwrap();
        assert!(matches!(
            claim_socket(&path),
            Err(ServerError::NotASocket(_))
        ));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
    }

    #[tokio::test]
    async fn bind_creates_parents_0700_and_the_socket_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/cria.sock");
        claim_socket(&path).unwrap();
        let _listener = bind(&path).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        assert_eq!(mode(&dir.path().join("a/b")), 0o700);
    }
}
