//! Issue 6: security contexts checked by `cria-inside` (tests/inside/main.rs),
//! a static binary in the `inside` image that reports as JSON, from inside
//! the container, what it is and what the kernel lets it do.

use std::time::Duration;

use cria_proto::v1;
use cria_tests::client::{image_spec, pull};
use cria_tests::expect::ok;
use cria_tests::fixtures::Fixture;
use cria_tests::pod::{log_path, parse_log, remove_pod, wait_state, PodEnv, EXITED};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);
const EPERM: i64 = -1;
const EACCES: i64 = -13;
const EROFS: i64 = -30;
const ENOENT: i64 = -2;
const ENOSYS: i64 = -38;
/// containerd's default capability set (CHOWN, DAC_OVERRIDE, FOWNER, FSETID,
/// KILL, SETGID, SETUID, SETPCAP, NET_BIND_SERVICE, NET_RAW, SYS_CHROOT,
/// MKNOD, AUDIT_WRITE, SETFCAP).
const DEFAULT_CAPS: &str = "00000000a80425fb";
/// CAP_NET_BIND_SERVICE alone (bit 10).
const NET_BIND: &str = "0000000000000400";
const NO_CAPS: &str = "0000000000000000";

/// PodEnv with the `inside` image pulled; returns its name.
async fn inside_env() -> (PodEnv, String) {
    let env = PodEnv::start().await.expect("env");
    Fixture::get("inside")
        .expect("inside fixture")
        .push(&env.registry, "latest", "cria/inside:latest", &[])
        .expect("push inside");
    let image = format!("{}/cria/inside:latest", env.registry.host());
    let mut images = env.criad.images().await.expect("image client");
    pull(&mut images, &image, None).await.expect("pull inside");
    (env, image)
}

/// Runs `/cria-inside` with `sc` in `pod` to its exit and returns its report.
async fn report(
    env: &PodEnv,
    image: &str,
    pod_id: &str,
    pod: &v1::PodSandboxConfig,
    name: &str,
    sc: v1::LinuxContainerSecurityContext,
) -> Value {
    let mut rt = env.rt().await.expect("client");
    let mut cfg = env.container_config(name, &["/cria-inside"]);
    cfg.image = Some(image_spec(image));
    cfg.linux = Some(v1::LinuxContainerConfig {
        security_context: Some(sc),
        ..Default::default()
    });
    let id = ok(
        env.create_start(&mut rt, pod_id, pod, &cfg).await,
        &env.criad,
    );
    let st = wait_state(&mut rt, &id, EXITED, WAIT).await.expect("exits");
    let content = std::fs::read_to_string(log_path(pod, &cfg)).expect("container log");
    let lines = parse_log(&content).expect("CRI log format");
    // The report is one stdout line, possibly split into partial (P) records.
    let mut json = String::new();
    for l in lines.iter().filter(|l| l.stream == "stdout") {
        json.push_str(&l.text);
    }
    assert_eq!(st.exit_code, 0, "{name}: cria-inside failed: {content}");
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("{name}: report {json:?}: {e}"))
}

fn int(v: &Value, key: &str) -> i64 {
    v[key]
        .as_i64()
        .unwrap_or_else(|| panic!("no integer {key} in {v}"))
}

/// moby's archMap covers i386 and x32 on x86_64: the same calls are allowed
/// and refused there as on the native ABI (`confined` under RuntimeDefault,
/// `unconfined` without seccomp), and neither ABI is killed.
#[cfg(target_arch = "x86_64")]
fn other_abis_follow_the_policy(confined: &Value, unconfined: &Value) {
    let s = confined;
    assert_eq!(int(s, "i386_getpid"), int(s, "pid"), "i386 getpid: {s}");
    assert_eq!(int(s, "i386_personality_query"), 0, "{s}");
    for k in ["i386_keyctl", "i386_personality_bsd", "x32_keyctl"] {
        assert_eq!(int(s, k), EPERM, "RuntimeDefault denies {k}: {s}");
    }
    // Allowed by the filter; the kernel may lack the x32 ABI.
    assert!(
        [int(s, "pid"), ENOSYS].contains(&int(s, "x32_getpid")),
        "x32 getpid passes the filter: {s}"
    );
    let un = unconfined;
    assert_eq!(int(un, "i386_getpid"), int(un, "pid"), "{un}");
    assert_eq!(int(un, "i386_keyctl"), int(un, "keyctl"), "{un}");
    assert_eq!(int(un, "i386_personality_bsd"), 0, "{un}");
    assert!(
        [int(un, "keyctl"), ENOSYS].contains(&int(un, "x32_keyctl")),
        "{un}"
    );
}

#[cfg(not(target_arch = "x86_64"))]
fn other_abis_follow_the_policy(_: &Value, _: &Value) {}

fn masked(v: &Value, path: &str) -> i64 {
    v["masked"][path]
        .as_i64()
        .unwrap_or_else(|| panic!("no masked.{path} in {v}"))
}

fn caps(sc: &mut v1::LinuxContainerSecurityContext, drop: &[&str], add: &[&str]) {
    sc.capabilities = Some(v1::Capability {
        drop_capabilities: drop.iter().map(|s| s.to_string()).collect(),
        add_capabilities: add.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    });
}

fn seccomp(t: v1::security_profile::ProfileType) -> Option<v1::SecurityProfile> {
    Some(v1::SecurityProfile {
        profile_type: t as i32,
        localhost_ref: String::new(),
    })
}

/// The capability line `key` of this (test) process's /proc/self/status.
fn host_cap(key: &str) -> String {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().to_owned())
        .expect("cap line")
}

#[tokio::test]
async fn container_security_contexts_seen_from_inside() {
    use v1::security_profile::ProfileType;
    let (env, image) = inside_env().await;
    let mut rt = env.rt().await.expect("client");
    let pod = env.pod_config("inside").expect("pod config");
    let pod_id = ok(env.run_pod(&mut rt, &pod).await, &env.criad);
    let base = v1::LinuxContainerSecurityContext::default();

    // Default: root with containerd's capabilities, masked and read-only
    // /proc paths, only stdio open, cwd in the rootfs, mount refused.
    let d = report(&env, &image, &pod_id, &pod, "default", base.clone()).await;
    assert_eq!(
        (int(&d, "uid"), int(&d, "euid"), int(&d, "gid")),
        (0, 0, 0),
        "{d}"
    );
    for k in ["CapPrm", "CapEff", "CapBnd"] {
        assert_eq!(d[k], DEFAULT_CAPS, "default {k}: {d}");
    }
    assert_eq!(
        (d["CapInh"].as_str(), d["CapAmb"].as_str()),
        (Some(NO_CAPS), Some(NO_CAPS))
    );
    assert_eq!(int(&d, "NoNewPrivs"), 0);
    for p in ["/proc/keys", "/proc/timer_list", "/sys/firmware"] {
        assert_eq!(masked(&d, p), 0, "{p} reads as empty: {d}");
    }
    // The host kernel may have no /proc/kcore at all.
    assert!([0, -2].contains(&masked(&d, "/proc/kcore")), "{d}");
    assert_eq!(int(&d, "proc_sys_write"), EROFS, "/proc/sys read-only: {d}");
    // ENOENT on a kernel without CONFIG_MAGIC_SYSRQ.
    assert!([EROFS, -2].contains(&int(&d, "sysrq_write")), "{d}");
    assert_eq!(int(&d, "root_create"), 0, "rootfs writable: {d}");
    assert_eq!(int(&d, "mknod"), 0, "CAP_MKNOD is in the default set: {d}");
    assert_eq!(int(&d, "mount"), EPERM, "{d}");
    let fds: Vec<&String> = d["fds"].as_object().expect("fds").keys().collect();
    assert_eq!(
        fds,
        ["0", "1", "2"],
        "only stdio reaches the container: {d}"
    );
    assert_eq!(d["cwd"], "/", "{d}");

    // Users and groups.
    let mut sc = base.clone();
    sc.run_as_user = Some(v1::Int64Value { value: 1000 });
    sc.run_as_group = Some(v1::Int64Value { value: 1000 });
    sc.supplemental_groups = vec![2000];
    let u = report(&env, &image, &pod_id, &pod, "user", sc).await;
    let ids = ["uid", "euid", "gid", "egid"].map(|k| int(&u, k));
    assert_eq!(ids, [1000; 4], "{u}");
    let groups: Vec<i64> = u["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .filter_map(Value::as_i64)
        .collect();
    assert!(groups.contains(&2000) && !groups.contains(&0), "{u}");
    assert_eq!(
        (u["CapEff"].as_str(), u["CapPrm"].as_str()),
        (Some(NO_CAPS), Some(NO_CAPS))
    );
    assert_eq!(u["CapBnd"], DEFAULT_CAPS, "{u}");
    assert_eq!(int(&u, "root_create"), EACCES, "/ is root's: {u}");

    // Capabilities: drop ALL, add NET_BIND_SERVICE.
    let mut sc = base.clone();
    caps(&mut sc, &["ALL"], &["NET_BIND_SERVICE"]);
    let c = report(&env, &image, &pod_id, &pod, "caps", sc).await;
    for k in ["CapPrm", "CapEff", "CapBnd"] {
        assert_eq!(c[k], NET_BIND, "caps {k}: {c}");
    }
    assert_eq!(int(&c, "mknod"), EPERM, "no CAP_MKNOD: {c}");

    // no_new_privs.
    let n = report(
        &env,
        &image,
        &pod_id,
        &pod,
        "nnp",
        v1::LinuxContainerSecurityContext {
            no_new_privs: true,
            ..base.clone()
        },
    )
    .await;
    assert_eq!(int(&n, "NoNewPrivs"), 1, "{n}");

    // readonly_rootfs.
    let r = report(
        &env,
        &image,
        &pod_id,
        &pod,
        "ro",
        v1::LinuxContainerSecurityContext {
            readonly_rootfs: true,
            ..base.clone()
        },
    )
    .await;
    assert_eq!(int(&r, "root_create"), EROFS, "{r}");
    assert_eq!(int(&r, "mknod"), EROFS, "{r}");

    // seccomp RuntimeDefault versus Unconfined.
    let s = report(
        &env,
        &image,
        &pod_id,
        &pod,
        "seccomp",
        v1::LinuxContainerSecurityContext {
            seccomp: seccomp(ProfileType::RuntimeDefault),
            ..base.clone()
        },
    )
    .await;
    assert_eq!(int(&s, "Seccomp"), 2, "{s}");
    for k in ["unshare_user", "keyctl", "personality_bsd", "mount"] {
        assert_eq!(int(&s, k), EPERM, "RuntimeDefault denies {k}: {s}");
    }
    assert_eq!(int(&s, "personality_query"), 0, "the query is allowed: {s}");
    assert_eq!(int(&s, "fchmodat2"), ENOSYS, "newer than the profile: {s}");
    let un = report(
        &env,
        &image,
        &pod_id,
        &pod,
        "unconfined",
        v1::LinuxContainerSecurityContext {
            seccomp: seccomp(ProfileType::Unconfined),
            ..base.clone()
        },
    )
    .await;
    assert_eq!(int(&un, "Seccomp"), 0, "{un}");
    for k in ["unshare_user", "personality_bsd"] {
        assert_eq!(int(&un, k), 0, "Unconfined allows {k}: {un}");
    }
    assert_eq!(int(&un, "mount"), EPERM, "still no CAP_SYS_ADMIN: {un}");
    assert_eq!(int(&un, "fchmodat2"), ENOENT, "the kernel's answer: {un}");
    other_abis_follow_the_policy(&s, &un);

    // Namespaces: net, IPC and UTS are the pod's (shared by its containers),
    // the PID namespace is the container's own (it is pid 1 there), none is
    // the host's. (Inode numbers of exited containers' namespaces are reused,
    // so per-container ones are not compared between the reports.)
    let host_ns = |n: &str| {
        std::fs::read_link(format!("/proc/self/ns/{n}"))
            .expect("host ns")
            .to_string_lossy()
            .into_owned()
    };
    for n in ["net", "ipc", "uts"] {
        assert_eq!(d["ns"][n], u["ns"][n], "{n} shared in the pod");
        assert_ne!(d["ns"][n], host_ns(n).as_str(), "{n} is not the host's");
    }
    assert_eq!(
        (int(&d, "pid"), int(&u, "pid")),
        (1, 1),
        "own PID namespace"
    );
    for n in ["pid", "mnt"] {
        assert_ne!(d["ns"][n], host_ns(n).as_str(), "{n} is not the host's");
    }
    ok(remove_pod(&mut rt, &pod_id).await, &env.criad);
}

#[tokio::test]
async fn pod_sysctls_and_privileged_pods_seen_from_inside() {
    let (env, image) = inside_env().await;
    let mut rt = env.rt().await.expect("client");
    let base = v1::LinuxContainerSecurityContext::default();

    let mut pod = env.pod_config("sysctls").expect("pod config");
    if let Some(l) = pod.linux.as_mut() {
        l.sysctls = [
            ("net.ipv4.ip_unprivileged_port_start", "123"),
            ("kernel.shmmni", "1234"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    }
    let pod_id = ok(env.run_pod(&mut rt, &pod).await, &env.criad);
    let s = report(&env, &image, &pod_id, &pod, "sysctls", base.clone()).await;
    assert_eq!(s["ip_unprivileged_port_start"], "123", "{s}");
    assert_eq!(s["shmmni"], "1234", "{s}");
    let dev_default = int(&s, "dev_entries");
    ok(remove_pod(&mut rt, &pod_id).await, &env.criad);

    let mut pod = env.pod_config("privileged").expect("pod config");
    if let Some(sc) = pod.linux.as_mut().and_then(|l| l.security_context.as_mut()) {
        sc.privileged = true;
    }
    let pod_id = ok(env.run_pod(&mut rt, &pod).await, &env.criad);
    let p = report(
        &env,
        &image,
        &pod_id,
        &pod,
        "privileged",
        v1::LinuxContainerSecurityContext {
            privileged: true,
            ..base
        },
    )
    .await;
    for k in ["CapPrm", "CapEff", "CapBnd"] {
        assert_eq!(p[k], host_cap("CapBnd").as_str(), "privileged {k}: {p}");
    }
    assert_eq!(int(&p, "Seccomp"), 0, "{p}");
    assert!(masked(&p, "/proc/timer_list") > 0, "unmasked: {p}");
    assert!(masked(&p, "/sys/firmware") > 0, "unmasked: {p}");
    assert_eq!(int(&p, "proc_sys_write"), 0, "/proc/sys writable: {p}");
    assert_eq!(int(&p, "mount"), 0, "{p}");
    assert!(
        int(&p, "dev_entries") > dev_default,
        "host devices: {} vs {dev_default}: {p}",
        int(&p, "dev_entries")
    );
    ok(remove_pod(&mut rt, &pod_id).await, &env.criad);
}

/// A Localhost profile's `archMap` decides which ABIs its rules cover: with
/// x86_64 → x86, x32 the i386 and x32 keyctl get the rule's errno like the
/// native one (without the map they would be killed as a foreign ABI).
#[cfg(target_arch = "x86_64")]
#[tokio::test]
async fn localhost_arch_map_covers_i386_and_x32() {
    use v1::security_profile::ProfileType;
    let (env, image) = inside_env().await;
    let mut rt = env.rt().await.expect("client");
    let pod = env.pod_config("archmap").expect("pod config");
    let pod_id = ok(env.run_pod(&mut rt, &pod).await, &env.criad);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("keyctl-eacces.json");
    std::fs::write(
        &file,
        r#"{"defaultAction":"SCMP_ACT_ALLOW",
            "archMap":[{"architecture":"SCMP_ARCH_X86_64","subArchitectures":["SCMP_ARCH_X86","SCMP_ARCH_X32"]},
                       {"architecture":"SCMP_ARCH_AARCH64","subArchitectures":["SCMP_ARCH_ARM"]}],
            "syscalls":[{"names":["keyctl"],"action":"SCMP_ACT_ERRNO","errnoRet":13}]}"#,
    )
    .expect("write profile");
    let sc = v1::LinuxContainerSecurityContext {
        seccomp: Some(v1::SecurityProfile {
            profile_type: ProfileType::Localhost as i32,
            localhost_ref: file.to_string_lossy().into_owned(),
        }),
        ..Default::default()
    };
    let r = report(&env, &image, &pod_id, &pod, "archmap", sc).await;
    assert_eq!(int(&r, "Seccomp"), 2, "{r}");
    for k in ["keyctl", "i386_keyctl", "x32_keyctl"] {
        assert_eq!(int(&r, k), EACCES, "{k}: {r}");
    }
    assert_eq!(
        int(&r, "i386_getpid"),
        int(&r, "pid"),
        "the rest is allowed: {r}"
    );
    ok(remove_pod(&mut rt, &pod_id).await, &env.criad);
}
