//! UpdateContainerResources: write new limits to the live cgroup and keep
//! them in the record (ContainerStatus reports them).

use crate::runtime_service::context::{blocking, runtime_status};
use crate::runtime_service::spec::resources;
use crate::runtime_service::store::container::ContainerPhase;
use crate::runtime_service::RuntimeContext;
use cria_proto::v1::UpdateContainerResourcesRequest;
use std::sync::Arc;
use tonic::Status;

pub(crate) async fn update(
    ctx: &Arc<RuntimeContext>,
    req: UpdateContainerResourcesRequest,
) -> Result<(), Status> {
    let linux = req
        .linux
        .ok_or_else(|| Status::invalid_argument("linux resources are required"))?;
    let entry = ctx.containers.get(&req.container_id)?;
    let _op = entry.op.lock().await;
    let record = entry.get();
    if matches!(
        record.phase,
        ContainerPhase::Created | ContainerPhase::Running
    ) {
        let oci = resources::to_oci(Some(&linux), None)?;
        let (rt_ctx, id) = (ctx.clone(), record.id.clone());
        blocking(move || rt_ctx.runtime.update_resources(&id, &oci))
            .await?
            .map_err(runtime_status)?;
    }
    entry.update(|r| r.resources = linux)?;
    Ok(())
}
