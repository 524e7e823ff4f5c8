//! Unit tests of CRI → OCI spec translation, against a fake host.

use super::host::{HostView, PathKind};
use super::mounts::propagation_of;
use super::process::{args, merge_env, resolve_group, resolve_user};
use super::{build, SpecError, SpecInput};
use crate::runtime_service::store::sandbox::{NamespacePaths, SandboxRecord, SandboxState};
use cria_proto::v1 as cri;
use oci_spec::image::{ConfigBuilder, ImageConfiguration, ImageConfigurationBuilder};
use oci_spec::runtime::{Capability, LinuxNamespaceType, Spec};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A host with a fixed set of paths, a mountinfo text and image files.
#[derive(Default)]
struct FakeHost {
    paths: HashMap<PathBuf, PathKind>,
    mountinfo: String,
    image_files: HashMap<String, String>,
    min_oom: Option<i32>,
}

impl HostView for FakeHost {
    fn kind(&self, path: &Path) -> PathKind {
        self.paths.get(path).copied().unwrap_or(PathKind::Missing)
    }
    fn resolve(&self, path: &Path) -> PathBuf {
        path.to_path_buf()
    }
    fn mountinfo(&self) -> String {
        self.mountinfo.clone()
    }
    fn image_file(&self, _rootfs: &Path, relative: &str) -> Option<String> {
        self.image_files.get(relative).cloned()
    }
    fn min_oom_score_adj(&self) -> Option<i32> {
        self.min_oom
    }
    fn bounding_capabilities(&self) -> u64 {
        // Everything but SYS_RESOURCE (24), like criad on the CI machine.
        !(1u64 << 24)
    }
    fn host_devices(&self) -> Vec<(PathBuf, PathKind)> {
        self.paths
            .iter()
            .filter(|(_, k)| {
                matches!(
                    k,
                    PathKind::CharDevice { .. } | PathKind::BlockDevice { .. }
                )
            })
            .map(|(p, k)| (p.clone(), *k))
            .collect()
    }
}

const MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:25 / /data rw,relatime - ext4 /dev/sdb1 rw
31 22 0:26 / /shared rw,relatime shared:7 - ext4 /dev/sdc1 rw
32 22 0:27 / /slave rw,relatime master:7 - ext4 /dev/sdc1 rw
33 22 0:28 / /with\\040space rw,relatime shared:9 - tmpfs tmpfs rw
";

fn sandbox() -> SandboxRecord {
    SandboxRecord {
        id: "pod1".into(),
        config: cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: "web".into(),
                uid: "uid1".into(),
                namespace: "default".into(),
                attempt: 0,
            }),
            hostname: "web-0".into(),
            ..Default::default()
        },
        runtime_handler: String::new(),
        state: SandboxState::Ready,
        created_at: 1,
        cgroup: "/kubepods/poduid1".into(),
        namespaces: NamespacePaths {
            network: Some("/run/cria/netns/pod1".into()),
            ipc: Some("/run/cria/pods/pod1/ns/ipc".into()),
            uts: Some("/run/cria/pods/pod1/ns/uts".into()),
            pid: None,
            pause_pid: None,
            shm: Some("/run/cria/pods/pod1/shm".into()),
        },
        network: Default::default(),
        dir: "/var/lib/cria/pods/pod1".into(),
    }
}

fn image(entrypoint: &[&str], cmd: &[&str], env: &[&str], user: &str) -> ImageConfiguration {
    let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let mut config = ConfigBuilder::default().env(v(env)).user(user.to_string());
    if !entrypoint.is_empty() {
        config = config.entrypoint(v(entrypoint));
    }
    if !cmd.is_empty() {
        config = config.cmd(v(cmd));
    }
    ImageConfigurationBuilder::default()
        .config(config.build().unwrap())
        .build()
        .unwrap()
}

fn config() -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: "app".into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: "busybox".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn spec_with(
    config: &cri::ContainerConfig,
    image: &ImageConfiguration,
    sandbox: &SandboxRecord,
    host: &FakeHost,
) -> Result<Spec, SpecError> {
    build(&SpecInput {
        id: "ctr1",
        config,
        image,
        image_name: "busybox",
        sandbox,
        rootfs: Path::new("/var/lib/cria/containers/ctr1/rootfs"),
        host,
        pid_target: None,
    })
}

/// The spec for `config` with an image whose CMD is `sh`, in the default
/// pod, on `host`.
fn spec_on(config: &cri::ContainerConfig, host: &FakeHost) -> Result<Spec, SpecError> {
    spec_with(config, &image(&[], &["sh"], &[], ""), &sandbox(), host)
}

fn spec(config: &cri::ContainerConfig) -> Spec {
    spec_on(config, &FakeHost::default()).unwrap()
}

/// The bounding capability set of the spec's process.
fn bounding_caps(s: &Spec) -> oci_spec::runtime::Capabilities {
    s.process()
        .as_ref()
        .unwrap()
        .capabilities()
        .as_ref()
        .unwrap()
        .bounding()
        .clone()
        .unwrap()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn command_and_args_follow_kubelets_table() {
    let ep = strings(&["/ep-1"]);
    let cmd = strings(&["foo", "bar"]);
    let command = strings(&["/ep-2"]);
    let cargs = strings(&["zoo", "boo"]);
    let none: Vec<String> = vec![];
    // Neither set: Entrypoint + Cmd.
    assert_eq!(
        args(&none, &none, &ep, &cmd).unwrap(),
        strings(&["/ep-1", "foo", "bar"])
    );
    // command only: command, image Cmd dropped.
    assert_eq!(
        args(&command, &none, &ep, &cmd).unwrap(),
        strings(&["/ep-2"])
    );
    // args only: Entrypoint + args.
    assert_eq!(
        args(&none, &cargs, &ep, &cmd).unwrap(),
        strings(&["/ep-1", "zoo", "boo"])
    );
    // Both: command + args.
    assert_eq!(
        args(&command, &cargs, &ep, &cmd).unwrap(),
        strings(&["/ep-2", "zoo", "boo"])
    );
    // No Entrypoint: args replace Cmd.
    assert_eq!(
        args(&none, &cargs, &none, &cmd).unwrap(),
        strings(&["zoo", "boo"])
    );
    let err = args(&none, &none, &none, &none).unwrap_err();
    assert!(err.to_string().contains("command"), "{err}");
}

#[test]
fn env_is_merged_in_place_and_gets_a_path() {
    let env = merge_env(
        &strings(&["PATH=/img/bin", "A=1", "B=2"]),
        &[("HOSTNAME".into(), "web-0".into())],
        &[("B".into(), "kube".into()), ("C".into(), "3".into())],
    );
    assert_eq!(
        env,
        strings(&["PATH=/img/bin", "A=1", "B=kube", "HOSTNAME=web-0", "C=3"])
    );
    let env = merge_env(&[], &[], &[("X".into(), "a=b".into())]);
    assert!(env[0].starts_with("PATH=/usr/local/sbin"));
    assert_eq!(env[1], "X=a=b");
}

#[test]
fn process_defaults_come_from_image_and_kubelet() {
    let mut c = config();
    c.envs = vec![cri::KeyValue {
        key: "K".into(),
        value: b"v".to_vec(),
    }];
    let img = ImageConfigurationBuilder::default()
        .config(
            ConfigBuilder::default()
                .entrypoint(strings(&["/bin/app"]))
                .working_dir("/srv".to_string())
                .env(strings(&["PATH=/bin"]))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let s = spec_with(&c, &img, &sandbox(), &FakeHost::default()).unwrap();
    let p = s.process().as_ref().unwrap();
    assert_eq!(p.args().as_ref().unwrap(), &strings(&["/bin/app"]));
    assert_eq!(p.cwd(), Path::new("/srv"));
    assert_eq!(
        p.env().as_ref().unwrap(),
        &strings(&["PATH=/bin", "HOSTNAME=web-0", "K=v"])
    );
    assert_eq!(p.user().uid(), 0);
    assert_eq!(p.no_new_privileges(), Some(false));
    c.working_dir = "/work".into();
    let s = spec_with(&c, &img, &sandbox(), &FakeHost::default()).unwrap();
    assert_eq!(s.process().as_ref().unwrap().cwd(), Path::new("/work"));
    c.working_dir = "rel".into();
    let err = spec_with(&c, &img, &sandbox(), &FakeHost::default()).unwrap_err();
    assert!(err.to_string().contains("working_dir"), "{err}");
}

#[test]
fn users_resolve_from_image_and_security_context() {
    assert_eq!(resolve_user("", "1000"), Some((1000, None)));
    let passwd = "root:x:0:0::/root:/bin/sh\nwww:x:33:34::/var/www:/bin/sh\n";
    assert_eq!(resolve_user(passwd, "www"), Some((33, Some(34))));
    assert_eq!(resolve_user(passwd, "33"), Some((33, Some(34))));
    assert_eq!(resolve_user(passwd, "nobody"), None);
    assert_eq!(resolve_group("staff:x:50:\n", "staff"), Some(50));
    assert_eq!(resolve_group("", "7"), Some(7));

    let host = FakeHost {
        image_files: [("etc/passwd".to_string(), passwd.to_string())].into(),
        ..Default::default()
    };
    let uid_gid = |image_user: &str, sc: cri::LinuxContainerSecurityContext| {
        let mut c = config();
        c.linux = Some(cri::LinuxContainerConfig {
            security_context: Some(sc),
            ..Default::default()
        });
        spec_with(&c, &image(&[], &["sh"], &[], image_user), &sandbox(), &host).map(|s| {
            let u = s.process().as_ref().unwrap().user().clone();
            (
                u.uid(),
                u.gid(),
                u.additional_gids().clone().unwrap_or_default(),
            )
        })
    };
    let sc = cri::LinuxContainerSecurityContext::default;
    assert_eq!(uid_gid("", sc()).unwrap(), (0, 0, vec![]));
    assert_eq!(uid_gid("www", sc()).unwrap(), (33, 34, vec![]));
    assert_eq!(uid_gid("1000:2000", sc()).unwrap(), (1000, 2000, vec![]));
    let err = uid_gid("ghost", sc()).unwrap_err();
    assert!(err.to_string().contains("ghost"), "{err}");
    let with = cri::LinuxContainerSecurityContext {
        run_as_user: Some(cri::Int64Value { value: 33 }),
        supplemental_groups: vec![5, 6],
        ..Default::default()
    };
    assert_eq!(uid_gid("1000:2000", with).unwrap(), (33, 34, vec![5, 6]));
    let with = cri::LinuxContainerSecurityContext {
        run_as_username: "www".into(),
        run_as_group: Some(cri::Int64Value { value: 99 }),
        ..Default::default()
    };
    assert_eq!(uid_gid("", with).unwrap(), (33, 99, vec![]));
    // A user named by kubelet takes its passwd group, not the image's.
    let with = cri::LinuxContainerSecurityContext {
        run_as_username: "www".into(),
        ..Default::default()
    };
    assert_eq!(uid_gid("1000:2000", with).unwrap(), (33, 34, vec![]));
}

#[test]
fn capabilities_default_to_containerds_set_with_add_and_drop() {
    let caps = |c: &cri::ContainerConfig| bounding_caps(&spec(c));
    let default = caps(&config());
    assert_eq!(default.len(), 14);
    assert!(default.contains(&Capability::NetBindService));
    assert!(!default.contains(&Capability::SysAdmin));
    let mut c = config();
    c.linux = Some(cri::LinuxContainerConfig {
        security_context: Some(cri::LinuxContainerSecurityContext {
            capabilities: Some(cri::Capability {
                drop_capabilities: strings(&["ALL"]),
                add_capabilities: strings(&["NET_ADMIN", "CAP_SYS_TIME"]),
                ..Default::default()
            }),
            no_new_privs: true,
            ..Default::default()
        }),
        ..Default::default()
    });
    let got = caps(&c);
    assert_eq!(got.len(), 2);
    assert!(got.contains(&Capability::NetAdmin) && got.contains(&Capability::SysTime));
    assert_eq!(
        spec(&c).process().as_ref().unwrap().no_new_privileges(),
        Some(true)
    );
    if let Some(l) = c.linux.as_mut() {
        if let Some(sc) = l.security_context.as_mut() {
            sc.capabilities = Some(cri::Capability {
                add_capabilities: strings(&["NOT_A_CAP"]),
                ..Default::default()
            });
        }
    }
    let err = spec_on(&c, &FakeHost::default()).unwrap_err();
    assert!(err.to_string().contains("NOT_A_CAP"), "{err}");
}

#[test]
fn namespaces_join_the_pod_by_path() {
    let s = spec(&config());
    let ns = s.linux().as_ref().unwrap().namespaces().clone().unwrap();
    let path_of = |t| ns.iter().find(|n| n.typ() == t).map(|n| n.path().clone());
    assert_eq!(path_of(LinuxNamespaceType::Mount), Some(None));
    assert_eq!(
        path_of(LinuxNamespaceType::Network),
        Some(Some(PathBuf::from("/run/cria/netns/pod1")))
    );
    assert_eq!(
        path_of(LinuxNamespaceType::Ipc),
        Some(Some(PathBuf::from("/run/cria/pods/pod1/ns/ipc")))
    );
    // The pod has no shared PID namespace: the container gets its own.
    assert_eq!(path_of(LinuxNamespaceType::Pid), Some(None));
    assert_eq!(
        s.linux().as_ref().unwrap().cgroups_path().as_deref(),
        Some(Path::new("/kubepods/poduid1/ctr1"))
    );

    // Host network pod: no network or UTS namespace listed (inherited).
    let mut host_pod = sandbox();
    host_pod.namespaces.network = None;
    host_pod.namespaces.uts = None;
    host_pod.namespaces.pid = Some("/proc/42/ns/pid".into());
    let s = spec_with(
        &config(),
        &image(&[], &["sh"], &[], ""),
        &host_pod,
        &FakeHost::default(),
    )
    .unwrap();
    let ns = s.linux().as_ref().unwrap().namespaces().clone().unwrap();
    assert!(!ns.iter().any(|n| n.typ() == LinuxNamespaceType::Network));
    assert!(!ns.iter().any(|n| n.typ() == LinuxNamespaceType::Uts));
    let pid = ns
        .iter()
        .find(|n| n.typ() == LinuxNamespaceType::Pid)
        .unwrap();
    assert_eq!(pid.path().as_deref(), Some(Path::new("/proc/42/ns/pid")));
}

#[test]
fn pid_target_joins_the_target_containers_namespace() {
    let mut c = config();
    c.linux = Some(cri::LinuxContainerConfig {
        security_context: Some(cri::LinuxContainerSecurityContext {
            namespace_options: Some(cri::NamespaceOption {
                pid: cri::NamespaceMode::Target as i32,
                target_id: "abc".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let (img, pod, host) = (image(&[], &["sh"], &[], ""), sandbox(), FakeHost::default());
    let input = |pid_target| SpecInput {
        id: "ctr1",
        config: &c,
        image: &img,
        image_name: "busybox",
        sandbox: &pod,
        rootfs: Path::new("/var/lib/cria/containers/ctr1/rootfs"),
        host: &host,
        pid_target,
    };
    let s = build(&input(Some(Path::new("/proc/77/ns/pid")))).unwrap();
    let ns = s.linux().as_ref().unwrap().namespaces().clone().unwrap();
    let pids: Vec<_> = ns
        .iter()
        .filter(|n| n.typ() == LinuxNamespaceType::Pid)
        .map(|n| n.path().clone())
        .collect();
    assert_eq!(pids, vec![Some(PathBuf::from("/proc/77/ns/pid"))]);
    // Unresolved (the caller found no running target): refused, not a new ns.
    let err = build(&input(None)).unwrap_err();
    assert!(matches!(err, SpecError::Invalid { .. }), "{err}");
    assert!(err.to_string().contains("target_id"), "{err}");
}

#[test]
fn mounts_include_defaults_pod_files_and_kubelets_binds() {
    let host = FakeHost {
        paths: [
            (PathBuf::from("/data/vol"), PathKind::Dir),
            (PathBuf::from("/shared/vol"), PathKind::Dir),
            (PathBuf::from("/slave/vol"), PathKind::Dir),
            (PathBuf::from("/data/hosts"), PathKind::File),
            (
                PathBuf::from("/dev/nvidia0"),
                PathKind::CharDevice {
                    major: 195,
                    minor: 0,
                },
            ),
        ]
        .into(),
        mountinfo: MOUNTINFO.into(),
        ..Default::default()
    };
    let bind = |ctr: &str, host: &str, ro: bool, p: cri::MountPropagation| cri::Mount {
        container_path: ctr.into(),
        host_path: host.into(),
        readonly: ro,
        propagation: p as i32,
        ..Default::default()
    };
    let mut c = config();
    c.mounts = vec![
        bind(
            "/var/lib/x/y",
            "/data/vol",
            true,
            cri::MountPropagation::PropagationPrivate,
        ),
        bind(
            "/var",
            "/slave/vol",
            false,
            cri::MountPropagation::PropagationHostToContainer,
        ),
        bind(
            "/etc/hosts",
            "/data/hosts",
            false,
            cri::MountPropagation::PropagationPrivate,
        ),
    ];
    c.devices = vec![cri::Device {
        container_path: "/dev/gpu".into(),
        host_path: "/dev/nvidia0".into(),
        permissions: "rw".into(),
    }];
    let s = spec_on(&c, &host).unwrap();
    let mounts = s.mounts().clone().unwrap();
    let dests: Vec<String> = mounts
        .iter()
        .map(|m| m.destination().display().to_string())
        .collect();
    for d in [
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/mqueue",
        "/sys",
        "/dev/shm",
        "/etc/hostname",
        "/etc/resolv.conf",
    ] {
        assert!(dests.contains(&d.to_string()), "{d} missing from {dests:?}");
    }
    // kubelet's /etc/hosts replaces the pod's; parents mount before children.
    assert_eq!(dests.iter().filter(|d| *d == "/etc/hosts").count(), 1);
    let pos = |d: &str| dests.iter().position(|x| x == d).unwrap();
    assert!(pos("/var") < pos("/var/lib/x/y"));
    let find = |d: &str| {
        mounts
            .iter()
            .find(|m| m.destination() == Path::new(d))
            .unwrap()
    };
    assert_eq!(
        find("/etc/hosts").source().as_deref(),
        Some(Path::new("/data/hosts"))
    );
    assert_eq!(
        find("/dev/shm").source().as_deref(),
        Some(Path::new("/run/cria/pods/pod1/shm"))
    );
    assert_eq!(
        find("/etc/resolv.conf").source().as_deref(),
        Some(Path::new("/var/lib/cria/pods/pod1/resolv.conf"))
    );
    let opts = find("/var/lib/x/y").options().clone().unwrap();
    assert!(opts.contains(&"ro".to_string()) && opts.contains(&"rprivate".to_string()));
    let opts = find("/var").options().clone().unwrap();
    assert!(opts.contains(&"rslave".to_string()) && opts.contains(&"rw".to_string()));
    let linux = s.linux().as_ref().unwrap();
    assert_eq!(linux.rootfs_propagation().as_deref(), Some("rslave"));
    let dev = &linux.devices().clone().unwrap()[0];
    assert_eq!((dev.major(), dev.minor()), (195, 0));
    assert_eq!(dev.path(), Path::new("/dev/gpu"));
    let rules = linux
        .resources()
        .as_ref()
        .unwrap()
        .devices()
        .clone()
        .unwrap();
    assert!(!rules[0].allow(), "first rule denies all");
    assert!(rules
        .iter()
        .any(|r| r.allow() && r.major() == Some(195) && r.access().as_deref() == Some("rw")));
    assert!(linux
        .masked_paths()
        .as_ref()
        .unwrap()
        .contains(&"/proc/kcore".to_string()));
    assert!(linux
        .readonly_paths()
        .as_ref()
        .unwrap()
        .contains(&"/proc/sys".to_string()));

    // Bidirectional needs a shared mount.
    c.mounts = vec![bind(
        "/m",
        "/shared/vol",
        false,
        cri::MountPropagation::PropagationBidirectional,
    )];
    c.devices.clear();
    let s = spec_on(&c, &host).unwrap();
    assert_eq!(
        s.linux().as_ref().unwrap().rootfs_propagation().as_deref(),
        Some("rshared")
    );
    for (hp, p) in [
        ("/data/vol", cri::MountPropagation::PropagationBidirectional),
        (
            "/data/vol",
            cri::MountPropagation::PropagationHostToContainer,
        ),
        (
            "/slave/vol",
            cri::MountPropagation::PropagationBidirectional,
        ),
    ] {
        c.mounts = vec![bind("/m", hp, false, p)];
        let err = spec_on(&c, &host).unwrap_err();
        assert!(err.to_string().contains("mounts[0].propagation"), "{err}");
    }
}

#[test]
fn a_missing_host_path_is_named() {
    let mut c = config();
    c.mounts = vec![cri::Mount {
        container_path: "/data".into(),
        host_path: "/no/such/dir".into(),
        ..Default::default()
    }];
    let err = spec_on(&c, &FakeHost::default()).unwrap_err();
    let status: tonic::Status = err.into();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("mounts[0].host_path"),
        "{status:?}"
    );
    assert!(status.message().contains("/no/such/dir"), "{status:?}");
}

#[test]
fn resources_translate_to_oci() {
    let mut c = config();
    c.linux = Some(cri::LinuxContainerConfig {
        resources: Some(cri::LinuxContainerResources {
            cpu_period: 100_000,
            cpu_quota: 50_000,
            cpu_shares: 512,
            memory_limit_in_bytes: 32 << 20,
            memory_swap_limit_in_bytes: 64 << 20,
            oom_score_adj: 500,
            cpuset_cpus: "0-1".into(),
            cpuset_mems: "0".into(),
            hugepage_limits: vec![cri::HugepageLimit {
                page_size: "2MB".into(),
                limit: 4 << 20,
            }],
            unified: [("memory.high".to_string(), "30000000".to_string())].into(),
        }),
        ..Default::default()
    });
    let s = spec(&c);
    let r = s.linux().as_ref().unwrap().resources().clone().unwrap();
    let cpu = r.cpu().clone().unwrap();
    assert_eq!(
        (cpu.shares(), cpu.quota(), cpu.period()),
        (Some(512), Some(50_000), Some(100_000))
    );
    assert_eq!(cpu.cpus().as_deref(), Some("0-1"));
    assert_eq!(cpu.mems().as_deref(), Some("0"));
    let mem = r.memory().unwrap();
    assert_eq!((mem.limit(), mem.swap()), (Some(32 << 20), Some(64 << 20)));
    let huge = &r.hugepage_limits().clone().unwrap()[0];
    assert_eq!((huge.page_size().as_str(), huge.limit()), ("2MB", 4 << 20));
    assert_eq!(
        r.unified()
            .as_ref()
            .unwrap()
            .get("memory.high")
            .map(String::as_str),
        Some("30000000")
    );
    assert_eq!(s.process().as_ref().unwrap().oom_score_adj(), Some(500));
    // Without CAP_SYS_RESOURCE a value below criad's own is clamped to it.
    if let Some(r) = c.linux.as_mut().and_then(|l| l.resources.as_mut()) {
        r.oom_score_adj = -997;
    }
    let host = FakeHost {
        min_oom: Some(-500),
        ..Default::default()
    };
    let s = spec_on(&c, &host).unwrap();
    assert_eq!(s.process().as_ref().unwrap().oom_score_adj(), Some(-500));
    let s = spec_on(&c, &FakeHost::default()).unwrap();
    assert_eq!(s.process().as_ref().unwrap().oom_score_adj(), Some(-997));

    let neg = cri::LinuxContainerResources {
        cpu_shares: -1,
        ..Default::default()
    };
    let err = super::resources::to_oci(Some(&neg), None).unwrap_err();
    assert!(err.to_string().contains("cpu_shares"), "{err}");
    // Nothing set: no cpu or memory section at all.
    let empty = super::resources::to_oci(Some(&Default::default()), None).unwrap();
    assert!(empty.cpu().is_none() && empty.memory().is_none());
}

#[test]
fn privileged_needs_a_privileged_pod_and_unmasks_everything() {
    let mut c = config();
    c.linux = Some(cri::LinuxContainerConfig {
        security_context: Some(cri::LinuxContainerSecurityContext {
            privileged: true,
            ..Default::default()
        }),
        ..Default::default()
    });
    let host = FakeHost {
        paths: [(
            PathBuf::from("/dev/sda"),
            PathKind::BlockDevice { major: 8, minor: 0 },
        )]
        .into(),
        ..Default::default()
    };
    let img = image(&[], &["sh"], &[], "");
    let err = spec_with(&c, &img, &sandbox(), &host).unwrap_err();
    let status: tonic::Status = err.into();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("not privileged"), "{status:?}");

    let mut pod = sandbox();
    pod.config.linux = Some(cri::LinuxPodSandboxConfig {
        security_context: Some(cri::LinuxSandboxSecurityContext {
            privileged: true,
            ..Default::default()
        }),
        ..Default::default()
    });
    let s = spec_with(&c, &img, &pod, &host).unwrap();
    let linux = s.linux().as_ref().unwrap();
    assert!(linux.masked_paths().as_ref().unwrap().is_empty());
    assert!(linux.readonly_paths().as_ref().unwrap().is_empty());
    let dev = &linux.devices().clone().unwrap()[0];
    assert_eq!(
        (dev.path().as_path(), dev.major()),
        (Path::new("/dev/sda"), 8)
    );
    let rules = linux
        .resources()
        .as_ref()
        .unwrap()
        .devices()
        .clone()
        .unwrap();
    assert!(rules.len() == 1 && rules[0].allow());
    let caps = bounding_caps(&s);
    assert!(caps.contains(&Capability::SysAdmin));
    assert!(
        !caps.contains(&Capability::SysResource),
        "criad's bounding set limits ALL"
    );
    let sys = s
        .mounts()
        .clone()
        .unwrap()
        .into_iter()
        .find(|m| m.destination() == Path::new("/sys"))
        .unwrap();
    assert!(sys.options().as_ref().unwrap().contains(&"rw".to_string()));
}

#[test]
fn image_groups_are_added_and_run_as_group_needs_a_user() {
    let host = FakeHost {
        image_files: [
            (
                "etc/passwd".to_string(),
                "www:x:33:33::/:/bin/sh\n".to_string(),
            ),
            (
                "etc/group".to_string(),
                "www:x:33:\nweb:x:50:www,bob\nother:x:60:bob\n".to_string(),
            ),
        ]
        .into(),
        ..Default::default()
    };
    let with = |sc: cri::LinuxContainerSecurityContext| {
        let mut c = config();
        c.linux = Some(cri::LinuxContainerConfig {
            security_context: Some(sc),
            ..Default::default()
        });
        spec_with(&c, &image(&[], &["sh"], &[], "www"), &sandbox(), &host)
    };
    let s = with(Default::default()).unwrap();
    let u = s.process().as_ref().unwrap().user().clone();
    assert_eq!((u.uid(), u.gid()), (33, 33));
    assert_eq!(u.additional_gids().clone().unwrap(), vec![50]);
    let s = with(cri::LinuxContainerSecurityContext {
        supplemental_groups: vec![70],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        s.process()
            .as_ref()
            .unwrap()
            .user()
            .additional_gids()
            .clone()
            .unwrap(),
        vec![50, 70]
    );
    // Strict: only what kubelet asked for, not the image's memberships.
    let s = with(cri::LinuxContainerSecurityContext {
        supplemental_groups: vec![70],
        supplemental_groups_policy: cri::SupplementalGroupsPolicy::Strict as i32,
        ..Default::default()
    })
    .unwrap();
    let u = s.process().as_ref().unwrap().user().clone();
    assert_eq!(u.additional_gids().clone().unwrap(), vec![70]);
    let err = with(cri::LinuxContainerSecurityContext {
        run_as_group: Some(cri::Int64Value { value: 5 }),
        ..Default::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("run_as_group"), "{err}");
}

#[test]
fn mountinfo_propagation_uses_the_deepest_mount() {
    let p = |path: &str| propagation_of(MOUNTINFO, Path::new(path)).unwrap();
    assert!(p("/etc").shared);
    assert!(!p("/data/x").shared && !p("/data/x").slave);
    assert!(p("/shared/x/y").shared);
    assert!(p("/slave").slave && !p("/slave").shared);
    assert!(p("/with space/x").shared);
    assert!(propagation_of("", Path::new("/x")).is_none());
}

#[test]
fn annotations_carry_kubelets_and_the_cri_ones() {
    let mut c = config();
    c.annotations = [("k".to_string(), "v".to_string())].into();
    let s = spec(&c);
    let a = s.annotations().clone().unwrap();
    assert_eq!(a.get("k").map(String::as_str), Some("v"));
    assert_eq!(
        a.get("io.kubernetes.cri.sandbox-id").map(String::as_str),
        Some("pod1")
    );
    assert_eq!(
        a.get("io.kubernetes.cri.container-name")
            .map(String::as_str),
        Some("app")
    );
}

#[test]
fn seccomp_profiles_reach_the_spec_and_bad_ones_are_invalid() {
    let with = |sc: cri::LinuxContainerSecurityContext| {
        let mut c = config();
        c.linux = Some(cri::LinuxContainerConfig {
            security_context: Some(sc),
            ..Default::default()
        });
        spec_on(&c, &FakeHost::default()).map_err(tonic::Status::from)
    };
    #[allow(deprecated)]
    let path = |p: &str| cri::LinuxContainerSecurityContext {
        seccomp_profile_path: p.into(),
        ..Default::default()
    };
    let filtered = |sc| {
        with(sc)
            .expect("spec")
            .linux()
            .as_ref()
            .and_then(|l| l.seccomp().clone())
    };
    assert!(filtered(path("runtime/default")).is_some());
    assert!(filtered(path("unconfined")).is_none());
    assert!(filtered(path("")).is_none());
    assert_eq!(
        with(path("/etc/profile.json")).unwrap_err().code(),
        tonic::Code::InvalidArgument
    );
    assert_eq!(
        with(path("localhost//nonexistent/p.json"))
            .unwrap_err()
            .code(),
        tonic::Code::InvalidArgument
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.json");
    std::fs::write(
        &file,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}"#,
    )
    .unwrap();
    let localhost = cri::LinuxContainerSecurityContext {
        seccomp: Some(cri::SecurityProfile {
            profile_type: cri::security_profile::ProfileType::Localhost as i32,
            localhost_ref: file.to_string_lossy().into(),
        }),
        ..Default::default()
    };
    let sc = filtered(localhost).expect("a filter");
    assert_eq!(sc.syscalls().as_ref().map(Vec::len), Some(1));
}

#[test]
fn execs_take_the_process_of_the_written_spec() {
    let mut c = config();
    c.linux = Some(cri::LinuxContainerConfig {
        security_context: Some(cri::LinuxContainerSecurityContext {
            seccomp: Some(cri::SecurityProfile {
                profile_type: cri::security_profile::ProfileType::RuntimeDefault as i32,
                localhost_ref: String::new(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let s = spec(&c);
    assert!(s.linux().as_ref().is_some_and(|l| l.seccomp().is_some()));
    let bundle = tempfile::tempdir().unwrap();
    std::fs::write(
        bundle.path().join("config.json"),
        serde_json::to_vec(&s).unwrap(),
    )
    .unwrap();
    let p = super::bundle_process("c1", bundle.path()).unwrap();
    assert_eq!(Some(p), s.process().clone());
    // No process, no file: errors that name the container.
    std::fs::write(
        bundle.path().join("config.json"),
        br#"{"ociVersion":"1.2.0"}"#,
    )
    .unwrap();
    let e = super::bundle_process("c1", bundle.path()).unwrap_err();
    assert!(e.contains("c1") && e.contains("no process"), "{e}");
    let e = super::bundle_process("c2", &bundle.path().join("gone")).unwrap_err();
    assert!(e.contains("c2") && e.contains("read config.json"), "{e}");
}
