//! Container and pod steps shared by several commands: status, stop, and
//! removal of a container together with the pod `cria run` made for it.

use std::path::{Path, PathBuf};

use cria_proto::v1::{
    ContainerFilter, ContainerState, ContainerStatus, ContainerStatusRequest,
    ListContainersRequest, PodSandboxMetadata, PodSandboxStatusRequest, RemoveContainerRequest,
    RemovePodSandboxRequest, StopContainerRequest, StopPodSandboxRequest,
};

use crate::client::Cri;
use crate::error::CliError;

/// Label `cria run` puts on the pods and containers it creates, so `rm` knows it may remove the pod too.
pub const OWNER_LABEL: &str = "io.cria.cli/run";

/// The namespace of the pods `cria run` makes.
pub const POD_NAMESPACE: &str = "default";

/// The log directory cria makes for a pod under `root`: `<namespace>_<name>_<uid>`, as kubelet
/// names them. None when the metadata would not give one plain directory name, so a crafted
/// pod name can never make `rm` delete anything outside `root`.
pub fn pod_log_dir(root: &Path, meta: &PodSandboxMetadata) -> Option<PathBuf> {
    let parts = [&meta.namespace, &meta.name, &meta.uid];
    if parts
        .iter()
        .any(|p| p.is_empty() || p.contains('/') || p.contains('\0'))
    {
        return None;
    }
    let name = format!("{}_{}_{}", meta.namespace, meta.name, meta.uid);
    Some(root.join(name))
}

/// A container's current status.
pub async fn container_status(cri: &Cri, id: &str) -> Result<ContainerStatus, CliError> {
    cri.call(
        "container status",
        cri.runtime().container_status(ContainerStatusRequest {
            container_id: id.to_string(),
            verbose: false,
        }),
    )
    .await?
    .status
    .ok_or_else(|| CliError::NotFound {
        kind: "container",
        query: id.to_string(),
    })
}

/// True once the container can no longer produce output.
pub fn has_exited(status: &ContainerStatus) -> bool {
    status.state == ContainerState::ContainerExited as i32
}

/// How often to ask whether a container has exited.
pub const EXIT_POLL: std::time::Duration = std::time::Duration::from_millis(150);

/// Waits (as long as it runs; Ctrl-C ends cria) for the container to exit and returns its final status.
pub async fn wait_exit(cri: &Cri, id: &str) -> Result<ContainerStatus, CliError> {
    loop {
        let status = container_status(cri, id).await?;
        if has_exited(&status) {
            return Ok(status);
        }
        tokio::time::sleep(EXIT_POLL).await;
    }
}

/// Stops a container, giving it `grace_secs` before it is killed.
pub async fn stop_container(cri: &Cri, id: &str, grace_secs: i64) -> Result<(), CliError> {
    let req = StopContainerRequest {
        container_id: id.to_string(),
        timeout: grace_secs,
    };
    // The runtime may take the whole grace period; wait for it rather than time out.
    cri.call_long("stop container", cri.runtime().stop_container(req))
        .await
        .map(|_| ())
}

/// Stops and removes a pod, then deletes the log directory cria made for it.
pub async fn remove_pod(cri: &Cri, pod_id: &str, log_dir: Option<&Path>) -> Result<(), CliError> {
    cri.call_long(
        "stop pod",
        cri.runtime().stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod_id.to_string(),
        }),
    )
    .await?;
    cri.call(
        "remove pod",
        cri.runtime().remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod_id.to_string(),
        }),
    )
    .await?;
    if let Some(dir) = log_dir {
        // Only the directory cria itself created; a missing one is already gone.
        match std::fs::remove_dir_all(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot remove pod log directory")
            }
        }
    }
    Ok(())
}

/// Removes a container (stopping it first when `force`), and its pod when `cria run`
/// made that pod and no other container is left in it.
pub async fn remove_container(
    cri: &Cri,
    id: &str,
    pod_id: &str,
    force: bool,
    log_root: &Path,
) -> Result<(), CliError> {
    let status = container_status(cri, id).await?;
    if status.state == ContainerState::ContainerRunning as i32 {
        if !force {
            return Err(CliError::Usage(format!(
                "container {} is running: stop it first or use `cria rm -f`",
                crate::humanize::short_id(id)
            )));
        }
        stop_container(cri, id, 0).await?;
    }
    cri.call(
        "remove container",
        cri.runtime().remove_container(RemoveContainerRequest {
            container_id: id.to_string(),
        }),
    )
    .await?;
    remove_owned_pod_if_empty(cri, pod_id, log_root).await
}

/// Removes a pod made by `cria run` once it holds no containers.
async fn remove_owned_pod_if_empty(
    cri: &Cri,
    pod_id: &str,
    log_root: &Path,
) -> Result<(), CliError> {
    let pod = match cri
        .call(
            "pod status",
            cri.runtime().pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: pod_id.to_string(),
                verbose: false,
            }),
        )
        .await
    {
        Ok(resp) => resp.status.unwrap_or_default(),
        // Already gone: nothing to do.
        Err(e) if e.code() == Some(tonic::Code::NotFound) => return Ok(()),
        Err(e) => return Err(e),
    };
    if pod.labels.get(OWNER_LABEL).map(String::as_str) != Some("true") {
        return Ok(());
    }
    let left = cri
        .call(
            "list containers",
            cri.runtime().list_containers(ListContainersRequest {
                filter: Some(ContainerFilter {
                    pod_sandbox_id: pod_id.to_string(),
                    ..ContainerFilter::default()
                }),
            }),
        )
        .await?
        .containers;
    if !left.is_empty() {
        return Ok(());
    }
    let log_dir = pod.metadata.as_ref().and_then(|m| pod_log_dir(log_root, m));
    remove_pod(cri, pod_id, log_dir.as_deref()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(ns: &str, name: &str, uid: &str) -> PodSandboxMetadata {
        PodSandboxMetadata {
            name: name.into(),
            uid: uid.into(),
            namespace: ns.into(),
            attempt: 0,
        }
    }

    #[test]
    fn pod_log_dirs_stay_under_the_root() {
        let root = Path::new("/var/log/cria/pods");
        assert_eq!(
            pod_log_dir(root, &meta("default", "web", "u-1")),
            Some(PathBuf::from("/var/log/cria/pods/default_web_u-1"))
        );
        assert_eq!(pod_log_dir(root, &meta("default", "../../etc", "u")), None);
        assert_eq!(pod_log_dir(root, &meta("default", "", "u")), None);
        assert_eq!(pod_log_dir(root, &meta("a/b", "web", "u")), None);
    }
}
