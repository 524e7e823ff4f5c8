//! criad's side of streaming: the CRI `Exec`, `Attach` and `PortForward`
//! RPCs (they register a request with the streaming server and return its
//! URL) and the [`StreamingBackend`] that does the work with the runtime
//! crate: interactive exec through `cria-monitor exec` (pipes or a pty,
//! resize, stdin close), and TCP connections made inside a pod's network
//! namespace for port-forward.

use crate::config::StreamingConfig;
use crate::runtime_service::context::runtime_status;
use crate::runtime_service::store::container::{ContainerPhase, ContainerRecord};
use crate::runtime_service::RuntimeContext;
use cria_proto::v1 as cri;
use cria_runtime::exec_stream::{resize_pty, ExecSession, ExecStdio};
use cria_streaming::{
    AttachRequest, BackendError, ExecRequest, PortConnection, PortForwardRequest, ServerConfig,
    StreamIo, StreamingBackend, StreamingServer,
};
use futures::future::BoxFuture;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::unix::pipe;
use tonic::Status;

/// Output still in flight once the process exited may take this long to
/// reach the client (background children holding the pipes are not waited
/// for beyond it).
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(5);
/// How long a tty exec waits for the client's first window size before it
/// starts the process anyway.
const FIRST_SIZE_WAIT: Duration = Duration::from_millis(500);
/// A port-forward connect to a port in the pod gives up after this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts the streaming server for `ctx` as `[streaming]` says; the RPCs
/// find it in the context. Returns the address it listens on.
pub async fn start(
    ctx: &Arc<RuntimeContext>,
    config: &StreamingConfig,
) -> Result<SocketAddr, cria_streaming::StreamingError> {
    let backend = Arc::new(ShimBackend {
        ctx: Arc::downgrade(ctx),
    });
    let server = StreamingServer::start(
        ServerConfig {
            addr: SocketAddr::new(config.address, config.port),
            token_ttl: std::time::Duration::from_secs(config.token_ttl_seconds),
            tls: config.tls_files(),
        },
        backend,
    )
    .await?;
    let addr = server.local_addr();
    // A second start (tests) keeps the first server.
    let _ = ctx.streaming.set(server);
    Ok(addr)
}

fn server(ctx: &RuntimeContext) -> Result<&StreamingServer, Status> {
    ctx.streaming
        .get()
        .ok_or_else(|| Status::unavailable("the streaming server is not running"))
}

fn running_container(ctx: &RuntimeContext, id: &str) -> Result<ContainerRecord, Status> {
    let record = ctx.containers.get(id)?.get();
    if record.phase != ContainerPhase::Running {
        return Err(Status::failed_precondition(format!(
            "container {} is not running",
            record.id
        )));
    }
    Ok(record)
}

fn invalid(e: cria_streaming::StreamingError) -> Status {
    Status::invalid_argument(e.to_string())
}

/// CRI `Exec`: registers the exec and returns its URL.
pub(crate) async fn exec(
    ctx: &Arc<RuntimeContext>,
    req: cri::ExecRequest,
) -> Result<cri::ExecResponse, Status> {
    let record = running_container(ctx, &req.container_id)?;
    let url = server(ctx)?
        .register_exec(ExecRequest {
            container_id: record.id,
            cmd: req.cmd,
            tty: req.tty,
            stdin: req.stdin,
            stdout: req.stdout,
            stderr: req.stderr,
        })
        .map_err(invalid)?;
    Ok(cri::ExecResponse { url })
}

/// CRI `Attach`: registers the attach and returns its URL.
pub(crate) async fn attach(
    ctx: &Arc<RuntimeContext>,
    req: cri::AttachRequest,
) -> Result<cri::AttachResponse, Status> {
    let record = running_container(ctx, &req.container_id)?;
    let url = server(ctx)?
        .register_attach(AttachRequest {
            container_id: record.id,
            tty: req.tty,
            stdin: req.stdin,
            stdout: req.stdout,
            stderr: req.stderr,
        })
        .map_err(invalid)?;
    Ok(cri::AttachResponse { url })
}

/// CRI `PortForward`: registers the session and returns its URL.
pub(crate) async fn port_forward(
    ctx: &Arc<RuntimeContext>,
    req: cri::PortForwardRequest,
) -> Result<cri::PortForwardResponse, Status> {
    let sandbox = ctx.sandboxes.get(&req.pod_sandbox_id)?.get();
    let ports = req
        .port
        .iter()
        .map(|p| {
            u16::try_from(*p)
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| Status::invalid_argument(format!("invalid port {p}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let url = server(ctx)?
        .register_port_forward(PortForwardRequest {
            pod_sandbox_id: sandbox.id,
            ports,
        })
        .map_err(invalid)?;
    Ok(cri::PortForwardResponse { url })
}

/// The runtime side of the streaming server.
struct ShimBackend {
    /// Weak: the context owns the server, which owns this backend.
    ctx: Weak<RuntimeContext>,
}

impl ShimBackend {
    fn ctx(&self) -> Result<Arc<RuntimeContext>, BackendError> {
        self.ctx
            .upgrade()
            .ok_or_else(|| BackendError::new("criad is shutting down"))
    }
}

fn backend_err(s: Status) -> BackendError {
    BackendError::new(s.message().to_string())
}

/// The container's own process (user, env, cwd, capabilities) with `cmd`.
fn exec_process(
    record: &ContainerRecord,
    cmd: Vec<String>,
) -> Result<oci_spec::runtime::Process, BackendError> {
    let mut process = crate::runtime_service::spec::bundle_process(&record.id, &record.bundle)
        .map_err(BackendError::new)?;
    process.set_args(Some(cmd));
    Ok(process)
}

/// Asks the exec helper to kill and reap its process unless it was reaped:
/// dropping an exec future (client gone) leaves nothing, not even a zombie
/// in the container (`cria_runtime::exec_helper`). The task waiting on the
/// helper reaps it.
struct KillOnDrop {
    pid: u32,
    reaped: bool,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if !self.reaped {
            cria_runtime::exec_helper::request_stop(self.pid);
        }
    }
}

/// A pipe or pty fd as a tokio reader (EIO, a pty whose slave closed, is EOF).
fn reader(fd: OwnedFd) -> std::io::Result<impl AsyncRead + Send + Unpin> {
    Ok(EioIsEof(pipe::Receiver::from_owned_fd_unchecked(
        nonblocking(fd)?,
    )?))
}

fn writer(fd: OwnedFd) -> std::io::Result<pipe::Sender> {
    pipe::Sender::from_owned_fd_unchecked(nonblocking(fd)?)
}

fn nonblocking(fd: OwnedFd) -> std::io::Result<OwnedFd> {
    let fl = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_GETFL)?;
    let fl = nix::fcntl::OFlag::from_bits_retain(fl) | nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFL(fl))?;
    Ok(fd)
}

/// Reads through `R`, turning EIO into end of file.
struct EioIsEof<R>(R);

impl<R: AsyncRead + Unpin> AsyncRead for EioIsEof<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match std::pin::Pin::new(&mut self.0).poll_read(cx, buf) {
            std::task::Poll::Ready(Err(e)) if e.raw_os_error() == Some(libc::EIO) => {
                std::task::Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

/// Copies `src` to `dst` (or discards it without a client stream) until EOF
/// or until the client stops reading.
fn spawn_copy_out(
    src: impl AsyncRead + Send + Unpin + 'static,
    dst: Option<Box<dyn AsyncWrite + Send + Unpin>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut src = src;
        match dst {
            Some(mut d) => {
                let _ = tokio::io::copy(&mut src, &mut d).await;
                let _ = d.shutdown().await;
            }
            None => {
                let _ = tokio::io::copy(&mut src, &mut tokio::io::sink()).await;
            }
        }
    })
}

/// Copies the client's stdin to `dst`; at the client's EOF closes `dst`
/// (stdin close propagation), and with a pty (`eof_pty`, the master) first
/// types the terminal's EOF, since closing our copy of a pty master ends
/// nothing for the process reading it.
fn spawn_copy_in(
    src: Option<Box<dyn AsyncRead + Send + Unpin>>,
    dst: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    eof_pty: Option<OwnedFd>,
) -> Option<tokio::task::JoinHandle<()>> {
    use tokio::io::AsyncReadExt;
    let (mut src, mut dst) = (src?, dst?);
    Some(tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        let mut last = None;
        let ended = loop {
            match src.read(&mut buf).await {
                Ok(0) => break true,
                Ok(n) => {
                    if dst.write_all(&buf[..n]).await.is_err() {
                        break false;
                    }
                    last = Some(buf[n - 1]);
                }
                Err(_) => break false,
            }
        };
        if let (true, Some(pty)) = (ended, &eof_pty) {
            let eof = cria_runtime::exec_stream::terminal_eof(pty.as_fd(), last);
            let _ = dst.write_all(&eof).await;
        }
        let _ = dst.shutdown().await;
    }))
}

/// Runs an interactive exec to its end, pumping the client's streams.
async fn run_exec(
    ctx: Arc<RuntimeContext>,
    req: ExecRequest,
    io: StreamIo,
) -> Result<i32, BackendError> {
    let record = running_container(&ctx, &req.container_id).map_err(backend_err)?;
    let process = exec_process(&record, req.cmd.clone())?;
    let stdio = ExecStdio {
        tty: req.tty,
        stdin: req.stdin,
    };
    let rt_ctx = ctx.clone();
    let id = record.id.clone();
    let session: ExecSession =
        tokio::task::spawn_blocking(move || rt_ctx.runtime.exec_interactive(&id, &process, stdio))
            .await
            .map_err(|e| BackendError::new(format!("exec task failed: {e}")))?
            .map_err(|e| backend_err(runtime_status(e)))?;
    let ExecSession {
        mut helper,
        stdin,
        stdout,
        stderr,
        pty,
        start_gate,
    } = session;
    let mut guard = KillOnDrop {
        pid: helper.id(),
        reaped: false,
    };
    let io_err = |e: std::io::Error| BackendError::new(format!("exec stdio: {e}"));
    let StreamIo {
        stdin: client_in,
        stdout: client_out,
        stderr: client_err,
        resize,
    } = io;
    let mut outputs = Vec::new();
    let mut tasks = Vec::new();
    if let Some(master) = pty {
        let for_write = master.try_clone().map_err(io_err)?;
        let resize_fd = master.try_clone().map_err(io_err)?;
        let eof_fd = master.try_clone().map_err(io_err)?;
        outputs.push(spawn_copy_out(reader(master).map_err(io_err)?, client_out));
        let to_pty: Box<dyn AsyncWrite + Send + Unpin> =
            Box::new(writer(for_write).map_err(io_err)?);
        tasks.extend(spawn_copy_in(client_in, Some(to_pty), Some(eof_fd)));
        if let Some(mut sizes) = resize {
            // The client's first size, set before the process starts (a new
            // pty is 0x0); clients send it at once, so the wait is short.
            if let Ok(Some(s)) = tokio::time::timeout(FIRST_SIZE_WAIT, sizes.recv()).await {
                if let Err(e) = resize_pty(resize_fd.as_fd(), s.width, s.height) {
                    tracing::debug!(error = %e, "exec resize failed");
                }
            }
            tasks.push(tokio::spawn(async move {
                while let Some(s) = sizes.recv().await {
                    if let Err(e) = resize_pty(resize_fd.as_fd(), s.width, s.height) {
                        tracing::debug!(error = %e, "exec resize failed");
                    }
                }
            }));
        }
    } else {
        if let Some(fd) = stdout {
            outputs.push(spawn_copy_out(reader(fd).map_err(io_err)?, client_out));
        }
        if let Some(fd) = stderr {
            outputs.push(spawn_copy_out(reader(fd).map_err(io_err)?, client_err));
        }
        if let Some(fd) = stdin {
            let w: Box<dyn AsyncWrite + Send + Unpin> = Box::new(writer(fd).map_err(io_err)?);
            tasks.extend(spawn_copy_in(client_in, Some(w), None));
        }
    }
    // The process starts now, its pty sized when the client said how.
    drop(start_gate);
    let status = tokio::task::spawn_blocking(move || helper.wait())
        .await
        .map_err(|e| BackendError::new(format!("exec wait failed: {e}")))?
        .map_err(io_err)?;
    guard.reaped = true;
    for o in outputs {
        let _ = tokio::time::timeout(DRAIN_AFTER_EXIT, o).await;
    }
    for t in tasks {
        t.abort();
    }
    use std::os::unix::process::ExitStatusExt;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

/// Attaches to the container's monitor (`attach.sock`) until the container
/// exits (the monitor closes the socket) or the client leaves (the future is
/// dropped, which closes our connection).
async fn run_attach(
    ctx: Arc<RuntimeContext>,
    req: AttachRequest,
    io: StreamIo,
) -> Result<Option<i32>, BackendError> {
    use cria_runtime::attach::{
        encode_frame, take_frames, FRAME_RESIZE, FRAME_STDERR, FRAME_STDIN, FRAME_STDIN_CLOSE,
        FRAME_STDOUT,
    };
    use tokio::io::AsyncReadExt;
    let record = running_container(&ctx, &req.container_id).map_err(backend_err)?;
    // A unix connect does not block; through the runtime it works for any
    // state root depth (the socket path may not fit a unix address).
    let sock = ctx
        .runtime
        .attach_connect(&record.id)
        .map_err(|e| e.to_string())
        .and_then(|s| {
            s.set_nonblocking(true)
                .and_then(|()| tokio::net::UnixStream::from_std(s))
                .map_err(|e| e.to_string())
        })
        .map_err(|e| BackendError::new(format!("attach to container {}: {e}", record.id)))?;
    let (mut rd, wr) = sock.into_split();
    let wr = Arc::new(tokio::sync::Mutex::new(wr));
    let StreamIo {
        stdin,
        mut stdout,
        mut stderr,
        resize,
    } = io;
    let mut tasks = Vec::new();
    if let Some(mut stdin) = stdin {
        let wr = wr.clone();
        tasks.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            while let Ok(n) = stdin.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let frame = encode_frame(FRAME_STDIN, &buf[..n]);
                if wr.lock().await.write_all(&frame).await.is_err() {
                    return;
                }
            }
            // The client closed its stdin: the monitor closes the
            // container's when it was created with `stdin_once`.
            let _ = wr
                .lock()
                .await
                .write_all(&encode_frame(FRAME_STDIN_CLOSE, &[]))
                .await;
        }));
    }
    if let Some(mut sizes) = resize {
        let wr = wr.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(s) = sizes.recv().await {
                let mut p = s.width.to_be_bytes().to_vec();
                p.extend_from_slice(&s.height.to_be_bytes());
                if wr
                    .lock()
                    .await
                    .write_all(&encode_frame(FRAME_RESIZE, &p))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }));
    }
    let mut inbuf = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    let result = loop {
        let n = match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break Ok(()),
            Ok(n) => n,
        };
        inbuf.extend_from_slice(&buf[..n]);
        let frames = match take_frames(&mut inbuf) {
            Ok(f) => f,
            Err(e) => break Err(BackendError::new(e)),
        };
        for (kind, data) in frames {
            let out = match kind {
                FRAME_STDOUT => stdout.as_mut(),
                FRAME_STDERR => stderr.as_mut(),
                _ => None,
            };
            if let Some(w) = out {
                // The client stopped reading: it is leaving.
                if w.write_all(&data).await.is_err() {
                    return Ok(None);
                }
            }
        }
    };
    for t in tasks {
        t.abort();
    }
    result?;
    for w in [stdout.as_mut(), stderr.as_mut()].into_iter().flatten() {
        let _ = w.shutdown().await;
    }
    // The monitor closes attach clients after recording the exit.
    let rt_ctx = ctx.clone();
    let id = record.id.clone();
    let state = tokio::task::spawn_blocking(move || rt_ctx.runtime.state(&id))
        .await
        .map_err(|e| BackendError::new(format!("attach: {e}")))?
        .map_err(|e| backend_err(runtime_status(e)))?;
    Ok(state.exit_code)
}

/// Connects to 127.0.0.1:`port` in the network namespace at `netns` (the
/// host's when `None`). setns happens on a thread of its own, which exits
/// afterwards: a tokio worker must never change namespace.
async fn connect_in_netns(
    netns: Option<PathBuf>,
    port: u16,
) -> std::io::Result<tokio::net::TcpStream> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("cria-portfwd".into())
        .spawn(move || {
            let r = (|| {
                if let Some(path) = &netns {
                    let ns = std::fs::File::open(path)?;
                    nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)?;
                }
                let addr = SocketAddr::from(([127, 0, 0, 1], port));
                let s = std::net::TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
                s.set_nonblocking(true)?;
                Ok::<_, std::io::Error>(s)
            })();
            let _ = tx.send(r);
        })?;
    let std_stream = rx
        .await
        .map_err(|_| std::io::Error::other("port-forward connect thread died"))??;
    tokio::net::TcpStream::from_std(std_stream)
}

impl StreamingBackend for ShimBackend {
    fn exec(
        &self,
        req: ExecRequest,
        io: StreamIo,
    ) -> BoxFuture<'static, Result<i32, BackendError>> {
        let ctx = self.ctx();
        Box::pin(async move { run_exec(ctx?, req, io).await })
    }

    fn attach(
        &self,
        req: AttachRequest,
        io: StreamIo,
    ) -> BoxFuture<'static, Result<Option<i32>, BackendError>> {
        let ctx = self.ctx();
        Box::pin(async move { run_attach(ctx?, req, io).await })
    }

    fn port_forward(
        &self,
        pod_sandbox_id: String,
        port: u16,
    ) -> BoxFuture<'static, Result<Box<dyn PortConnection>, BackendError>> {
        let ctx = self.ctx();
        Box::pin(async move {
            let ctx = ctx?;
            let sandbox = ctx
                .sandboxes
                .get(&pod_sandbox_id)
                .map_err(|e| BackendError::new(e.to_string()))?
                .get();
            let conn = connect_in_netns(sandbox.namespaces.network.clone(), port)
                .await
                .map_err(|e| BackendError::new(format!("connect to 127.0.0.1:{port}: {e}")))?;
            let _ = conn.set_nodelay(true);
            Ok(Box::new(conn) as Box<dyn PortConnection>)
        })
    }
}
