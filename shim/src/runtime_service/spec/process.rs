//! The container's process: args, env, cwd, user, capabilities.

use super::{SpecError, SpecInput};
use cria_proto::v1::LinuxContainerSecurityContext;
use oci_spec::runtime::{
    Capabilities, Capability, LinuxCapabilitiesBuilder, Process, ProcessBuilder, UserBuilder,
};

/// PATH given when neither the image nor kubelet sets one (as Docker does).
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// containerd's default capability set, which Kubernetes users expect.
pub(crate) const DEFAULT_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// Every capability with its number (linux/capability.h), for `ALL`.
const ALL_CAPABILITIES: &[(&str, u32)] = &[
    ("CHOWN", 0),
    ("DAC_OVERRIDE", 1),
    ("DAC_READ_SEARCH", 2),
    ("FOWNER", 3),
    ("FSETID", 4),
    ("KILL", 5),
    ("SETGID", 6),
    ("SETUID", 7),
    ("SETPCAP", 8),
    ("LINUX_IMMUTABLE", 9),
    ("NET_BIND_SERVICE", 10),
    ("NET_BROADCAST", 11),
    ("NET_ADMIN", 12),
    ("NET_RAW", 13),
    ("IPC_LOCK", 14),
    ("IPC_OWNER", 15),
    ("SYS_MODULE", 16),
    ("SYS_RAWIO", 17),
    ("SYS_CHROOT", 18),
    ("SYS_PTRACE", 19),
    ("SYS_PACCT", 20),
    ("SYS_ADMIN", 21),
    ("SYS_BOOT", 22),
    ("SYS_NICE", 23),
    ("SYS_RESOURCE", 24),
    ("SYS_TIME", 25),
    ("SYS_TTY_CONFIG", 26),
    ("MKNOD", 27),
    ("LEASE", 28),
    ("AUDIT_WRITE", 29),
    ("AUDIT_CONTROL", 30),
    ("SETFCAP", 31),
    ("MAC_OVERRIDE", 32),
    ("MAC_ADMIN", 33),
    ("SYSLOG", 34),
    ("WAKE_ALARM", 35),
    ("BLOCK_SUSPEND", 36),
    ("AUDIT_READ", 37),
    ("PERFMON", 38),
    ("BPF", 39),
    ("CHECKPOINT_RESTORE", 40),
];

/// `ALL`: every capability criad itself may grant (its bounding set; a
/// container cannot get one criad lacks, e.g. SYS_RESOURCE on some hosts).
pub(crate) fn all_capabilities(bounding: u64) -> Result<Capabilities, SpecError> {
    let mut caps = Capabilities::new();
    for (name, bit) in ALL_CAPABILITIES {
        if bounding & (1u64 << bit) != 0 {
            caps.insert(parse_cap(name, "capabilities")?);
        }
    }
    Ok(caps)
}

pub(super) fn build(
    input: &SpecInput<'_>,
    security: &LinuxContainerSecurityContext,
) -> Result<Process, SpecError> {
    let image = input.image.config().clone().unwrap_or_default();
    let args = args(
        &input.config.command,
        &input.config.args,
        image.entrypoint().as_deref().unwrap_or_default(),
        image.cmd().as_deref().unwrap_or_default(),
    )?;
    let hostname = input.sandbox.config.hostname.clone();
    let cri_env: Vec<(String, String)> = input
        .config
        .envs
        .iter()
        .map(|kv| {
            (
                kv.key.clone(),
                String::from_utf8_lossy(&kv.value).into_owned(),
            )
        })
        .collect();
    let env = merge_env(
        image.env().as_deref().unwrap_or_default(),
        &[("HOSTNAME".to_string(), hostname)],
        &cri_env,
    );
    let cwd = if !input.config.working_dir.is_empty() {
        input.config.working_dir.clone()
    } else {
        image
            .working_dir()
            .clone()
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| "/".into())
    };
    if !cwd.starts_with('/') {
        return Err(SpecError::invalid(
            "working_dir",
            format!("{cwd:?} is not an absolute path"),
        ));
    }
    let user = user(input, security, image.user().as_deref().unwrap_or_default())?;
    let mut caps = capabilities(security, input.host.bounding_capabilities())?;
    // Ambient capabilities survive execve for a non-root user; the kernel
    // keeps one only while it is permitted and inheritable, so each is put
    // in every set (as containerd does).
    let mut ambient = Capabilities::new();
    for name in security
        .capabilities
        .iter()
        .flat_map(|c| &c.add_ambient_capabilities)
    {
        ambient.insert(parse_cap(
            name,
            "linux.security_context.capabilities.add_ambient_capabilities",
        )?);
    }
    caps.extend(ambient.iter().copied());
    let oom_score_adj = input
        .config
        .linux
        .as_ref()
        .and_then(|l| l.resources.as_ref())
        .map(|r| r.oom_score_adj)
        .unwrap_or(0);

    let mut builder = ProcessBuilder::default()
        .terminal(input.config.tty)
        .args(args)
        .env(env)
        .cwd(cwd)
        .user(user)
        .capabilities(
            LinuxCapabilitiesBuilder::default()
                .bounding(caps.clone())
                .effective(caps.clone())
                .permitted(caps)
                .inheritable(ambient.clone())
                .ambient(ambient)
                .build()?,
        )
        .no_new_privileges(security.no_new_privs);
    if oom_score_adj != 0 {
        let mut adj = i32::try_from(oom_score_adj)
            .map_err(|_| SpecError::invalid("linux.resources.oom_score_adj", "out of range"))?;
        // Without CAP_SYS_RESOURCE the kernel refuses a value below criad's
        // own (kubelet asks -997 for Guaranteed pods): clamp, as containerd
        // does with restrict_oom_score_adj, rather than fail every such pod.
        if let Some(min) = input.host.min_oom_score_adj().filter(|m| adj < *m) {
            tracing::debug!(
                container = input.id,
                asked = adj,
                given = min,
                "oom_score_adj clamped"
            );
            adj = min;
        }
        builder = builder.oom_score_adj(adj);
    }
    Ok(builder.build()?)
}

/// The process args as kubelet documents them: `command` replaces the
/// image's Entrypoint and drops its Cmd; `args` alone replaces Cmd.
pub(crate) fn args(
    command: &[String],
    args: &[String],
    entrypoint: &[String],
    cmd: &[String],
) -> Result<Vec<String>, SpecError> {
    let out: Vec<String> = if !command.is_empty() {
        command.iter().chain(args).cloned().collect()
    } else if !args.is_empty() {
        entrypoint.iter().chain(args).cloned().collect()
    } else {
        entrypoint.iter().chain(cmd).cloned().collect()
    };
    if out.is_empty() {
        return Err(SpecError::invalid(
            "command",
            "no command given and the image has no Entrypoint or Cmd",
        ));
    }
    Ok(out)
}

/// Image env, then runtime defaults, then kubelet's envs; a later value of a
/// key replaces the earlier one in place. PATH is added if nobody set it.
pub(crate) fn merge_env(
    image: &[String],
    defaults: &[(String, String)],
    cri: &[(String, String)],
) -> Vec<String> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut set = |key: &str, value: &str| {
        if let Some(slot) = out.iter_mut().find(|(k, _)| k == key) {
            slot.1 = value.to_string();
        } else {
            out.push((key.to_string(), value.to_string()));
        }
    };
    for entry in image {
        let (k, v) = entry.split_once('=').unwrap_or((entry.as_str(), ""));
        set(k, v);
    }
    for (k, v) in defaults.iter().chain(cri) {
        set(k, v);
    }
    let mut env: Vec<String> = out.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.to_string());
    }
    env
}

/// uid/gid: `run_as_user`/`run_as_username` over the image's `User`
/// (`uid`, `uid:gid`, `name`, `name:group`); `run_as_group` over the gid.
fn user(
    input: &SpecInput<'_>,
    security: &LinuxContainerSecurityContext,
    image_user: &str,
) -> Result<oci_spec::runtime::User, SpecError> {
    let (image_u, image_g) = match image_user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (image_user, None),
    };
    let passwd = || {
        input
            .host
            .image_file(input.rootfs, "etc/passwd")
            .unwrap_or_default()
    };
    let group = || {
        input
            .host
            .image_file(input.rootfs, "etc/group")
            .unwrap_or_default()
    };

    if security.run_as_group.is_some()
        && security.run_as_user.is_none()
        && security.run_as_username.is_empty()
    {
        return Err(SpecError::invalid(
            "linux.security_context.run_as_group",
            "set without run_as_user or run_as_username",
        ));
    }
    let (uid, user_gid) = if let Some(v) = &security.run_as_user {
        let uid = u32::try_from(v.value).map_err(|_| {
            SpecError::invalid("linux.security_context.run_as_user", "out of range")
        })?;
        (uid, lookup_user_gid(&passwd(), uid))
    } else if !security.run_as_username.is_empty() {
        let (uid, gid) = resolve_user(&passwd(), &security.run_as_username).ok_or_else(|| {
            SpecError::invalid(
                "linux.security_context.run_as_username",
                format!("user {:?} not found in the image", security.run_as_username),
            )
        })?;
        (uid, gid)
    } else if image_u.is_empty() {
        (0, Some(0))
    } else {
        let (uid, gid) = resolve_user(&passwd(), image_u).ok_or_else(|| {
            SpecError::invalid(
                "image config User",
                format!("user {image_u:?} not found in the image"),
            )
        })?;
        (uid, gid)
    };
    let gid = if let Some(v) = &security.run_as_group {
        u32::try_from(v.value).map_err(|_| {
            SpecError::invalid("linux.security_context.run_as_group", "out of range")
        })?
    } else if let (Some(g), None, true) = (
        image_g,
        &security.run_as_user,
        security.run_as_username.is_empty(),
    ) {
        // The image's group goes with the image's user only; a user named by
        // kubelet gets its passwd group, as in containerd.
        resolve_group(&group(), g).ok_or_else(|| {
            SpecError::invalid(
                "image config User",
                format!("group {g:?} not found in the image"),
            )
        })?
    } else {
        user_gid.unwrap_or(0)
    };
    // The user's groups in the image's /etc/group come first, as the user
    // would have them on a login (policy Merge, the default; Strict leaves
    // them out); kubelet's supplemental groups follow.
    let strict =
        security.supplemental_groups_policy() == cria_proto::v1::SupplementalGroupsPolicy::Strict;
    let mut additional: Vec<u32> = if strict {
        Vec::new()
    } else {
        name_of_uid(&passwd(), uid)
            .map(|name| groups_of(&group(), &name))
            .unwrap_or_default()
            .into_iter()
            .filter(|g| *g != gid)
            .collect()
    };
    for g in &security.supplemental_groups {
        additional.push(u32::try_from(*g).map_err(|_| {
            SpecError::invalid("linux.security_context.supplemental_groups", "out of range")
        })?);
    }
    Ok(UserBuilder::default()
        .uid(uid)
        .gid(gid)
        .additional_gids(additional)
        .build()?)
}

/// The user name of `uid` in passwd text.
fn name_of_uid(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 3 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[0].to_string())
    })
}

/// The gids of the groups in group text that list `user` as a member.
pub(crate) fn groups_of(group: &str, user: &str) -> Vec<u32> {
    let mut gids = Vec::new();
    for line in group.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() >= 4 && f[3].split(',').any(|m| m.trim() == user) {
            if let Ok(gid) = f[2].parse::<u32>() {
                if !gids.contains(&gid) {
                    gids.push(gid);
                }
            }
        }
    }
    gids
}

/// A numeric uid, or a name looked up in passwd text; with its primary gid.
pub(crate) fn resolve_user(passwd: &str, user: &str) -> Option<(u32, Option<u32>)> {
    if let Ok(uid) = user.parse::<u32>() {
        return Some((uid, lookup_user_gid(passwd, uid)));
    }
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 4 && f[0] == user).then(|| Some((f[2].parse().ok()?, f[3].parse().ok())))?
    })
}

/// The primary gid of `uid` in passwd text.
fn lookup_user_gid(passwd: &str, uid: u32) -> Option<u32> {
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 4 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[3].parse().ok())?
    })
}

/// A numeric gid, or a group name looked up in group text.
pub(crate) fn resolve_group(group: &str, name: &str) -> Option<u32> {
    if let Ok(gid) = name.parse::<u32>() {
        return Some(gid);
    }
    group.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 3 && f[0] == name).then(|| f[2].parse().ok())?
    })
}

fn parse_cap(name: &str, field: &str) -> Result<Capability, SpecError> {
    serde_json::from_value(serde_json::Value::String(name.to_string()))
        .map_err(|_| SpecError::invalid(field, format!("unknown capability {name:?}")))
}

fn is_all(name: &str) -> bool {
    name.eq_ignore_ascii_case("ALL")
}

/// containerd's defaults, with `drop` (then `add`) applied; `ALL` works in both.
pub(crate) fn capabilities(
    security: &LinuxContainerSecurityContext,
    bounding: u64,
) -> Result<Capabilities, SpecError> {
    if security.privileged {
        return all_capabilities(bounding);
    }
    let mut caps = Capabilities::new();
    for name in DEFAULT_CAPABILITIES {
        caps.insert(parse_cap(name, "default capabilities")?);
    }
    let Some(cri) = &security.capabilities else {
        return Ok(caps);
    };
    const ADD: &str = "linux.security_context.capabilities.add_capabilities";
    const DROP: &str = "linux.security_context.capabilities.drop_capabilities";
    for name in &cri.drop_capabilities {
        if is_all(name) {
            caps.clear();
        } else {
            caps.remove(&parse_cap(name, DROP)?);
        }
    }
    for name in &cri.add_capabilities {
        if is_all(name) {
            caps.extend(all_capabilities(bounding)?);
        } else {
            caps.insert(parse_cap(name, ADD)?);
        }
    }
    Ok(caps)
}
