//! Interactive exec: a process in a running container whose stdio stays
//! connected to the caller (pipes, or a pty when `tty`), for the streaming
//! server's Exec. Like `exec_sync` it runs through `cria-monitor exec`, so it
//! joins the container's namespaces and cgroup and gets its user,
//! capabilities and no_new_privs; the process dies with the helper
//! (PDEATHSIG), so killing the helper ends it.
//!
//! The helper reads the OCI process from the environment variable
//! [`PROCESS_ENV`] instead of stdin (stdin is the user's), and with
//! [`TTY_ENV`] makes the pty on its stdin the child's controlling terminal.

use crate::{Runtime, RuntimeError, Status};
use nix::fcntl::OFlag;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};

/// Environment variable carrying the OCI process JSON to the helper.
pub(crate) const PROCESS_ENV: &str = "CRIA_EXEC_PROCESS";
/// Environment variable telling the helper stdin is a pty to take as the
/// controlling terminal.
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
}

/// What kind of stdio an interactive exec gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExecStdio {
    /// One pty for stdin, stdout and stderr.
    pub tty: bool,
    /// Keep stdin connected (otherwise it is /dev/null, or the pty).
    pub stdin: bool,
}

/// A new pty pair, both ends close-on-exec so concurrent spawns elsewhere in
/// the (multi-threaded) caller cannot inherit them.
fn open_pty() -> Result<(OwnedFd, OwnedFd), RuntimeError> {
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
    let master = unsafe { OwnedFd::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(master)) };
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

fn dup_stdio(fd: &OwnedFd) -> Result<Stdio, RuntimeError> {
    fd.try_clone()
        .map(Stdio::from)
        .map_err(|e| RuntimeError::Io {
            op: "dup pty",
            path: "/dev/ptmx".into(),
            source: e,
        })
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
        let mut pty = None;
        if stdio.tty {
            let (master, slave) = open_pty()?;
            cmd.env(TTY_ENV, "1")
                .stdin(dup_stdio(&slave)?)
                .stdout(dup_stdio(&slave)?)
                .stderr(Stdio::from(slave));
            pty = Some(master);
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
        // The slave copies held by `cmd` close with it: the master then sees
        // EIO once the process and the helper are gone.
        drop(cmd);
        Ok(ExecSession {
            stdin: helper.stdin.take().map(OwnedFd::from),
            stdout: helper.stdout.take().map(OwnedFd::from),
            stderr: helper.stderr.take().map(OwnedFd::from),
            helper,
            pty,
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
