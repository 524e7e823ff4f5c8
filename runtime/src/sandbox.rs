//! Pod sandboxes: pinned namespaces, no process per pod.

use crate::{Runtime, RuntimeError};
use std::path::PathBuf;

/// What a pod sandbox needs.
#[derive(Debug, Clone, Default)]
pub struct SandboxCreate {
    /// Sandbox id.
    pub id: String,
    /// Hostname set in the new UTS namespace.
    pub hostname: String,
    /// A new network namespace with `lo` up (false: the host's).
    pub new_network: bool,
    /// A new IPC namespace (false: the host's).
    pub new_ipc: bool,
    /// A new UTS namespace (false: the host's; hostname is then not set).
    pub new_uts: bool,
    /// A pod-wide PID namespace held by a pause process.
    pub pod_pid: bool,
    /// Size in bytes of the pod's `/dev/shm` tmpfs (mounted at
    /// `<state>/pods/<id>/shm`); `None` = no pod shm.
    pub shm_size: Option<u64>,
    /// Pod cgroup (cgroupfs path, e.g. `/kubepods/pod<uid>`) created in every
    /// hierarchy and removed with the sandbox.
    pub cgroup_parent: Option<String>,
}

/// The paths of a sandbox's namespaces, for `linux.namespaces[].path`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SandboxNamespaces {
    /// `<state>/netns/<id>` when the pod has its own netns.
    pub network: Option<PathBuf>,
    /// `<state>/pods/<id>/ns/ipc`.
    pub ipc: Option<PathBuf>,
    /// `<state>/pods/<id>/ns/uts`.
    pub uts: Option<PathBuf>,
    /// `<state>/pods/<id>/ns/pid` (held alive by the pause).
    pub pid: Option<PathBuf>,
    /// Host pid of the pause (PID 1 of the pod PID namespace).
    pub pause_pid: Option<i32>,
    /// The pod's `/dev/shm` tmpfs, to bind into every container.
    pub shm: Option<PathBuf>,
}

pub(crate) fn create(
    _rt: &Runtime,
    _req: &SandboxCreate,
) -> Result<SandboxNamespaces, RuntimeError> {
    Err(RuntimeError::Unsupported(
        "sandboxes not implemented yet".into(),
    ))
}

pub(crate) fn load(_rt: &Runtime, id: &str) -> Result<SandboxNamespaces, RuntimeError> {
    Err(RuntimeError::NotFound(id.into()))
}

pub(crate) fn remove(_rt: &Runtime, _id: &str) -> Result<(), RuntimeError> {
    Ok(())
}
