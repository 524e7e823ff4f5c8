//! PodSandboxStatus.

use super::cri_status;
use crate::runtime_service::RuntimeContext;
use cria_proto::v1::{PodSandboxStatusRequest, PodSandboxStatusResponse};
use std::collections::HashMap;
use tonic::Status;

pub(crate) fn status(
    ctx: &RuntimeContext,
    req: &PodSandboxStatusRequest,
) -> Result<PodSandboxStatusResponse, Status> {
    let record = ctx.sandboxes.get(&req.pod_sandbox_id)?.get();
    let mut info = HashMap::new();
    if req.verbose {
        // Like containerd's `info` key: one JSON document for debugging.
        let doc = serde_json::json!({
            "id": record.id,
            "state": record.state,
            "createdAt": record.created_at,
            "runtimeHandler": record.runtime_handler,
            "cgroup": record.cgroup,
            "namespaces": record.namespaces,
            "pausePid": record.namespaces.pause_pid,
            "network": record.network,
            "podDir": record.dir,
            "hostname": record.config.hostname,
            "logDirectory": record.config.log_directory,
        });
        info.insert("info".to_string(), doc.to_string());
    }
    Ok(PodSandboxStatusResponse {
        status: Some(cri_status(&record)),
        info,
        containers_statuses: Vec::new(),
        timestamp: crate::runtime_service::context::now_ns(),
    })
}
