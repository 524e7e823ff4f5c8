//! Issue 6: seccomp (RuntimeDefault, Localhost, Unconfined, deprecated
//! paths), AppArmor/SELinux refusals and pod sysctls, seen from inside
//! containers run through criad's socket.

use std::time::Duration;

use cria_proto::v1;
use cria_tests::expect::{assert_status, ok};
use cria_tests::pod::{remove_pod, sh, wait_state, PodEnv, RUNNING};
use tonic::Code;

const WAIT: Duration = Duration::from_secs(30);

fn profile(t: v1::security_profile::ProfileType, localhost_ref: &str) -> v1::SecurityProfile {
    v1::SecurityProfile {
        profile_type: t as i32,
        localhost_ref: localhost_ref.into(),
    }
}

/// A `sleep` container with this security context.
fn confined(
    env: &PodEnv,
    name: &str,
    sc: v1::LinuxContainerSecurityContext,
) -> v1::ContainerConfig {
    let mut cfg = env.container_config(name, &["sleep", "600"]);
    cfg.linux = Some(v1::LinuxContainerConfig {
        security_context: Some(sc),
        ..Default::default()
    });
    cfg
}

fn seccomp(p: v1::SecurityProfile) -> v1::LinuxContainerSecurityContext {
    v1::LinuxContainerSecurityContext {
        seccomp: Some(p),
        ..Default::default()
    }
}

/// What the checks print: the seccomp mode of pid 1 and of the exec'd
/// shell, then whether a user namespace (needs no capability, so only
/// seccomp can refuse it) and PER_LINUX32 (allowed by the profile) work.
const PROBE: &str = "grep Seccomp: /proc/1/status; grep Seccomp: /proc/self/status; \
    unshare -U true 2>/dev/null && echo userns=ok || echo userns=denied; \
    linux32 true && echo linux32=ok";

#[tokio::test]
async fn runtime_default_confines_init_and_exec_unconfined_does_not() {
    use v1::security_profile::ProfileType;
    let env = PodEnv::start().await.expect("env");
    let mut rt = env.rt().await.expect("client");
    let pod = env.pod_config("seccomp").expect("pod config");
    let pod_id = ok(env.run_pod(&mut rt, &pod).await, &env.criad);
    #[allow(deprecated)]
    let deprecated = v1::LinuxContainerSecurityContext {
        seccomp_profile_path: "runtime/default".into(),
        ..Default::default()
    };
    // With no_new_privs the filter is loaded right before execve; without
    // it (kubelet's default) before setuid, while CAP_SYS_ADMIN is held.
    let nnp = v1::LinuxContainerSecurityContext {
        no_new_privs: true,
        run_as_user: Some(v1::Int64Value { value: 1234 }),
        ..seccomp(profile(ProfileType::RuntimeDefault, ""))
    };
    for (name, sc, mode, userns) in [
        (
            "default",
            seccomp(profile(ProfileType::RuntimeDefault, "")),
            "2",
            "denied",
        ),
        ("deprecated", deprecated, "2", "denied"),
        ("nnp", nnp, "2", "denied"),
        (
            "unconfined",
            seccomp(profile(ProfileType::Unconfined, "")),
            "0",
            "ok",
        ),
    ] {
        let id = ok(
            env.create_start(&mut rt, &pod_id, &pod, &confined(&env, name, sc))
                .await,
            &env.criad,
        );
        wait_state(&mut rt, &id, RUNNING, WAIT).await.expect("runs");
        let out = sh(&mut rt, &id, PROBE).await.expect("probe");
        let want = format!("Seccomp:\t{mode}\nSeccomp:\t{mode}\nuserns={userns}\nlinux32=ok\n");
        assert_eq!(out, want, "{name}");
    }
    ok(remove_pod(&mut rt, &pod_id).await, &env.criad);
}

#[tokio::test]
async fn localhost_profiles_apply_and_bad_ones_are_refused() {
    use v1::security_profile::ProfileType;
    let env = PodEnv::start().await.expect("env");
    let mut rt = env.rt().await.expect("client");
    let pod = env.pod_config("localhost").expect("pod config");
    let pod_id = ok(env.run_pod(&mut rt, &pod).await, &env.criad);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("deny-mkdir.json");
    // mkdir → EACCES, rmdir (the old single-name form) → default errno.
    std::fs::write(
        &file,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","defaultErrnoRet":1,"architectures":["SCMP_ARCH_X86_64"],
            "syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":13},
                        {"name":"rmdir","action":"SCMP_ACT_ERRNO"}]}"#,
    )
    .expect("write profile");
    let path = file.to_string_lossy().into_owned();
    let id = ok(
        env.create_start(
            &mut rt,
            &pod_id,
            &pod,
            &confined(
                &env,
                "local",
                seccomp(profile(ProfileType::Localhost, &path)),
            ),
        )
        .await,
        &env.criad,
    );
    wait_state(&mut rt, &id, RUNNING, WAIT).await.expect("runs");
    let out = sh(
        &mut rt,
        &id,
        "mkdir /tmp/x 2>&1; rmdir /tmp 2>&1; touch /tmp/y && echo touch=ok",
    )
    .await
    .expect("probe");
    assert!(
        out.contains("Permission denied"),
        "mkdir gets EACCES: {out}"
    );
    assert!(
        out.contains("Operation not permitted"),
        "rmdir gets EPERM: {out}"
    );
    assert!(out.contains("touch=ok"), "the rest is allowed: {out}");

    let missing = dir.path().join("missing.json");
    let malformed = dir.path().join("malformed.json");
    std::fs::write(
        &malformed,
        "{\"defaultAction\": \"SCMP_ACT_ALLOW\", \"syscalls\": [",
    )
    .expect("write");
    #[allow(deprecated)]
    let bogus_path = v1::LinuxContainerSecurityContext {
        seccomp_profile_path: "somewhere/else".into(),
        ..Default::default()
    };
    let missing_s = missing.to_string_lossy().into_owned();
    let malformed_s = malformed.to_string_lossy().into_owned();
    for (name, sc, needles) in [
        (
            "missing",
            seccomp(profile(ProfileType::Localhost, &missing_s)),
            vec![missing_s.as_str(), "no such file"],
        ),
        (
            "malformed",
            seccomp(profile(ProfileType::Localhost, &malformed_s)),
            vec![malformed_s.as_str(), "malformed"],
        ),
        (
            "bogus",
            bogus_path,
            vec!["seccomp_profile_path", "somewhere/else"],
        ),
    ] {
        let err = env
            .create(&mut rt, &pod_id, &pod, &confined(&env, name, sc))
            .await
            .expect_err(name);
        assert_status(&err, &[Code::InvalidArgument], &needles);
    }
    ok(remove_pod(&mut rt, &pod_id).await, &env.criad);
}

#[tokio::test]
async fn apparmor_and_selinux_profiles_are_refused_unconfined_runs() {
    use v1::security_profile::ProfileType;
    let env = PodEnv::start().await.expect("env");
    let mut rt = env.rt().await.expect("client");
    let pod = env.pod_config("lsm").expect("pod config");
    let pod_id = ok(env.run_pod(&mut rt, &pod).await, &env.criad);
    let apparmor = v1::LinuxContainerSecurityContext {
        apparmor: Some(profile(ProfileType::Localhost, "k8s-deny-write")),
        ..Default::default()
    };
    let err = env
        .create(&mut rt, &pod_id, &pod, &confined(&env, "aa", apparmor))
        .await
        .expect_err("apparmor");
    assert_status(
        &err,
        &[Code::InvalidArgument],
        &["AppArmor", "k8s-deny-write"],
    );
    let selinux = v1::LinuxContainerSecurityContext {
        selinux_options: Some(v1::SeLinuxOption {
            r#type: "container_t".into(),
            level: "s0:c1,c2".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let err = env
        .create(&mut rt, &pod_id, &pod, &confined(&env, "se", selinux))
        .await
        .expect_err("selinux");
    assert_status(&err, &[Code::InvalidArgument], &["SELinux", "container_t"]);
    let unconfined = v1::LinuxContainerSecurityContext {
        apparmor: Some(profile(ProfileType::Unconfined, "")),
        selinux_options: Some(v1::SeLinuxOption::default()),
        ..Default::default()
    };
    let id = ok(
        env.create_start(&mut rt, &pod_id, &pod, &confined(&env, "plain", unconfined))
            .await,
        &env.criad,
    );
    wait_state(&mut rt, &id, RUNNING, WAIT).await.expect("runs");
    ok(remove_pod(&mut rt, &pod_id).await, &env.criad);
}

#[tokio::test]
async fn namespaced_sysctls_apply_in_the_pod_others_are_refused() {
    let env = PodEnv::start().await.expect("env");
    let mut rt = env.rt().await.expect("client");
    let with_sysctls = |name: &str, kv: &[(&str, &str)]| {
        let mut pod = env.pod_config(name).expect("pod config");
        if let Some(l) = pod.linux.as_mut() {
            l.sysctls = kv
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        }
        pod
    };
    let pod = with_sysctls(
        "sysctl",
        &[
            ("net.ipv4.ip_unprivileged_port_start", "123"),
            ("kernel.shmmni", "1234"),
        ],
    );
    let (pod_id, id) = ok(
        env.run_pod_and_start(&mut rt, &pod, &env.container_config("c", &["sleep", "600"]))
            .await,
        &env.criad,
    );
    wait_state(&mut rt, &id, RUNNING, WAIT).await.expect("runs");
    let out = sh(
        &mut rt,
        &id,
        "cat /proc/sys/net/ipv4/ip_unprivileged_port_start /proc/sys/kernel/shmmni",
    )
    .await
    .expect("read sysctls");
    assert_eq!(out, "123\n1234\n");
    let host = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .expect("host sysctl");
    assert_ne!(host.trim(), "123", "the host's value is untouched");
    ok(remove_pod(&mut rt, &pod_id).await, &env.criad);

    let pod = with_sysctls("badsysctl", &[("kernel.panic", "1")]);
    // The sandbox may refuse it already; else CreateContainer does.
    match env.run_pod(&mut rt, &pod).await {
        Err(err) => assert_status(&err, &[Code::InvalidArgument], &["kernel.panic"]),
        Ok(pod_id) => {
            let err = env
                .create(
                    &mut rt,
                    &pod_id,
                    &pod,
                    &env.container_config("c", &["true"]),
                )
                .await
                .expect_err("kernel.panic refused");
            assert_status(&err, &[Code::InvalidArgument], &["kernel.panic"]);
            ok(remove_pod(&mut rt, &pod_id).await, &env.criad);
        }
    }
}
