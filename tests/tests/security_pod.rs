//! Issue 6, pod level: invalid sysctls refused by RunPodSandbox itself
//! (nothing made), and the pause a shared PID namespace needs showing its
//! pod no host path as PID 1.

mod network_common;

use std::time::Duration;

use cria_proto::v1;
use cria_tests::expect::{assert_status, ok};
use cria_tests::host::cgroup_dirs;
use cria_tests::pod::{remove_pod, sh, wait_state, RUNNING};
use cria_tests::store::entries;
use network_common::NetEnv;
use tonic::Code;

const WAIT: Duration = Duration::from_secs(30);

/// The pod's namespace options, for editing.
fn ns_options(pod: &mut v1::PodSandboxConfig) -> &mut v1::NamespaceOption {
    pod.linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .and_then(|s| s.namespace_options.as_mut())
        .expect("pod_config sets namespace options")
}

#[tokio::test]
async fn invalid_sysctls_are_refused_at_run_pod_sandbox_leaving_nothing() {
    let net = NetEnv::start().await.expect("env");
    let env = &net.env;
    let mut rt = env.rt().await.expect("client");
    let pod = net.pod("sysctls").expect("pod config");
    let cgroup = pod
        .linux
        .as_ref()
        .map(|l| l.cgroup_parent.clone())
        .unwrap_or_default();
    for (sysctl, host_network) in [
        ("kernel.panic", false),
        ("vm.swappiness", false),
        ("net.ipv4.ip_forward", true),
    ] {
        let mut bad = pod.clone();
        if let Some(linux) = bad.linux.as_mut() {
            linux.sysctls = [(sysctl.to_owned(), "1".to_owned())].into();
        }
        if host_network {
            ns_options(&mut bad).network = v1::NamespaceMode::Node as i32;
        }
        let err = env.run_pod(&mut rt, &bad).await.expect_err(sysctl);
        assert_status(&err, &[Code::InvalidArgument], &[sysctl]);
        net.assert_no_leaks();
        assert!(cgroup_dirs(&cgroup).is_empty(), "{sysctl}: pod cgroup made");
        for dir in [
            env.criad.root().join("pods"),
            env.criad.root().join("cni-cache"),
            env.criad.state().join("pods"),
        ] {
            assert!(
                entries(&dir).is_empty(),
                "{sysctl}: {dir:?} holds {:?}",
                entries(&dir)
            );
        }
    }
    // The refused attempts reserved nothing: the same pod (name, uid,
    // attempt) runs with a namespaced sysctl, which its container sees.
    let mut good = pod.clone();
    if let Some(linux) = good.linux.as_mut() {
        linux.sysctls = [(
            "net.ipv4.ip_unprivileged_port_start".to_owned(),
            "99".to_owned(),
        )]
        .into();
    }
    let (pod_id, id) = ok(
        env.run_pod_and_start(
            &mut rt,
            &good,
            &env.container_config("c", &["sleep", "600"]),
        )
        .await,
        &env.criad,
    );
    wait_state(&mut rt, &id, RUNNING, WAIT).await.expect("runs");
    let out = sh(
        &mut rt,
        &id,
        "cat /proc/sys/net/ipv4/ip_unprivileged_port_start",
    )
    .await
    .expect("sysctl");
    assert_eq!(out, "99\n");
    ok(remove_pod(&mut rt, &pod_id).await, &env.criad);
    net.assert_no_leaks();
}

#[tokio::test]
async fn the_pause_shows_no_host_path_to_the_pod() {
    let net = NetEnv::start().await.expect("env");
    let env = &net.env;
    let mut rt = env.rt().await.expect("client");
    let mut pod = net.pod("pause").expect("pod config");
    // shareProcessNamespace: the pause is every container's PID 1.
    ns_options(&mut pod).pid = v1::NamespaceMode::Pod as i32;
    let (pod_id, id) = ok(
        env.run_pod_and_start(&mut rt, &pod, &env.container_config("c", &["sleep", "600"]))
            .await,
        &env.criad,
    );
    wait_state(&mut rt, &id, RUNNING, WAIT).await.expect("runs");
    let out = sh(
        &mut rt,
        &id,
        "tr '\\0' ' ' < /proc/1/cmdline; echo; \
         echo environ=$(wc -c < /proc/1/environ 2>/dev/null || echo refused); \
         ls /proc/1/root/ >/dev/null 2>&1 && echo root=open || echo root=refused; \
         readlink /proc/1/exe >/dev/null 2>&1 && echo exe=open || echo exe=refused; \
         readlink /proc/1/cwd >/dev/null 2>&1 && echo cwd=open || echo cwd=refused; \
         for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done",
    )
    .await
    .expect("probe");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("cria-pause sandbox "), "PID 1: {out}");
    // Non-dumpable: its environment and the links to the host's root,
    // binary and cwd need CAP_SYS_PTRACE.
    for want in [
        "environ=refused",
        "root=refused",
        "exe=refused",
        "cwd=refused",
    ] {
        assert_eq!(lines.next(), Some(want), "{out}");
    }
    let cmdlines: Vec<&str> = lines.collect();
    assert!(
        cmdlines.iter().any(|c| c.starts_with("sleep 600")),
        "the container shares the pause's namespace: {out}"
    );
    let host_dir = env.criad.dir().to_string_lossy().into_owned();
    assert!(
        !out.contains(&host_dir) && !out.contains("cria-monitor") && !out.contains("/target/"),
        "a host path is visible: {out}"
    );
    // Even a container allowed to trace finds nothing behind the pause: an
    // empty root, no capabilities to take over, no_new_privs.
    let mut tracer = env.container_config("tracer", &["sleep", "600"]);
    tracer.linux = Some(v1::LinuxContainerConfig {
        security_context: Some(v1::LinuxContainerSecurityContext {
            capabilities: Some(v1::Capability {
                add_capabilities: vec!["SYS_PTRACE".into()],
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let tracer = ok(
        env.create_start(&mut rt, &pod_id, &pod, &tracer).await,
        &env.criad,
    );
    wait_state(&mut rt, &tracer, RUNNING, WAIT)
        .await
        .expect("tracer runs");
    let out = sh(
        &mut rt,
        &tracer,
        "echo root=$(ls -A /proc/1/root/ | wc -l) cwd=$(readlink /proc/1/cwd); \
         grep -E '^(CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs):' /proc/1/status | tr -s '\t' ' '",
    )
    .await
    .expect("tracer probe");
    assert_eq!(
        out,
        "root=0 cwd=/\nCapPrm: 0000000000000000\nCapEff: 0000000000000000\n\
         CapBnd: 0000000000000000\nCapAmb: 0000000000000000\nNoNewPrivs: 1\n",
        "the pause as a tracing container sees it"
    );
    ok(remove_pod(&mut rt, &pod_id).await, &env.criad);
    net.assert_no_leaks();
}
