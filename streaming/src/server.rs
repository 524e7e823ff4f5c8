//! The HTTP side: listening, URLs with tokens, and the upgrade to SPDY/3.1
//! or WebSocket.

use crate::remotecommand::{self, Command};
use crate::spdy::session::Session;
use crate::tls::TlsFiles;
use crate::token::TokenCache;
use crate::websocket;
use crate::{AttachRequest, ExecRequest, PortForwardRequest, StreamingBackend, StreamingError};
use http::{header, HeaderMap, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

/// Where and how the server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Address to bind (port 0 picks a free one).
    pub addr: SocketAddr,
    /// How long a URL stays valid (single use in any case).
    pub token_ttl: Duration,
    /// Serve TLS with this certificate and key (URLs are then `https://`).
    pub tls: Option<TlsFiles>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            token_ttl: Duration::from_secs(60),
            tls: None,
        }
    }
}

/// A registered request, waiting for its client.
#[derive(Debug, Clone)]
enum Pending {
    Command(Command),
    PortForward(PortForwardRequest),
}

struct Inner {
    tokens: TokenCache<Pending>,
    backend: Arc<dyn StreamingBackend>,
}

/// The running streaming server. Dropping it stops accepting connections
/// (sessions in progress run to their end).
pub struct StreamingServer {
    inner: Arc<Inner>,
    addr: SocketAddr,
    /// `http` or `https`.
    scheme: &'static str,
    accept: JoinHandle<()>,
}

impl Drop for StreamingServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl StreamingServer {
    /// Binds and starts serving on the current tokio runtime.
    pub async fn start(
        config: ServerConfig,
        backend: Arc<dyn StreamingBackend>,
    ) -> Result<StreamingServer, StreamingError> {
        // Certificate problems fail start-up before the port is taken.
        let tls = config.tls.as_ref().map(crate::tls::acceptor).transpose()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let listener =
            TcpListener::bind(config.addr)
                .await
                .map_err(|source| StreamingError::Bind {
                    addr: config.addr,
                    source,
                })?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Inner {
            tokens: TokenCache::new(config.token_ttl),
            backend,
        });
        let accept = tokio::spawn(accept_loop(listener, tls, inner.clone()));
        tracing::info!(%addr, scheme, "streaming server listening");
        Ok(StreamingServer {
            inner,
            addr,
            scheme,
            accept,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    fn url(&self, kind: &str, token: &str) -> String {
        format!("{}://{}/{kind}/{token}", self.scheme, self.addr)
    }

    /// Registers an exec; returns the URL the client connects to.
    pub fn register_exec(&self, req: ExecRequest) -> Result<String, StreamingError> {
        if req.cmd.is_empty() {
            return Err(StreamingError::InvalidRequest("cmd is empty".into()));
        }
        check_streams(req.stdin, req.stdout, req.stderr)?;
        if req.tty && req.stderr {
            return Err(StreamingError::InvalidRequest(
                "tty and stderr cannot both be true".into(),
            ));
        }
        let t = self
            .inner
            .tokens
            .insert(Pending::Command(Command::Exec(req)));
        Ok(self.url("exec", &t))
    }

    /// Registers an attach; returns its URL.
    pub fn register_attach(&self, req: AttachRequest) -> Result<String, StreamingError> {
        check_streams(req.stdin, req.stdout, req.stderr)?;
        let t = self
            .inner
            .tokens
            .insert(Pending::Command(Command::Attach(req)));
        Ok(self.url("attach", &t))
    }

    /// Registers a port-forward; returns its URL.
    pub fn register_port_forward(&self, req: PortForwardRequest) -> Result<String, StreamingError> {
        let t = self.inner.tokens.insert(Pending::PortForward(req));
        Ok(self.url("portforward", &t))
    }
}

fn check_streams(stdin: bool, stdout: bool, stderr: bool) -> Result<(), StreamingError> {
    if !(stdin || stdout || stderr) {
        return Err(StreamingError::InvalidRequest(
            "one of stdin, stdout and stderr must be true".into(),
        ));
    }
    Ok(())
}

/// How long a client may take to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

async fn accept_loop(listener: TcpListener, tls: Option<TlsAcceptor>, inner: Arc<Inner>) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and friends: back off rather than spin.
                tracing::warn!(error = %e, "streaming accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let inner = inner.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let Some(tls) = tls else {
                return serve_connection(tcp, peer, inner).await;
            };
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.accept(tcp)).await {
                Ok(Ok(stream)) => serve_connection(stream, peer, inner).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "streaming tls handshake failed"),
                Err(_) => tracing::debug!(%peer, "streaming tls handshake timed out"),
            }
        });
    }
}

/// Serves HTTP/1.1 (with upgrades) on one accepted connection, plain or TLS.
async fn serve_connection<S>(io: S, peer: SocketAddr, inner: Arc<Inner>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| {
        let inner = inner.clone();
        async move { Ok::<_, std::convert::Infallible>(handle(inner, req)) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    if let Err(e) = conn.await {
        tracing::debug!(%peer, error = %e, "streaming connection failed");
    }
}

fn plain(status: StatusCode, body: impl Into<String>) -> Response<String> {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// All values of a header that may be repeated or comma-separated.
fn header_list(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect()
}

/// Query values of `key` (for WebSocket port-forward's `port=`).
fn query_values(req: &Request<Incoming>, key: &str) -> Vec<String> {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| v.to_string())
        .collect()
}

fn handle(inner: Arc<Inner>, req: Request<Incoming>) -> Response<String> {
    let path = req.uri().path().to_string();
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let (kind, token) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if !matches!(kind, "exec" | "attach" | "portforward") || token.is_empty() {
        return plain(StatusCode::NOT_FOUND, format!("no such endpoint {path}\n"));
    }
    let Some(pending) = inner.tokens.consume(token) else {
        return plain(
            StatusCode::NOT_FOUND,
            "unknown, used or expired streaming token: ask the runtime for a new URL\n",
        );
    };
    let kind_matches = matches!(
        (&pending, kind),
        (Pending::Command(Command::Exec(_)), "exec")
            | (Pending::Command(Command::Attach(_)), "attach")
            | (Pending::PortForward(_), "portforward")
    );
    if !kind_matches {
        return plain(
            StatusCode::NOT_FOUND,
            format!("streaming token is not for /{kind}\n"),
        );
    }
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if upgrade == "websocket" {
        upgrade_websocket(inner, req, pending)
    } else if upgrade.starts_with("spdy/3") {
        upgrade_spdy(inner, req, pending)
    } else {
        plain(
            StatusCode::BAD_REQUEST,
            "streaming needs an upgrade to SPDY/3.1 or websocket\n",
        )
    }
}

fn switching(headers: &[(&'static str, String)]) -> Response<String> {
    let mut r = Response::new(String::new());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    for (k, v) in headers {
        if let Ok(v) = header::HeaderValue::from_str(v) {
            r.headers_mut().insert(*k, v);
        }
    }
    r
}

fn upgrade_spdy(inner: Arc<Inner>, req: Request<Incoming>, pending: Pending) -> Response<String> {
    let offered = header_list(req.headers(), "x-stream-protocol-version");
    let supported: &[&str] = match &pending {
        Pending::Command(_) => remotecommand::SPDY_PROTOCOLS,
        Pending::PortForward(_) => &[crate::portforward::SPDY_PROTOCOL],
    };
    // A client naming no protocol is an old one: the oldest protocol.
    let protocol = if offered.is_empty() {
        supported[supported.len() - 1].to_string()
    } else {
        match offered.iter().find(|p| supported.contains(&p.as_str())) {
            Some(p) => p.clone(),
            None => {
                return plain(
                    StatusCode::FORBIDDEN,
                    format!(
                        "no supported stream protocol in {offered:?}; supported: {supported:?}\n"
                    ),
                )
            }
        }
    };
    let response = switching(&[
        ("connection", "Upgrade".into()),
        ("upgrade", "SPDY/3.1".into()),
        ("x-stream-protocol-version", protocol.clone()),
    ]);
    tokio::spawn(async move {
        let upgraded = match hyper::upgrade::on(req).await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "spdy upgrade failed");
                return;
            }
        };
        let session = match Session::start(TokioIo::new(upgraded)) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "spdy session failed to start");
                return;
            }
        };
        match pending {
            Pending::Command(cmd) => {
                remotecommand::serve_spdy(session, &protocol, cmd, inner.backend.clone()).await
            }
            Pending::PortForward(pf) => {
                crate::portforward::serve_spdy(session, pf.pod_sandbox_id, inner.backend.clone())
                    .await
            }
        }
    });
    response
}

fn upgrade_websocket(
    inner: Arc<Inner>,
    req: Request<Incoming>,
    pending: Pending,
) -> Response<String> {
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        return plain(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key\n");
    };
    let offered = header_list(req.headers(), "sec-websocket-protocol");
    let supported = match &pending {
        Pending::Command(_) => websocket::EXEC_PROTOCOLS,
        Pending::PortForward(_) => websocket::PORT_FORWARD_PROTOCOLS,
    };
    let Some(protocol) = websocket::negotiate(&offered, supported) else {
        return plain(
            StatusCode::FORBIDDEN,
            format!("no supported websocket protocol in {offered:?}; supported: {supported:?}\n"),
        );
    };
    let ports: Vec<u16> = match &pending {
        Pending::PortForward(pf) => {
            let q: Vec<u16> = query_values(&req, "port")
                .iter()
                .filter_map(|p| p.parse().ok())
                .collect();
            if q.is_empty() {
                pf.ports.clone()
            } else {
                q
            }
        }
        Pending::Command(_) => Vec::new(),
    };
    if matches!(pending, Pending::PortForward(_)) && ports.is_empty() {
        return plain(
            StatusCode::BAD_REQUEST,
            "port-forward needs at least one port\n",
        );
    }
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut headers = vec![
        ("connection", "Upgrade".to_string()),
        ("upgrade", "websocket".to_string()),
        ("sec-websocket-accept", accept),
    ];
    if !offered.is_empty() {
        headers.push(("sec-websocket-protocol", protocol.clone()));
    }
    let response = switching(&headers);
    tokio::spawn(async move {
        let upgraded = match hyper::upgrade::on(req).await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "websocket upgrade failed");
                return;
            }
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        match pending {
            Pending::Command(cmd) => {
                websocket::serve_exec(ws, &protocol, cmd, inner.backend.clone()).await
            }
            Pending::PortForward(pf) => {
                websocket::serve_port_forward(
                    ws,
                    &protocol,
                    pf.pod_sandbox_id,
                    ports,
                    inner.backend.clone(),
                )
                .await
            }
        }
    });
    response
}
