//! `cria-oci`: the OCI runtime command line (`create`, `start`, `state`,
//! `kill`, `delete`, `run`) over cria's runtime library, so cria's runtime can
//! be driven like runc and crun from the same bundle.
//!
//! It is a thin front end: every container is created by `cria-monitor`
//! (found beside this binary unless `--monitor` says otherwise), and all
//! state lives under `--root`. The container's output is discarded (the
//! library writes it only to a CRI log file): `run` is for timing and exit
//! codes, not for interactive use.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use cria_runtime::{ContainerCreate, Runtime, RuntimeConfig, Status};

/// How long `run` waits for the container to exit.
const RUN_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

#[derive(Parser)]
#[command(
    name = "cria-oci",
    about = "OCI runtime CLI over cria's runtime library"
)]
struct Cli {
    /// State root (like runc's --root).
    #[arg(long, default_value = "/run/cria-oci")]
    root: PathBuf,
    /// The cria-monitor binary (default: beside this binary).
    #[arg(long)]
    monitor: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Creates a container from a bundle, waiting for `start`.
    Create {
        #[arg(long, short, default_value = ".")]
        bundle: PathBuf,
        /// Writes the container's host pid to this file.
        #[arg(long)]
        pid_file: Option<PathBuf>,
        /// A CRI-format log file for the container's output.
        #[arg(long)]
        log: Option<PathBuf>,
        id: String,
    },
    /// Starts a created container.
    Start { id: String },
    /// Prints the container's state as OCI state JSON.
    State { id: String },
    /// Sends a signal (default SIGTERM) to the container.
    Kill {
        #[arg(long)]
        all: bool,
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Deletes a stopped container (or a running one with --force).
    Delete {
        #[arg(long, short)]
        force: bool,
        id: String,
    },
    /// create + start + wait + delete; exits with the container's exit code.
    Run {
        #[arg(long, short, default_value = ".")]
        bundle: PathBuf,
        /// A CRI-format log file for the container's output.
        #[arg(long)]
        log: Option<PathBuf>,
        id: String,
    },
}

fn main() {
    match real_main() {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("cria-oci: {e:#}");
            std::process::exit(1);
        }
    }
}

fn real_main() -> Result<i32> {
    let cli = Cli::parse();
    let monitor_path = match cli.monitor {
        Some(p) => p,
        None => std::env::current_exe()
            .context("finding this binary")?
            .with_file_name("cria-monitor"),
    };
    if !monitor_path.exists() {
        bail!("monitor binary {} not found", monitor_path.display());
    }
    let rt = Runtime::new(RuntimeConfig {
        monitor_path,
        state_root: cli.root,
    });
    match cli.cmd {
        Cmd::Create {
            bundle,
            pid_file,
            log,
            id,
        } => {
            let created = rt.create(&request(&id, bundle, log)?)?;
            if let Some(p) = pid_file {
                std::fs::write(&p, created.pid.to_string())
                    .with_context(|| format!("writing pid file {}", p.display()))?;
            }
        }
        Cmd::Start { id } => rt.start(&id)?,
        Cmd::State { id } => {
            let s = rt.state(&id)?;
            let doc = serde_json::json!({
                "ociVersion": "1.0.2",
                "id": s.id,
                "status": status_name(s.status),
                "pid": s.pid,
                "bundle": s.bundle,
            });
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        Cmd::Kill { all, id, signal } => {
            rt.kill(&id, cria_runtime::signal_from_name(&signal)?, all)?
        }
        Cmd::Delete { force, id } => rt.delete(&id, force)?,
        Cmd::Run { bundle, log, id } => {
            rt.create(&request(&id, bundle, log)?)?;
            let waited = rt.start(&id).and_then(|()| rt.wait(&id, RUN_TIMEOUT));
            // Delete whatever happened, so a failed run leaves nothing behind.
            let deleted = rt.delete(&id, true);
            let state = waited?;
            deleted?;
            return Ok(state.exit_code.unwrap_or(255));
        }
    }
    Ok(0)
}

/// The library request for container `id` of `bundle` (made absolute, as
/// the monitor runs with another working directory).
fn request(id: &str, bundle: PathBuf, log: Option<PathBuf>) -> Result<ContainerCreate> {
    let bundle = std::path::absolute(&bundle)
        .with_context(|| format!("resolving bundle {}", bundle.display()))?;
    Ok(ContainerCreate {
        id: id.to_owned(),
        bundle,
        log_path: log,
        ..Default::default()
    })
}

/// OCI state names (`creating` is never observed: create returns after it).
fn status_name(s: Status) -> &'static str {
    match s {
        Status::Created => "created",
        Status::Running => "running",
        Status::Stopped => "stopped",
        Status::Unknown => "unknown",
    }
}
