//! `cria run`: pull if missing, RunPodSandbox, CreateContainer, StartContainer,
//! then print the container's output from its log until it exits and return
//! its exit code. `--rm` removes container and pod, also after Ctrl-C.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use clap::Args;
use cria_proto::v1::{
    ContainerConfig, ContainerMetadata, CreateContainerRequest, ImageSpec, ImageStatusRequest,
    Int64Value, KeyValue, LinuxContainerConfig, LinuxContainerResources,
    LinuxContainerSecurityContext, LinuxPodSandboxConfig, LinuxSandboxSecurityContext, Mount,
    NamespaceMode, NamespaceOption, PodSandboxConfig, PodSandboxMetadata, PortMapping, Protocol,
    RunPodSandboxRequest, StartContainerRequest,
};

use crate::client::Cri;
use crate::commands::attach;
use crate::commands::logs::{self, StreamOpts};
use crate::commands::pull;
use crate::error::CliError;
use crate::lifecycle::{self, OWNER_LABEL, POD_NAMESPACE};
use crate::progress::Target;
use crate::run_options::{self, Port, User, Volume, CPU_PERIOD_US};
use crate::stream_client::{Ended, SessionOptions};
use crate::{humanize, output, resolve, Ctx};

pub const EXAMPLES: &str = "Examples:
  cria run --rm busybox echo hello
  cria run --rm -e GREETING=hi busybox sh -c 'echo $GREETING'
  cria run --rm -v /srv/data:/data:ro busybox ls /data
  cria run -d --name web -p 8080:80 --memory 64m --cpus 0.5 nginx
  cria run --rm --net host --entrypoint /bin/date busybox

  cria run --rm -it busybox sh                # an interactive shell (Attach)
  echo hi | cria run --rm -i busybox cat      # stdin piped in, closed at EOF

cria exits with the container's exit code.";

/// Arguments of `cria run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Remove the container and its pod when it exits (also on Ctrl-C)
    #[arg(long)]
    rm: bool,
    /// Keep stdin open and pass ours to the container (Attach unless -d)
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a terminal
    #[arg(short, long)]
    tty: bool,
    /// Start in the background and print the container id
    #[arg(short, long)]
    detach: bool,
    /// Name of the container and its pod (default: generated)
    #[arg(long)]
    name: Option<String>,
    /// Set an environment variable (KEY=VALUE, or KEY to copy it from here)
    #[arg(short, long = "env", value_name = "KEY=VALUE", value_parser = run_options::parse_env)]
    env: Vec<(String, String)>,
    /// Bind-mount a host path: HOST:CONTAINER[:ro]
    #[arg(short, long = "volume", value_name = "HOST:CTR[:ro]", value_parser = run_options::parse_volume)]
    volume: Vec<Volume>,
    /// Publish a port: [IP:]HOST:CONTAINER[/tcp|udp|sctp]
    #[arg(short, long = "publish", value_name = "HOST:CTR", value_parser = run_options::parse_port)]
    publish: Vec<Port>,
    /// Network: `host` shares the node's network namespace
    #[arg(long, value_parser = ["host", "pod"], default_value = "pod")]
    net: String,
    /// Memory limit: 64m, 1g, bytes
    #[arg(short, long, value_parser = run_options::parse_memory)]
    memory: Option<i64>,
    /// CPU limit in CPUs: 0.5, 2
    #[arg(long, value_parser = run_options::parse_cpus, value_name = "CPUS")]
    cpus: Option<i64>,
    /// User: uid[:gid] or a name from the image
    #[arg(short, long, value_parser = run_options::parse_user)]
    user: Option<User>,
    /// Working directory inside the container
    #[arg(short, long, value_name = "DIR")]
    workdir: Option<String>,
    /// Replace the image's entrypoint
    #[arg(long, value_name = "CMD")]
    entrypoint: Option<String>,
    /// Give the container all capabilities and devices
    #[arg(long)]
    privileged: bool,
    /// Mount the container's root filesystem read-only
    #[arg(long)]
    read_only: bool,
    /// Image to run
    image: String,
    /// Command and arguments (default: the image's)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// Seconds a container gets to exit after Ctrl-C before it is killed (docker's default).
const STOP_GRACE_SECS: i64 = 10;

/// Keeps a generated or given name usable as a pod hostname and CRI name.
fn sanitize_name(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let s = s.trim_matches('-');
    s[..s.len().min(63)].trim_end_matches('-').to_string()
}

/// Checks a `--name` the way kubelet-facing runtimes expect (DNS label characters).
fn check_name(name: &str) -> Result<(), CliError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(CliError::Usage(format!(
            "invalid --name {name:?}: use up to 63 letters, digits, '-', '_' or '.'"
        )))
    }
}

fn protocol(p: &str) -> i32 {
    match p {
        "udp" => Protocol::Udp as i32,
        "sctp" => Protocol::Sctp as i32,
        _ => Protocol::Tcp as i32,
    }
}

/// The pod's and the container's namespace options.
fn namespaces(host_net: bool) -> NamespaceOption {
    NamespaceOption {
        network: if host_net {
            NamespaceMode::Node
        } else {
            NamespaceMode::Pod
        } as i32,
        pid: NamespaceMode::Container as i32,
        ipc: NamespaceMode::Pod as i32,
        ..NamespaceOption::default()
    }
}

/// The pod sandbox config for one `cria run`.
fn pod_config(args: &RunArgs, metadata: PodSandboxMetadata, log_dir: &Path) -> PodSandboxConfig {
    let labels = HashMap::from([(OWNER_LABEL.to_string(), "true".to_string())]);
    let name = metadata.name.clone();
    PodSandboxConfig {
        metadata: Some(metadata),
        // A host-network pod shares the node's UTS namespace too: it cannot have its own hostname.
        hostname: if args.net == "host" {
            String::new()
        } else {
            sanitize_name(&name)
        },
        log_directory: log_dir.display().to_string(),
        port_mappings: args
            .publish
            .iter()
            .map(|p| PortMapping {
                protocol: protocol(&p.protocol),
                container_port: i32::from(p.container_port),
                host_port: i32::from(p.host_port),
                host_ip: p.host_ip.clone(),
            })
            .collect(),
        labels,
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(namespaces(args.net == "host")),
                privileged: args.privileged,
                ..LinuxSandboxSecurityContext::default()
            }),
            ..LinuxPodSandboxConfig::default()
        }),
        ..PodSandboxConfig::default()
    }
}

/// The container config for one `cria run`.
fn container_config(args: &RunArgs, name: &str, image_id: &str) -> ContainerConfig {
    let (command, cmd_args) = match &args.entrypoint {
        Some(ep) => (vec![ep.clone()], args.command.clone()),
        None => (Vec::new(), args.command.clone()),
    };
    let mut security = LinuxContainerSecurityContext {
        privileged: args.privileged,
        readonly_rootfs: args.read_only,
        namespace_options: Some(namespaces(args.net == "host")),
        ..LinuxContainerSecurityContext::default()
    };
    match &args.user {
        Some(User::Id { uid, gid }) => {
            security.run_as_user = Some(Int64Value { value: *uid });
            security.run_as_group = gid.map(|value| Int64Value { value });
        }
        Some(User::Name(n)) => security.run_as_username = n.clone(),
        None => {}
    }
    let resources = LinuxContainerResources {
        memory_limit_in_bytes: args.memory.unwrap_or(0),
        cpu_period: if args.cpus.is_some() {
            CPU_PERIOD_US
        } else {
            0
        },
        cpu_quota: args.cpus.unwrap_or(0),
        ..LinuxContainerResources::default()
    };
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.to_string(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: image_id.to_string(),
            user_specified_image: args.image.clone(),
            ..ImageSpec::default()
        }),
        command,
        args: cmd_args,
        working_dir: args.workdir.clone().unwrap_or_default(),
        envs: args
            .env
            .iter()
            .map(|(k, v)| KeyValue {
                key: k.clone(),
                value: v.clone().into_bytes(),
            })
            .collect(),
        mounts: args
            .volume
            .iter()
            .map(|v| Mount {
                container_path: v.container.clone(),
                host_path: v.host.display().to_string(),
                readonly: v.readonly,
                ..Mount::default()
            })
            .collect(),
        labels: HashMap::from([(OWNER_LABEL.to_string(), "true".to_string())]),
        log_path: format!("{name}.log"),
        stdin: args.interactive,
        // Attached runs close the container's stdin when ours ends (`echo hi | cria run -i .. cat`);
        // with -d nobody is attached at first, so a shell keeps its stdin open.
        stdin_once: args.interactive && !args.detach,
        tty: args.tty,
        linux: Some(LinuxContainerConfig {
            resources: Some(resources),
            security_context: Some(security),
        }),
        ..ContainerConfig::default()
    }
}

/// The image id for `reference`, pulling it (progress on stderr) when the runtime lacks it.
async fn ensure_image(cri: &Cri, reference: &str) -> Result<String, CliError> {
    let status = cri
        .call(
            "image status",
            cri.image().image_status(ImageStatusRequest {
                image: Some(ImageSpec {
                    image: reference.to_string(),
                    ..ImageSpec::default()
                }),
                verbose: false,
            }),
        )
        .await?;
    match status.image {
        Some(img) => Ok(img.id),
        None => pull::pull_image(cri, reference, None, Target::Stderr).await,
    }
}

/// What `run` created, so a failure or `--rm` can take it down again.
struct Created {
    pod_id: String,
    container_id: Option<String>,
    log_dir: PathBuf,
    log_root: PathBuf,
}

impl Created {
    /// Removes the container and the pod (best effort, reports problems on stderr).
    async fn remove(&self, cri: &Cri) {
        if let Some(id) = &self.container_id {
            if let Err(e) =
                lifecycle::remove_container(cri, id, &self.pod_id, true, &self.log_root).await
            {
                eprintln!(
                    "cria: warning: removing container {}: {e}",
                    humanize::short_id(id)
                );
            }
        }
        // remove_container already took the pod when it was the last container; this catches
        // failures before the container existed. A pod that is gone is not an error here.
        let still_there = resolve::list_pods(cri)
            .await
            .map(|pods| pods.iter().any(|p| p.id == self.pod_id))
            .unwrap_or(false);
        if still_there {
            if let Err(e) = lifecycle::remove_pod(cri, &self.pod_id, Some(&self.log_dir)).await {
                eprintln!(
                    "cria: warning: removing pod {}: {e}",
                    humanize::short_id(&self.pod_id)
                );
            }
        }
    }
}

/// Creates pod and container and starts it; fills `created` as it goes.
async fn create_and_start(
    cri: &Cri,
    args: &RunArgs,
    name: &str,
    image_id: &str,
    log_root: &Path,
    created: &mut Option<Created>,
) -> anyhow::Result<String> {
    let metadata = PodSandboxMetadata {
        name: name.to_string(),
        uid: uuid::Uuid::new_v4().to_string(),
        namespace: POD_NAMESPACE.to_string(),
        attempt: 0,
    };
    // check_name and the generated names never hold a '/', so this always gives a directory.
    let log_dir = lifecycle::pod_log_dir(log_root, &metadata)
        .ok_or_else(|| CliError::Usage(format!("invalid pod name {name:?}")))?;
    // kubelet creates pod log directories, not the runtime; as the client we do the same.
    std::fs::create_dir_all(&log_dir).map_err(|e| {
        anyhow::anyhow!("cannot create pod log directory {}: {e}", log_dir.display())
    })?;
    let config = pod_config(args, metadata, &log_dir);
    let pod = cri
        .call_long(
            "run pod",
            cri.runtime().run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            }),
        )
        .await;
    let pod_id = match pod {
        Ok(p) => p.pod_sandbox_id,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&log_dir);
            return Err(e.into());
        }
    };
    let state = created.insert(Created {
        pod_id: pod_id.clone(),
        container_id: None,
        log_dir,
        log_root: log_root.to_path_buf(),
    });
    let container_id = cri
        .call_long(
            "create container",
            cri.runtime().create_container(CreateContainerRequest {
                pod_sandbox_id: pod_id,
                config: Some(container_config(args, name, image_id)),
                sandbox_config: Some(config),
            }),
        )
        .await?
        .container_id;
    state.container_id = Some(container_id.clone());
    cri.call_long(
        "start container",
        cri.runtime().start_container(StartContainerRequest {
            container_id: container_id.clone(),
        }),
    )
    .await?;
    Ok(container_id)
}

/// Prints the container's output until it exits; returns its exit code.
async fn follow_to_exit(cri: &Cri, id: &str) -> anyhow::Result<u8> {
    let status = lifecycle::container_status(cri, id).await?;
    if status.log_path.is_empty() {
        anyhow::bail!("the runtime reports no log path for container {id}");
    }
    let opts = StreamOpts {
        follow: true,
        ..StreamOpts::default()
    };
    logs::stream(cri, id, Path::new(&status.log_path), opts).await?;
    // The stream also ends when our reader goes away (`| head`): the exit code still counts.
    let status = lifecycle::wait_exit(cri, id).await?;
    if !status.reason.is_empty() && status.reason != "Completed" && status.reason != "Error" {
        eprintln!("cria: container exited: {}", status.reason);
    }
    // Exit statuses are 0-255; a signal death is reported by runtimes as 128+signal.
    Ok((status.exit_code & 0xff) as u8)
}

/// Starts a stop of container `id` in the background; failures are reported, not fatal,
/// because the output follower keeps running until the container has exited.
fn stop_in_background(cri: &Cri, id: &str, grace_secs: i64) {
    let (cri, id) = (cri.clone(), id.to_string());
    tokio::spawn(async move {
        if let Err(e) = lifecycle::stop_container(&cri, &id, grace_secs).await {
            eprintln!(
                "cria: warning: stopping container {}: {e}",
                humanize::short_id(&id)
            );
        }
    });
}

/// Follows the container's output to its exit. The first Ctrl-C stops it gracefully and the
/// second kills it, while its last output is still printed; a third gives up waiting (130).
async fn follow_interruptible(cri: &Cri, id: &str) -> anyhow::Result<u8> {
    let follow = follow_to_exit(cri, id);
    tokio::pin!(follow);
    let mut interrupts = 0;
    loop {
        tokio::select! {
            r = &mut follow => return r,
            _ = tokio::signal::ctrl_c() => {
                interrupts += 1;
                match interrupts {
                    1 => {
                        eprintln!(
                            "cria: interrupted, stopping container {} (Ctrl-C again to kill it now)",
                            humanize::short_id(id)
                        );
                        stop_in_background(cri, id, STOP_GRACE_SECS);
                    }
                    2 => {
                        eprintln!("cria: killing container {}", humanize::short_id(id));
                        stop_in_background(cri, id, 0);
                    }
                    _ => return Ok(130),
                }
            }
        }
    }
}

/// Attaches to the started container and returns its exit code once it has
/// exited. A signal that ends the session (Ctrl-C without -t) stops the container.
async fn attach_interruptible(cri: &Cri, id: &str, args: &RunArgs) -> anyhow::Result<u8> {
    let opts = SessionOptions {
        stdin: args.interactive,
        tty: args.tty,
    };
    let ended = attach::attach_session(cri, id, opts).await?;
    if let Ended::Signal(_) = ended {
        eprintln!(
            "cria: interrupted, stopping container {}",
            humanize::short_id(id)
        );
        lifecycle::stop_container(cri, id, STOP_GRACE_SECS).await?;
    }
    let status = lifecycle::wait_exit(cri, id).await?;
    Ok((status.exit_code & 0xff) as u8)
}

/// Runs `cria run`.
pub async fn run(ctx: &Ctx, args: RunArgs) -> anyhow::Result<u8> {
    if args.rm && args.detach {
        return Err(CliError::Usage("--rm and -d cannot be used together".into()).into());
    }
    let name = match &args.name {
        Some(n) => {
            check_name(n)?;
            n.clone()
        }
        None => format!("cria-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]),
    };
    let cri = ctx.connect().await?;
    if let Some(n) = &args.name {
        let taken = resolve::list_containers(&cri)
            .await?
            .into_iter()
            .find(|c| resolve::container_name(c) == n);
        if let Some(c) = taken {
            return Err(CliError::Usage(format!(
                "the name {n:?} is already in use by container {}: remove it with `cria rm {n}`",
                humanize::short_id(&c.id)
            ))
            .into());
        }
    }
    let image_id = ensure_image(&cri, &args.image).await?;
    let mut created = None;
    let id =
        match create_and_start(&cri, &args, &name, &image_id, ctx.log_root(), &mut created).await {
            Ok(id) => id,
            Err(e) => {
                // Nothing half-made stays behind: a failed run leaves no pod or container.
                if let Some(c) = &created {
                    c.remove(&cri).await;
                }
                return Err(e);
            }
        };
    if args.detach {
        output::print_line(&id)?;
        return Ok(0);
    }
    let created = created.ok_or_else(|| anyhow::anyhow!("internal error: run lost its pod id"))?;
    let outcome = if args.interactive || args.tty {
        attach_interruptible(&cri, &id, &args).await
    } else {
        follow_interruptible(&cri, &id).await
    };
    if args.rm {
        created.remove(&cri).await;
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        run: RunArgs,
    }

    fn parse(args: &[&str]) -> RunArgs {
        let mut all = vec!["run"];
        all.extend_from_slice(args);
        Wrapper::try_parse_from(all)
            .expect("valid run arguments")
            .run
    }

    fn meta(name: &str) -> PodSandboxMetadata {
        PodSandboxMetadata {
            name: name.into(),
            uid: "u".into(),
            namespace: POD_NAMESPACE.into(),
            attempt: 0,
        }
    }

    #[test]
    fn command_after_image_is_not_parsed_as_flags() {
        let a = parse(&["--rm", "busybox", "sh", "-c", "echo hi; exit 3"]);
        assert!(a.rm);
        assert_eq!(a.image, "busybox");
        assert_eq!(a.command, ["sh", "-c", "echo hi; exit 3"]);
    }

    #[test]
    fn container_config_carries_the_flags() {
        let a = parse(&[
            "-e",
            "A=1",
            "-v",
            "/h:/c:ro",
            "--memory",
            "64m",
            "--cpus",
            "0.5",
            "-u",
            "1000:10",
            "-w",
            "/tmp",
            "--entrypoint",
            "/bin/env",
            "--privileged",
            "--read-only",
            "busybox",
            "x",
        ]);
        let c = container_config(&a, "n", "sha256:abc");
        assert_eq!(c.command, ["/bin/env"]);
        assert_eq!(c.args, ["x"]);
        assert_eq!(c.envs[0].key, "A");
        assert_eq!(c.envs[0].value, b"1");
        assert_eq!(c.mounts[0].host_path, "/h");
        assert!(c.mounts[0].readonly);
        assert_eq!(c.working_dir, "/tmp");
        let linux = c.linux.unwrap();
        let r = linux.resources.unwrap();
        assert_eq!(r.memory_limit_in_bytes, 64 << 20);
        assert_eq!((r.cpu_quota, r.cpu_period), (50_000, 100_000));
        let s = linux.security_context.unwrap();
        assert_eq!(s.run_as_user.unwrap().value, 1000);
        assert_eq!(s.run_as_group.unwrap().value, 10);
        assert!(s.privileged && s.readonly_rootfs);
        assert_eq!(c.image.unwrap().user_specified_image, "busybox");
    }

    #[test]
    fn pod_config_for_host_network_and_ports() {
        let a = parse(&["--net", "host", "-p", "8080:80/udp", "busybox"]);
        let p = pod_config(&a, meta("Web_1"), Path::new("/logs/x"));
        let ns = p
            .linux
            .unwrap()
            .security_context
            .unwrap()
            .namespace_options
            .unwrap();
        assert_eq!(ns.network, NamespaceMode::Node as i32);
        assert_eq!(p.port_mappings[0].host_port, 8080);
        assert_eq!(p.port_mappings[0].protocol, Protocol::Udp as i32);
        assert_eq!(p.hostname, "");
        assert_eq!(p.log_directory, "/logs/x");
        assert_eq!(p.metadata.unwrap().namespace, "default");
    }

    #[test]
    fn pod_hostname_from_name() {
        let a = parse(&["busybox"]);
        assert_eq!(
            pod_config(&a, meta("Web_1"), Path::new("/l")).hostname,
            "web-1"
        );
    }

    #[test]
    fn names() {
        assert!(check_name("web-1.a_b").is_ok());
        assert!(check_name("bad name").is_err());
        assert!(check_name("").is_err());
        assert_eq!(sanitize_name("--A_b--"), "a-b");
    }
}
