//! remotecommand (exec and attach) over SPDY: the client opens an error
//! stream and the stdio/resize streams it asked for, we run the backend with
//! them, and report the outcome on the error stream.

use crate::spdy::frame::header;
use crate::spdy::session::{Session, SpdyStream};
use crate::status::error_stream_payload;
use crate::{AttachRequest, BackendError, ExecRequest, StreamIo, StreamingBackend, TerminalSize};
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// SPDY subprotocols, preferred first (v5 behaves as v4 over SPDY).
pub(crate) const SPDY_PROTOCOLS: &[&str] = &[
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];

/// How long the client has to open the streams it announced.
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long output already produced may take to reach the client once the
/// process is done.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Buffer between the backend's writes and the connection.
pub(crate) const PIPE_BUFFER: usize = 64 * 1024;

/// An exec or an attach, as registered by the RPC.
#[derive(Debug, Clone)]
pub(crate) enum Command {
    Exec(ExecRequest),
    Attach(AttachRequest),
}

/// The streams a command uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Options {
    pub(crate) stdin: bool,
    pub(crate) stdout: bool,
    pub(crate) stderr: bool,
    pub(crate) tty: bool,
}

impl Command {
    /// The streams requested by the RPC (a tty has no separate stderr).
    pub(crate) fn options(&self) -> Options {
        let (stdin, stdout, stderr, tty) = match self {
            Command::Exec(r) => (r.stdin, r.stdout, r.stderr, r.tty),
            Command::Attach(r) => (r.stdin, r.stdout, r.stderr, r.tty),
        };
        Options {
            stdin,
            stdout,
            stderr: stderr && !tty,
            tty,
        }
    }

    /// Runs the backend; an exec's exit code is always known.
    pub(crate) fn run(
        self,
        backend: &Arc<dyn StreamingBackend>,
        io: StreamIo,
    ) -> BoxFuture<'static, Result<Option<i32>, BackendError>> {
        match self {
            Command::Exec(r) => {
                let f = backend.exec(r, io);
                Box::pin(async move { f.await.map(Some) })
            }
            Command::Attach(r) => backend.attach(r, io),
        }
    }
}

/// The protocol generation (1 = `channel.k8s.io`).
pub(crate) fn protocol_version(protocol: &str) -> u8 {
    match protocol {
        "v5.channel.k8s.io" => 5,
        "v4.channel.k8s.io" | "v4.base64.channel.k8s.io" => 4,
        "v3.channel.k8s.io" => 3,
        "v2.channel.k8s.io" => 2,
        _ => 1,
    }
}

/// Turns the bytes of a resize stream (concatenated JSON objects) into
/// sizes; incomplete objects wait for more bytes.
#[derive(Default)]
pub(crate) struct ResizeDecoder {
    buf: Vec<u8>,
}

impl ResizeDecoder {
    /// Adds bytes; returns the sizes now complete. Garbage is dropped.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Vec<TerminalSize> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        let mut it = serde_json::Deserializer::from_slice(&self.buf).into_iter::<TerminalSize>();
        let mut used = 0;
        loop {
            match it.next() {
                Some(Ok(size)) => {
                    out.push(size);
                    used = it.byte_offset();
                }
                Some(Err(e)) if e.is_eof() => break,
                Some(Err(_)) => {
                    used = self.buf.len();
                    break;
                }
                None => {
                    used = self.buf.len();
                    break;
                }
            }
        }
        self.buf.drain(..used);
        out
    }
}

/// Feeds a resize byte stream into a channel of sizes.
pub(crate) fn spawn_resize_reader<R: tokio::io::AsyncRead + Unpin + Send + 'static>(
    mut src: R,
    tx: mpsc::Sender<TerminalSize>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut dec = ResizeDecoder::default();
        let mut buf = [0u8; 1024];
        while let Ok(n) = src.read(&mut buf).await {
            if n == 0 {
                break;
            }
            for s in dec.push(&buf[..n]) {
                if tx.send(s).await.is_err() {
                    return;
                }
            }
        }
    })
}

/// Serves one remotecommand over a SPDY session.
pub(crate) async fn serve_spdy(
    mut session: Session,
    protocol: &str,
    cmd: Command,
    backend: Arc<dyn StreamingBackend>,
) {
    let version = protocol_version(protocol);
    let opts = cmd.options();
    let mut wanted = vec!["error"];
    if opts.stdin {
        wanted.push("stdin");
    }
    if opts.stdout {
        wanted.push("stdout");
    }
    if opts.stderr {
        wanted.push("stderr");
    }
    if opts.tty && version >= 3 {
        wanted.push("resize");
    }
    let mut streams: HashMap<String, SpdyStream> = HashMap::new();
    let collected = tokio::time::timeout(STREAM_CREATION_TIMEOUT, async {
        while !wanted.iter().all(|w| streams.contains_key(*w)) {
            let Some(s) = session.accept().await else {
                return false;
            };
            match header(&s.headers, "streamtype") {
                Some(t) if wanted.contains(&t) && !streams.contains_key(t) => {
                    streams.insert(t.to_string(), s);
                }
                _ => s.send.reset(),
            }
        }
        true
    })
    .await;
    if collected != Ok(true) {
        tracing::debug!("remotecommand: client did not open its streams");
        session.close().await;
        return;
    }
    let mut io = StreamIo {
        stdin: None,
        stdout: None,
        stderr: None,
        resize: None,
    };
    let mut copiers = Vec::new();
    let mut helpers = Vec::new();
    if let Some(s) = streams.remove("stdin") {
        io.stdin = Some(Box::new(s.recv));
    }
    for (name, slot) in [("stdout", &mut io.stdout), ("stderr", &mut io.stderr)] {
        if let Some(s) = streams.remove(name) {
            let (w, r) = tokio::io::duplex(PIPE_BUFFER);
            *slot = Some(Box::new(w));
            let send = s.send.clone();
            copiers.push(tokio::spawn(async move {
                let _ = send.copy_from(r).await;
            }));
        }
    }
    if let Some(s) = streams.remove("resize") {
        let (tx, rx) = mpsc::channel(16);
        io.resize = Some(rx);
        helpers.push(spawn_resize_reader(s.recv, tx));
    }
    let Some(error) = streams.remove("error") else {
        session.close().await;
        return;
    };
    let work = cmd.run(&backend, io);
    let result = tokio::select! {
        r = work => Some(r),
        () = session.closed() => None,
    };
    let Some(result) = result else {
        // The client vanished: dropping the work stops the process.
        tracing::debug!("remotecommand: client went away");
        for h in copiers.into_iter().chain(helpers) {
            h.abort();
        }
        session.close().await;
        return;
    };
    for c in copiers {
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, c).await;
    }
    for h in helpers {
        h.abort();
    }
    if let Some(text) = error_stream_payload(version >= 4, &result) {
        let _ = error.send.write(text.as_bytes()).await;
    }
    error.send.finish().await;
    session.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_json_is_decoded_across_chunks() {
        let mut d = ResizeDecoder::default();
        assert!(d.push(br#"{"Width":80,"#).is_empty());
        let got = d.push(br#""Height":24}{"Width":100,"Height":50}{"Wi"#);
        assert_eq!(
            got,
            vec![
                TerminalSize {
                    width: 80,
                    height: 24
                },
                TerminalSize {
                    width: 100,
                    height: 50
                }
            ]
        );
        assert_eq!(
            d.push(br#"dth":1,"Height":2}"#),
            vec![TerminalSize {
                width: 1,
                height: 2
            }]
        );
        assert!(d.push(b"garbage").is_empty());
        assert_eq!(d.push(br#"{"Width":3,"Height":4}"#).len(), 1);
    }

    #[test]
    fn protocol_versions() {
        assert_eq!(protocol_version("v4.channel.k8s.io"), 4);
        assert_eq!(protocol_version("v5.channel.k8s.io"), 5);
        assert_eq!(protocol_version("channel.k8s.io"), 1);
        assert_eq!(protocol_version("base64.channel.k8s.io"), 1);
    }

    #[test]
    fn a_tty_has_no_stderr() {
        let c = Command::Exec(ExecRequest {
            container_id: "c".into(),
            cmd: vec!["sh".into()],
            tty: true,
            stdin: true,
            stdout: true,
            stderr: true,
        });
        assert!(!c.options().stderr);
    }
}
