//! remotecommand and port-forward over WebSocket (`channel.k8s.io` family).
//!
//! Every message carries one channel: binary messages start with the channel
//! byte, the base64 protocols send text whose first character is the channel
//! digit followed by base64 data. remotecommand channels: 0 stdin, 1 stdout,
//! 2 stderr, 3 error, 4 resize; `v5.channel.k8s.io` adds 255, the close
//! signal (`[255, channel]` half-closes that channel, i.e. stdin).
//! Port-forward uses channels 2i (data) and 2i+1 (error) for the i-th port;
//! with the v4 protocols the first message on each carries the port number
//! (two bytes, little endian).

use crate::remotecommand::{protocol_version, spawn_resize_reader, Command, PIPE_BUFFER};
use crate::status::error_stream_payload;
use crate::{StreamIo, StreamingBackend};
use base64::Engine;
use futures::{SinkExt, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// remotecommand subprotocols, preferred first.
pub(crate) const EXEC_PROTOCOLS: &[&str] = &[
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v4.base64.channel.k8s.io",
    "channel.k8s.io",
    "base64.channel.k8s.io",
];

/// Port-forward subprotocols, preferred first.
pub(crate) const PORT_FORWARD_PROTOCOLS: &[&str] = &[
    "v4.channel.k8s.io",
    "v4.base64.channel.k8s.io",
    "channel.k8s.io",
    "base64.channel.k8s.io",
];

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE_SIGNAL: u8 = 255;

/// Channel framing of one connection.
#[derive(Debug, Clone, Copy)]
struct Framing {
    base64: bool,
}

impl Framing {
    fn for_protocol(protocol: &str) -> Framing {
        Framing {
            base64: protocol.contains("base64"),
        }
    }

    fn encode(self, channel: u8, data: &[u8]) -> Message {
        if self.base64 {
            let mut s = String::with_capacity(1 + data.len() * 4 / 3 + 4);
            s.push(char::from(b'0' + channel));
            base64::engine::general_purpose::STANDARD.encode_string(data, &mut s);
            Message::text(s)
        } else {
            let mut v = Vec::with_capacity(1 + data.len());
            v.push(channel);
            v.extend_from_slice(data);
            Message::binary(v)
        }
    }

    /// The channel and payload of a message; `None` for control messages
    /// and malformed ones.
    fn decode(self, msg: &Message) -> Option<(u8, Vec<u8>)> {
        match msg {
            Message::Binary(b) if !self.base64 => {
                let (&c, rest) = b.split_first()?;
                Some((c, rest.to_vec()))
            }
            Message::Text(t) if self.base64 => {
                let t = t.as_str();
                let c = t.bytes().next()?.checked_sub(b'0')?;
                let data = base64::engine::general_purpose::STANDARD
                    .decode(&t[1..])
                    .ok()?;
                Some((c, data))
            }
            // Some clients send binary even on base64 protocols.
            Message::Binary(b) => {
                let (&c, rest) = b.split_first()?;
                Some((c, rest.to_vec()))
            }
            _ => None,
        }
    }
}

/// Picks the first of the client's offered protocols that we support;
/// a client offering none gets `channel.k8s.io`.
pub(crate) fn negotiate(offered: &[String], supported: &[&str]) -> Option<String> {
    if offered.is_empty() {
        return Some("channel.k8s.io".to_string());
    }
    offered
        .iter()
        .find(|p| supported.contains(&p.as_str()))
        .cloned()
}

type Ws<IO> = WebSocketStream<IO>;

/// How long a finished session waits for the client's close reply.
const CLOSE_LINGER: Duration = Duration::from_secs(5);

/// Sends messages queued by many tasks; ends with a normal close frame.
fn spawn_writer<IO>(
    mut sink: futures::stream::SplitSink<Ws<IO>, Message>,
) -> (mpsc::Sender<Message>, tokio::task::JoinHandle<()>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel::<Message>(32);
    let task = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            let is_close = matches!(m, Message::Close(_));
            if sink.send(m).await.is_err() || is_close {
                break;
            }
        }
        let _ = sink.close().await;
    });
    (tx, task)
}

/// Copies `src` to `channel` until EOF.
fn spawn_output<R: AsyncRead + Unpin + Send + 'static>(
    mut src: R,
    channel: u8,
    framing: Framing,
    tx: mpsc::Sender<Message>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match src.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(framing.encode(channel, &buf[..n])).await.is_err() {
                        break;
                    }
                }
            }
        }
    })
}

fn normal_close() -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }))
}

/// Serves one remotecommand over a WebSocket.
pub(crate) async fn serve_exec<IO>(
    ws: Ws<IO>,
    protocol: &str,
    cmd: Command,
    backend: Arc<dyn StreamingBackend>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let version = protocol_version(protocol);
    let framing = Framing::for_protocol(protocol);
    let opts = cmd.options();
    let (sink, mut stream) = ws.split();
    let (tx, writer) = spawn_writer(sink);
    let mut io = StreamIo {
        stdin: None,
        stdout: None,
        stderr: None,
        resize: None,
    };
    let mut stdin_w = None;
    if opts.stdin {
        let (w, r) = tokio::io::duplex(PIPE_BUFFER);
        io.stdin = Some(Box::new(r));
        stdin_w = Some(w);
    }
    let mut outputs = Vec::new();
    for (on, chan, slot) in [
        (opts.stdout, STDOUT, &mut io.stdout),
        (opts.stderr, STDERR, &mut io.stderr),
    ] {
        if on {
            let (w, r) = tokio::io::duplex(PIPE_BUFFER);
            *slot = Some(Box::new(w));
            outputs.push(spawn_output(r, chan, framing, tx.clone()));
        }
    }
    let mut resize_w = None;
    let mut helpers = Vec::new();
    if opts.tty {
        let (w, r) = tokio::io::duplex(4096);
        let (rtx, rrx) = mpsc::channel(16);
        io.resize = Some(rrx);
        helpers.push(spawn_resize_reader(r, rtx));
        resize_w = Some(w);
    }
    // The reader: routes stdin and resize; reports the client's departure.
    let (gone_tx, gone_rx) = oneshot::channel::<()>();
    let reader = tokio::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
            let Some((chan, data)) = framing.decode(&msg) else {
                continue;
            };
            match chan {
                STDIN => {
                    if let Some(w) = stdin_w.as_mut() {
                        if w.write_all(&data).await.is_err() {
                            stdin_w = None;
                        }
                    }
                }
                RESIZE => {
                    if let Some(w) = resize_w.as_mut() {
                        let _ = w.write_all(&data).await;
                    }
                }
                CLOSE_SIGNAL if version >= 5 && data.first() == Some(&STDIN) => {
                    if let Some(mut w) = stdin_w.take() {
                        let _ = w.shutdown().await;
                    }
                }
                _ => {}
            }
        }
        let _ = gone_tx.send(());
    });
    let work = cmd.run(&backend, io);
    let result = tokio::select! {
        r = work => Some(r),
        _ = gone_rx => None,
    };
    let Some(result) = result else {
        tracing::debug!("remotecommand: websocket client went away");
        for h in outputs.into_iter().chain(helpers) {
            h.abort();
        }
        drop(tx);
        writer.abort();
        return;
    };
    for o in outputs {
        let _ = tokio::time::timeout(Duration::from_secs(30), o).await;
    }
    for h in helpers {
        h.abort();
    }
    if let Some(text) = error_stream_payload(version >= 4, &result) {
        let _ = tx.send(framing.encode(ERROR, text.as_bytes())).await;
    }
    let _ = tx.send(normal_close()).await;
    drop(tx);
    let _ = tokio::time::timeout(Duration::from_secs(10), writer).await;
    // Keep reading until the client answers our close (bounded): dropping
    // the socket with its input unread would make the kernel reset the
    // connection, and the client would lose the status and close frame
    // still in its buffers (the SPDY session lingers the same way).
    let mut reader = reader;
    if tokio::time::timeout(CLOSE_LINGER, &mut reader)
        .await
        .is_err()
    {
        reader.abort();
    }
}

/// Serves a port-forward session over a WebSocket: one connection per port.
pub(crate) async fn serve_port_forward<IO>(
    ws: Ws<IO>,
    protocol: &str,
    pod: String,
    ports: Vec<u16>,
    backend: Arc<dyn StreamingBackend>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let framing = Framing::for_protocol(protocol);
    let prefix = protocol_version(protocol) >= 4;
    let (sink, mut stream) = ws.split();
    let (tx, writer) = spawn_writer(sink);
    let mut to_conn: Vec<Option<tokio::io::WriteHalf<Box<dyn crate::PortConnection>>>> = Vec::new();
    let mut readers = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let (data, err) = ((2 * i) as u8, (2 * i + 1) as u8);
        if prefix {
            let _ = tx.send(framing.encode(data, &port.to_le_bytes())).await;
            let _ = tx.send(framing.encode(err, &port.to_le_bytes())).await;
        }
        match backend.port_forward(pod.clone(), *port).await {
            Ok(conn) => {
                let (r, w) = tokio::io::split(conn);
                to_conn.push(Some(w));
                readers.push(spawn_output(r, data, framing, tx.clone()));
            }
            Err(e) => {
                let msg = format!("error forwarding port {port} to pod {pod}: {e}");
                let _ = tx.send(framing.encode(err, msg.as_bytes())).await;
                to_conn.push(None);
            }
        }
    }
    while let Some(Ok(msg)) = stream.next().await {
        if matches!(msg, Message::Close(_)) {
            break;
        }
        let Some((chan, data)) = framing.decode(&msg) else {
            continue;
        };
        if chan % 2 != 0 {
            continue;
        }
        if let Some(slot) = to_conn.get_mut(usize::from(chan / 2)) {
            if let Some(w) = slot.as_mut() {
                if w.write_all(&data).await.is_err() {
                    *slot = None;
                }
            }
        }
    }
    for r in readers {
        r.abort();
    }
    let _ = tx.send(normal_close()).await;
    drop(tx);
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_round_trips_binary_and_base64() {
        for base64 in [false, true] {
            let f = Framing { base64 };
            let m = f.encode(STDOUT, b"hi\x00\xff");
            assert_eq!(f.decode(&m), Some((STDOUT, b"hi\x00\xff".to_vec())));
        }
        let b64 = Framing { base64: true };
        assert_eq!(
            b64.decode(&Message::text("0aGk=")),
            Some((STDIN, b"hi".to_vec()))
        );
    }

    #[test]
    fn negotiation_follows_the_client_order() {
        let offered = vec![
            "v4.channel.k8s.io".to_string(),
            "v5.channel.k8s.io".to_string(),
        ];
        assert_eq!(
            negotiate(&offered, EXEC_PROTOCOLS).as_deref(),
            Some("v4.channel.k8s.io")
        );
        assert_eq!(negotiate(&["nope".to_string()], EXEC_PROTOCOLS), None);
        assert_eq!(
            negotiate(&[], EXEC_PROTOCOLS).as_deref(),
            Some("channel.k8s.io")
        );
    }
}
