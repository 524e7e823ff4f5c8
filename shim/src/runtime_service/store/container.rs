//! The container record, checkpointed at `<root>/containers/<id>/container.json`.

use super::Record;
use cria_proto::v1::{ContainerConfig, LinuxContainerResources};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// CRI container states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ContainerPhase {
    /// Created, waiting for StartContainer.
    Created,
    /// Started and not yet seen exiting.
    Running,
    /// Exited; exit code, reason and finish time are set.
    Exited,
    /// Its monitor vanished without recording an exit.
    Unknown,
}

impl ContainerPhase {
    /// The CRI enum value.
    pub(crate) fn to_cri(self) -> cria_proto::v1::ContainerState {
        use cria_proto::v1::ContainerState as S;
        match self {
            ContainerPhase::Created => S::ContainerCreated,
            ContainerPhase::Running => S::ContainerRunning,
            ContainerPhase::Exited => S::ContainerExited,
            ContainerPhase::Unknown => S::ContainerUnknown,
        }
    }
}

/// Everything criad knows about one container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ContainerRecord {
    /// 64-hex id.
    pub(crate) id: String,
    /// The owning pod sandbox.
    pub(crate) sandbox_id: String,
    /// The config kubelet sent, as sent.
    #[serde(with = "super::proto_field")]
    pub(crate) config: ContainerConfig,
    /// The image id (`sha256:<hex>` of its config), the CRI `image_ref`.
    pub(crate) image_id: String,
    /// Snapshot chain ids of the rootfs (base first), kept from GC.
    pub(crate) chain_ids: Vec<String>,
    /// Life-cycle state.
    pub(crate) phase: ContainerPhase,
    /// Times in ns since the epoch (0 = not yet).
    pub(crate) created_at: i64,
    /// When it started.
    pub(crate) started_at: i64,
    /// When it exited.
    pub(crate) finished_at: i64,
    /// Exit code once exited.
    pub(crate) exit_code: i32,
    /// `Completed`, `Error`, `OOMKilled`, or empty.
    pub(crate) reason: String,
    /// Human-readable detail of the exit (e.g. a failed exec).
    pub(crate) message: String,
    /// Host pid of the process (0 before create).
    pub(crate) pid: i32,
    /// The CRI log file (`log_directory` + `log_path`), if any.
    pub(crate) log_path: Option<PathBuf>,
    /// Where the rootfs overlay is mounted.
    pub(crate) rootfs: PathBuf,
    /// The bundle dir with `config.json`.
    pub(crate) bundle: PathBuf,
    /// The container cgroup (cgroupfs path).
    pub(crate) cgroup: String,
    /// The signal StopContainer sends first.
    pub(crate) stop_signal: i32,
    /// Current resources (updated by UpdateContainerResources).
    #[serde(with = "super::proto_field")]
    pub(crate) resources: LinuxContainerResources,
    /// The identity the process got (from the applied OCI spec), for
    /// ContainerStatus and container events; empty in older checkpoints.
    #[serde(default, with = "super::proto_field")]
    pub(crate) user: cria_proto::v1::ContainerUser,
}

impl Record for ContainerRecord {
    const KIND: &'static str = "container";
    const FILE: &'static str = "container.json";
    fn id(&self) -> &str {
        &self.id
    }
}

impl ContainerRecord {
    /// The metadata kubelet sent (always present: validated on create).
    pub(crate) fn metadata(&self) -> cria_proto::v1::ContainerMetadata {
        self.config.metadata.clone().unwrap_or_default()
    }

    /// The reserved name of this container.
    pub(crate) fn reserved_name(&self) -> String {
        let m = self.metadata();
        super::names::container_name(&self.sandbox_id, &m.name, m.attempt)
    }
}
