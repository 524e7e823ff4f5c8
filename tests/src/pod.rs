//! Building blocks for RuntimeService tests: a registry with the busybox
//! fixture, a criad that has pulled it, and CRI configs shaped like kubelet's.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cria_proto::v1;

use crate::client::{pull, RuntimeClient};
use crate::criad::{rand_u64, Criad, CriadConfig};
use crate::fixtures::Fixture;
use crate::registry::Registry;

/// CRI container states, as the proto's enum numbers.
pub const CREATED: i32 = v1::ContainerState::ContainerCreated as i32;
/// Running.
pub const RUNNING: i32 = v1::ContainerState::ContainerRunning as i32;
/// Exited.
pub const EXITED: i32 = v1::ContainerState::ContainerExited as i32;

/// A registry holding busybox and a criad that has pulled it.
pub struct PodEnv {
    /// The criad under test.
    pub criad: Criad,
    /// The registry (kept alive for re-pulls).
    pub registry: Registry,
    /// The pulled image's name.
    pub image: String,
    /// Its id (config digest).
    pub image_id: String,
}

impl PodEnv {
    /// Starts the registry and criad and pulls busybox (Debian's busybox-static).
    pub async fn start() -> Result<PodEnv> {
        Self::start_with(CriadConfig::default()).await
    }

    /// The same with more criad config (the registry is added as insecure).
    pub async fn start_with(mut config: CriadConfig) -> Result<PodEnv> {
        let registry = Registry::start()?;
        Fixture::get("busybox")?.push(&registry, "latest", "library/busybox:latest", &[])?;
        let image = format!("{}/library/busybox:latest", registry.host());
        config.insecure.push(registry.host());
        let criad = Criad::start(config).await?;
        let mut images = criad.images().await?;
        let image_id = pull(&mut images, &image, None)
            .await
            .map_err(|s| anyhow::anyhow!("pull: {s:?}"))?;
        Ok(PodEnv {
            criad,
            registry,
            image,
            image_id,
        })
    }

    /// Pushes the `latest` image of fixture `name` to the registry as
    /// `cria/<name>:latest`, pulls it into criad and returns its name.
    pub async fn pull_fixture(&self, name: &str) -> Result<String> {
        let repo = format!("cria/{name}:latest");
        Fixture::get(name)?.push(&self.registry, "latest", &repo, &[])?;
        let image = format!("{}/{repo}", self.registry.host());
        let mut images = self.criad.images().await?;
        pull(&mut images, &image, None)
            .await
            .map_err(|s| anyhow::anyhow!("pull {image}: {s:?}"))?;
        Ok(image)
    }

    /// A RuntimeService client.
    pub async fn rt(&self) -> Result<RuntimeClient> {
        self.criad.runtime().await
    }

    /// A pod config like kubelet's: unique uid, a log directory, hostname, a
    /// test-owned cgroup parent (removed with the criad instance), pod network.
    pub fn pod_config(&self, name: &str) -> Result<v1::PodSandboxConfig> {
        let log_dir = self
            .criad
            .logs_dir()
            .join(format!("{name}-{:x}", rand_u64()));
        std::fs::create_dir_all(&log_dir)?;
        Ok(v1::PodSandboxConfig {
            metadata: Some(v1::PodSandboxMetadata {
                name: name.to_owned(),
                uid: format!("uid-{:x}", rand_u64()),
                namespace: "cria-tests".to_owned(),
                attempt: 0,
            }),
            hostname: name.to_owned(),
            log_directory: log_dir.to_string_lossy().into_owned(),
            labels: HashMap::from([("app".to_owned(), name.to_owned())]),
            linux: Some(v1::LinuxPodSandboxConfig {
                cgroup_parent: self.criad.cgroup_parent(),
                security_context: Some(v1::LinuxSandboxSecurityContext {
                    // As kubelet sends it without shareProcessNamespace:
                    // pod network and IPC, a PID namespace per container.
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
        })
    }

    /// RunPodSandbox.
    pub async fn run_pod(
        &self,
        rt: &mut RuntimeClient,
        cfg: &v1::PodSandboxConfig,
    ) -> Result<String, tonic::Status> {
        let req = v1::RunPodSandboxRequest {
            config: Some(cfg.clone()),
            runtime_handler: String::new(),
        };
        Ok(rt.run_pod_sandbox(req).await?.into_inner().pod_sandbox_id)
    }

    /// A container config running `argv` (as `command`) from busybox, logging to `<name>.log`.
    pub fn container_config(&self, name: &str, argv: &[&str]) -> v1::ContainerConfig {
        v1::ContainerConfig {
            metadata: Some(v1::ContainerMetadata {
                name: name.to_owned(),
                attempt: 0,
            }),
            image: Some(crate::client::image_spec(&self.image)),
            command: argv.iter().map(|s| s.to_string()).collect(),
            log_path: format!("{name}.log"),
            labels: HashMap::from([("container".to_owned(), name.to_owned())]),
            linux: Some(v1::LinuxContainerConfig::default()),
            ..Default::default()
        }
    }

    /// CreateContainer.
    pub async fn create(
        &self,
        rt: &mut RuntimeClient,
        pod_id: &str,
        pod: &v1::PodSandboxConfig,
        cfg: &v1::ContainerConfig,
    ) -> Result<String, tonic::Status> {
        let req = v1::CreateContainerRequest {
            pod_sandbox_id: pod_id.to_owned(),
            config: Some(cfg.clone()),
            sandbox_config: Some(pod.clone()),
        };
        Ok(rt.create_container(req).await?.into_inner().container_id)
    }

    /// RunPodSandbox of `pod`, then CreateContainer + StartContainer of `cfg`
    /// in it: the usual start of a test. Returns (pod id, container id).
    pub async fn run_pod_and_start(
        &self,
        rt: &mut RuntimeClient,
        pod: &v1::PodSandboxConfig,
        cfg: &v1::ContainerConfig,
    ) -> Result<(String, String), tonic::Status> {
        let pod_id = self.run_pod(rt, pod).await?;
        let id = self.create_start(rt, &pod_id, pod, cfg).await?;
        Ok((pod_id, id))
    }

    /// CreateContainer + StartContainer.
    pub async fn create_start(
        &self,
        rt: &mut RuntimeClient,
        pod_id: &str,
        pod: &v1::PodSandboxConfig,
        cfg: &v1::ContainerConfig,
    ) -> Result<String, tonic::Status> {
        let id = self.create(rt, pod_id, pod, cfg).await?;
        rt.start_container(v1::StartContainerRequest {
            container_id: id.clone(),
        })
        .await?;
        Ok(id)
    }
}

/// The host path of a container's log: the pod's log_directory + its log_path.
pub fn log_path(pod: &v1::PodSandboxConfig, cfg: &v1::ContainerConfig) -> PathBuf {
    PathBuf::from(&pod.log_directory).join(&cfg.log_path)
}

/// ContainerStatus (non-verbose).
pub async fn status(
    rt: &mut RuntimeClient,
    id: &str,
) -> Result<v1::ContainerStatus, tonic::Status> {
    let req = v1::ContainerStatusRequest {
        container_id: id.to_owned(),
        verbose: false,
    };
    rt.container_status(req)
        .await?
        .into_inner()
        .status
        .ok_or_else(|| tonic::Status::internal("empty status"))
}

/// Polls ContainerStatus until the container is in `state` (bounded by `timeout`).
pub async fn wait_state(
    rt: &mut RuntimeClient,
    id: &str,
    state: i32,
    timeout: Duration,
) -> Result<v1::ContainerStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        let st = status(rt, id)
            .await
            .map_err(|s| anyhow::anyhow!("ContainerStatus {id}: {s:?}"))?;
        if st.state == state {
            return Ok(st);
        }
        if Instant::now() > deadline {
            bail!("container {id} not in state {state} after {timeout:?}: {st:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// ListContainers without a filter.
pub async fn list_containers(rt: &mut RuntimeClient) -> Result<Vec<v1::Container>, tonic::Status> {
    let req = v1::ListContainersRequest { filter: None };
    Ok(rt.list_containers(req).await?.into_inner().containers)
}

/// ExecSync with a timeout in seconds.
pub async fn exec(
    rt: &mut RuntimeClient,
    id: &str,
    cmd: &[&str],
    timeout: i64,
) -> Result<v1::ExecSyncResponse, tonic::Status> {
    let req = v1::ExecSyncRequest {
        container_id: id.to_owned(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        timeout,
    };
    Ok(rt.exec_sync(req).await?.into_inner())
}

/// Runs `sh -c script` in a container and returns its stdout, failing on a non-zero exit.
pub async fn sh(rt: &mut RuntimeClient, id: &str, script: &str) -> Result<String> {
    let r = exec(rt, id, &["sh", "-c", script], 20)
        .await
        .map_err(|s| anyhow::anyhow!("ExecSync: {s:?}"))?;
    if r.exit_code != 0 {
        bail!(
            "`{script}` exited {}: {}",
            r.exit_code,
            String::from_utf8_lossy(&r.stderr)
        );
    }
    String::from_utf8(r.stdout).context("stdout is utf-8")
}

/// StopContainer (with `timeout` seconds of grace) + RemoveContainer.
pub async fn remove_container(
    rt: &mut RuntimeClient,
    id: &str,
    timeout: i64,
) -> Result<(), tonic::Status> {
    rt.stop_container(v1::StopContainerRequest {
        container_id: id.to_owned(),
        timeout,
    })
    .await?;
    rt.remove_container(v1::RemoveContainerRequest {
        container_id: id.to_owned(),
    })
    .await?;
    Ok(())
}

/// StopPodSandbox + RemovePodSandbox.
pub async fn remove_pod(rt: &mut RuntimeClient, id: &str) -> Result<(), tonic::Status> {
    rt.stop_pod_sandbox(v1::StopPodSandboxRequest {
        pod_sandbox_id: id.to_owned(),
    })
    .await?;
    rt.remove_pod_sandbox(v1::RemovePodSandboxRequest {
        pod_sandbox_id: id.to_owned(),
    })
    .await?;
    Ok(())
}

/// One parsed line of a CRI log file: `<RFC3339Nano> <stream> <P|F> <text>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// The timestamp as written.
    pub time: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// `P` (partial) or `F` (full).
    pub tag: String,
    /// The text (without the newline).
    pub text: String,
}

/// Parses a CRI log file's content; None if any line is malformed.
pub fn parse_log(content: &str) -> Option<Vec<LogLine>> {
    content
        .lines()
        .map(|l| {
            let mut it = l.splitn(4, ' ');
            let (time, stream, tag) = (it.next()?, it.next()?, it.next()?);
            let text = it.next().unwrap_or("");
            Some(LogLine {
                time: time.to_owned(),
                stream: stream.to_owned(),
                tag: tag.to_owned(),
                text: text.to_owned(),
            })
        })
        .collect()
}
