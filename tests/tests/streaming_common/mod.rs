//! Clients for the streaming tests: tokio-tungstenite as the WebSocket
//! client, and a small SPDY/3.1 client written here (no code shared with
//! the server), plus a pod with a running busybox container.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use cria_proto::v1;
use cria_tests::pod::PodEnv;
use cria_tests::{CriadConfig, RuntimeClient};
use flate2::{Compress, Compression, FlushCompress};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, Notify};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// Everything a streaming test needs: criad with busybox, a pod, and one
/// running container (`sleep 3600`).
pub struct Pod {
    pub env: PodEnv,
    pub rt: RuntimeClient,
    pub pod_id: String,
    pub pod: v1::PodSandboxConfig,
    pub ctr: String,
}

impl Pod {
    /// Starts criad, a pod and a container running `argv`.
    pub async fn start(name: &str, argv: &[&str]) -> Result<Pod> {
        Self::start_with(name, argv, CriadConfig::default()).await
    }

    /// The same with more criad config (e.g. a `[streaming]` section).
    pub async fn start_with(name: &str, argv: &[&str], config: CriadConfig) -> Result<Pod> {
        let env = PodEnv::start_with(config).await?;
        let mut rt = env.rt().await?;
        let pod = env.pod_config(name)?;
        let pod_id = env
            .run_pod(&mut rt, &pod)
            .await
            .map_err(|s| anyhow!("RunPodSandbox: {s:?}\n{}", env.criad.log()))?;
        let cfg = env.container_config("main", argv);
        let ctr = env
            .create_start(&mut rt, &pod_id, &pod, &cfg)
            .await
            .map_err(|s| anyhow!("create/start: {s:?}\n{}", env.criad.log()))?;
        Ok(Pod {
            env,
            rt,
            pod_id,
            pod,
            ctr,
        })
    }

    /// The Exec RPC's URL.
    pub async fn exec_url(&mut self, cmd: &[&str], tty: bool, stdin: bool) -> Result<String> {
        let r = self
            .rt
            .exec(v1::ExecRequest {
                container_id: self.ctr.clone(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                tty,
                stdin,
                stdout: true,
                stderr: !tty,
            })
            .await
            .map_err(|s| anyhow!("Exec: {s:?}"))?;
        Ok(r.into_inner().url)
    }

    /// The PortForward RPC's URL.
    pub async fn port_forward_url(&mut self, ports: &[i32]) -> Result<String> {
        let r = self
            .rt
            .port_forward(v1::PortForwardRequest {
                pod_sandbox_id: self.pod_id.clone(),
                port: ports.to_vec(),
            })
            .await
            .map_err(|s| anyhow!("PortForward: {s:?}"))?;
        Ok(r.into_inner().url)
    }

    /// Stops and removes the pod.
    pub async fn remove(mut self) -> Result<()> {
        cria_tests::pod::remove_pod(&mut self.rt, &self.pod_id)
            .await
            .map_err(|s| anyhow!("remove pod: {s:?}"))
    }
}

/// `host:port` and path of an `http://` URL.
fn split_url(url: &str) -> Result<(String, String)> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("not an http URL: {url}"))?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    Ok((host.to_string(), path.to_string()))
}

// ---------------------------------------------------------------- WebSocket

/// A WebSocket client connection.
pub type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

/// Connects to `url` (http → ws) offering `protocol`; returns the socket
/// and the protocol the server chose.
pub async fn ws_connect(url: &str, protocol: &str) -> Result<(Ws, String)> {
    let (host, _) = split_url(url)?;
    let ws_url = url.replacen("http://", "ws://", 1);
    let mut req = ws_url.into_client_request()?;
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", protocol.parse()?);
    let tcp = TcpStream::connect(&host).await?;
    let (ws, resp) = tokio_tungstenite::client_async(req, tcp).await?;
    let chosen = resp
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    Ok((ws, chosen))
}

/// What a remotecommand session produced.
#[derive(Debug, Default)]
pub struct Outcome {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub error: String,
}

impl Outcome {
    /// The exit code from the v4+ Status JSON on the error channel.
    pub fn exit_code(&self) -> Result<i32> {
        let v: serde_json::Value = serde_json::from_str(&self.error)
            .with_context(|| format!("error stream is not JSON: {:?}", self.error))?;
        match v["status"].as_str() {
            Some("Success") => Ok(0),
            Some("Failure") if v["reason"] == "NonZeroExitCode" => {
                let c = &v["details"]["causes"][0];
                if c["reason"] != "ExitCode" {
                    bail!("no ExitCode cause in {v}");
                }
                Ok(c["message"].as_str().unwrap_or("").parse()?)
            }
            _ => bail!("unexpected status {v}"),
        }
    }
}

/// Encodes a message for `channel` (binary or base64 text framing).
pub fn ws_msg(base64: bool, channel: u8, data: &[u8]) -> Message {
    use base64::Engine;
    if base64 {
        let mut s = String::from(char::from(b'0' + channel));
        s.push_str(&base64::engine::general_purpose::STANDARD.encode(data));
        Message::text(s)
    } else {
        let mut v = vec![channel];
        v.extend_from_slice(data);
        Message::binary(v)
    }
}

/// Decodes a channel message.
pub fn ws_decode(msg: &Message) -> Option<(u8, Vec<u8>)> {
    use base64::Engine;
    match msg {
        Message::Binary(b) => b.split_first().map(|(c, r)| (*c, r.to_vec())),
        Message::Text(t) => {
            let t = t.as_str();
            let c = t.as_bytes().first()? - b'0';
            let d = base64::engine::general_purpose::STANDARD
                .decode(&t[1..])
                .ok()?;
            Some((c, d))
        }
        _ => None,
    }
}

/// Reads a remotecommand session to its end (close or EOF), bounded by `limit`.
pub async fn ws_collect<S>(
    ws: &mut tokio_tungstenite::WebSocketStream<S>,
    base64: bool,
    limit: Duration,
) -> Result<Outcome>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let _ = base64;
    let mut out = Outcome::default();
    tokio::time::timeout(limit, async {
        while let Some(msg) = ws.next().await {
            let msg = msg?;
            if matches!(msg, Message::Close(_)) {
                break;
            }
            if let Some((c, d)) = ws_decode(&msg) {
                match c {
                    1 => out.stdout.extend(d),
                    2 => out.stderr.extend(d),
                    3 => out.error.push_str(&String::from_utf8_lossy(&d)),
                    _ => {}
                }
            }
        }
        Ok::<_, anyhow::Error>(())
    })
    .await
    .context("remotecommand session did not end in time")??;
    Ok(out)
}

/// Sends a message.
pub async fn ws_send(ws: &mut Ws, m: Message) -> Result<()> {
    ws.send(m).await?;
    Ok(())
}

// --------------------------------------------------------------------- SPDY

/// The SPDY/3 header compression dictionary (protocol data).
const SPDY_DICT: &[u8] = include_bytes!("../../../streaming/src/spdy3_dictionary.bin");

#[derive(Default)]
struct StreamBuf {
    data: Vec<u8>,
    fin: bool,
    reset: bool,
    replied: bool,
}

#[derive(Default)]
struct ClientState {
    streams: HashMap<u32, StreamBuf>,
    goaway: bool,
    eof: bool,
    /// Why the reader stopped (for failure messages).
    end: String,
}

struct Writer {
    wr: tokio::net::tcp::OwnedWriteHalf,
    deflate: Compress,
}

/// A SPDY/3.1 client over an upgraded connection; a reader task gathers
/// what each stream receives and acknowledges it with WINDOW_UPDATEs.
pub struct Spdy {
    writer: Arc<Mutex<Writer>>,
    state: Arc<std::sync::Mutex<ClientState>>,
    changed: Arc<Notify>,
    next_id: u32,
    reader: tokio::task::JoinHandle<()>,
    pub protocol: String,
}

impl Drop for Spdy {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

fn ctrl_frame(kind: u16, flags: u8, body: &[u8]) -> Vec<u8> {
    let mut f = vec![0x80, 0x03];
    f.extend(kind.to_be_bytes());
    f.push(flags);
    let len = body.len() as u32;
    f.extend(&len.to_be_bytes()[1..]);
    f.extend(body);
    f
}

impl Spdy {
    /// Upgrades an HTTP/1.1 connection to `url`, offering `protocols`.
    /// With `flow_control` it announces a 64 KiB initial window, so the
    /// server must honour windows (refilled as data arrives).
    pub async fn connect(url: &str, protocols: &[&str], flow_control: bool) -> Result<Spdy> {
        let (host, path) = split_url(url)?;
        let mut tcp = TcpStream::connect(&host).await?;
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
        );
        for p in protocols {
            req.push_str(&format!("X-Stream-Protocol-Version: {p}\r\n"));
        }
        req.push_str("Content-Length: 0\r\n\r\n");
        tcp.write_all(req.as_bytes()).await?;
        // Read the response head byte by byte: SPDY frames follow it.
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let b = tcp.read_u8().await.context("reading upgrade response")?;
            head.push(b);
            if head.len() > 16 * 1024 {
                bail!("upgrade response too long");
            }
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        if !head.starts_with("HTTP/1.1 101") {
            // The body (if any) explains the refusal.
            let mut body = vec![0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(2), tcp.read(&mut body))
                .await
                .unwrap_or(Ok(0))
                .unwrap_or(0);
            bail!(
                "upgrade refused: {}{}",
                head.lines().next().unwrap_or(""),
                String::from_utf8_lossy(&body[..n])
            );
        }
        let protocol = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("x-stream-protocol-version")
                    .then(|| v.trim().to_string())
            })
            .unwrap_or_default();
        let (rd, wr) = tcp.into_split();
        let mut deflate = Compress::new(Compression::default(), true);
        deflate.set_dictionary(SPDY_DICT)?;
        let writer = Arc::new(Mutex::new(Writer { wr, deflate }));
        let state = Arc::new(std::sync::Mutex::new(ClientState::default()));
        let changed = Arc::new(Notify::new());
        let reader = tokio::spawn(read_loop(
            rd,
            writer.clone(),
            state.clone(),
            changed.clone(),
        ));
        let c = Spdy {
            writer,
            state,
            changed,
            next_id: 1,
            reader,
            protocol,
        };
        if flow_control {
            // SETTINGS: one entry, id 7 (initial window) = 64 KiB.
            let mut body = 1u32.to_be_bytes().to_vec();
            body.extend(7u32.to_be_bytes());
            body.extend((64u32 * 1024).to_be_bytes());
            c.raw(ctrl_frame(4, 0, &body)).await?;
        }
        Ok(c)
    }

    async fn raw(&self, bytes: Vec<u8>) -> Result<()> {
        let mut w = self.writer.lock().await;
        w.wr.write_all(&bytes).await?;
        Ok(())
    }

    /// Opens a stream with these headers; returns its id.
    pub async fn open(&mut self, headers: &[(&str, &str)]) -> Result<u32> {
        let id = self.next_id;
        self.next_id += 2;
        let mut raw = (headers.len() as u32).to_be_bytes().to_vec();
        for (k, v) in headers {
            raw.extend((k.len() as u32).to_be_bytes());
            raw.extend(k.as_bytes());
            raw.extend((v.len() as u32).to_be_bytes());
            raw.extend(v.as_bytes());
        }
        let mut w = self.writer.lock().await;
        let mut block = Vec::with_capacity(raw.len() + 128);
        w.deflate
            .compress_vec(&raw, &mut block, FlushCompress::Sync)?;
        if w.deflate.total_in() == 0 {
            bail!("header compression made no progress");
        }
        let mut body = id.to_be_bytes().to_vec();
        body.extend(0u32.to_be_bytes()); // associated stream
        body.extend([0u8, 0u8]); // priority, slot
        body.extend(block);
        let frame = ctrl_frame(1, 0, &body);
        w.wr.write_all(&frame).await?;
        Ok(id)
    }

    /// Sends data on a stream (in 16 KiB frames), optionally with FIN.
    pub async fn send(&self, id: u32, data: &[u8], fin: bool) -> Result<()> {
        let mut chunks: Vec<&[u8]> = data.chunks(16 * 1024).collect();
        if chunks.is_empty() {
            chunks.push(&[]);
        }
        let last = chunks.len() - 1;
        for (i, c) in chunks.into_iter().enumerate() {
            let mut f = id.to_be_bytes().to_vec();
            f.push(if fin && i == last { 1 } else { 0 });
            f.extend(&(c.len() as u32).to_be_bytes()[1..]);
            f.extend(c);
            self.raw(f).await?;
        }
        Ok(())
    }

    /// Waits (bounded) until `done` holds for the received state.
    async fn wait_for(
        &self,
        limit: Duration,
        what: &str,
        done: impl Fn(&ClientState) -> bool,
    ) -> Result<()> {
        tokio::time::timeout(limit, async {
            loop {
                let n = self.changed.notified();
                tokio::pin!(n);
                n.as_mut().enable();
                if done(&self.state.lock().unwrap()) {
                    return;
                }
                n.await;
            }
        })
        .await
        .with_context(|| format!("spdy: timed out waiting for {what}"))
    }

    /// Waits for FIN (or reset, or the end of the connection) on `id` and
    /// returns what it carried.
    pub async fn read_to_end(&self, id: u32, limit: Duration) -> Result<Vec<u8>> {
        self.wait_for(limit, &format!("end of stream {id}"), |s| {
            s.eof || s.streams.get(&id).is_some_and(|b| b.fin || b.reset)
        })
        .await?;
        Ok(self
            .state
            .lock()
            .unwrap()
            .streams
            .get_mut(&id)
            .map(|b| std::mem::take(&mut b.data))
            .unwrap_or_default())
    }

    /// Waits until `id` has received at least something containing `needle`.
    pub async fn wait_contains(&self, id: u32, needle: &[u8], limit: Duration) -> Result<Vec<u8>> {
        self.wait_for(limit, "output", |s| {
            s.streams
                .get(&id)
                .is_some_and(|b| b.data.windows(needle.len()).any(|w| w == needle))
        })
        .await?;
        Ok(self.state.lock().unwrap().streams[&id].data.clone())
    }

    /// How stream `id` and the connection ended (for failure messages).
    pub fn describe(&self, id: u32) -> String {
        let s = self.state.lock().unwrap();
        let b = s.streams.get(&id);
        format!(
            "stream {id}: fin={:?} reset={:?}; connection: goaway={} eof={} ({})",
            b.map(|b| b.fin),
            b.map(|b| b.reset),
            s.goaway,
            s.eof,
            s.end
        )
    }

    /// The connection was closed by the server (GOAWAY or EOF), bounded.
    pub async fn wait_closed(&self, limit: Duration) -> Result<()> {
        self.wait_for(limit, "connection close", |s| s.eof || s.goaway)
            .await
    }
}

async fn read_loop(
    mut rd: tokio::net::tcp::OwnedReadHalf,
    writer: Arc<Mutex<Writer>>,
    state: Arc<std::sync::Mutex<ClientState>>,
    changed: Arc<Notify>,
) {
    loop {
        let mut head = [0u8; 8];
        if let Err(e) = rd.read_exact(&mut head).await {
            state.lock().unwrap().end = format!("reading a frame head: {e}");
            break;
        }
        let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
        let mut body = vec![0u8; len];
        if let Err(e) = rd.read_exact(&mut body).await {
            state.lock().unwrap().end =
                format!("reading a {len}-byte frame body after {head:?}: {e}");
            break;
        }
        let fin = head[4] & 1 != 0;
        if head[0] & 0x80 == 0 {
            let id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
            {
                let mut s = state.lock().unwrap();
                let b = s.streams.entry(id).or_default();
                b.data.extend(&body);
                b.fin |= fin;
            }
            if len > 0 {
                // Refill the stream and session windows at once.
                let mut w = writer.lock().await;
                for sid in [id, 0] {
                    let mut f = sid.to_be_bytes().to_vec();
                    f.extend((len as u32).to_be_bytes());
                    let _ = w.wr.write_all(&ctrl_frame(9, 0, &f)).await;
                }
            }
        } else {
            let kind = u16::from_be_bytes([head[2], head[3]]);
            let id = if body.len() >= 4 {
                u32::from_be_bytes([body[0], body[1], body[2], body[3]]) & 0x7fff_ffff
            } else {
                0
            };
            let mut s = state.lock().unwrap();
            match kind {
                2 => {
                    let b = s.streams.entry(id).or_default();
                    b.replied = true;
                    b.fin |= fin;
                }
                3 => s.streams.entry(id).or_default().reset = true,
                7 => s.goaway = true,
                _ => {}
            }
        }
        changed.notify_waiters();
    }
    state.lock().unwrap().eof = true;
    changed.notify_waiters();
}

/// sha256 hex of `data`.
pub fn sha256(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// `n` pseudo-random bytes from `seed` (xorshift; reproducible).
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Open fds of a process.
pub fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Describes how `got` differs from `want` (None when equal): lengths, the
/// first differing offset, and where the bytes found there sit in `want`
/// (a duplicated, lost or reordered chunk shows as a shifted match).
pub fn byte_diff(got: &[u8], want: &[u8]) -> Option<String> {
    if got == want {
        return None;
    }
    let first = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    let probe = &got[first..got.len().min(first + 64)];
    let found = (!probe.is_empty())
        .then(|| want.windows(probe.len()).position(|w| w == probe))
        .flatten();
    Some(format!(
        "got {} bytes, want {}; first difference at offset {first}; the {} bytes got there are at offset {found:?} of want",
        got.len(),
        want.len(),
        probe.len()
    ))
}
