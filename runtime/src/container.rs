//! The library side of container operations: starting monitors, talking to
//! them over their control socket, reading their state files.

use crate::cgroup::{self, Cgroup};
use crate::monitor::CreateReply;
use crate::state::{self, ContainerState, Status};
use crate::{CgroupStats, ContainerCreate, Created, ExecOutput, Runtime, RuntimeError};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a monitor may take to answer a control command.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `delete(force)` waits for a killed container's monitor.
const KILL_WAIT: Duration = Duration::from_secs(10);
/// How long a timed-out exec's helper gets to kill and reap its process.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Checks that `id` can name a directory.
pub(crate) fn check_id(id: &str) -> Result<(), RuntimeError> {
    if id.is_empty() || id == "." || id == ".." || id.contains('/') || id.contains('\0') {
        return Err(RuntimeError::InvalidArgument {
            field: "id".into(),
            reason: format!("{id:?} is not a valid id"),
        });
    }
    Ok(())
}

/// Creates `dir` and parents with mode 0700.
pub(crate) fn mkdir_private(dir: &Path) -> Result<(), RuntimeError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| RuntimeError::io("mkdir", dir, e))
}

pub(crate) fn create(rt: &Runtime, req: &ContainerCreate) -> Result<Created, RuntimeError> {
    check_id(&req.id)?;
    let dir = rt.container_dir(&req.id);
    if dir.exists() {
        return Err(RuntimeError::AlreadyExists(req.id.clone()));
    }
    mkdir_private(dir.parent().unwrap_or(Path::new("/")))?;
    let mut cmd = Command::new(&rt.config.monitor_path);
    cmd.arg("create")
        .arg("--id")
        .arg(&req.id)
        .arg("--dir")
        .arg(&dir)
        .arg("--bundle")
        .arg(&req.bundle);
    if let Some(l) = &req.log_path {
        cmd.arg("--log").arg(l);
    }
    if req.tty {
        cmd.arg("--tty");
    }
    if req.stdin {
        cmd.arg("--stdin");
    }
    if req.stdin && req.stdin_once {
        cmd.arg("--stdin-once");
    }
    let monitor_err = |message: String| RuntimeError::Monitor {
        id: req.id.clone(),
        message,
    };
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| monitor_err(format!("spawn {:?}: {e}", rt.config.monitor_path)))?;
    // The seccomp program is compiled here (cached across containers), so
    // the monitor only loads it; found while the monitor starts up, off the
    // create's critical path. The monitor reads it from stdin when the spec
    // has a `linux.seccomp`; without a program (none, or an error) it gets
    // EOF, and a spec with a filter then fails the create.
    let seccomp_cache = rt.config.state_root.join("seccomp");
    let seccomp = crate::seccomp::bundle_filter(&req.bundle, &seccomp_cache);
    if let (Ok(Some(f)), Some(mut s)) = (&seccomp, child.stdin.take()) {
        // A monitor that failed before reading answers on stdout; dropping
        // `s` is its EOF.
        let _ = s.write_all(f);
    }
    drop(child.stdin.take());
    // The monitor closes both pipes once it has answered (success) or exits.
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut err);
    }
    let _ = child.wait();
    let created = match serde_json::from_str::<CreateReply>(out.trim()) {
        Ok(CreateReply::Ok { monitor_pid, pid }) => Ok(Created { monitor_pid, pid }),
        Ok(CreateReply::Err(message)) => Err(RuntimeError::Setup {
            id: req.id.clone(),
            message,
        }),
        Err(_) => {
            // A crashed monitor cannot clean up; do what we can.
            let _ = std::fs::remove_dir_all(&dir);
            Err(monitor_err(format!(
                "exited without an answer: {}",
                err.trim()
            )))
        }
    };
    match seccomp {
        Ok(_) => created,
        // The cause of the monitor's failure (a spec with a filter and no
        // program); should it have seen no filter (config.json changed
        // meanwhile), its container goes too.
        Err(e) => {
            if created.is_ok() {
                let _ = delete(rt, &req.id, true);
            }
            Err(RuntimeError::Setup {
                id: req.id.clone(),
                message: e.to_string(),
            })
        }
    }
}

/// Sends one control command to the monitor and returns its answer.
fn control(rt: &Runtime, id: &str, command: &str) -> Result<(), RuntimeError> {
    let dir = rt.container_dir(id);
    let st = state(rt, id)?;
    if !monitor_alive(&dir) {
        return Err(RuntimeError::InvalidState {
            id: id.into(),
            state: st.status.to_string(),
            op: command.into(),
        });
    }
    let sock = dir.join(state::CONTROL_SOCKET);
    let mut conn = state::connect_socket(&dir, state::CONTROL_SOCKET)
        .map_err(|e| RuntimeError::io("connect", &sock, e))?;
    conn.set_read_timeout(Some(CONTROL_TIMEOUT)).ok();
    conn.write_all(format!("{command}\n").as_bytes())
        .map_err(|e| RuntimeError::io("write", &sock, e))?;
    let mut line = String::new();
    BufReader::new(&conn)
        .read_line(&mut line)
        .map_err(|e| RuntimeError::io("read", &sock, e))?;
    match line.trim_end().strip_prefix("err ") {
        None if line.trim_end() == "ok" => Ok(()),
        Some(msg) if command == "start" => Err(RuntimeError::Setup {
            id: id.into(),
            message: msg.into(),
        }),
        Some(msg) => Err(RuntimeError::Monitor {
            id: id.into(),
            message: msg.into(),
        }),
        None => Err(RuntimeError::Monitor {
            id: id.into(),
            message: format!("unexpected answer {line:?}"),
        }),
    }
}

pub(crate) fn start(rt: &Runtime, id: &str) -> Result<(), RuntimeError> {
    let st = state(rt, id)?;
    if st.status != Status::Created {
        return Err(RuntimeError::InvalidState {
            id: id.into(),
            state: st.status.to_string(),
            op: "start".into(),
        });
    }
    control(rt, id, "start")
}

/// True while the monitor of `dir` holds its lock.
pub(crate) fn monitor_alive(dir: &Path) -> bool {
    let Ok(f) = std::fs::File::open(dir.join(state::LOCK_FILE)) else {
        return false;
    };
    match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockSharedNonblock) {
        Ok(_) => false,
        Err((_, e)) => e == nix::errno::Errno::EWOULDBLOCK,
    }
}

pub(crate) fn state(rt: &Runtime, id: &str) -> Result<ContainerState, RuntimeError> {
    check_id(id)?;
    let dir = rt.container_dir(id);
    let mut st = match ContainerState::load(&dir) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(RuntimeError::NotFound(id.into()))
        }
        Err(e) => return Err(RuntimeError::io("read", dir.join(state::STATUS_FILE), e)),
    };
    if matches!(st.status, Status::Created | Status::Running) && !monitor_alive(&dir) {
        // The monitor may have written its last state just now.
        st = ContainerState::load(&dir).unwrap_or(st);
        if st.status != Status::Stopped {
            st.status = Status::Unknown;
        }
    }
    Ok(st)
}

pub(crate) fn kill(rt: &Runtime, id: &str, signal: i32, all: bool) -> Result<(), RuntimeError> {
    let st = state(rt, id)?;
    if !matches!(st.status, Status::Created | Status::Running) {
        return Ok(());
    }
    let sig = Signal::try_from(signal).map_err(|_| RuntimeError::InvalidArgument {
        field: "signal".into(),
        reason: format!("{signal} is not a signal"),
    })?;
    if all {
        if let Some(p) = &st.cgroup_path {
            let cg = cgroup::open(Path::new(cgroup::DEFAULT_ROOT), p)?;
            for pid in cg.procs()? {
                // Processes may exit meanwhile: ESRCH is fine.
                let _ = nix::sys::signal::kill(Pid::from_raw(pid), sig);
            }
        }
    }
    match nix::sys::signal::kill(Pid::from_raw(st.pid), sig) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(RuntimeError::sys(
            format!("kill {} (container {id})", st.pid),
            e,
        )),
    }
}

pub(crate) fn wait(
    rt: &Runtime,
    id: &str,
    timeout: Duration,
) -> Result<ContainerState, RuntimeError> {
    let dir = rt.container_dir(id);
    let deadline = Instant::now() + timeout;
    loop {
        let st = state(rt, id)?;
        if !matches!(st.status, Status::Created | Status::Running) {
            return Ok(st);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(RuntimeError::Timeout {
                id: id.into(),
                op: "exit".into(),
            });
        }
        // A pidfd of the monitor becomes readable when it exits; the lock
        // check after opening it rules out a recycled pid.
        let pid = Pid::from_raw(st.monitor_pid);
        let fd = match rustix::process::Pid::from_raw(pid.as_raw())
            .map(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()))
        {
            Some(Ok(fd)) if monitor_alive(&dir) => fd,
            _ => {
                std::thread::sleep(Duration::from_millis(5).min(left));
                continue;
            }
        };
        let mut fds = [nix::poll::PollFd::new(
            fd.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let ms = u16::try_from(left.as_millis().max(1)).unwrap_or(u16::MAX);
        let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms));
    }
}

pub(crate) fn delete(rt: &Runtime, id: &str, force: bool) -> Result<(), RuntimeError> {
    let dir = rt.container_dir(id);
    let st = state(rt, id)?;
    if matches!(st.status, Status::Created | Status::Running) {
        if st.status == Status::Running && !force {
            return Err(RuntimeError::InvalidState {
                id: id.into(),
                state: st.status.to_string(),
                op: "delete (not forced)".into(),
            });
        }
        kill(rt, id, libc::SIGKILL, true)?;
        wait(rt, id, KILL_WAIT)?;
    }
    if let Some(p) = &st.cgroup_path {
        let cg = cgroup::open(Path::new(cgroup::DEFAULT_ROOT), p)?;
        if st.status == Status::Unknown {
            // The monitor is gone; its processes may not be.
            for pid in cg.procs().unwrap_or_default() {
                let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        cg.remove()?;
    }
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(RuntimeError::io("remove", dir, e)),
    }
}

pub(crate) fn exec_sync(
    rt: &Runtime,
    id: &str,
    process: &oci_spec::runtime::Process,
    timeout: Duration,
) -> Result<ExecOutput, RuntimeError> {
    let st = state(rt, id)?;
    if st.status != Status::Running {
        return Err(RuntimeError::InvalidState {
            id: id.into(),
            state: st.status.to_string(),
            op: "exec".into(),
        });
    }
    let json = serde_json::to_vec(process).map_err(|e| RuntimeError::InvalidArgument {
        field: "process".into(),
        reason: e.to_string(),
    })?;
    let mut child = Command::new(&rt.config.monitor_path)
        .arg("exec")
        .arg(rt.container_dir(id))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| RuntimeError::Monitor {
            id: id.into(),
            message: format!("spawn exec helper: {e}"),
        })?;
    if let Some(mut s) = child.stdin.take() {
        let _ = s.write_all(&json);
    }
    let reader = |r: Option<Box<dyn Read + Send>>| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            let _ = tx.send(buf);
        });
        rx
    };
    let out_rx = reader(child.stdout.take().map(|s| Box::new(s) as _));
    let err_rx = reader(child.stderr.take().map(|s| Box::new(s) as _));
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() >= deadline => {
                // The helper kills and reaps the process (exec_helper.rs).
                let _ = crate::exec_helper::stop_helper(&mut child, STOP_GRACE);
                timed_out = true;
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => {
                return Err(RuntimeError::Monitor {
                    id: id.into(),
                    message: format!("wait for exec helper: {e}"),
                })
            }
        }
    };
    // Background children of the process may hold the pipes: bounded wait.
    let grace = Duration::from_millis(500);
    let stdout = out_rx.recv_timeout(grace).unwrap_or_default();
    let stderr = err_rx.recv_timeout(grace).unwrap_or_default();
    let exit_code = match status {
        None => -1,
        Some(s) => {
            use std::os::unix::process::ExitStatusExt;
            s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0))
        }
    };
    Ok(ExecOutput {
        stdout,
        stderr,
        exit_code,
        timed_out,
    })
}

fn container_cgroup(rt: &Runtime, id: &str) -> Result<Box<dyn Cgroup>, RuntimeError> {
    let st = state(rt, id)?;
    let p = st.cgroup_path.ok_or_else(|| RuntimeError::InvalidState {
        id: id.into(),
        state: st.status.to_string(),
        op: "use cgroup (none recorded)".into(),
    })?;
    cgroup::open(Path::new(cgroup::DEFAULT_ROOT), &p)
}

pub(crate) fn update_resources(
    rt: &Runtime,
    id: &str,
    resources: &oci_spec::runtime::LinuxResources,
) -> Result<(), RuntimeError> {
    container_cgroup(rt, id)?.apply(resources)
}

pub(crate) fn stats(rt: &Runtime, id: &str) -> Result<CgroupStats, RuntimeError> {
    Ok(container_cgroup(rt, id)?.stats())
}

pub(crate) fn reopen_log(rt: &Runtime, id: &str) -> Result<(), RuntimeError> {
    control(rt, id, "reopen_log")
}

pub(crate) fn attach_connect(rt: &Runtime, id: &str) -> Result<UnixStream, RuntimeError> {
    check_id(id)?;
    let dir = rt.container_dir(id);
    state::connect_socket(&dir, crate::attach::ATTACH_SOCKET)
        .map_err(|e| RuntimeError::io("connect", dir.join(crate::attach::ATTACH_SOCKET), e))
}

pub(crate) fn list(rt: &Runtime) -> Result<Vec<String>, RuntimeError> {
    let dir = rt.config.state_root.join("containers");
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(RuntimeError::io("read dir", dir, e)),
    };
    let mut ids: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().join(state::STATUS_FILE).exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    ids.sort();
    Ok(ids)
}

pub(crate) fn signal_from_name(name: &str) -> Result<i32, RuntimeError> {
    let n = name.trim();
    if let Ok(num) = n.parse::<i32>() {
        return Signal::try_from(num)
            .map(|s| s as i32)
            .map_err(|_| bad_signal(name));
    }
    let upper = n.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    full.parse::<Signal>()
        .map(|s| s as i32)
        .map_err(|_| bad_signal(name))
}

fn bad_signal(name: &str) -> RuntimeError {
    RuntimeError::InvalidArgument {
        field: "signal".into(),
        reason: format!("{name:?} is not a signal"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names() {
        assert_eq!(signal_from_name("SIGTERM").unwrap(), 15);
        assert_eq!(signal_from_name("term").unwrap(), 15);
        assert_eq!(signal_from_name("9").unwrap(), 9);
        assert!(signal_from_name("SIGRTMIN+3").is_err());
        assert!(signal_from_name("NOPE").is_err());
    }

    #[test]
    fn ids_are_directory_names() {
        assert!(check_id("abc-1").is_ok());
        for bad in ["", ".", "..", "a/b"] {
            assert!(check_id(bad).is_err(), "{bad:?} accepted");
        }
    }
}
