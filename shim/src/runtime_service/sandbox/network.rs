//! The pod network seam. Today a pod's own network namespace has loopback
//! only (brought up by the runtime when it creates the namespace); the CNI
//! issue plugs `cria_cni` in here: ADD in [`attach`], DEL in [`detach`].

use crate::runtime_service::store::sandbox::{PodNetwork, SandboxRecord};
use crate::runtime_service::RuntimeContext;
use tonic::Status;

/// Connects the pod's network namespace; returns its addresses. Host
/// network pods and loopback-only pods have none to report.
pub(crate) fn attach(
    _ctx: &RuntimeContext,
    _sandbox: &SandboxRecord,
) -> Result<PodNetwork, Status> {
    Ok(PodNetwork::default())
}

/// Disconnects the pod (idempotent; must work after a criad restart and
/// when the namespace is already gone).
pub(crate) fn detach(_ctx: &RuntimeContext, sandbox: &SandboxRecord) -> Result<(), Status> {
    if sandbox.network.attached {
        tracing::debug!(sandbox = %sandbox.id, "no network plugin: nothing to detach");
    }
    Ok(())
}
