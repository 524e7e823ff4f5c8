//! Pod sandbox RPCs, one file each, and the record → CRI conversions they share.

pub(crate) mod bandwidth;
pub(crate) mod files;
pub(crate) mod list;
pub(crate) mod network;
pub(crate) mod remove;
pub(crate) mod run;
pub(crate) mod stats;
pub(crate) mod status;
pub(crate) mod stop;

use super::store::sandbox::{SandboxRecord, SandboxState};
use cria_proto::v1 as cri;

impl SandboxState {
    /// The CRI enum value.
    pub(crate) fn to_cri(self) -> cri::PodSandboxState {
        match self {
            SandboxState::Ready => cri::PodSandboxState::SandboxReady,
            SandboxState::NotReady => cri::PodSandboxState::SandboxNotready,
        }
    }
}

/// The CRI status of a sandbox record.
pub(crate) fn cri_status(record: &SandboxRecord) -> cri::PodSandboxStatus {
    cri::PodSandboxStatus {
        id: record.id.clone(),
        metadata: Some(record.metadata()),
        state: record.state.to_cri() as i32,
        created_at: record.created_at,
        network: Some(cri::PodSandboxNetworkStatus {
            ip: record.network.ip.clone(),
            additional_ips: record
                .network
                .additional_ips
                .iter()
                .map(|ip| cri::PodIp { ip: ip.clone() })
                .collect(),
        }),
        linux: Some(cri::LinuxPodSandboxStatus {
            namespaces: Some(cri::Namespace {
                options: Some(record.namespace_options()),
            }),
        }),
        labels: record.config.labels.clone(),
        annotations: record.config.annotations.clone(),
        runtime_handler: record.runtime_handler.clone(),
    }
}
