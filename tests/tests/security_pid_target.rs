//! Issue 6: `namespace_options.pid = TARGET` — a container joins the PID
//! namespace of another running container of its pod (how kubelet runs
//! ephemeral debug containers), and bad targets are refused by id.

use std::time::Duration;

use cria_proto::v1;
use cria_tests::expect::{assert_status, ok};
use cria_tests::pod::{remove_pod, sh, wait_state, PodEnv, EXITED, RUNNING};
use tonic::Code;

const WAIT: Duration = Duration::from_secs(30);

/// A container config running `argv` with the given PID namespace mode.
fn with_pid(
    env: &PodEnv,
    name: &str,
    argv: &[&str],
    pid: v1::NamespaceMode,
    target_id: &str,
) -> v1::ContainerConfig {
    let mut cfg = env.container_config(name, argv);
    cfg.linux = Some(v1::LinuxContainerConfig {
        security_context: Some(v1::LinuxContainerSecurityContext {
            namespace_options: Some(v1::NamespaceOption {
                network: v1::NamespaceMode::Pod as i32,
                ipc: v1::NamespaceMode::Pod as i32,
                pid: pid as i32,
                target_id: target_id.to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    cfg
}

/// What a container sees: its PID namespace and every command line in it.
async fn view(rt: &mut cria_tests::RuntimeClient, id: &str) -> (String, String) {
    let ns = sh(rt, id, "readlink /proc/self/ns/pid")
        .await
        .expect("pid ns");
    let cmdlines = sh(
        rt,
        id,
        "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done",
    )
    .await
    .expect("cmdlines");
    (ns.trim().to_owned(), cmdlines)
}

#[tokio::test]
async fn a_target_container_shares_its_pid_namespace_with_no_one_else() {
    let env = PodEnv::start().await.expect("env");
    let mut rt = env.rt().await.expect("client");
    // kubelet's default pod: a PID namespace per container.
    let pod = env.pod_config("target").expect("pod config");
    let pod_id = ok(env.run_pod(&mut rt, &pod).await, &env.criad);
    let a_cfg = with_pid(
        &env,
        "a",
        &["sleep", "4711"],
        v1::NamespaceMode::Container,
        "",
    );
    let a = ok(
        env.create_start(&mut rt, &pod_id, &pod, &a_cfg).await,
        &env.criad,
    );
    wait_state(&mut rt, &a, RUNNING, WAIT)
        .await
        .expect("a runs");
    let debug_cfg = with_pid(
        &env,
        "debug",
        &["sleep", "4712"],
        v1::NamespaceMode::Target,
        &a,
    );
    let debug = ok(
        env.create_start(&mut rt, &pod_id, &pod, &debug_cfg).await,
        &env.criad,
    );
    wait_state(&mut rt, &debug, RUNNING, WAIT)
        .await
        .expect("debug runs");
    let other_cfg = with_pid(
        &env,
        "other",
        &["sleep", "4713"],
        v1::NamespaceMode::Pod,
        "",
    );
    let other = ok(
        env.create_start(&mut rt, &pod_id, &pod, &other_cfg).await,
        &env.criad,
    );
    wait_state(&mut rt, &other, RUNNING, WAIT)
        .await
        .expect("other runs");

    let (a_ns, a_sees) = view(&mut rt, &a).await;
    let (debug_ns, debug_sees) = view(&mut rt, &debug).await;
    let (other_ns, other_sees) = view(&mut rt, &other).await;
    assert_eq!(
        debug_ns, a_ns,
        "the debug container is in a's PID namespace"
    );
    assert_ne!(other_ns, a_ns, "the pod's other container is not");
    assert!(
        debug_sees.contains("sleep 4711") && debug_sees.contains("sleep 4712"),
        "debug sees a's process and its own: {debug_sees}"
    );
    assert!(
        a_sees.starts_with("sleep 4711") && a_sees.contains("sleep 4712"),
        "a is PID 1 and sees the debug container: {a_sees}"
    );
    assert!(
        !other_sees.contains("4711") && !other_sees.contains("4712"),
        "the other container sees neither: {other_sees}"
    );
    ok(remove_pod(&mut rt, &pod_id).await, &env.criad);
}

#[tokio::test]
async fn unknown_stopped_and_foreign_targets_are_refused_by_id() {
    let env = PodEnv::start().await.expect("env");
    let mut rt = env.rt().await.expect("client");
    let pod = env.pod_config("badtarget").expect("pod config");
    let pod_id = ok(env.run_pod(&mut rt, &pod).await, &env.criad);
    let target = |name: &str, id: &str| {
        with_pid(&env, name, &["sleep", "600"], v1::NamespaceMode::Target, id)
    };

    let unknown = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let err = env
        .create(&mut rt, &pod_id, &pod, &target("t1", unknown))
        .await
        .expect_err("unknown target");
    assert_status(&err, &[Code::NotFound], &[unknown, "target_id"]);

    let err = env
        .create(&mut rt, &pod_id, &pod, &target("t2", ""))
        .await
        .expect_err("no target");
    assert_status(&err, &[Code::InvalidArgument], &["target_id"]);

    let done = ok(
        env.create_start(
            &mut rt,
            &pod_id,
            &pod,
            &env.container_config("done", &["true"]),
        )
        .await,
        &env.criad,
    );
    wait_state(&mut rt, &done, EXITED, WAIT)
        .await
        .expect("done exits");
    let err = env
        .create(&mut rt, &pod_id, &pod, &target("t3", &done))
        .await
        .expect_err("stopped target");
    assert_status(&err, &[Code::FailedPrecondition], &[&done, "not running"]);

    let other_pod = env.pod_config("elsewhere").expect("pod config");
    let other_pod_id = ok(env.run_pod(&mut rt, &other_pod).await, &env.criad);
    let foreign = ok(
        env.create_start(
            &mut rt,
            &other_pod_id,
            &other_pod,
            &env.container_config("foreign", &["sleep", "600"]),
        )
        .await,
        &env.criad,
    );
    wait_state(&mut rt, &foreign, RUNNING, WAIT)
        .await
        .expect("foreign runs");
    let err = env
        .create(&mut rt, &pod_id, &pod, &target("t4", &foreign))
        .await
        .expect_err("target in another pod");
    assert_status(&err, &[Code::InvalidArgument], &[&foreign, &other_pod_id]);

    // Nothing was created by the refused requests.
    let list = ok(cria_tests::pod::list_containers(&mut rt).await, &env.criad);
    let names: Vec<String> = list
        .iter()
        .filter_map(|c| c.metadata.as_ref().map(|m| m.name.clone()))
        .collect();
    assert!(
        names.iter().all(|n| !n.starts_with('t')),
        "refused containers left records: {names:?}"
    );
    ok(remove_pod(&mut rt, &other_pod_id).await, &env.criad);
    ok(remove_pod(&mut rt, &pod_id).await, &env.criad);
}
