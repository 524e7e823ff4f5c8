//! A container's recorded state: `status.json`, written by the monitor.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
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
