//! Issue 3: containers outlive criad — SIGKILL criad while containers run,
//! restart it, and it lists, stops and reports them; zombies are reaped.

use std::fs;
use std::time::Duration;

use cria_proto::v1;
use cria_tests::expect::ok;
use cria_tests::host::{cgroup_dirs, cgroup_pids, pid_alive, pid_state, wait_until};
use cria_tests::pod::{
    list_containers, log_path, remove_pod, sh, status, wait_state, PodEnv, EXITED, RUNNING,
};

const WAIT: Duration = Duration::from_secs(30);

/// Live (non-zombie) pids in a pod's cgroup tree.
fn live_pids(cgroup_parent: &str) -> Vec<i32> {
    cgroup_dirs(cgroup_parent)
        .iter()
        .flat_map(|d| cgroup_pids(d))
        .filter(|p| pid_state(*p).is_some_and(|s| s != 'Z'))
        .collect::<std::collections::BTreeSet<i32>>()
        .into_iter()
        .collect()
}

/// The pids of the pod whose command line contains `needle`.
fn pod_pids_running(cgroup_parent: &str, needle: &str) -> Vec<i32> {
    live_pids(cgroup_parent)
        .into_iter()
        .filter(|p| {
            fs::read(format!("/proc/{p}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(needle))
                .unwrap_or(false)
        })
        .collect()
}

#[tokio::test]
async fn containers_survive_criad_sigkill_and_a_new_criad_manages_them() {
    let mut env = PodEnv::start().await.expect("env");
    let mut rt = env.rt().await.expect("client");
    let pod = env.pod_config("survivor").expect("pod config");
    let cg = pod
        .linux
        .as_ref()
        .map(|l| l.cgroup_parent.clone())
        .unwrap_or_default();
    let pod_id = ok(env.run_pod(&mut rt, &pod).await, &env.criad);
    let ticker = env.container_config(
        "ticker",
        &[
            "sh",
            "-c",
            "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done",
        ],
    );
    let t = ok(
        env.create_start(&mut rt, &pod_id, &pod, &ticker).await,
        &env.criad,
    );
    let quitter = env.container_config("quitter", &["sh", "-c", "sleep 3; echo bye; exit 7"]);
    let q = ok(
        env.create_start(&mut rt, &pod_id, &pod, &quitter).await,
        &env.criad,
    );
    wait_state(&mut rt, &t, RUNNING, WAIT)
        .await
        .expect("running");
    let before = pod_pids_running(&cg, "echo tick");
    assert_eq!(before.len(), 1, "the ticker's shell in the pod cgroup");

    drop(rt);
    env.criad.kill().expect("SIGKILL criad");
    // Containers keep running (and logging) without criad; the quitter exits meanwhile.
    let log = log_path(&pod, &ticker);
    let len0 = fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        fs::metadata(&log).map(|m| m.len()).unwrap_or(0) > len0,
        "the ticker logs while criad is gone"
    );
    assert_eq!(
        pod_pids_running(&cg, "echo tick"),
        before,
        "the ticker's shell lives on without criad"
    );

    env.criad.restart().await.expect("restart");
    let mut rt = env.rt().await.expect("client");
    let st = status(&mut rt, &t)
        .await
        .expect("ticker known after restart");
    assert_eq!(st.state, RUNNING);
    let st = wait_state(&mut rt, &q, EXITED, WAIT)
        .await
        .expect("quitter's exit recorded");
    assert_eq!((st.exit_code, st.reason.as_str()), (7, "Error"), "{st:?}");
    assert!(fs::read_to_string(log_path(&pod, &quitter))
        .expect("quitter log")
        .contains(" F bye"));
    let list = ok(list_containers(&mut rt).await, &env.criad);
    assert_eq!(list.len(), 2);
    // The new criad execs into, stops and removes the survivor.
    assert_eq!(
        sh(&mut rt, &t, "echo still-here")
            .await
            .expect("exec after restart"),
        "still-here\n"
    );
    ok(
        rt.stop_container(v1::StopContainerRequest {
            container_id: t.clone(),
            timeout: 1,
        })
        .await,
        &env.criad,
    );
    let st = status(&mut rt, &t).await.expect("status");
    assert_eq!(st.state, EXITED);
    ok(remove_pod(&mut rt, &pod_id).await, &env.criad);
    let gone = wait_until(WAIT, Duration::from_millis(50), || {
        live_pids(&cg).is_empty().then_some(())
    })
    .await;
    assert!(gone.is_some(), "no process left: {:?}", live_pids(&cg));
    for p in before {
        assert!(!pid_alive(p), "pid {p} of the pod still exists");
    }
}

#[tokio::test]
async fn orphans_are_reaped_in_a_pod_pid_namespace() {
    let env = PodEnv::start().await.expect("env");
    let mut rt = env.rt().await.expect("client");
    let mut pod = env.pod_config("reaper").expect("pod config");
    if let Some(ns) = pod
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .and_then(|s| s.namespace_options.as_mut())
    {
        ns.pid = v1::NamespaceMode::Pod as i32;
    }
    let pod_id = ok(env.run_pod(&mut rt, &pod).await, &env.criad);
    // Each subshell forks a short sleep and exits: the sleeps are orphaned and
    // reparented to the pod's init, which must reap them.
    let cfg = env.container_config(
        "orphans",
        &[
            "sh",
            "-c",
            "for i in 1 2 3 4 5; do (sleep 0.2 &); done; exec sleep 3600",
        ],
    );
    let c = ok(
        env.create_start(&mut rt, &pod_id, &pod, &cfg).await,
        &env.criad,
    );
    wait_state(&mut rt, &c, RUNNING, WAIT)
        .await
        .expect("running");
    let mut zombies = String::from("unchecked");
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        zombies = sh(&mut rt, &c, "ps -o stat,comm | grep '^Z' || true")
            .await
            .expect("ps");
        if zombies.trim().is_empty() {
            break;
        }
    }
    assert!(zombies.trim().is_empty(), "zombies not reaped: {zombies}");
    // The orphans' parent is the pod's init (pid 1), not leaked to the host.
    let init = sh(&mut rt, &c, "cat /proc/1/comm").await.expect("pid 1");
    assert!(!init.trim().is_empty());
    ok(remove_pod(&mut rt, &pod_id).await, &env.criad);
}

#[tokio::test]
async fn exited_containers_leave_no_zombie_or_monitor() {
    let env = PodEnv::start().await.expect("env");
    let mut rt = env.rt().await.expect("client");
    let pod = env.pod_config("tidy").expect("pod config");
    let pod_id = ok(env.run_pod(&mut rt, &pod).await, &env.criad);
    let cfg = env.container_config(
        "short",
        &["sh", "-c", "sleep 0.2 & sleep 0.2 & wait; exit 0"],
    );
    let c = ok(
        env.create_start(&mut rt, &pod_id, &pod, &cfg).await,
        &env.criad,
    );
    wait_state(&mut rt, &c, EXITED, WAIT).await.expect("exits");
    // The container's monitor exits after the container and nothing it
    // started lingers as a zombie (state dir named in its command line).
    let dir = env
        .criad
        .state()
        .join("containers")
        .join(&c)
        .to_string_lossy()
        .into_owned();
    let left = wait_until(WAIT, Duration::from_millis(50), || {
        cria_tests::host::pids_mentioning(&dir)
            .is_empty()
            .then_some(())
    })
    .await;
    assert!(
        left.is_some(),
        "processes mentioning {dir}: {:?}",
        cria_tests::host::pids_mentioning(&dir)
    );
    ok(remove_pod(&mut rt, &pod_id).await, &env.criad);
}
