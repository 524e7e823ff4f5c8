//! The pod sandbox record, checkpointed at `<root>/pods/<id>/pod.json`.

use super::Record;
use cria_proto::v1::PodSandboxConfig;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// READY while the pod's namespaces exist; NOTREADY once stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SandboxState {
    /// Namespaces exist; containers may be created.
    Ready,
    /// Stopped (or its setup never finished).
    NotReady,
}

/// Where the pod's shared namespaces and shm live (from the runtime).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NamespacePaths {
    /// Pinned netns, `None` for host networking.
    pub(crate) network: Option<PathBuf>,
    /// Pinned IPC namespace, `None` for host IPC.
    pub(crate) ipc: Option<PathBuf>,
    /// Pinned UTS namespace, `None` with host networking.
    pub(crate) uts: Option<PathBuf>,
    /// The pod PID namespace (held by the pause), `None` unless pid == POD.
    pub(crate) pid: Option<PathBuf>,
    /// Host pid of the pause.
    pub(crate) pause_pid: Option<i32>,
    /// The pod's `/dev/shm` tmpfs, `None` with host IPC.
    pub(crate) shm: Option<PathBuf>,
}

impl From<cria_runtime::SandboxNamespaces> for NamespacePaths {
    fn from(ns: cria_runtime::SandboxNamespaces) -> Self {
        NamespacePaths {
            network: ns.network,
            ipc: ns.ipc,
            uts: ns.uts,
            pid: ns.pid,
            pause_pid: ns.pause_pid,
            shm: ns.shm,
        }
    }
}

/// The pod's network as reported by PodSandboxStatus (filled by CNI later).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PodNetwork {
    /// Primary pod IP; empty with loopback only.
    pub(crate) ip: String,
    /// Further IPs (dual stack).
    pub(crate) additional_ips: Vec<String>,
    /// The network was set up and must be torn down (CNI DEL) on stop.
    pub(crate) attached: bool,
}

/// Everything criad knows about one pod sandbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SandboxRecord {
    /// 64-hex id.
    pub(crate) id: String,
    /// The config kubelet sent, as sent.
    #[serde(with = "super::proto_field")]
    pub(crate) config: PodSandboxConfig,
    /// `runtime_handler` of the request.
    pub(crate) runtime_handler: String,
    /// READY/NOTREADY.
    pub(crate) state: SandboxState,
    /// Creation time, ns since the epoch.
    pub(crate) created_at: i64,
    /// The pod cgroup (cgroupfs path).
    pub(crate) cgroup: String,
    /// Shared namespaces.
    pub(crate) namespaces: NamespacePaths,
    /// Pod network status.
    pub(crate) network: PodNetwork,
    /// `<root>/pods/<id>`: hostname, hosts, resolv.conf.
    pub(crate) dir: PathBuf,
}

impl Record for SandboxRecord {
    const KIND: &'static str = "pod sandbox";
    const FILE: &'static str = "pod.json";
    fn id(&self) -> &str {
        &self.id
    }
}

impl SandboxRecord {
    /// The metadata kubelet sent (always present: validated on create).
    pub(crate) fn metadata(&self) -> cria_proto::v1::PodSandboxMetadata {
        self.config.metadata.clone().unwrap_or_default()
    }

    /// The reserved name of this sandbox.
    pub(crate) fn reserved_name(&self) -> String {
        let m = self.metadata();
        super::names::sandbox_name(&m.name, &m.namespace, &m.uid, m.attempt)
    }

    /// The namespace options kubelet asked for (defaults: all POD).
    pub(crate) fn namespace_options(&self) -> cria_proto::v1::NamespaceOption {
        self.config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.clone())
            .unwrap_or_default()
    }
}
