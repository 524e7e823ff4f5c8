//! The client side of the kubelet streaming protocol over WebSocket
//! (`v5.channel.k8s.io`, falling back to `v4.channel.k8s.io`): what `exec -i/-t`,
//! `attach` and `run -i/-t` use once Exec/Attach returned a URL.
//!
//! Every message is one channel byte and its data: 0 stdin, 1 stdout,
//! 2 stderr, 3 error (a metav1.Status JSON at the end), 4 resize (JSON
//! `{"Width":w,"Height":h}`); v5 adds 255, the close signal (`[255, 0]`
//! tells the server stdin reached EOF).

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::tty;

/// The subprotocols we offer, preferred first.
const PROTOCOLS: &str = "v5.channel.k8s.io, v4.channel.k8s.io";
const V5: &str = "v5.channel.k8s.io";
const CH_STDIN: u8 = 0;
const CH_STDOUT: u8 = 1;
const CH_STDERR: u8 = 2;
const CH_ERROR: u8 = 3;
const CH_RESIZE: u8 = 4;
const CH_CLOSE: u8 = 255;

/// What can go wrong in a streaming session.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The runtime returned a URL we cannot use.
    #[error("streaming url {0:?} is not an http:// or https:// url")]
    BadUrl(String),
    /// The TLS set-up or handshake with the streaming server failed.
    #[error("tls to the streaming server at {addr}: {message}")]
    Tls { addr: String, message: String },
    /// The streaming server is unreachable.
    #[error("cannot connect to the streaming server at {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    /// The WebSocket upgrade or the session itself failed.
    #[error("streaming session with {url} failed: {source}")]
    WebSocket {
        url: String,
        source: Box<tokio_tungstenite::tungstenite::Error>,
    },
    /// The runtime ended the session with an error status.
    #[error("the runtime reported: {0}")]
    Remote(String),
    /// The local terminal or signal handling failed.
    #[error("local terminal: {0}")]
    Local(std::io::Error),
}

/// What the session should carry.
#[derive(Debug, Clone, Copy)]
pub struct SessionOptions {
    /// Forward our stdin.
    pub stdin: bool,
    /// The remote side is a terminal: raw mode here, resize messages, no stderr.
    pub tty: bool,
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The server sent a status with this exit code.
    Exit(i32),
    /// The server closed the session without a status (attach does this when it only detaches).
    NoStatus,
    /// We were told to stop by this signal.
    Signal(i32),
}

impl Ended {
    /// The process exit status this ending maps to (docker's 128+signal for signals; 0 without status).
    pub fn exit_status(self) -> u8 {
        match self {
            Ended::Exit(c) => (c & 0xff) as u8,
            Ended::NoStatus => 0,
            Ended::Signal(s) => (128 + s) as u8,
        }
    }
}

/// Where a streaming URL points.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    /// `host:port` to dial.
    addr: String,
    /// The host alone (the TLS server name).
    host: String,
    /// `https://`: speak TLS.
    tls: bool,
    /// The URL for the WebSocket request (`ws://`: TLS is below it).
    ws_url: String,
}

/// Splits `http(s)://host:port/path` into what to dial and request.
fn ws_target(url: &str) -> Result<Target, StreamError> {
    let bad = || StreamError::BadUrl(url.to_string());
    let (tls, rest) = match url.strip_prefix("https://") {
        Some(rest) => (true, rest),
        None => (false, url.strip_prefix("http://").ok_or_else(bad)?),
    };
    let addr = rest.split('/').next().unwrap_or_default();
    if addr.is_empty() {
        return Err(bad());
    }
    // `[::1]:443` or `host:443`: the host is what precedes the port.
    let (host, addr) = match addr.rsplit_once(':') {
        Some((h, port)) if !h.is_empty() && port.chars().all(|c| c.is_ascii_digit()) => {
            (h, addr.to_string())
        }
        _ => (addr, format!("{addr}:{}", if tls { 443 } else { 80 })),
    };
    Ok(Target {
        addr,
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        tls,
        ws_url: format!("ws://{rest}"),
    })
}

/// A TLS client trusting the system's roots and, if given, `ca_file`'s
/// certificates (PEM), e.g. the CA that signed criad's streaming cert.
fn tls_connector(ca_file: Option<&Path>) -> Result<tokio_rustls::TlsConnector, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    // Unreadable system certificates are skipped: the CA file may suffice.
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("read CA file {}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("no certificate in CA file {}", path.display()));
        }
        for c in certs {
            roots
                .add(c)
                .map_err(|e| format!("CA file {}: {e}", path.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Reads the exit code from the error channel's metav1.Status JSON; an empty
/// text is no status at all. Anything but Success or NonZeroExitCode is the
/// runtime's error, in its own words.
pub fn parse_status(text: &str) -> Result<Ended, StreamError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(Ended::NoStatus);
    }
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        // Pre-v4 servers send plain text.
        return Err(StreamError::Remote(text.to_string()));
    };
    match v["status"].as_str() {
        Some("Success") => Ok(Ended::Exit(0)),
        _ if v["reason"] == "NonZeroExitCode" => {
            let causes = v["details"]["causes"].as_array();
            let code = causes
                .into_iter()
                .flatten()
                .find(|c| c["reason"] == "ExitCode")
                .and_then(|c| c["message"].as_str())
                .and_then(|m| m.parse::<i32>().ok());
            code.map(Ended::Exit)
                .ok_or_else(|| StreamError::Remote(format!("no exit code in {text}")))
        }
        _ => Err(StreamError::Remote(
            v["message"].as_str().unwrap_or(text).to_string(),
        )),
    }
}

/// The resize message for a terminal of `cols` x `rows`.
fn resize_msg(cols: u16, rows: u16) -> Message {
    let mut v = vec![CH_RESIZE];
    v.extend_from_slice(format!(r#"{{"Width":{cols},"Height":{rows}}}"#).as_bytes());
    Message::binary(v)
}

/// A message on `channel`.
fn channel_msg(channel: u8, data: &[u8]) -> Message {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(channel);
    v.extend_from_slice(data);
    Message::binary(v)
}

/// Reads stdin on a thread of its own (a blocking read must never hold the
/// single-threaded runtime, and it may outlive the session); `None` is EOF.
fn spawn_stdin_reader() -> mpsc::Receiver<Option<Vec<u8>>> {
    let (tx, rx) = mpsc::channel(4);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = tx.blocking_send(None);
                    return;
                }
                Ok(n) => {
                    if tx.blocking_send(Some(buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

fn write_out(mut w: impl Write, data: &[u8]) -> std::io::Result<()> {
    w.write_all(data)?;
    w.flush()
}

/// Runs one remotecommand session at `url` until the server ends it; the
/// local terminal is in raw mode meanwhile when `tty` and stdin is a terminal.
/// With an `https://` URL the server's certificate must chain to the
/// system's roots or to `ca_file`.
pub async fn run_session(
    url: &str,
    opts: SessionOptions,
    ca_file: Option<&Path>,
) -> Result<Ended, StreamError> {
    let target = ws_target(url)?;
    let ws_err = |source| StreamError::WebSocket {
        url: url.to_string(),
        source: Box::new(source),
    };
    let mut req = target
        .ws_url
        .as_str()
        .into_client_request()
        .map_err(ws_err)?;
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static(PROTOCOLS),
    );
    let tcp = TcpStream::connect(&target.addr)
        .await
        .map_err(|source| StreamError::Connect {
            addr: target.addr.clone(),
            source,
        })?;
    if !target.tls {
        let (ws, resp) = tokio_tungstenite::client_async(req, tcp)
            .await
            .map_err(ws_err)?;
        return session(url, ws, &resp, opts).await;
    }
    let tls_err = |message: String| StreamError::Tls {
        addr: target.addr.clone(),
        message,
    };
    let connector = tls_connector(ca_file).map_err(tls_err)?;
    let name = rustls::pki_types::ServerName::try_from(target.host.clone())
        .map_err(|e| tls_err(format!("server name {:?}: {e}", target.host)))?;
    let stream = connector
        .connect(name, tcp)
        .await
        .map_err(|e| tls_err(e.to_string()))?;
    let (ws, resp) = tokio_tungstenite::client_async(req, stream)
        .await
        .map_err(ws_err)?;
    session(url, ws, &resp, opts).await
}

/// Runs an open session (plain or TLS below the WebSocket) to its end.
async fn session<S>(
    url: &str,
    ws: WebSocketStream<S>,
    resp: &tokio_tungstenite::tungstenite::handshake::client::Response,
    opts: SessionOptions,
) -> Result<Ended, StreamError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let ws_err = |source| StreamError::WebSocket {
        url: url.to_string(),
        source: Box::new(source),
    };
    let v5 = resp
        .headers()
        .get("sec-websocket-protocol")
        .is_some_and(|p| p.as_bytes() == V5.as_bytes());
    tracing::debug!(v5, "streaming session open");
    let (mut sink, mut stream) = ws.split();

    // Raw mode only when our keys go to the remote terminal (as kubectl does).
    let local_tty = opts.tty && opts.stdin && tty::is_terminal(std::io::stdin().as_fd());
    // Restored when this function returns by any path, or unwinds.
    let _raw = if local_tty {
        Some(tty::RawMode::enter_stdin().map_err(|e| StreamError::Local(e.into()))?)
    } else {
        None
    };
    let mut stdin_rx = opts.stdin.then(spawn_stdin_reader);
    let sig = |kind| signal(kind).map_err(StreamError::Local);
    let mut winch = sig(SignalKind::window_change())?;
    let mut term = sig(SignalKind::terminate())?;
    let mut hup = sig(SignalKind::hangup())?;
    let mut int = sig(SignalKind::interrupt())?;
    if opts.tty {
        if let Some((c, r)) = tty::local_size() {
            sink.send(resize_msg(c, r)).await.map_err(ws_err)?;
        }
    }

    let mut error_text = String::new();
    loop {
        tokio::select! {
            msg = stream.next() => match msg {
                None | Some(Ok(Message::Close(_))) => break,
                Some(Err(e)) => {
                    use tokio_tungstenite::tungstenite::Error as E;
                    if matches!(e, E::ConnectionClosed | E::AlreadyClosed | E::Protocol(_)) && !error_text.is_empty() {
                        break;
                    }
                    return Err(ws_err(e));
                }
                Some(Ok(Message::Binary(b))) => {
                    let Some((&ch, data)) = b.split_first() else { continue };
                    let res = match ch {
                        CH_STDOUT => write_out(std::io::stdout().lock(), data),
                        CH_STDERR => write_out(std::io::stderr().lock(), data),
                        CH_ERROR => {
                            error_text.push_str(&String::from_utf8_lossy(data));
                            Ok(())
                        }
                        _ => Ok(()),
                    };
                    // Our reader went away: the session has nowhere to go.
                    if let Err(e) = res {
                        return Err(StreamError::Local(e));
                    }
                }
                Some(Ok(_)) => {}
            },
            chunk = async { stdin_rx.as_mut()?.recv().await }, if stdin_rx.is_some() => match chunk {
                Some(Some(data)) => sink.send(channel_msg(CH_STDIN, &data)).await.map_err(ws_err)?,
                _ => {
                    stdin_rx = None;
                    // v4 has no way to say EOF; the process keeps its stdin until it ends.
                    if v5 {
                        sink.send(channel_msg(CH_CLOSE, &[CH_STDIN])).await.map_err(ws_err)?;
                    }
                }
            },
            _ = winch.recv(), if opts.tty => {
                if let Some((c, r)) = tty::local_size() {
                    sink.send(resize_msg(c, r)).await.map_err(ws_err)?;
                }
            }
            _ = term.recv() => return Ok(Ended::Signal(libc::SIGTERM)),
            _ = hup.recv() => return Ok(Ended::Signal(libc::SIGHUP)),
            _ = int.recv() => return Ok(Ended::Signal(libc::SIGINT)),
        }
    }
    let _ = sink.close().await;
    parse_status(&error_text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = ws_target("http://127.0.0.1:4000/exec/abc").unwrap();
        let (addr, ws) = (t.addr, t.ws_url);
        assert_eq!(addr, "127.0.0.1:4000");
        assert_eq!(ws, "ws://127.0.0.1:4000/exec/abc");
        let t = ws_target("https://[::1]:10010/exec/t").unwrap();
        assert_eq!(
            t,
            Target {
                addr: "[::1]:10010".into(),
                host: "::1".into(),
                tls: true,
                ws_url: "ws://[::1]:10010/exec/t".into(),
            }
        );
        let t = ws_target("https://node.example/x").unwrap();
        assert_eq!(
            (t.host.as_str(), t.addr.as_str()),
            ("node.example", "node.example:443")
        );
        assert!(matches!(
            ws_target("ftp://x/y"),
            Err(StreamError::BadUrl(_))
        ));
        assert!(ws_target("http:///y").is_err());
    }

    #[test]
    fn statuses() {
        assert_eq!(
            parse_status(r#"{"metadata":{},"status":"Success"}"#).unwrap(),
            Ended::Exit(0)
        );
        let five = r#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"5"}]}}"#;
        assert_eq!(parse_status(five).unwrap(), Ended::Exit(5));
        assert_eq!(parse_status("").unwrap(), Ended::NoStatus);
        let err =
            parse_status(r#"{"status":"Failure","message":"container not running"}"#).unwrap_err();
        assert!(err.to_string().contains("container not running"), "{err}");
        assert!(matches!(parse_status("boom"), Err(StreamError::Remote(m)) if m == "boom"));
    }

    #[test]
    fn resize_json() {
        let Message::Binary(b) = resize_msg(80, 24) else {
            panic!("resize is binary")
        };
        assert_eq!(b[0], CH_RESIZE);
        assert_eq!(&b[1..], br#"{"Width":80,"Height":24}"#);
    }
}
