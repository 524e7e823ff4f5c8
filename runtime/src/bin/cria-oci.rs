//! `cria-oci`: an OCI-runtime-CLI-compatible front end of the cria runtime
//! (`create`, `start`, `state`, `kill`, `delete`, `run`), so cria can be
//! compared bundle-for-bundle with runc and crun and driven by other engines.
//!
//! `cria-oci [--root DIR] [--log-file L] <command> ...`; the monitor is the
//! `cria-monitor` next to this binary unless `CRIA_MONITOR` names another.

use cria_runtime::{ContainerCreate, Runtime, RuntimeConfig, Status};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

fn usage() -> String {
    "usage: cria-oci [--root DIR] create [--bundle B] [--pid-file F] [--console-socket S] ID\n\
     \x20      cria-oci [--root DIR] start|state ID\n\
     \x20      cria-oci [--root DIR] kill [--all] ID [SIGNAL]\n\
     \x20      cria-oci [--root DIR] delete [--force] ID\n\
     \x20      cria-oci [--root DIR] run [--bundle B] [--log L] ID"
        .to_string()
}

/// Parsed command line: global options, command, its flags and operands.
struct Cli {
    root: PathBuf,
    command: String,
    bundle: PathBuf,
    pid_file: Option<PathBuf>,
    log: Option<PathBuf>,
    all: bool,
    force: bool,
    operands: Vec<String>,
}

fn parse() -> Result<Cli, String> {
    let mut cli = Cli {
        root: PathBuf::from("/run/cria-oci"),
        command: String::new(),
        bundle: PathBuf::from("."),
        pid_file: None,
        log: None,
        all: false,
        force: false,
        operands: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--root" => cli.root = value("--root")?.into(),
            "--bundle" | "-b" => cli.bundle = value("--bundle")?.into(),
            "--pid-file" => cli.pid_file = Some(value("--pid-file")?.into()),
            "--log" | "--log-file" => cli.log = Some(value("--log")?.into()),
            // Accepted for compatibility; cria logs to a CRI log file instead.
            "--console-socket" | "--log-format" => {
                value(&a)?;
            }
            "--all" | "-a" => cli.all = true,
            "--force" | "-f" => cli.force = true,
            "--debug" | "--systemd-cgroup" | "--detach" | "-d" => {}
            s if s.starts_with('-') => return Err(format!("unknown option {s}\n{}", usage())),
            s if cli.command.is_empty() => cli.command = s.to_string(),
            s => cli.operands.push(s.to_string()),
        }
    }
    if cli.command.is_empty() || cli.operands.is_empty() {
        return Err(usage());
    }
    Ok(cli)
}

fn runtime(cli: &Cli) -> Runtime {
    let monitor = std::env::var_os("CRIA_MONITOR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|p| p.parent().map(|d| d.join("cria-monitor")))
                .unwrap_or_else(|| PathBuf::from("cria-monitor"))
        });
    Runtime::new(RuntimeConfig {
        monitor_path: monitor,
        state_root: cli.root.clone(),
    })
}

fn create(rt: &Runtime, cli: &Cli, id: &str) -> Result<(), String> {
    let bundle =
        std::fs::canonicalize(&cli.bundle).map_err(|e| format!("bundle {:?}: {e}", cli.bundle))?;
    let c = rt
        .create(&ContainerCreate {
            id: id.to_string(),
            bundle,
            log_path: cli.log.clone(),
            ..Default::default()
        })
        .map_err(|e| e.to_string())?;
    if let Some(p) = &cli.pid_file {
        std::fs::write(p, c.pid.to_string()).map_err(|e| format!("pid file {p:?}: {e}"))?;
    }
    Ok(())
}

/// The OCI `state` JSON (runtime-spec "state" object).
fn state_json(rt: &Runtime, id: &str) -> Result<String, String> {
    let st = rt.state(id).map_err(|e| e.to_string())?;
    let status = match st.status {
        Status::Created => "created",
        Status::Running => "running",
        Status::Stopped | Status::Unknown => "stopped",
    };
    let v = serde_json::json!({
        "ociVersion": "1.0.2",
        "id": st.id,
        "status": status,
        "pid": if matches!(st.status, Status::Created | Status::Running) { st.pid } else { 0 },
        "bundle": st.bundle,
        "annotations": {},
    });
    serde_json::to_string_pretty(&v).map_err(|e| e.to_string())
}

fn run_cli(cli: &Cli) -> Result<u8, String> {
    let rt = runtime(cli);
    let id = cli.operands[0].as_str();
    let e = |e: cria_runtime::RuntimeError| e.to_string();
    match cli.command.as_str() {
        "create" => create(&rt, cli, id).map(|()| 0),
        "start" => rt.start(id).map(|()| 0).map_err(e),
        "state" => {
            println!("{}", state_json(&rt, id)?);
            Ok(0)
        }
        "kill" => {
            let sig = match cli.operands.get(1) {
                Some(s) => cria_runtime::signal_from_name(s).map_err(e)?,
                None => libc::SIGTERM,
            };
            rt.kill(id, sig, cli.all).map(|()| 0).map_err(e)
        }
        "delete" => rt.delete(id, cli.force).map(|()| 0).map_err(e),
        "run" => {
            create(&rt, cli, id)?;
            rt.start(id).map_err(e)?;
            // A day is "forever" for a benchmark or a one-shot run.
            let st = rt.wait(id, Duration::from_secs(86_400)).map_err(e)?;
            rt.delete(id, true).map_err(e)?;
            Ok(st.exit_code.unwrap_or(255).clamp(0, 255) as u8)
        }
        other => Err(format!("unknown command {other}\n{}", usage())),
    }
}

fn main() -> ExitCode {
    match parse().and_then(|cli| run_cli(&cli)) {
        Ok(code) => ExitCode::from(code),
        Err(msg) => {
            eprintln!("cria-oci: {msg}");
            ExitCode::from(1)
        }
    }
}
