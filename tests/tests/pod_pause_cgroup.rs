//! The pause of a pod with a pod-wide PID namespace lives in the pod's
//! cgroup (its own leaf, `<cgroup_parent>/<sandbox id>`), not in criad's:
//! seen from a container of the pod (its PID 1) and from the host. Stopping
//! the pod kills it, removing the pod leaves no process and no cgroup, and
//! after a criad restart the pause is still found: through the pod's record,
//! or through its cgroup when a crash left no record at all.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cria_proto::v1;
use cria_tests::client::RuntimeClient;
use cria_tests::expect::ok;
use cria_tests::host::{cgroup_dirs, wait_until};
use cria_tests::pod::{remove_pod, sh, wait_state, PodEnv, RUNNING};

const WAIT: Duration = Duration::from_secs(30);

/// A kubelet-like pod config with `shareProcessNamespace` (pid = POD).
fn pod_pid_config(env: &PodEnv, name: &str) -> v1::PodSandboxConfig {
    let mut pod = env.pod_config(name).expect("pod config");
    let ns = pod
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .and_then(|s| s.namespace_options.as_mut())
        .expect("pod_config sets namespace options");
    ns.pid = v1::NamespaceMode::Pod as i32;
    pod
}

fn cgroup_parent(pod: &v1::PodSandboxConfig) -> String {
    pod.linux
        .as_ref()
        .map(|l| l.cgroup_parent.clone())
        .unwrap_or_default()
}

/// The pause's pid, from PodSandboxStatus's verbose info.
async fn pause_pid(rt: &mut RuntimeClient, pod_id: &str) -> i32 {
    let st = rt
        .pod_sandbox_status(v1::PodSandboxStatusRequest {
            pod_sandbox_id: pod_id.to_owned(),
            verbose: true,
        })
        .await
        .expect("PodSandboxStatus")
        .into_inner();
    let info: serde_json::Value =
        serde_json::from_str(st.info.get("info").expect("verbose info")).expect("info is JSON");
    let pid = info["pausePid"].as_i64().expect("a pause pid") as i32;
    assert!(is_live_pause(pid), "pause {pid} runs");
    pid
}

/// True while `pid` is a live (not zombie) pause.
fn is_live_pause(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.starts_with(b"cria-pause\0"))
}

/// The hierarchies a `/proc/<pid>/cgroup` text puts the process in, as
/// (controllers, path), leaving out the named (non-controller) ones.
fn managed_cgroups(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':').skip(1);
            Some((it.next()?.to_string(), it.next()?.to_string()))
        })
        .filter(|(c, _)| !c.starts_with("name="))
        .collect()
}

/// The pids in cgroup `path` of the v1 memory hierarchy (the pod's memory
/// accounting), not counting its children.
fn memory_cgroup_procs(path: &str) -> Vec<i32> {
    let dir = Path::new("/sys/fs/cgroup/memory").join(path.trim_start_matches('/'));
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

async fn assert_pod_gone(pause: i32, parent: &str) {
    let gone = wait_until(WAIT, Duration::from_millis(20), || {
        (!is_live_pause(pause)).then_some(())
    })
    .await;
    assert!(gone.is_some(), "pause {pause} still runs");
    assert_eq!(
        cgroup_dirs(parent),
        Vec::<PathBuf>::new(),
        "pod cgroup left"
    );
}

#[tokio::test]
async fn the_pause_is_in_the_pod_cgroup_and_goes_with_the_pod() {
    let env = PodEnv::start().await.expect("env");
    let mut rt = env.rt().await.expect("client");
    let pod = pod_pid_config(&env, "pausecg");
    let parent = cgroup_parent(&pod);
    let (pod_id, id) = ok(
        env.run_pod_and_start(&mut rt, &pod, &env.container_config("c", &["sleep", "600"]))
            .await,
        &env.criad,
    );
    wait_state(&mut rt, &id, RUNNING, WAIT).await.expect("runs");
    let leaf = format!("{parent}/{pod_id}");
    // From the container: its PID 1 (the pause) sits in the pod's cgroup,
    // in the leaf named by the sandbox, in every hierarchy.
    let inside = sh(&mut rt, &id, "cat /proc/1/cgroup").await.expect("probe");
    let seen = managed_cgroups(&inside);
    assert!(seen.len() >= 2, "{inside}");
    for (c, p) in &seen {
        assert_eq!(p, &leaf, "hierarchy {c:?} of the pod's PID 1: {inside}");
    }
    // From the host: the same process, counted by the pod's memory cgroup,
    // absent from criad's.
    let pause = pause_pid(&mut rt, &pod_id).await;
    let host = std::fs::read_to_string(format!("/proc/{pause}/cgroup")).expect("pause cgroup");
    assert_eq!(managed_cgroups(&host), seen);
    assert_eq!(memory_cgroup_procs(&leaf), vec![pause]);
    let criad_pid = env.criad.pid().expect("criad runs");
    let criad = std::fs::read_to_string(format!("/proc/{criad_pid}/cgroup")).expect("criad cgroup");
    for (c, p) in managed_cgroups(&criad) {
        assert_ne!(p, leaf, "{c}");
        if c == "memory" {
            assert!(
                !memory_cgroup_procs(&p).contains(&pause),
                "pause in criad's memory cgroup"
            );
        }
    }

    // StopPodSandbox kills it; RemovePodSandbox takes its cgroup with the pod's.
    ok(
        rt.stop_pod_sandbox(v1::StopPodSandboxRequest {
            pod_sandbox_id: pod_id.clone(),
        })
        .await,
        &env.criad,
    );
    assert!(
        !is_live_pause(pause),
        "StopPodSandbox left the pause running"
    );
    ok(remove_pod(&mut rt, &pod_id).await, &env.criad);
    assert_pod_gone(pause, &parent).await;
}

#[tokio::test]
async fn after_a_restart_the_pause_is_still_found_and_removed_with_the_pod() {
    let mut env = PodEnv::start().await.expect("env");
    let mut rt = env.rt().await.expect("client");
    let pod = pod_pid_config(&env, "pausecg-restart");
    let parent = cgroup_parent(&pod);
    let pod_id = ok(env.run_pod(&mut rt, &pod).await, &env.criad);
    let pause = pause_pid(&mut rt, &pod_id).await;
    env.criad.kill().expect("kill criad");
    assert!(is_live_pause(pause), "the pause outlives criad");
    env.criad.restart().await.expect("restart");
    let mut rt = env.rt().await.expect("client");
    assert_eq!(pause_pid(&mut rt, &pod_id).await, pause);
    ok(remove_pod(&mut rt, &pod_id).await, &env.criad);
    assert_pod_gone(pause, &parent).await;
}

#[tokio::test]
async fn recovery_kills_the_pause_of_a_pod_a_crash_left_without_a_record() {
    let mut env = PodEnv::start().await.expect("env");
    let mut rt = env.rt().await.expect("client");
    let pod = pod_pid_config(&env, "pausecg-orphan");
    let parent = cgroup_parent(&pod);
    let pod_id = ok(env.run_pod(&mut rt, &pod).await, &env.criad);
    let pause = pause_pid(&mut rt, &pod_id).await;
    env.criad.kill().expect("kill criad");
    // As if criad had died inside RunPodSandbox, before writing the record
    // (its pod dir is made first, the record last).
    let record = env.criad.root().join("pods").join(&pod_id).join("pod.json");
    std::fs::remove_file(&record).expect("remove pod record");
    env.criad.restart().await.expect("restart");
    assert_pod_gone(pause, &parent).await;
    let mut rt = env.rt().await.expect("client");
    let pods = rt
        .list_pod_sandbox(v1::ListPodSandboxRequest { filter: None })
        .await
        .expect("ListPodSandbox")
        .into_inner()
        .items;
    assert!(pods.is_empty(), "{pods:?}");
    for dir in [
        env.criad.root().join("pods").join(&pod_id),
        env.criad.state().join("pods").join(&pod_id),
        env.criad.state().join("netns").join(&pod_id),
    ] {
        assert!(!dir.exists(), "{dir:?} left");
    }
}
