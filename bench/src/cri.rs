//! The CRI calls of the benchmarks, the same for both systems: one pod
//! config, one container config, and per-RPC timing.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cria_proto::v1;
use cria_tests::{ImageClient, RuntimeClient};

use crate::systems::System;

/// How long a container may take to be seen exited.
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);
/// Poll interval for ContainerStatus while waiting for an exit.
const EXIT_POLL: Duration = Duration::from_millis(2);

/// A pod config named `name` for `sys`: pod network (CNI), IPC and UTS
/// namespaces, a PID namespace per container, cgroupfs parent.
pub fn pod_config(sys: &System, name: &str) -> v1::PodSandboxConfig {
    pod_config_parts(&sys.cgroup_parent, &sys.log_dir, name)
}

/// [`pod_config`] from its parts, for tasks that do not hold the `System`.
pub fn pod_config_parts(
    cgroup_parent: &str,
    log_dir: &std::path::Path,
    name: &str,
) -> v1::PodSandboxConfig {
    v1::PodSandboxConfig {
        metadata: Some(v1::PodSandboxMetadata {
            name: name.to_owned(),
            uid: format!("{name}-uid"),
            namespace: "bench".into(),
            attempt: 0,
        }),
        hostname: name.to_owned(),
        log_directory: log_dir.join(name).display().to_string(),
        linux: Some(v1::LinuxPodSandboxConfig {
            // One cgroup per pod under the system's parent, as kubelet does
            // (kubepods/…/pod<uid>): runtimes remove it with the pod.
            cgroup_parent: format!("{cgroup_parent}/{name}"),
            security_context: Some(v1::LinuxSandboxSecurityContext {
                namespace_options: Some(v1::NamespaceOption {
                    network: v1::NamespaceMode::Pod as i32,
                    pid: v1::NamespaceMode::Container as i32,
                    ipc: v1::NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A container config running `command` in `image`.
pub fn container_config(name: &str, image: &str, command: &[&str]) -> v1::ContainerConfig {
    v1::ContainerConfig {
        metadata: Some(v1::ContainerMetadata {
            name: name.to_owned(),
            attempt: 0,
        }),
        image: Some(v1::ImageSpec {
            image: image.to_owned(),
            ..Default::default()
        }),
        command: command.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}.log"),
        linux: Some(v1::LinuxContainerConfig::default()),
        ..Default::default()
    }
}

/// `cfg` with the CRI seccomp choice `profile` (RuntimeDefault or Unconfined)
/// in its container security context, as kubelet sends it.
pub fn with_seccomp(
    mut cfg: v1::ContainerConfig,
    profile: v1::security_profile::ProfileType,
) -> v1::ContainerConfig {
    let linux = cfg.linux.get_or_insert_with(Default::default);
    let sc = linux.security_context.get_or_insert_with(Default::default);
    sc.seccomp = Some(v1::SecurityProfile {
        profile_type: profile as i32,
        localhost_ref: String::new(),
    });
    cfg
}

/// Milliseconds of a duration.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `PullImage`; returns the wall time.
pub async fn pull(c: &mut ImageClient, image: &str) -> Result<Duration> {
    let t = Instant::now();
    c.pull_image(v1::PullImageRequest {
        image: Some(v1::ImageSpec {
            image: image.to_owned(),
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .with_context(|| format!("pulling {image}"))?;
    Ok(t.elapsed())
}

/// `RunPodSandbox`; returns the pod id and the RPC's time.
pub async fn run_pod(
    c: &mut RuntimeClient,
    cfg: &v1::PodSandboxConfig,
) -> Result<(String, Duration)> {
    let t = Instant::now();
    let r = c
        .run_pod_sandbox(v1::RunPodSandboxRequest {
            config: Some(cfg.clone()),
            runtime_handler: String::new(),
        })
        .await
        .context("RunPodSandbox")?;
    Ok((r.into_inner().pod_sandbox_id, t.elapsed()))
}

/// `CreateContainer`; returns the container id and the RPC's time.
pub async fn create(
    c: &mut RuntimeClient,
    pod: &str,
    pod_cfg: &v1::PodSandboxConfig,
    cfg: &v1::ContainerConfig,
) -> Result<(String, Duration)> {
    let t = Instant::now();
    let r = c
        .create_container(v1::CreateContainerRequest {
            pod_sandbox_id: pod.to_owned(),
            config: Some(cfg.clone()),
            sandbox_config: Some(pod_cfg.clone()),
        })
        .await
        .context("CreateContainer")?;
    Ok((r.into_inner().container_id, t.elapsed()))
}

/// `StartContainer`; returns the RPC's time.
pub async fn start(c: &mut RuntimeClient, id: &str) -> Result<Duration> {
    let t = Instant::now();
    c.start_container(v1::StartContainerRequest {
        container_id: id.to_owned(),
    })
    .await
    .context("StartContainer")?;
    Ok(t.elapsed())
}

/// Polls `ContainerStatus` until the container has exited; returns the time
/// from the call until the exit was seen and the exit code.
pub async fn wait_exited(c: &mut RuntimeClient, id: &str) -> Result<(Duration, i32)> {
    let t = Instant::now();
    while t.elapsed() < EXIT_TIMEOUT {
        let s = c
            .container_status(v1::ContainerStatusRequest {
                container_id: id.to_owned(),
                verbose: false,
            })
            .await
            .context("ContainerStatus")?
            .into_inner();
        if let Some(st) = s.status {
            if st.state == v1::ContainerState::ContainerExited as i32 {
                return Ok((t.elapsed(), st.exit_code));
            }
        }
        tokio::time::sleep(EXIT_POLL).await;
    }
    bail!("container {id} not exited after {EXIT_TIMEOUT:?}")
}

/// Stops and removes a pod (and so its containers).
pub async fn remove_pod(c: &mut RuntimeClient, id: &str) -> Result<()> {
    c.stop_pod_sandbox(v1::StopPodSandboxRequest {
        pod_sandbox_id: id.to_owned(),
    })
    .await
    .context("StopPodSandbox")?;
    c.remove_pod_sandbox(v1::RemovePodSandboxRequest {
        pod_sandbox_id: id.to_owned(),
    })
    .await
    .context("RemovePodSandbox")?;
    Ok(())
}

/// Removes every pod the system has (bounded: one pass over the list).
pub async fn remove_all_pods(c: &mut RuntimeClient) -> Result<()> {
    let pods = c
        .list_pod_sandbox(v1::ListPodSandboxRequest::default())
        .await
        .context("ListPodSandbox")?
        .into_inner()
        .items;
    for p in pods {
        remove_pod(c, &p.id).await?;
    }
    Ok(())
}

/// The time of each step of one pod start.
#[derive(Debug, Clone, Copy)]
pub struct PodStart {
    /// RunPodSandbox.
    pub run_pod: Duration,
    /// CreateContainer.
    pub create: Duration,
    /// StartContainer.
    pub start: Duration,
    /// From StartContainer's answer until the exit was seen.
    pub exit_seen: Duration,
    /// Whole sequence.
    pub total: Duration,
}

/// RunPodSandbox → CreateContainer → StartContainer, then (with `wait`) the
/// container's exit observed. Returns the pod id and the step times.
pub async fn start_pod(
    sys: &System,
    c: &mut RuntimeClient,
    name: &str,
    image: &str,
    command: &[&str],
    wait: bool,
) -> Result<(String, PodStart)> {
    let ctr_cfg = container_config("c", image, command);
    start_pod_with(sys, c, name, &ctr_cfg, wait).await
}

/// [`start_pod`] with the container config `ctr_cfg` as given.
pub async fn start_pod_with(
    sys: &System,
    c: &mut RuntimeClient,
    name: &str,
    ctr_cfg: &v1::ContainerConfig,
    wait: bool,
) -> Result<(String, PodStart)> {
    let pod_cfg = pod_config(sys, name);
    let t = Instant::now();
    let (pod, run_pod) = run_pod(c, &pod_cfg).await?;
    let (ctr, create) = create(c, &pod, &pod_cfg, ctr_cfg).await?;
    let start = start(c, &ctr).await?;
    let mut exit_seen = Duration::ZERO;
    if wait {
        let (d, code) = wait_exited(c, &ctr).await?;
        if code != 0 {
            bail!("container {ctr} exited with {code}");
        }
        exit_seen = d;
    }
    Ok((
        pod,
        PodStart {
            run_pod,
            create,
            start,
            exit_seen,
            total: t.elapsed(),
        },
    ))
}
