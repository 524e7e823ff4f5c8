//! A container's recorded state: `status.json`, written by the monitor.

use serde::{Deserialize, Serialize};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Life-cycle state of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The process exists and waits for `start`.
    Created,
    /// The process has exec'd its program.
    Running,
    /// The process has exited; `exit_code` is set.
    Stopped,
    /// The monitor vanished without recording an exit.
    Unknown,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Stopped => "stopped",
            Status::Unknown => "unknown",
        })
    }
}

/// The state of one container, as recorded in `status.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerState {
    /// Container id.
    pub id: String,
    /// Life-cycle state.
    pub status: Status,
    /// Host pid of the container process (0 before it exists).
    pub pid: i32,
    /// Pid of its monitor.
    pub monitor_pid: i32,
    /// When the container process was created.
    pub created_at: SystemTime,
    /// When it exec'd its program.
    pub started_at: Option<SystemTime>,
    /// When it exited.
    pub finished_at: Option<SystemTime>,
    /// Exit code, or 128+signal if killed by a signal.
    pub exit_code: Option<i32>,
    /// The cgroup recorded an OOM kill.
    pub oom_killed: bool,
    /// Why it stopped when that is not a plain exit (e.g. a failed exec).
    pub message: Option<String>,
    /// The bundle it was created from.
    pub bundle: PathBuf,
    /// The CRI log file.
    pub log_path: Option<PathBuf>,
    /// `linux.cgroupsPath` of the spec (for kill-all, stats, delete).
    pub cgroup_path: Option<String>,
}

/// File name of the state record inside a container dir.
pub(crate) const STATUS_FILE: &str = "status.json";
/// File locked (exclusively) by a live monitor.
pub(crate) const LOCK_FILE: &str = "monitor.lock";
/// The monitor's pid.
pub(crate) const PID_FILE: &str = "monitor.pid";
/// The monitor's control socket.
pub(crate) const CONTROL_SOCKET: &str = "control.sock";

/// Longest path a unix socket address holds (sun_path: 108 bytes with NUL).
const SUN_PATH_MAX: usize = 107;

/// Runs `f` on a path naming `dir/name` that fits a unix socket address:
/// the path itself when it is short enough, else `/proc/self/fd/<N>/name`
/// through an `O_PATH` descriptor of `dir` (held while `f` runs), so a state
/// root of any depth works.
fn socket_path<T>(
    dir: &Path,
    name: &str,
    f: impl FnOnce(&Path) -> std::io::Result<T>,
) -> std::io::Result<T> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let full = dir.join(name);
    if full.as_os_str().len() <= SUN_PATH_MAX {
        return f(&full);
    }
    let d = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(dir)?;
    f(Path::new(&format!(
        "/proc/self/fd/{}/{name}",
        d.as_raw_fd()
    )))
}

/// Binds the unix socket `dir/name`, however deep `dir` is.
pub(crate) fn bind_socket(dir: &Path, name: &str) -> std::io::Result<UnixListener> {
    socket_path(dir, name, |p| UnixListener::bind(p))
}

/// Connects to the unix socket `dir/name`, however deep `dir` is.
pub(crate) fn connect_socket(dir: &Path, name: &str) -> std::io::Result<UnixStream> {
    socket_path(dir, name, |p| UnixStream::connect(p))
}

/// Writes `bytes` to `dir/name` atomically: a temp file renamed over it, so
/// a reader sees the old or the new content, never a torn one. No fsync:
/// the state dir is on tmpfs (`/run`), which does not survive a reboot
/// anyway, and an fsync per state change cost ~5–10 ms of container start
/// on disk-backed test dirs.
pub(crate) fn write_atomic(dir: &std::path::Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, dir.join(name))
}

impl ContainerState {
    /// Saves the state as `status.json` in `dir` (atomic replace).
    pub(crate) fn save(&self, dir: &std::path::Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        write_atomic(dir, STATUS_FILE, &bytes)
    }

    /// Loads `status.json` from `dir`.
    pub(crate) fn load(dir: &std::path::Path) -> std::io::Result<Self> {
        let bytes = std::fs::read(dir.join(STATUS_FILE))?;
        serde_json::from_slice(&bytes).map_err(std::io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_in_a_dir_too_deep_for_sun_path() {
        let top = tempfile::tempdir().unwrap();
        let mut dir = top.path().to_path_buf();
        while dir.join(CONTROL_SOCKET).as_os_str().len() <= 2 * SUN_PATH_MAX {
            dir.push("a-rather-long-directory-name");
        }
        std::fs::create_dir_all(&dir).unwrap();
        // The plain path is refused by the kernel.
        assert!(UnixListener::bind(dir.join(CONTROL_SOCKET)).is_err());
        let l = bind_socket(&dir, CONTROL_SOCKET).unwrap();
        assert!(
            dir.join(CONTROL_SOCKET).exists(),
            "socket file in the deep dir"
        );
        let mut c = connect_socket(&dir, CONTROL_SOCKET).unwrap();
        let (mut s, _) = l.accept().unwrap();
        use std::io::{Read, Write};
        c.write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping");
        // Short paths go straight through.
        let short = tempfile::tempdir().unwrap();
        let _l = bind_socket(short.path(), CONTROL_SOCKET).unwrap();
        connect_socket(short.path(), CONTROL_SOCKET).unwrap();
    }

    #[test]
    fn status_round_trip_and_atomic_replace() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = ContainerState {
            id: "c1".into(),
            status: Status::Created,
            pid: 42,
            monitor_pid: 41,
            created_at: SystemTime::now(),
            started_at: None,
            finished_at: None,
            exit_code: None,
            oom_killed: false,
            message: None,
            bundle: "/b".into(),
            log_path: Some("/l".into()),
            cgroup_path: Some("/cria/c1".into()),
        };
        s.save(dir.path()).unwrap();
        assert_eq!(ContainerState::load(dir.path()).unwrap(), s);
        s.status = Status::Stopped;
        s.exit_code = Some(137);
        s.oom_killed = true;
        s.save(dir.path()).unwrap();
        let back = ContainerState::load(dir.path()).unwrap();
        assert_eq!(back.status, Status::Stopped);
        assert_eq!(back.exit_code, Some(137));
        assert!(back.oom_killed);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from(STATUS_FILE)],
            "no temp file left"
        );
        let json = std::fs::read_to_string(dir.path().join(STATUS_FILE)).unwrap();
        assert!(json.contains("\"status\":\"stopped\""));
    }
}
