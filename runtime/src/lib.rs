//! cria's container runtime: OCI runtime spec → Linux container.
//!
//! The library is used by criad (the shim). It never forks from the caller's
//! (multi-threaded, tokio) process: every container is created by the small,
//! single-threaded `cria-monitor` binary, started with `std::process::Command`
//! (fork+exec). The monitor detaches, becomes the container's parent and child
//! subreaper, holds its stdio, writes the CRI log and `status.json`, and exits
//! after the container. See docs/architecture.md ("runtime").
//!
//! On-disk state (under [`RuntimeConfig::state_root`], e.g. `/run/cria`):
//! - `containers/<id>/status.json`, `monitor.pid`, `control.sock`
//! - `netns/<sandbox-id>` pinned network namespace
//! - `pods/<sandbox-id>/ns/{ipc,uts,pid}`, `pods/<sandbox-id>/shm`

pub mod attach;
pub mod cgroup;
mod container;
pub mod devices_bpf;
mod error;
pub mod exec_helper;
pub mod exec_stream;
mod init;
pub mod log;
pub mod monitor;
pub mod mounts;
pub mod sandbox;
pub mod seccomp;
mod state;

pub use cgroup::CgroupStats;
pub use error::RuntimeError;
pub use sandbox::{SandboxCreate, SandboxNamespaces};
pub use state::{ContainerState, Status};

use std::path::PathBuf;
use std::time::Duration;

/// Where the runtime finds its monitor binary and keeps its state.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Path of the `cria-monitor` binary.
    pub monitor_path: PathBuf,
    /// The state root (`/run/cria` by default); containers live in
    /// `<state_root>/containers/<id>`, pinned netns in `<state_root>/netns`.
    pub state_root: PathBuf,
}

/// Entry point of the runtime: one per criad, cheap to clone, `Send + Sync`.
#[derive(Debug, Clone)]
pub struct Runtime {
    config: RuntimeConfig,
    /// cgroupfs root of pod cgroups (`/sys/fs/cgroup`).
    pod_cgroup_root: PathBuf,
}

/// What `create` needs to make a container.
#[derive(Debug, Clone, Default)]
pub struct ContainerCreate {
    /// Container id (a directory name: no `/`, not `.`/`..`).
    pub id: String,
    /// Bundle directory holding `config.json`; `spec.root.path` (relative to
    /// the bundle or absolute) is the already mounted rootfs.
    pub bundle: PathBuf,
    /// CRI log file (`<RFC3339Nano> stdout|stderr P|F <text>` lines); `None`
    /// discards the output.
    pub log_path: Option<PathBuf>,
    /// Give the container a pty (its output is logged as `stdout`).
    pub tty: bool,
    /// Keep a stdin pipe open to the container (for attach, issue 7).
    pub stdin: bool,
    /// Close stdin after the first attach detaches (issue 7).
    pub stdin_once: bool,
}

/// Result of a successful `create`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Created {
    /// Pid of the monitor (reparented to init; outlives the caller).
    pub monitor_pid: i32,
    /// Host pid of the container process, waiting to exec.
    pub pid: i32,
}

/// Captured result of `exec_sync`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    /// Everything the process wrote to stdout.
    pub stdout: Vec<u8>,
    /// Everything the process wrote to stderr.
    pub stderr: Vec<u8>,
    /// Exit code, or 128+signal when killed by a signal; -1 if timed out.
    pub exit_code: i32,
    /// The timeout expired and the process was killed.
    pub timed_out: bool,
}

impl Runtime {
    /// A runtime using `config`; creates nothing until used.
    pub fn new(config: RuntimeConfig) -> Self {
        Runtime {
            config,
            pod_cgroup_root: PathBuf::from(cgroup::DEFAULT_ROOT),
        }
    }

    /// The same runtime making pod cgroups (and the pause's) under another
    /// cgroupfs root: tests point it at a hybrid host's cgroup2 mount to run
    /// the cgroup v2 path on a v1 host. Containers always use the default.
    pub fn with_pod_cgroup_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.pod_cgroup_root = root.into();
        self
    }

    /// The cgroupfs root pod cgroups are made under.
    pub fn pod_cgroup_root(&self) -> &std::path::Path {
        &self.pod_cgroup_root
    }

    /// The configuration this runtime was made with.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// Creates the container under a new monitor; returns once the process
    /// exists in its namespaces and cgroup, waiting for `start`. On failure
    /// nothing is left (no process, cgroup or state dir) and the error names
    /// the failed step and path.
    pub fn create(&self, req: &ContainerCreate) -> Result<Created, RuntimeError> {
        container::create(self, req)
    }

    /// Lets a created container exec its process. Fails if it is not `Created`
    /// or if the exec fails (the container is then stopped with exit 127/126).
    pub fn start(&self, id: &str) -> Result<(), RuntimeError> {
        container::start(self, id)
    }

    /// The container's state from `status.json` and the monitor's liveness.
    pub fn state(&self, id: &str) -> Result<ContainerState, RuntimeError> {
        container::state(self, id)
    }

    /// Sends `signal` to the container's process, or with `all` to every
    /// process in its cgroup. A stopped container is not an error.
    pub fn kill(&self, id: &str, signal: i32, all: bool) -> Result<(), RuntimeError> {
        container::kill(self, id, signal, all)
    }

    /// Blocks until the container has stopped (its monitor exited) and
    /// returns its final state; `RuntimeError::Timeout` after `timeout`.
    /// Blocking: call it from `spawn_blocking` in async code.
    pub fn wait(&self, id: &str, timeout: Duration) -> Result<ContainerState, RuntimeError> {
        container::wait(self, id, timeout)
    }

    /// Removes the container's cgroup and state dir. Refuses while it runs
    /// unless `force` (then every process in its cgroup is SIGKILLed first).
    /// An unknown id is `NotFound`.
    pub fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError> {
        container::delete(self, id, force)
    }

    /// Runs `process` in the running container's namespaces and cgroup with
    /// its user, capabilities and env; captures stdout/stderr. After `timeout`
    /// the process is killed and `timed_out` is set.
    pub fn exec_sync(
        &self,
        id: &str,
        process: &oci_spec::runtime::Process,
        timeout: Duration,
    ) -> Result<ExecOutput, RuntimeError> {
        container::exec_sync(self, id, process, timeout)
    }

    /// Writes `resources` to the live cgroup of the container.
    pub fn update_resources(
        &self,
        id: &str,
        resources: &oci_spec::runtime::LinuxResources,
    ) -> Result<(), RuntimeError> {
        container::update_resources(self, id, resources)
    }

    /// CPU, memory and pids usage read from the container's cgroup.
    pub fn stats(&self, id: &str) -> Result<CgroupStats, RuntimeError> {
        container::stats(self, id)
    }

    /// Connects to the monitor's attach socket of container `id` (however
    /// deep the state root: the socket path may exceed a unix address).
    pub fn attach_connect(&self, id: &str) -> Result<std::os::unix::net::UnixStream, RuntimeError> {
        container::attach_connect(self, id)
    }

    /// Asks the monitor to reopen the log file (after kubelet rotated it).
    pub fn reopen_log(&self, id: &str) -> Result<(), RuntimeError> {
        container::reopen_log(self, id)
    }

    /// Ids of every container with a state dir (for recovery after a restart).
    pub fn list(&self) -> Result<Vec<String>, RuntimeError> {
        container::list(self)
    }

    /// Creates a pod's pinned namespaces (and a pause for a pod PID ns).
    pub fn create_sandbox(&self, req: &SandboxCreate) -> Result<SandboxNamespaces, RuntimeError> {
        sandbox::create(self, req)
    }

    /// The pinned namespaces of an existing sandbox (after a restart).
    pub fn sandbox(&self, id: &str) -> Result<SandboxNamespaces, RuntimeError> {
        sandbox::load(self, id)
    }

    /// Kills a sandbox's pause (its cgroup is empty on return); namespaces
    /// and cgroups stay for `remove_sandbox`. Idempotent: an unknown id or
    /// a pod without a pause is success.
    pub fn stop_sandbox(&self, id: &str) -> Result<(), RuntimeError> {
        sandbox::stop(self, id)
    }

    /// Ids of every sandbox with a state dir (recovery finds the ones a
    /// crash left without a pod record).
    pub fn sandboxes(&self) -> Result<Vec<String>, RuntimeError> {
        sandbox::list(self)
    }

    /// Unmounts and removes a sandbox's pinned namespaces, kills its pause and
    /// removes its cgroups (the pause's, then the pod's). Idempotent: an
    /// unknown id is success.
    pub fn remove_sandbox(&self, id: &str) -> Result<(), RuntimeError> {
        sandbox::remove(self, id)
    }

    /// `<state_root>/containers/<id>`.
    pub(crate) fn container_dir(&self, id: &str) -> PathBuf {
        self.config.state_root.join("containers").join(id)
    }
}

/// The number of a signal given as `SIGTERM`, `TERM`, `15` (STOPSIGNAL syntax).
pub fn signal_from_name(name: &str) -> Result<i32, RuntimeError> {
    container::signal_from_name(name)
}
