//! `criad`: cria's CRI v1 daemon.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use cria_shim::config::{Config, LogFormat, Overrides};
use cria_shim::daemon::Daemon;
use cria_shim::runtime_service::RuntimeServiceImpl;
use cria_shim::server;
use tokio::signal::unix::{signal, SignalKind};

/// criad serves the Kubernetes CRI v1 API (RuntimeService and ImageService)
/// on a unix socket. Flags override the config file.
#[derive(Debug, Parser)]
#[command(name = "criad", version, about)]
struct Cli {
    /// TOML config file (every key optional). Default: /etc/cria/config.toml when present.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Persistent data directory (images, snapshots, records).
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Runtime state directory (socket, namespaces, monitor state).
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
    /// The CRI socket path. Default: <state>/cria.sock.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Log level or tracing filter, e.g. `debug` or `info,cria_image_store=debug`.
    #[arg(long, value_name = "L")]
    log_level: Option<String>,
    /// Log format on stderr.
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
}

fn main() -> std::process::ExitCode {
    tune_malloc();
    match start(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // Not eprintln!: it panics when stderr is closed.
            let _ = writeln!(std::io::stderr(), "criad: {}", one_line(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// Keeps glibc malloc from holding memory an idle criad does not use. Runs
/// first in `main`, before any other thread exists (mallopt is not meant to
/// race with allocations on other threads).
///
/// - `M_ARENA_MAX = 1`: glibc gives each new thread that allocates its own
///   arena (up to 8 per core), and each arena keeps its freed memory; after
///   a pull the tokio workers and blocking threads held ~1–1.5 MiB that way.
///   criad allocates little per call, and each thread's tcache still serves
///   small allocations without taking the arena lock.
/// - `M_MMAP_THRESHOLD = M_TRIM_THRESHOLD = 128 KiB`: setting them turns off
///   glibc's dynamic threshold, which raises itself to the size of each
///   large mmapped block freed (up to 32 MiB), so later buffers of that size
///   (layer downloads, decompression) come from the heap and stay there
///   after the pull. Large buffers now always come from mmap and go back to
///   the kernel when freed; the heap top is trimmed past 128 KiB.
#[cfg(target_env = "gnu")]
fn tune_malloc() {
    const THRESHOLD: libc::c_int = 128 * 1024;
    // SAFETY: mallopt only sets allocator parameters; no other thread runs.
    // A rejected value (return 0) leaves glibc's default, which is safe.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, THRESHOLD);
    }
}

/// Other C libraries have their own allocator policies.
#[cfg(not(target_env = "gnu"))]
fn tune_malloc() {}

/// The error and its causes on one line, without anyhow's backtrace and
/// without repeating a cause that a message already quotes (cria's errors
/// put their source in their own text).
fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}

fn start(cli: Cli) -> anyhow::Result<()> {
    let config = Config::load(
        cli.config.as_deref(),
        Overrides {
            root: cli.root,
            state: cli.state,
            socket: cli.socket,
            log_level: cli.log_level,
            log_format: cli.log_format,
        },
    )?;
    init_logging(&config)?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(run(config))
}

/// tracing to stderr, text or JSON, filtered by `log_level`.
fn init_logging(config: &Config) -> anyhow::Result<()> {
    // Validated by Config::load; this only fails on a bug.
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)
        .with_context(|| format!("log level {:?}", config.log_level))?;
    // A closed stderr (its reader gone) must not bring criad down: without
    // this, the subscriber reports the failed write with eprintln!, which
    // panics on the same closed stderr.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
    match config.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

async fn run(config: Config) -> anyhow::Result<()> {
    let socket = config.socket_path();
    // First, so a second criad on the same socket stops before it touches
    // the stores the first one has open.
    server::claim_socket(&socket)?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        root = %config.root.display(),
        state = %config.state.display(),
        socket = %socket.display(),
        "criad starting"
    );
    let daemon = Arc::new(Daemon::open(config)?);
    daemon.collect_snapshots_after_container_removal();
    let runtime = RuntimeServiceImpl::new(daemon.runtime.clone());
    runtime.recover().await;
    cria_shim::streaming_backend::start(&daemon.runtime, &daemon.config.streaming).await?;
    let listener = server::bind(&socket)?;
    server::serve(daemon, runtime, listener, &socket, shutdown_signal()?).await?;
    tracing::info!("criad stopped");
    Ok(())
}

/// Completes on the first SIGTERM or SIGINT.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}
