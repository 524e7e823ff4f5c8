//! cria's streaming server: the HTTP endpoint the CRI `Exec`, `Attach` and
//! `PortForward` RPCs point clients (kubelet's proxy, crictl) at.
//!
//! Each RPC registers a request here and gets a URL carrying a single-use
//! token that expires (default one minute). With a certificate and key
//! configured the server speaks TLS and hands out `https://` URLs. The client then upgrades its
//! HTTP/1.1 connection to SPDY/3.1 or WebSocket and speaks the Kubernetes
//! remotecommand or port-forward protocol over it.
//!
//! The crate knows nothing of containers: the work is done by a
//! [`StreamingBackend`] (criad implements it with the runtime crate).

mod error;
mod portforward;
mod remotecommand;
mod server;
pub mod spdy;
mod status;
mod tls;
mod token;
mod websocket;

pub use error::{BackendError, StreamingError};
pub use server::{ServerConfig, StreamingServer};
pub use status::exit_status_json;
pub use tls::TlsFiles;

use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

/// An exec in a running container, as the CRI `Exec` RPC asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    /// The container to run the command in.
    pub container_id: String,
    /// The command and its arguments.
    pub cmd: Vec<String>,
    /// Run it on a pty (stdout and stderr merge into stdout).
    pub tty: bool,
    /// Stream stdin to the command.
    pub stdin: bool,
    /// Stream the command's stdout back.
    pub stdout: bool,
    /// Stream the command's stderr back (never with `tty`).
    pub stderr: bool,
}

/// An attach to a running container's own stdio (CRI `Attach`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachRequest {
    /// The container to attach to.
    pub container_id: String,
    /// The container has a pty.
    pub tty: bool,
    /// Stream stdin to the container.
    pub stdin: bool,
    /// Stream the container's stdout back.
    pub stdout: bool,
    /// Stream the container's stderr back.
    pub stderr: bool,
}

/// A port-forward session to a pod (CRI `PortForward`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortForwardRequest {
    /// The pod whose network namespace the connections are made in.
    pub pod_sandbox_id: String,
    /// Ports the RPC named (a WebSocket client may name its own in the URL).
    pub ports: Vec<u16>,
}

/// A terminal size sent by the client (the resize stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct TerminalSize {
    /// Columns.
    #[serde(rename = "Width")]
    pub width: u16,
    /// Rows.
    #[serde(rename = "Height")]
    pub height: u16,
}

/// A byte source the backend reads the client's stdin from.
pub type StreamReader = Box<dyn AsyncRead + Send + Unpin>;
/// A byte sink the backend writes output to.
pub type StreamWriter = Box<dyn AsyncWrite + Send + Unpin>;

/// A connection the backend opened for port-forward.
pub trait PortConnection: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> PortConnection for T {}

/// The client's end of an exec or attach, as the backend sees it.
///
/// `stdin` reaches EOF when the client closes its stdin stream (or goes
/// away); output written after the client left fails with an error, which
/// the backend should treat as "stop".
pub struct StreamIo {
    /// What the client types, when it asked for stdin.
    pub stdin: Option<StreamReader>,
    /// Where stdout goes, when asked for.
    pub stdout: Option<StreamWriter>,
    /// Where stderr goes, when asked for (never with a tty).
    pub stderr: Option<StreamWriter>,
    /// Terminal size changes, with a tty.
    pub resize: Option<mpsc::Receiver<TerminalSize>>,
}

/// What the streaming server needs from the container runtime.
///
/// The futures own everything they use (`'static`): the server runs them in
/// tasks of their own and drops them when the client goes away, so the
/// backend must clean up on drop as well as on return.
pub trait StreamingBackend: Send + Sync + 'static {
    /// Runs `req.cmd` in the container; returns its exit code.
    fn exec(&self, req: ExecRequest, io: StreamIo)
        -> BoxFuture<'static, Result<i32, BackendError>>;
    /// Attaches to the container's stdio until the client detaches or the
    /// container exits; returns the container's exit code if it exited.
    fn attach(
        &self,
        req: AttachRequest,
        io: StreamIo,
    ) -> BoxFuture<'static, Result<Option<i32>, BackendError>>;
    /// Connects to 127.0.0.1:`port` inside the pod's network namespace.
    fn port_forward(
        &self,
        pod_sandbox_id: String,
        port: u16,
    ) -> BoxFuture<'static, Result<Box<dyn PortConnection>, BackendError>>;
}
