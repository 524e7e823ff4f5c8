//! ContainerStatus.

use super::cri_status;
use crate::runtime_service::RuntimeContext;
use cria_proto::v1::{ContainerStatusRequest, ContainerStatusResponse};
use std::collections::HashMap;
use tonic::Status;

pub(crate) fn status(
    ctx: &RuntimeContext,
    req: &ContainerStatusRequest,
) -> Result<ContainerStatusResponse, Status> {
    let record = ctx.containers.get(&req.container_id)?.get();
    let mut info = HashMap::new();
    if req.verbose {
        let spec: serde_json::Value = std::fs::read(record.bundle.join("config.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(serde_json::Value::Null);
        // Like containerd's `info` key: one JSON document for debugging.
        let doc = serde_json::json!({
            "id": record.id,
            "sandboxID": record.sandbox_id,
            "pid": record.pid,
            "phase": record.phase,
            "imageRef": record.image_id,
            "chainIDs": record.chain_ids,
            "bundle": record.bundle,
            "rootfs": record.rootfs,
            "cgroup": record.cgroup,
            "stopSignal": record.stop_signal,
            "runtimeSpec": spec,
        });
        info.insert("info".to_string(), doc.to_string());
    }
    Ok(ContainerStatusResponse {
        status: Some(cri_status(&record)),
        info,
    })
}
