//! The connection to a CRI runtime over its unix socket, with one place that
//! applies the request timeout and turns gRPC failures into [`CliError`]s.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cria_proto::{ImageServiceClient, RuntimeServiceClient};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};
use tower::service_fn;

use crate::error::CliError;

/// The socket criad listens on unless told otherwise.
pub const DEFAULT_ENDPOINT: &str = "unix:///run/cria/cria.sock";

/// Parses `unix:///path` or a bare path into the socket path.
pub fn parse_endpoint(s: &str) -> Result<PathBuf, CliError> {
    let path = match s.strip_prefix("unix://") {
        Some(rest) => rest,
        None if s.contains("://") => {
            return Err(CliError::Usage(format!(
                "unsupported endpoint {s:?}: use unix:///path/to/socket or a plain socket path"
            )))
        }
        None => s,
    };
    if path.is_empty() {
        return Err(CliError::Usage(format!("endpoint {s:?} names no socket")));
    }
    Ok(PathBuf::from(path))
}

/// Clients for both CRI services on one connection.
#[derive(Clone)]
pub struct Cri {
    channel: Channel,
    socket: PathBuf,
    timeout: Duration,
    /// Extra CA (PEM) trusted for the streaming server's TLS.
    streaming_ca: Option<PathBuf>,
}

impl Cri {
    /// Connects to the runtime at `socket`, giving up after `timeout`.
    pub async fn connect(socket: &Path, timeout: Duration) -> Result<Cri, CliError> {
        let path = socket.to_path_buf();
        // The URI is required by tonic but unused: the connector dials the socket.
        let endpoint = Endpoint::from_static("http://cria.invalid")
            .connect_timeout(timeout)
            .tcp_nodelay(true);
        let channel = endpoint
            .connect_with_connector(service_fn(move |_: Uri| {
                let path = path.clone();
                async move { UnixStream::connect(path).await.map(TokioIo::new) }
            }))
            .await
            .map_err(|e| {
                tracing::debug!(error = %crate::error::error_chain(&e), "connect failed");
                CliError::from_connect(socket, &e)
            })?;
        Ok(Cri {
            channel,
            socket: socket.to_path_buf(),
            timeout,
            streaming_ca: None,
        })
    }

    /// Trusts `ca` (PEM) too for the streaming server's TLS.
    pub fn with_streaming_ca(mut self, ca: Option<PathBuf>) -> Cri {
        self.streaming_ca = ca;
        self
    }

    /// The extra CA for the streaming server's TLS, if any.
    pub fn streaming_ca(&self) -> Option<&Path> {
        self.streaming_ca.as_deref()
    }

    /// A RuntimeService client sharing the connection.
    pub fn runtime(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(self.channel.clone())
    }

    /// An ImageService client sharing the connection.
    pub fn image(&self) -> ImageServiceClient<Channel> {
        ImageServiceClient::new(self.channel.clone())
    }

    /// The raw channel, for cria's own side services.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// Awaits a unary RPC within the request timeout; `op` names it in errors.
    pub async fn call<T>(
        &self,
        op: &'static str,
        fut: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, CliError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(res) => self.finish(op, res),
            Err(_) => Err(CliError::Timeout {
                op,
                after: self.timeout,
            }),
        }
    }

    /// Awaits an RPC that may legitimately take long (pull, exec) without a timeout.
    pub async fn call_long<T>(
        &self,
        op: &'static str,
        fut: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, CliError> {
        let res = fut.await;
        self.finish(op, res)
    }

    fn finish<T>(
        &self,
        op: &'static str,
        res: Result<tonic::Response<T>, tonic::Status>,
    ) -> Result<T, CliError> {
        res.map(tonic::Response::into_inner)
            .map_err(|s| CliError::from_status(op, &self.socket, s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_forms() {
        assert_eq!(
            parse_endpoint("unix:///run/cria/cria.sock").unwrap(),
            PathBuf::from("/run/cria/cria.sock")
        );
        assert_eq!(
            parse_endpoint("/tmp/x.sock").unwrap(),
            PathBuf::from("/tmp/x.sock")
        );
        assert!(matches!(
            parse_endpoint("tcp://1.2.3.4:5"),
            Err(CliError::Usage(_))
        ));
        assert!(parse_endpoint("unix://").is_err());
    }

    #[tokio::test]
    async fn missing_socket_is_daemon_unreachable() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("none.sock");
        let err = Cri::connect(&sock, Duration::from_secs(2))
            .await
            .err()
            .expect("no socket, no connection");
        assert!(matches!(err, CliError::DaemonUnreachable { .. }), "{err}");
    }

    #[tokio::test]
    async fn refused_socket_is_daemon_unreachable() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("stale.sock");
        // A socket file nobody listens on, as a crashed daemon leaves behind.
        drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
        let err = Cri::connect(&sock, Duration::from_secs(2))
            .await
            .err()
            .expect("nobody listens");
        assert!(matches!(err, CliError::DaemonUnreachable { .. }), "{err}");
    }
}
