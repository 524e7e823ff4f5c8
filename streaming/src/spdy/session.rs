//! One SPDY/3.1 connection: a reader task dispatching frames to streams, a
//! writer task serialising frames onto the socket, and per-stream and
//! per-session flow control.
//!
//! Flow control of what we send is enforced once the peer shows it speaks it
//! (it sends a SETTINGS initial window or a WINDOW_UPDATE): Go's spdystream,
//! which kubectl and crictl use, sends neither and ignores windows, so
//! holding such a peer to the 64 KiB default would stall every stream. What
//! the peer sends us is acknowledged with WINDOW_UPDATEs as the consumer
//! reads it, so a peer that honours windows is held to our buffer size.

use super::frame::{self, Frame, HeaderCodec, Headers};
use crate::StreamingError;
use bytes::{Buf, Bytes};
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;

/// SPDY's default window, per stream and for the session.
const DEFAULT_WINDOW: i64 = 64 * 1024;
/// We acknowledge received bytes in batches of this many.
const ACK_BATCH: u32 = 16 * 1024;
/// Largest DATA payload we send.
const MAX_DATA: usize = 32 * 1024;
/// Chunks buffered per stream before the reader waits for the consumer.
const STREAM_QUEUE: usize = 64;
/// How long a closing session keeps reading (and discarding) what the peer
/// still sends after our GOAWAY, waiting for it to close its side.
const LINGER: std::time::Duration = std::time::Duration::from_secs(5);

/// What the writer task is asked to do.
enum WriterMsg {
    Frame(Vec<u8>),
    /// Flush and shut the socket down.
    Close,
}

/// Send-side flow control.
struct Flow {
    enforce: bool,
    initial: i64,
    session: i64,
    streams: HashMap<u32, i64>,
}

/// State shared by the session's tasks and stream handles.
struct Shared {
    ctrl: mpsc::UnboundedSender<WriterMsg>,
    data: mpsc::Sender<Vec<u8>>,
    flow: Mutex<Flow>,
    flow_changed: Notify,
    closed: watch::Sender<bool>,
    /// Set by [`Session::close`]: the reader stops delivering and discards
    /// what still arrives, so the socket is never dropped with unread input.
    draining: watch::Sender<bool>,
    /// Bytes received but not yet acknowledged to the peer (stream 0).
    session_unacked: AtomicU32,
}

impl Shared {
    fn flow(&self) -> std::sync::MutexGuard<'_, Flow> {
        self.flow.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    fn ctrl(&self, f: Vec<u8>) {
        let _ = self.ctrl.send(WriterMsg::Frame(f));
    }

    /// Waits until `want` bytes (at most) may be sent on `id`; returns how
    /// many. Errors when the stream was reset or the session closed.
    async fn acquire(&self, id: u32, want: usize) -> std::io::Result<usize> {
        loop {
            let changed = self.flow_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.is_closed() {
                return Err(broken("spdy session closed"));
            }
            {
                let mut f = self.flow();
                let Some(&stream) = f.streams.get(&id) else {
                    return Err(broken("spdy stream was reset"));
                };
                if !f.enforce {
                    return Ok(want);
                }
                let avail = stream.min(f.session);
                if avail > 0 {
                    let n = (avail as usize).min(want);
                    f.session -= n as i64;
                    if let Some(s) = f.streams.get_mut(&id) {
                        *s -= n as i64;
                    }
                    return Ok(n);
                }
            }
            changed.await;
        }
    }
}

fn broken(msg: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::BrokenPipe, msg.to_string())
}

/// A stream the peer opened and we accepted.
pub(crate) struct SpdyStream {
    /// The stream id.
    pub(crate) id: u32,
    /// Its SYN_STREAM headers.
    pub(crate) headers: Headers,
    /// What the peer sends on it (EOF at the peer's FIN or reset).
    pub(crate) recv: SpdyRecv,
    /// Our side.
    pub(crate) send: SpdySender,
}

/// The receiving half of a stream.
pub(crate) struct SpdyRecv {
    id: u32,
    rx: mpsc::Receiver<Bytes>,
    current: Bytes,
    unacked: u32,
    shared: Arc<Shared>,
}

impl SpdyRecv {
    fn ack(&mut self, n: usize) {
        self.unacked += n as u32;
        if self.unacked >= ACK_BATCH {
            self.shared
                .ctrl(frame::window_update(self.id, self.unacked));
            self.unacked = 0;
        }
        let s = self
            .shared
            .session_unacked
            .fetch_add(n as u32, Ordering::AcqRel)
            + n as u32;
        if s >= ACK_BATCH
            && self
                .shared
                .session_unacked
                .compare_exchange(s, 0, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.shared.ctrl(frame::window_update(0, s));
        }
    }
}

impl AsyncRead for SpdyRecv {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        while self.current.is_empty() {
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(b)) => self.current = b,
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = self.current.len().min(buf.remaining());
        buf.put_slice(&self.current[..n]);
        self.current.advance(n);
        self.ack(n);
        Poll::Ready(Ok(()))
    }
}

/// The sending half of a stream (cheap to clone).
#[derive(Clone)]
pub(crate) struct SpdySender {
    id: u32,
    shared: Arc<Shared>,
    fin_sent: Arc<AtomicBool>,
}

impl SpdySender {
    /// Sends `data`, waiting for flow-control window as needed.
    pub(crate) async fn write(&self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            let n = self
                .shared
                .acquire(self.id, data.len().min(MAX_DATA))
                .await?;
            self.shared
                .data
                .send(frame::data(self.id, false, &data[..n]))
                .await
                .map_err(|_| broken("spdy session closed"))?;
            data = &data[n..];
        }
        Ok(())
    }

    /// Half-closes the stream (an empty DATA frame with FIN), once.
    pub(crate) async fn finish(&self) {
        if self.fin_sent.swap(true, Ordering::AcqRel) {
            return;
        }
        let _ = self.shared.data.send(frame::data(self.id, true, &[])).await;
    }

    /// Aborts the stream.
    pub(crate) fn reset(&self) {
        self.fin_sent.store(true, Ordering::Release);
        self.shared
            .ctrl(frame::rst_stream(self.id, frame::RST_CANCEL));
    }

    /// Copies `src` to the stream until EOF, then half-closes it.
    pub(crate) async fn copy_from<R: AsyncRead + Unpin>(&self, mut src: R) -> std::io::Result<u64> {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; MAX_DATA];
        let mut total = 0u64;
        loop {
            let n = src.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            self.write(&buf[..n]).await?;
            total += n as u64;
        }
        self.finish().await;
        Ok(total)
    }
}

/// Per-stream dispatch state of the reader.
struct Inbound {
    tx: Option<mpsc::Sender<Bytes>>,
}

/// A SPDY server session over an upgraded connection.
pub(crate) struct Session {
    incoming: mpsc::Receiver<SpdyStream>,
    shared: Arc<Shared>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
    last_stream: Arc<AtomicU32>,
}

impl Session {
    /// Starts the reader and writer tasks over `io`.
    pub(crate) fn start<IO>(io: IO) -> Result<Session, StreamingError>
    where
        IO: AsyncRead + AsyncWrite + Send + 'static,
    {
        let codec = HeaderCodec::new()?;
        let (rd, wr) = tokio::io::split(io);
        let (ctrl_tx, ctrl_rx) = mpsc::unbounded_channel();
        let (data_tx, data_rx) = mpsc::channel(16);
        let (closed, _) = watch::channel(false);
        let (draining, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            ctrl: ctrl_tx,
            data: data_tx,
            flow: Mutex::new(Flow {
                enforce: false,
                initial: DEFAULT_WINDOW,
                session: DEFAULT_WINDOW,
                streams: HashMap::new(),
            }),
            flow_changed: Notify::new(),
            closed,
            draining,
            session_unacked: AtomicU32::new(0),
        });
        let (in_tx, in_rx) = mpsc::channel(64);
        let last_stream = Arc::new(AtomicU32::new(0));
        let writer = tokio::spawn(write_loop(wr, ctrl_rx, data_rx, shared.clone()));
        let reader = tokio::spawn(read_loop(
            rd,
            codec,
            shared.clone(),
            in_tx,
            last_stream.clone(),
        ));
        Ok(Session {
            incoming: in_rx,
            shared,
            reader,
            writer,
            last_stream,
        })
    }

    /// The next stream the peer opens; `None` once the connection is gone.
    pub(crate) async fn accept(&mut self) -> Option<SpdyStream> {
        self.incoming.recv().await
    }

    /// Resolves when the connection is gone (peer left, or error).
    pub(crate) fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.shared.closed.subscribe();
        async move {
            let _ = rx.wait_for(|c| *c).await;
        }
    }

    /// Flushes what is queued, says GOAWAY and closes the connection.
    ///
    /// The close lingers: until the peer closes its side (bounded by
    /// [`LINGER`]) we keep reading and discarding. Dropping a TCP socket
    /// with unread input makes the kernel send RST instead of FIN, and a
    /// peer that gets RST loses whatever it had not read yet (the tail of
    /// the output, the error stream's status, the GOAWAY). The peer keeps
    /// sending WINDOW_UPDATEs for data it reads, so there usually is
    /// unread input when we finish.
    pub(crate) async fn close(self) {
        // GOAWAY goes behind the queued data: Go clients stop reading at
        // GOAWAY, and the error stream's status must reach them first.
        let goaway = frame::goaway(self.last_stream.load(Ordering::Acquire));
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            self.shared.data.send(goaway),
        )
        .await;
        let _ = self.shared.ctrl.send(WriterMsg::Close);
        // Nothing is delivered to streams any more: the reader only drains.
        self.shared.draining.send_replace(true);
        // The writer drains queued data first; bounded so a stuck peer
        // cannot hold the session forever.
        let mut writer = self.writer;
        if tokio::time::timeout(std::time::Duration::from_secs(10), &mut writer)
            .await
            .is_err()
        {
            writer.abort();
        }
        let mut reader = self.reader;
        if tokio::time::timeout(LINGER, &mut reader).await.is_err() {
            reader.abort();
        }
        let _ = self.shared.closed.send(true);
        self.shared.flow_changed.notify_waiters();
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut ctrl: mpsc::UnboundedReceiver<WriterMsg>,
    mut data: mpsc::Receiver<Vec<u8>>,
    shared: Arc<Shared>,
) {
    let mut closing = false;
    loop {
        let msg = if closing {
            // Close was asked: send the data already queued, then stop.
            match data.try_recv() {
                Ok(f) => WriterMsg::Frame(f),
                Err(_) => break,
            }
        } else {
            tokio::select! {
                biased;
                m = ctrl.recv() => match m {
                    Some(m) => m,
                    None => break,
                },
                d = data.recv() => match d {
                    Some(f) => WriterMsg::Frame(f),
                    None => break,
                },
            }
        };
        match msg {
            WriterMsg::Frame(f) => {
                if wr.write_all(&f).await.is_err() {
                    break;
                }
            }
            WriterMsg::Close => {
                // Control frames queued before Close (the GOAWAY) go first.
                closing = true;
                while let Ok(WriterMsg::Frame(f)) = ctrl.try_recv() {
                    if wr.write_all(&f).await.is_err() {
                        break;
                    }
                }
            }
        }
    }
    let _ = wr.flush().await;
    let _ = wr.shutdown().await;
    let _ = shared.closed.send(true);
    shared.flow_changed.notify_waiters();
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut rd: R,
    mut codec: HeaderCodec,
    shared: Arc<Shared>,
    incoming: mpsc::Sender<SpdyStream>,
    last_stream: Arc<AtomicU32>,
) {
    let mut streams: HashMap<u32, Inbound> = HashMap::new();
    let mut draining = shared.draining.subscribe();
    loop {
        if *draining.borrow() {
            // Closing: nothing reaches a stream any more (their readers see
            // EOF); frames are read only to be discarded.
            streams.clear();
        }
        let f = match frame::read_frame(&mut rd, &mut codec).await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "spdy connection ends");
                break;
            }
        };
        match f {
            Frame::SynStream {
                stream_id,
                fin,
                headers,
            } => {
                if streams.contains_key(&stream_id) || stream_id % 2 == 0 || *draining.borrow() {
                    shared.ctrl(frame::rst_stream(stream_id, frame::RST_REFUSED_STREAM));
                    continue;
                }
                let reply = match frame::syn_reply(&mut codec, stream_id, &Vec::new()) {
                    Ok(r) => r,
                    Err(_) => break,
                };
                last_stream.store(stream_id, Ordering::Release);
                {
                    let mut fl = shared.flow();
                    let init = fl.initial;
                    fl.streams.insert(stream_id, init);
                }
                shared.ctrl(reply);
                let (tx, rx) = mpsc::channel(STREAM_QUEUE);
                streams.insert(
                    stream_id,
                    Inbound {
                        tx: (!fin).then_some(tx),
                    },
                );
                let s = SpdyStream {
                    id: stream_id,
                    headers,
                    recv: SpdyRecv {
                        id: stream_id,
                        rx,
                        current: Bytes::new(),
                        unacked: 0,
                        shared: shared.clone(),
                    },
                    send: SpdySender {
                        id: stream_id,
                        shared: shared.clone(),
                        fin_sent: Arc::new(AtomicBool::new(false)),
                    },
                };
                if incoming.send(s).await.is_err() {
                    // Nobody accepts streams any more: the session is ending.
                    shared.ctrl(frame::rst_stream(stream_id, frame::RST_REFUSED_STREAM));
                }
            }
            Frame::Data {
                stream_id,
                fin,
                data,
            } => {
                let Some(s) = streams.get_mut(&stream_id) else {
                    continue;
                };
                if !data.is_empty() {
                    if let Some(tx) = &s.tx {
                        // Waits when the consumer is slow (backpressure for
                        // peers that ignore windows); a gone consumer drops,
                        // and so does a close (the reader must keep reading).
                        let gone = tokio::select! {
                            r = tx.send(data) => r.is_err(),
                            _ = draining.wait_for(|d| *d) => true,
                        };
                        if gone {
                            s.tx = None;
                        }
                    }
                }
                if fin {
                    s.tx = None;
                }
            }
            Frame::Headers { stream_id, fin } => {
                if fin {
                    if let Some(s) = streams.get_mut(&stream_id) {
                        s.tx = None;
                    }
                }
            }
            Frame::RstStream { stream_id, .. } => {
                streams.remove(&stream_id);
                shared.flow().streams.remove(&stream_id);
                shared.flow_changed.notify_waiters();
            }
            Frame::Settings { entries } => {
                let mut fl = shared.flow();
                for (id, value) in entries {
                    if id == frame::SETTINGS_INITIAL_WINDOW_SIZE {
                        let delta = value as i64 - fl.initial;
                        fl.initial = value as i64;
                        fl.enforce = true;
                        for w in fl.streams.values_mut() {
                            *w += delta;
                        }
                    }
                }
                drop(fl);
                shared.flow_changed.notify_waiters();
            }
            Frame::WindowUpdate { stream_id, delta } => {
                let mut fl = shared.flow();
                fl.enforce = true;
                if stream_id == 0 {
                    fl.session += delta as i64;
                } else if let Some(w) = fl.streams.get_mut(&stream_id) {
                    *w += delta as i64;
                }
                drop(fl);
                shared.flow_changed.notify_waiters();
            }
            Frame::Ping(id) => shared.ctrl(frame::ping(id)),
            Frame::GoAway { .. } => break,
            Frame::SynReply { .. } | Frame::Unknown => {}
        }
    }
    // The peer is gone: every receiver sees EOF, every sender fails.
    drop(streams);
    let _ = shared.closed.send(true);
    shared.flow_changed.notify_waiters();
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    /// What a client read off the wire until the server's EOF.
    #[derive(Debug, Default)]
    struct Received {
        data: usize,
        fin: bool,
        goaway: bool,
    }

    /// Reads frames until a clean EOF; the data and FIN of `id`, and GOAWAY.
    async fn read_all(rd: &mut TcpStream, id: u32) -> std::io::Result<Received> {
        let mut got = Received::default();
        loop {
            let mut head = [0u8; 8];
            match rd.read_exact(&mut head).await {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(got),
                Err(e) => return Err(e),
            }
            let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
            let mut body = vec![0u8; len];
            rd.read_exact(&mut body).await?;
            if head[0] & 0x80 == 0 {
                if u32::from_be_bytes([head[0], head[1], head[2], head[3]]) == id {
                    got.data += len;
                    got.fin |= head[4] & frame::FLAG_FIN != 0;
                }
            } else if u16::from_be_bytes([head[2], head[3]]) == 7 {
                got.goaway = true;
            }
        }
    }

    // The defect of issue 7: a session closed while the peer's input sat
    // unread in the socket (here: a stream nobody reads fills its queue
    // and stalls the reader; with real clients: WINDOW_UPDATEs sent after
    // we stopped reading) was dropped with unread input, so the kernel
    // sent RST and the client lost the tail of the output, the FIN and the
    // GOAWAY still in its buffers.
    #[tokio::test]
    async fn a_close_with_unread_input_still_delivers_all_output() {
        const OUTPUT: usize = 1 << 20;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server_io, _) = listener.accept().await.unwrap();
        let mut session = Session::start(server_io).unwrap();

        let mut codec = HeaderCodec::new().unwrap();
        let syn = frame::syn_stream(&mut codec, 1, &vec![("streamtype".into(), "x".into())]);
        client.write_all(&syn.unwrap()).await.unwrap();
        let stream = session.accept().await.expect("stream 1");
        // More input than the stream's queue holds; its reader never reads.
        for _ in 0..STREAM_QUEUE * 2 {
            client
                .write_all(&frame::data(1, false, &[7u8; 1024]))
                .await
                .unwrap();
        }
        let server = tokio::spawn(async move {
            let unread_input = stream.recv;
            stream.send.write(&vec![1u8; OUTPUT]).await.unwrap();
            stream.send.finish().await;
            session.close().await;
            drop(unread_input);
        });
        // The client reads nothing until the server closed (or 2 s passed):
        // what the kernel still holds for it must survive the close.
        let mut server = server;
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), &mut server).await;
        let got =
            tokio::time::timeout(std::time::Duration::from_secs(30), read_all(&mut client, 1))
                .await
                .expect("the server closes in time")
                .expect("a clean end of the connection, not a reset");
        assert_eq!(got.data, OUTPUT, "{got:?}");
        assert!(got.fin && got.goaway, "{got:?}");
        drop(client);
        tokio::time::timeout(LINGER * 2, server)
            .await
            .expect("close returns")
            .unwrap();
    }
}
