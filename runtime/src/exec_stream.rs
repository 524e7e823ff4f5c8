//! Interactive exec: a process in a running container whose stdio stays
//! connected to the caller (pipes, or a pty when `tty`), for the streaming
//! server's Exec. Like `exec_sync` it runs through `cria-monitor exec`, so it
//! joins the container's namespaces and cgroup and gets its user,
//! capabilities and no_new_privs; the process dies with the helper
//! (PDEATHSIG), so killing the helper ends it.
//!
//! The helper reads the OCI process from the environment variable
//! [`PROCESS_ENV`] instead of stdin (stdin is the user's). With [`TTY_ENV`]
//! its stdio is instead one end of a socket pair: once in the container's
//! mounts it opens a pty of the container's own devpts (as the container's
//! console is, so `tty` names a `/dev/pts/N` of the container, as with
//! runc's console socket), sends the master back over that socket
//! (SCM_RIGHTS), puts the slave on its stdio and makes it the child's
//! controlling terminal.

use crate::{Runtime, RuntimeError, Status};
use std::io::Read;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Environment variable carrying the OCI process JSON to the helper.
pub(crate) const PROCESS_ENV: &str = "CRIA_EXEC_PROCESS";
/// Environment variable telling the helper its stdio is the socket to send
/// a tty exec's pty master on.
pub(crate) const TTY_ENV: &str = "CRIA_EXEC_TTY";

/// A running interactive exec.
#[derive(Debug)]
pub struct ExecSession {
    /// The `cria-monitor exec` helper; its exit code is the process's
    /// (128+signal when signalled; 126/127 when it could not be started).
    /// Killing it kills the process.
    pub helper: Child,
    /// Write end of the process's stdin (pipes only; `None` without stdin).
    pub stdin: Option<OwnedFd>,
    /// Read end of its stdout (pipes only).
    pub stdout: Option<OwnedFd>,
    /// Read end of its stderr (pipes only).
    pub stderr: Option<OwnedFd>,
    /// The pty master (with `tty`): the process's stdin, stdout and stderr.
    pub pty: Option<OwnedFd>,
    /// With `tty`: the process starts once this is dropped, so the caller
    /// can first set the window size the client sent (a new pty is 0x0,
    /// and `stty size` run at once would see that).
    pub start_gate: Option<UnixStream>,
}

/// What kind of stdio an interactive exec gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExecStdio {
    /// One pty for stdin, stdout and stderr.
    pub tty: bool,
    /// Keep stdin connected (otherwise it is /dev/null, or the pty).
    pub stdin: bool,
}

/// How long the caller waits for the helper to join the container and send
/// the pty master (it does no more than open namespaces and a pty).
const HAND_OVER_TIMEOUT: Duration = Duration::from_secs(30);

/// A new pty pair in the caller's devpts, both ends close-on-exec.
#[cfg(test)]
fn open_pty() -> Result<(OwnedFd, OwnedFd), RuntimeError> {
    use nix::fcntl::OFlag;
    let sys = RuntimeError::sys;
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(|e| sys("posix_openpt", e))?;
    nix::pty::grantpt(&master).map_err(|e| sys("grantpt", e))?;
    nix::pty::unlockpt(&master).map_err(|e| sys("unlockpt", e))?;
    let name = nix::pty::ptsname_r(&master).map_err(|e| sys("ptsname", e))?;
    let slave = nix::fcntl::open(
        name.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| sys("open pty slave", e))?;
    // SAFETY: PtyMaster owns its fd; into_raw_fd hands that ownership over.
    let master =
        unsafe { std::os::fd::FromRawFd::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(master)) };
    Ok((master, slave))
}

/// A new pty pair (master, slave) for other modules' tests.
#[cfg(test)]
pub(crate) fn open_pty_for_tests() -> Result<(OwnedFd, OwnedFd), RuntimeError> {
    open_pty()
}

/// What to type on the pty `pty` to end its reader's input, as a user
/// pressing ^D would: the terminal's VEOF character, twice when the last
/// input `last` left a line open (the first ^D only hands that line over;
/// a read of 0 bytes, end of file, needs ^D at the start of a line). Empty
/// when VEOF is disabled. There is no closing a pty's input short of
/// hanging it up, which would end the whole session.
pub fn terminal_eof(pty: BorrowedFd<'_>, last: Option<u8>) -> Vec<u8> {
    // SAFETY: termios is plain data; tcgetattr fills it from a valid fd.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    if unsafe { libc::tcgetattr(pty.as_raw_fd(), &mut t) } != 0 {
        return Vec::new();
    }
    let eof = t.c_cc[libc::VEOF];
    // _POSIX_VDISABLE (0) turns the character off.
    if eof == 0 {
        return Vec::new();
    }
    let line_open = last.is_some_and(|b| b != b'\n' && b != b'\r');
    vec![eof; if line_open { 2 } else { 1 }]
}

/// Sets the window size of the pty whose master is `pty` (the process gets
/// SIGWINCH).
pub fn resize_pty(pty: BorrowedFd<'_>, width: u16, height: u16) -> Result<(), RuntimeError> {
    let ws = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from a valid pointer.
    let r = unsafe { libc::ioctl(pty.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    if r < 0 {
        return Err(RuntimeError::sys(
            "set pty window size",
            nix::errno::Errno::last(),
        ));
    }
    Ok(())
}

fn dup_stdio(sock: &UnixStream) -> Result<Stdio, RuntimeError> {
    sock.try_clone()
        .map(|s| Stdio::from(OwnedFd::from(s)))
        .map_err(|e| RuntimeError::Io {
            op: "dup exec socket",
            path: "socketpair".into(),
            source: e,
        })
}

/// In the caller: the pty master the helper `helper` of container `id`
/// sends on `ours`; when it fails instead, reaps it and returns what it
/// wrote (its error) as the error.
fn receive_master(
    id: &str,
    ours: &mut UnixStream,
    helper: &mut Child,
) -> Result<OwnedFd, RuntimeError> {
    let failed = |message: String| RuntimeError::Monitor {
        id: id.into(),
        message,
    };
    ours.set_read_timeout(Some(HAND_OVER_TIMEOUT))
        .map_err(|e| failed(format!("exec socket timeout: {e}")))?;
    let mut buf = [0u8; 4096];
    let (n, master) = crate::monitor::recv_ready(ours, &mut buf);
    if let Some(m) = master {
        return Ok(m);
    }
    let mut text = buf[..n].to_vec();
    // Bounded by the timeout, and by the helper exiting (end of file).
    let _ = ours.take(64 * 1024).read_to_end(&mut text);
    let _ = crate::exec_helper::stop_helper(helper, Duration::from_secs(2));
    let text = String::from_utf8_lossy(&text);
    let text = text.trim();
    Err(failed(if text.is_empty() {
        "exec helper sent no pty".into()
    } else {
        text.trim_start_matches("cria-monitor exec: ").to_string()
    }))
}

impl Runtime {
    /// Starts `process` in the running container `id` with streamed stdio;
    /// returns at once. Blocking (fork+exec): call from `spawn_blocking`.
    pub fn exec_interactive(
        &self,
        id: &str,
        process: &oci_spec::runtime::Process,
        stdio: ExecStdio,
    ) -> Result<ExecSession, RuntimeError> {
        let st = self.state(id)?;
        if st.status != Status::Running {
            return Err(RuntimeError::InvalidState {
                id: id.into(),
                state: st.status.to_string(),
                op: "exec".into(),
            });
        }
        let mut process = process.clone();
        process.set_terminal(Some(stdio.tty));
        let json = serde_json::to_string(&process).map_err(|e| RuntimeError::InvalidArgument {
            field: "process".into(),
            reason: e.to_string(),
        })?;
        let mut cmd = Command::new(&self.config.monitor_path);
        cmd.arg("exec")
            .arg(self.container_dir(id))
            .env(PROCESS_ENV, json);
        let mut ours = None;
        if stdio.tty {
            // Close-on-exec on both ends: only the helper's stdio copies
            // reach it, none of criad's other spawns.
            let (mine, theirs) = UnixStream::pair().map_err(|e| RuntimeError::Io {
                op: "socketpair",
                path: "exec socket".into(),
                source: e,
            })?;
            cmd.env(TTY_ENV, "1")
                .stdin(dup_stdio(&theirs)?)
                .stdout(dup_stdio(&theirs)?)
                .stderr(dup_stdio(&theirs)?);
            ours = Some(mine);
        } else {
            cmd.stdin(if stdio.stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        }
        let mut helper = cmd.spawn().map_err(|e| RuntimeError::Monitor {
            id: id.into(),
            message: format!("spawn exec helper: {e}"),
        })?;
        // The socket copies held by `cmd` close with it, so the helper's
        // exit before the hand-over is an end of file on ours. The helper
        // holds the pty slave: the master sees EIO once the process and the
        // helper are gone.
        drop(cmd);
        let pty = match ours.as_mut() {
            Some(sock) => Some(receive_master(id, sock, &mut helper)?),
            None => None,
        };
        Ok(ExecSession {
            stdin: helper.stdin.take().map(OwnedFd::from),
            stdout: helper.stdout.take().map(OwnedFd::from),
            stderr: helper.stderr.take().map(OwnedFd::from),
            helper,
            pty,
            start_gate: ours,
        })
    }
}

/// In the helper: the process to run when the caller passed it in the
/// environment (interactive exec), else `None` (read stdin, as exec_sync).
pub(crate) fn process_from_env() -> Option<Result<oci_spec::runtime::Process, String>> {
    let json = std::env::var_os(PROCESS_ENV)?;
    let json = json.to_string_lossy();
    Some(serde_json::from_str(&json).map_err(|e| format!("parse process: {e}")))
}

/// In the helper, right after joining the container's mount namespace:
/// with a tty, opens a pty of the container's devpts, sends its master to
/// the caller on the socket that is our stdio, and replaces our stdio with
/// the slave (the forked child inherits it; see [`take_terminal`]).
pub(crate) fn hand_over_terminal() -> Result<(), String> {
    if std::env::var_os(TTY_ENV).is_none() {
        return Ok(());
    }
    let (master, slave, _) = crate::init::open_container_pty()?;
    // SAFETY: fd 0 is open (the caller's socket) until the dup2 below.
    let sock = unsafe { BorrowedFd::borrow_raw(0) };
    crate::init::send_ready(&sock, Some(&master))
        .map_err(|e| format!("send pty master: {}", e.desc()))?;
    drop(master);
    // Wait for the caller's go (it drops its end: end of file, or an error
    // should it be gone); what is read does not matter.
    let mut go = [0u8; 1];
    // SAFETY: reads into a valid one-byte buffer from fd 0, still ours.
    let _ = unsafe { libc::read(0, go.as_mut_ptr().cast(), 1) };
    for fd in 0..3 {
        // SAFETY: dup2 of an fd we own onto a stdio slot.
        if unsafe { libc::dup2(slave.as_raw_fd(), fd) } < 0 {
            return Err(format!(
                "dup2 pty to stdio {fd}: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

/// In the exec'd child, before exec: with a tty, start a new session and
/// make the pty on stdin its controlling terminal (job control, ^C).
pub(crate) fn take_terminal() -> Result<(), String> {
    if std::env::var_os(TTY_ENV).is_none() {
        return Ok(());
    }
    nix::unistd::setsid().map_err(|e| format!("setsid: {}", e.desc()))?;
    // SAFETY: TIOCSCTTY on fd 0 takes no pointer argument.
    if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } < 0 {
        return Err(format!(
            "set controlling terminal: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pty_takes_a_window_size() {
        let (master, slave) = open_pty().unwrap();
        resize_pty(std::os::fd::AsFd::as_fd(&master), 132, 43).unwrap();
        let mut ws = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ writes a winsize to a valid pointer.
        assert_eq!(
            unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) },
            0
        );
        assert_eq!((ws.ws_col, ws.ws_row), (132, 43));
        // Both ends are close-on-exec.
        for fd in [&master, &slave] {
            let fl = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).unwrap();
            assert!(fl & libc::FD_CLOEXEC != 0);
        }
    }
}
