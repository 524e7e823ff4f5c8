//! Errors of the streaming server and of its backends.

/// Errors of the streaming server itself.
#[derive(Debug, thiserror::Error)]
pub enum StreamingError {
    /// The listening socket could not be bound.
    #[error("bind streaming server on {addr}: {source}")]
    Bind {
        /// Address asked for.
        addr: std::net::SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The TLS certificate or key could not be loaded.
    #[error("streaming tls: {0}")]
    Tls(String),
    /// A request was invalid (empty command, no streams, no ports).
    #[error("invalid streaming request: {0}")]
    InvalidRequest(String),
    /// The peer broke the SPDY or WebSocket protocol.
    #[error("streaming protocol error: {0}")]
    Protocol(String),
    /// The connection failed.
    #[error("streaming connection: {0}")]
    Io(#[from] std::io::Error),
}

/// An error a [`crate::StreamingBackend`] reports; its text reaches the
/// client on the error stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BackendError {
    /// What went wrong, for the person at the client.
    pub message: String,
}

impl BackendError {
    /// A backend error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        BackendError {
            message: message.into(),
        }
    }
}
