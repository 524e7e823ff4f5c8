//! The container's mounts: the default file systems, the pod's files and
//! shm, kubelet's bind mounts with their propagation, devices, and the
//! masked and read-only paths.

use super::host::PathKind;
use super::{SpecError, SpecInput};
use cria_proto::v1::{LinuxContainerSecurityContext, MountPropagation};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceBuilder, LinuxDeviceType, Mount, MountBuilder};
use std::path::{Path, PathBuf};

/// Paths the container must not read (the OCI defaults plus powercap, as
/// containerd masks them).
pub(crate) const DEFAULT_MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths the container may read but not write.
pub(crate) const DEFAULT_READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The mounts and devices of a container.
pub(super) struct MountPlan {
    /// In mount order.
    pub(super) mounts: Vec<Mount>,
    /// Devices from kubelet (the runtime adds the standard ones itself).
    pub(super) devices: Vec<LinuxDevice>,
    /// Cgroup access (`rwm` subset) of each device, in the same order.
    pub(super) device_access: Vec<String>,
    /// Masked paths.
    pub(super) masked_paths: Vec<String>,
    /// Read-only paths.
    pub(super) readonly_paths: Vec<String>,
    /// `rshared`/`rslave` when a mount's propagation needs it.
    pub(super) rootfs_propagation: Option<&'static str>,
}

fn mount(dest: &str, typ: &str, source: &Path, options: &[&str]) -> Result<Mount, SpecError> {
    Ok(MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()?)
}

pub(super) fn plan(
    input: &SpecInput<'_>,
    security: &LinuxContainerSecurityContext,
) -> Result<MountPlan, SpecError> {
    let cri_mounts = &input.config.mounts;
    let taken = |dest: &str| {
        cri_mounts
            .iter()
            .any(|m| Path::new(&m.container_path) == Path::new(dest))
    };
    let sys_mode = if security.privileged { "rw" } else { "ro" };
    let mut mounts = vec![
        mount(
            "/proc",
            "proc",
            Path::new("proc"),
            &["nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/dev",
            "tmpfs",
            Path::new("tmpfs"),
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            Path::new("devpts"),
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            Path::new("mqueue"),
            &["nosuid", "noexec", "nodev"],
        )?,
        // A privileged container gets /sys and its cgroups writable.
        mount(
            "/sys",
            "sysfs",
            Path::new("sysfs"),
            &["nosuid", "noexec", "nodev", sys_mode],
        )?,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            Path::new("cgroup"),
            &["nosuid", "noexec", "nodev", "relatime", sys_mode],
        )?,
    ];
    if !taken("/dev/shm") {
        mounts.push(match &input.sandbox.namespaces.shm {
            Some(shm) => mount(
                "/dev/shm",
                "bind",
                shm,
                &["rbind", "rprivate", "nosuid", "nodev", "noexec"],
            )?,
            // Host IPC: the host's /dev/shm belongs with the host's IPC ns.
            None if input.sandbox.namespaces.ipc.is_none() => mount(
                "/dev/shm",
                "bind",
                Path::new("/dev/shm"),
                &["rbind", "rprivate", "nosuid", "nodev", "noexec"],
            )?,
            None => mount(
                "/dev/shm",
                "tmpfs",
                Path::new("shm"),
                &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
            )?,
        });
    }
    let file_mode = if security.readonly_rootfs { "ro" } else { "rw" };
    for name in ["hostname", "hosts", "resolv.conf"] {
        let dest = format!("/etc/{name}");
        if !taken(&dest) {
            mounts.push(mount(
                &dest,
                "bind",
                &input.sandbox.dir.join(name),
                &["rbind", "rprivate", file_mode],
            )?);
        }
    }

    let mut rootfs_propagation = None;
    let mut binds: Vec<(usize, Mount)> = Vec::new();
    let mountinfo = std::cell::OnceCell::new();
    for (i, m) in cri_mounts.iter().enumerate() {
        let field = |f: &str| format!("mounts[{i}].{f}");
        if !Path::new(&m.container_path).is_absolute() {
            return Err(SpecError::invalid(
                field("container_path"),
                format!("{:?} is not an absolute path", m.container_path),
            ));
        }
        if m.image.as_ref().is_some_and(|i| !i.image.is_empty()) {
            return Err(SpecError::Unsupported(format!(
                "{} (image volumes)",
                field("image")
            )));
        }
        if m.recursive_read_only {
            return Err(SpecError::Unsupported(field("recursive_read_only")));
        }
        if m.host_path.is_empty() {
            return Err(SpecError::invalid(field("host_path"), "empty"));
        }
        if input.host.kind(Path::new(&m.host_path)) == PathKind::Missing {
            return Err(SpecError::invalid(
                field("host_path"),
                format!("{} does not exist", m.host_path),
            ));
        }
        let source = input.host.resolve(Path::new(&m.host_path));
        let propagation = match m.propagation() {
            MountPropagation::PropagationPrivate => "rprivate",
            MountPropagation::PropagationHostToContainer => {
                let info = mountinfo.get_or_init(|| input.host.mountinfo());
                if !propagation_of(info, &source).is_some_and(|p| p.shared || p.slave) {
                    return Err(SpecError::invalid(
                        field("propagation"),
                        format!(
                            "{} is not on a shared or slave mount, needed for HostToContainer",
                            source.display()
                        ),
                    ));
                }
                if rootfs_propagation.is_none() {
                    rootfs_propagation = Some("rslave");
                }
                "rslave"
            }
            MountPropagation::PropagationBidirectional => {
                let info = mountinfo.get_or_init(|| input.host.mountinfo());
                if !propagation_of(info, &source).is_some_and(|p| p.shared) {
                    return Err(SpecError::invalid(
                        field("propagation"),
                        format!(
                            "{} is not on a shared mount, needed for Bidirectional",
                            source.display()
                        ),
                    ));
                }
                rootfs_propagation = Some("rshared");
                "rshared"
            }
        };
        let mut options = vec!["rbind", propagation, if m.readonly { "ro" } else { "rw" }];
        let extra: Vec<&str> = m.mount_options.iter().map(String::as_str).collect();
        options.extend(extra);
        let depth = Path::new(&m.container_path).components().count();
        binds.push((depth, mount(&m.container_path, "bind", &source, &options)?));
    }
    // Parents before children, so a mount is not hidden by its parent's.
    binds.sort_by_key(|(depth, _)| *depth);
    mounts.extend(binds.into_iter().map(|(_, m)| m));

    let mut devices = Vec::new();
    for (i, d) in input.config.devices.iter().enumerate() {
        let field = format!("devices[{i}].host_path");
        let (typ, major, minor) = match input.host.kind(Path::new(&d.host_path)) {
            PathKind::CharDevice { major, minor } => (LinuxDeviceType::C, major, minor),
            PathKind::BlockDevice { major, minor } => (LinuxDeviceType::B, major, minor),
            PathKind::Missing => {
                return Err(SpecError::invalid(
                    field,
                    format!("{} does not exist", d.host_path),
                ))
            }
            _ => {
                return Err(SpecError::invalid(
                    field,
                    format!("{} is not a device", d.host_path),
                ))
            }
        };
        let path = if d.container_path.is_empty() {
            &d.host_path
        } else {
            &d.container_path
        };
        devices.push(
            LinuxDeviceBuilder::default()
                .path(path)
                .typ(typ)
                .major(major)
                .minor(minor)
                .file_mode(0o666u32)
                .uid(0u32)
                .gid(0u32)
                .build()?,
        );
    }
    let mut device_access: Vec<String> = input
        .config
        .devices
        .iter()
        .map(|d| {
            if d.permissions.is_empty() {
                "rwm".to_string()
            } else {
                d.permissions.clone()
            }
        })
        .collect();

    if security.privileged {
        // All of the host's devices, as other runtimes give privileged
        // containers (kubelet's devices above come first and win).
        for (path, kind) in input.host.host_devices() {
            let (typ, major, minor) = match kind {
                PathKind::CharDevice { major, minor } => (LinuxDeviceType::C, major, minor),
                PathKind::BlockDevice { major, minor } => (LinuxDeviceType::B, major, minor),
                _ => continue,
            };
            if devices.iter().any(|d: &LinuxDevice| d.path() == &path) {
                continue;
            }
            devices.push(
                LinuxDeviceBuilder::default()
                    .path(path)
                    .typ(typ)
                    .major(major)
                    .minor(minor)
                    .build()?,
            );
            device_access.push("rwm".to_string());
        }
        return Ok(MountPlan {
            mounts,
            devices,
            device_access,
            masked_paths: Vec::new(),
            readonly_paths: Vec::new(),
            rootfs_propagation,
        });
    }
    let masked_paths = if security.masked_paths.is_empty() {
        DEFAULT_MASKED_PATHS.iter().map(|s| s.to_string()).collect()
    } else {
        security.masked_paths.clone()
    };
    let readonly_paths = if security.readonly_paths.is_empty() {
        DEFAULT_READONLY_PATHS
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        security.readonly_paths.clone()
    };
    Ok(MountPlan {
        mounts,
        devices,
        device_access,
        masked_paths,
        readonly_paths,
        rootfs_propagation,
    })
}

/// Propagation flags of the mount holding a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Propagation {
    /// In a peer group (`shared:N`).
    pub(crate) shared: bool,
    /// Receives from a master (`master:N`).
    pub(crate) slave: bool,
}

/// The propagation of the mount that holds `path`, from mountinfo text:
/// the entry with the longest mount point containing the path (the last
/// such entry when mounts are stacked).
pub(crate) fn propagation_of(mountinfo: &str, path: &Path) -> Option<Propagation> {
    let mut best: Option<(usize, Propagation)> = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(point) = fields.get(4) else { continue };
        let point = PathBuf::from(unescape(point));
        if !path.starts_with(&point) {
            continue;
        }
        let optional = fields
            .iter()
            .skip(6)
            .take_while(|f| **f != "-")
            .collect::<Vec<_>>();
        let p = Propagation {
            shared: optional.iter().any(|f| f.starts_with("shared:")),
            slave: optional.iter().any(|f| f.starts_with("master:")),
        };
        let len = point.components().count();
        if best.is_none_or(|(l, _)| len >= l) {
            best = Some((len, p));
        }
    }
    best.map(|(_, p)| p)
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
