//! Issue 4: the lifecycle around CNI — many pods at once, criad killed
//! between ADD and DEL, a failing plugin, NetworkReady following the conf
//! dir, and the pod's resolv.conf from kubelet's ClusterFirst DNS config.

mod network_common;

use std::sync::Arc;
use std::time::Duration;

use cria_proto::v1;
use cria_tests::expect::ok;
use cria_tests::host::cgroup_dirs;
use cria_tests::pod::{remove_pod, sh, wait_state, PodEnv, RUNNING};
use network_common::*;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn fifty_pods_created_and_removed_ten_at_a_time_leak_nothing() {
    let net = NetEnv::start().await.expect("env");
    let env = &net.env;
    let rt = env.rt().await.expect("client");
    let gate = Arc::new(tokio::sync::Semaphore::new(10));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        let cfg = net.pod(&format!("many-{i}")).expect("pod");
        let (mut rt, gate) = (rt.clone(), gate.clone());
        tasks.spawn(async move {
            let _permit = gate.acquire().await.expect("semaphore open");
            let id = rt
                .run_pod_sandbox(v1::RunPodSandboxRequest {
                    config: Some(cfg),
                    runtime_handler: String::new(),
                })
                .await?
                .into_inner()
                .pod_sandbox_id;
            let ip = pod_ip(&mut rt, &id)
                .await
                .map_err(|e| tonic::Status::internal(e.to_string()))?
                .ip;
            remove_pod(&mut rt, &id).await?;
            Ok::<String, tonic::Status>(ip)
        });
    }
    let mut ips = Vec::new();
    let all = tokio::time::timeout(Duration::from_secs(300), async {
        while let Some(r) = tasks.join_next().await {
            ips.push(ok(r.expect("task"), &env.criad));
        }
    })
    .await;
    assert!(all.is_ok(), "50 pods within 5 minutes");
    assert_eq!(ips.len(), 50);
    assert!(
        ips.iter().all(|ip| !ip.is_empty()),
        "every pod had an IP: {ips:?}"
    );
    net.assert_no_leaks();
    assert!(nat_rules().lines().all(|l| !l.contains("many-")));
    // The first ten creates raced to bind <state>/pods and <state>/netns;
    // stacked binds hid pins and shm from RemovePodSandbox (EBUSY).
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    for d in ["pods", "netns"] {
        let dir = std::fs::canonicalize(env.criad.state().join(d)).expect("state dir");
        let dir = dir.to_string_lossy();
        let at: Vec<&str> = info
            .lines()
            .filter(|l| l.split(' ').nth(4) == Some(&*dir))
            .collect();
        assert_eq!(at.len(), 1, "one private bind at {dir}: {at:#?}");
    }
}

#[tokio::test]
async fn stop_after_criad_sigkill_and_restart_still_tears_the_network_down() {
    let mut net = NetEnv::start().await.expect("env");
    let mut rt = net.env.rt().await.expect("client");
    let kept = net.pod("kept-ns").expect("pod");
    let kept = ok(net.env.run_pod(&mut rt, &kept).await, &net.env.criad);
    let lost = net.pod("lost-ns").expect("pod");
    let lost = ok(net.env.run_pod(&mut rt, &lost).await, &net.env.criad);
    let kept_ip = pod_ip(&mut rt, &kept).await.expect("ip").ip;
    assert_eq!(net.ipam_allocations().len(), 2);

    drop(rt);
    net.env.criad.kill().expect("SIGKILL criad");
    net.env.criad.restart().await.expect("restart");
    let mut rt = net.env.rt().await.expect("client");
    assert_eq!(
        pod_ip(&mut rt, &kept).await.expect("ip after restart").ip,
        kept_ip,
        "the pod IP survives the restart"
    );
    // One pod's namespace vanishes while criad is down: DEL must still
    // release its address.
    let lost_ns = net.env.criad.state().join("netns").join(&lost);
    cria_tests::host::run(std::process::Command::new("umount").arg("-l").arg(&lost_ns))
        .expect("unmount netns");
    std::fs::remove_file(&lost_ns).expect("remove netns file");

    for id in [&kept, &lost] {
        ok(
            rt.stop_pod_sandbox(v1::StopPodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await,
            &net.env.criad,
        );
    }
    assert_eq!(
        net.ipam_allocations(),
        Vec::<String>::new(),
        "addresses released"
    );
    assert_eq!(net.veths(), Vec::<String>::new(), "veths gone after stop");
    for id in [&kept, &lost] {
        ok(remove_pod(&mut rt, id).await, &net.env.criad);
    }
    net.assert_no_leaks();
}

#[tokio::test]
async fn a_failing_plugin_fails_run_pod_sandbox_with_its_message_and_leaves_nothing() {
    let net = NetEnv::start().await.expect("env");
    let env = &net.env;
    std::fs::write(
        net.conf_dir().join("10-test.conflist"),
        conflist(&net.network, &net.bridge, "10.300.0.0/24", &net.ipam_dir),
    )
    .expect("broken config");
    let mut rt = env.rt().await.expect("client");
    let pod = net.pod("broken").expect("pod");
    let cgroup = pod
        .linux
        .as_ref()
        .map(|l| l.cgroup_parent.clone())
        .unwrap_or_default();
    let err = env
        .run_pod(&mut rt, &pod)
        .await
        .expect_err("RunPodSandbox must fail");
    assert!(
        err.message()
            .contains("invalid CIDR address: 10.300.0.0/24"),
        "the plugin's message: {err:?}"
    );
    let pods = ok(
        rt.list_pod_sandbox(v1::ListPodSandboxRequest { filter: None })
            .await,
        &env.criad,
    )
    .into_inner()
    .items;
    assert!(pods.is_empty(), "no pod record: {pods:?}");
    assert!(cgroup_dirs(&cgroup).is_empty(), "no pod cgroup left");
    net.assert_no_leaks();
    let cache: Vec<_> = std::fs::read_dir(env.criad.root().join("cni-cache"))
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(cache.is_empty(), "no CNI cache entry: {cache:?}");
    // The name is free again: a good config lets the same pod run. The
    // failed ADD left the bridge plugin's bridge without an address, and the
    // plugin cannot adopt such a bridge on this kernel ("could not set
    // bridge's mac"); the bridge is the test's own, so start it afresh.
    let _ = std::process::Command::new("ip")
        .args(["link", "del", &net.bridge])
        .output();
    net.install_config().expect("good config");
    let id = ok(env.run_pod(&mut rt, &pod).await, &env.criad);
    ok(remove_pod(&mut rt, &id).await, &env.criad);
    net.assert_no_leaks();
}

/// NetworkReady's condition from Status.
async fn network_ready(rt: &mut cria_tests::client::RuntimeClient) -> v1::RuntimeCondition {
    let st = rt
        .status(v1::StatusRequest { verbose: false })
        .await
        .expect("Status")
        .into_inner();
    st.status
        .expect("runtime status")
        .conditions
        .into_iter()
        .find(|c| c.r#type == "NetworkReady")
        .expect("NetworkReady condition")
}

#[tokio::test]
async fn network_ready_follows_the_conf_dir_without_a_restart() {
    let env = PodEnv::start().await.expect("env");
    let mut rt = env.rt().await.expect("client");
    let c = network_ready(&mut rt).await;
    assert!(!c.status, "{c:?}");
    assert_eq!(c.reason, "NetworkPluginNotReady");
    assert!(!c.message.is_empty());
    let conf = env.criad.dir().join("cni").join("10-test.conflist");
    // A config naming a plugin that is not installed is not ready either.
    std::fs::write(
        &conf,
        r#"{"cniVersion":"1.0.0","name":"t","plugins":[{"type":"no-such-plugin"}]}"#,
    )
    .expect("write");
    let c = network_ready(&mut rt).await;
    assert!(!c.status && c.message.contains("no-such-plugin"), "{c:?}");
    std::fs::write(
        &conf,
        r#"{"cniVersion":"1.0.0","name":"t","plugins":[{"type":"loopback"}]}"#,
    )
    .expect("write");
    let c = network_ready(&mut rt).await;
    assert!(c.status, "{c:?}");
    assert_eq!(c.reason, "");
}

#[tokio::test]
async fn cluster_first_dns_config_renders_resolv_conf() {
    let net = NetEnv::start().await.expect("env");
    let env = &net.env;
    let mut rt = env.rt().await.expect("client");
    let mut pod = net.pod("dns").expect("pod");
    // What kubelet sends for dnsPolicy ClusterFirst.
    pod.dns_config = Some(v1::DnsConfig {
        servers: vec!["10.96.0.10".into()],
        searches: vec![
            "cria-tests.svc.cluster.local".into(),
            "svc.cluster.local".into(),
            "cluster.local".into(),
        ],
        options: vec!["ndots:5".into()],
    });
    let id = ok(env.run_pod(&mut rt, &pod).await, &env.criad);
    let c = env.container_config("c", &["sleep", "3600"]);
    let c = ok(env.create_start(&mut rt, &id, &pod, &c).await, &env.criad);
    wait_state(&mut rt, &c, RUNNING, WAIT)
        .await
        .expect("running");
    let resolv = sh(&mut rt, &c, "cat /etc/resolv.conf").await.expect("cat");
    assert_eq!(
        resolv,
        "search cria-tests.svc.cluster.local svc.cluster.local cluster.local\n\
         nameserver 10.96.0.10\n\
         options ndots:5\n"
    );
    ok(remove_pod(&mut rt, &id).await, &env.criad);
    net.assert_no_leaks();
}

/// A CNI plugin that passes the previous result through after `secs`
/// seconds on ADD: holds RunPodSandbox between the bridge plugin's
/// allocation and criad's pod record.
const SLOW_PLUGIN: &str = r#"#!/bin/sh
case "$CNI_COMMAND" in
ADD) sleep 4; jq -c '.prevResult' ;;
VERSION) echo '{"cniVersion":"1.0.0","supportedVersions":["0.3.1","0.4.0","1.0.0"]}' ;;
esac
"#;

#[tokio::test]
async fn criad_killed_during_add_releases_the_half_made_pod_on_restart() {
    let bin = tempfile::tempdir().expect("bin dir");
    let plugin = bin.path().join("slow");
    std::fs::write(&plugin, SLOW_PLUGIN).expect("plugin");
    std::fs::set_permissions(&plugin, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let mut net = NetEnv::start_with_bin_dirs(&[bin.path(), std::path::Path::new("/usr/lib/cni")])
        .await
        .expect("env");
    let mut list: serde_json::Value = serde_json::from_str(&conflist(
        &net.network,
        &net.bridge,
        &net.subnet,
        &net.ipam_dir,
    ))
    .expect("json");
    if let Some(plugins) = list["plugins"].as_array_mut() {
        plugins.insert(1, serde_json::json!({ "type": "slow" }));
    }
    std::fs::write(net.conf_dir().join("10-test.conflist"), list.to_string()).expect("config");

    let mut rt = net.env.rt().await.expect("client");
    let pod = net.pod("half-made").expect("pod");
    let cgroup = pod
        .linux
        .as_ref()
        .map(|l| l.cgroup_parent.clone())
        .unwrap_or_default();
    let run = tokio::spawn({
        let mut rt = rt.clone();
        let req = v1::RunPodSandboxRequest {
            config: Some(pod.clone()),
            runtime_handler: String::new(),
        };
        async move { rt.run_pod_sandbox(req).await }
    });
    let allocated = cria_tests::host::wait_until(WAIT, Duration::from_millis(20), || {
        (net.ipam_allocations().len() == 1).then_some(())
    })
    .await;
    assert!(
        allocated.is_some(),
        "the bridge plugin allocated an address"
    );
    net.env.criad.kill().expect("SIGKILL criad");
    let _ = run.await;
    assert_eq!(
        net.netns_files().len(),
        1,
        "the half-made pod's netns exists"
    );

    net.env.criad.restart().await.expect("restart");
    rt = net.env.rt().await.expect("client");
    let pods = ok(
        rt.list_pod_sandbox(v1::ListPodSandboxRequest { filter: None })
            .await,
        &net.env.criad,
    )
    .into_inner()
    .items;
    assert!(pods.is_empty(), "{pods:?}");
    net.assert_no_leaks();
    assert!(cgroup_dirs(&cgroup).is_empty(), "no pod cgroup left");
    let cache: Vec<_> = std::fs::read_dir(net.env.criad.root().join("cni-cache"))
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(cache.is_empty(), "no CNI cache entry: {cache:?}");
}
