//! ContainerStatus.

use super::cri_status;
use crate::runtime_service::RuntimeContext;
use cria_proto::v1::{
    ContainerStatusRequest, ContainerStatusResponse, ContainerUser, LinuxContainerUser,
};
use std::collections::HashMap;
use tonic::Status;

pub(crate) fn status(
    ctx: &RuntimeContext,
    req: &ContainerStatusRequest,
) -> Result<ContainerStatusResponse, Status> {
    let record = ctx.containers.get(&req.container_id)?.get();
    // The OCI spec the runtime applied: the identity after run_as_username
    // resolution and the image's /etc/group merge, and the verbose document.
    let spec: serde_json::Value = std::fs::read(record.bundle.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(serde_json::Value::Null);
    let mut status = cri_status(&record);
    status.user = process_user(&spec);
    let mut info = HashMap::new();
    if req.verbose {
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
        status: Some(status),
        info,
    })
}

/// `process.user` of an OCI spec as CRI's ContainerUser. The supplemental
/// groups are the process's group list as `id -G` shows it: the gid first,
/// then the additional gids (each once). `None` without a user in the spec.
fn process_user(spec: &serde_json::Value) -> Option<ContainerUser> {
    let user = spec.get("process")?.get("user")?;
    let uid = user.get("uid")?.as_i64()?;
    let gid = user.get("gid")?.as_i64()?;
    let mut groups = vec![gid];
    for g in user
        .get("additionalGids")
        .and_then(|a| a.as_array())
        .into_iter()
        .flatten()
        .filter_map(|g| g.as_i64())
    {
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    Some(ContainerUser {
        linux: Some(LinuxContainerUser {
            uid,
            gid,
            supplemental_groups: groups,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_comes_from_the_applied_spec() {
        let spec = serde_json::json!({
            "process": {"user": {"uid": 1000, "gid": 3000, "additionalGids": [50000, 3000, 60000]}}
        });
        let linux = process_user(&spec).and_then(|u| u.linux).expect("user");
        assert_eq!((linux.uid, linux.gid), (1000, 3000));
        assert_eq!(linux.supplemental_groups, vec![3000, 50000, 60000]);
        let root = serde_json::json!({"process": {"user": {"uid": 0, "gid": 0}}});
        let linux = process_user(&root).and_then(|u| u.linux).expect("user");
        assert_eq!(linux.supplemental_groups, vec![0]);
        assert!(process_user(&serde_json::Value::Null).is_none());
    }
}
