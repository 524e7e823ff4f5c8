//! Issue 4: pod networking through CNI end to end — criad with Debian's
//! bridge + host-local + portmap + loopback plugins and a config the test
//! writes (no masquerade, no default route, a test-unique bridge/subnet).

mod network_common;

use std::time::Duration;

use cria_proto::v1;
use cria_tests::expect::ok;
use cria_tests::host::{free_port, wait_until};
use cria_tests::pod::{remove_pod, sh, wait_state, RUNNING};
use network_common::*;

const WAIT: Duration = Duration::from_secs(30);

/// A shell loop serving `text` over HTTP on `port` with busybox httpd.
fn http_server(text: &str, port: u16) -> Vec<String> {
    let script = format!(
        "mkdir -p /tmp/www && echo {text} > /tmp/www/index.html && exec httpd -f -p {port} -h /tmp/www"
    );
    vec!["sh".into(), "-c".into(), script]
}

/// A shell script fetching `/` from `ip:port` with a raw HTTP request over
/// busybox nc (busybox-static's wget needs NSS libraries the image lacks),
/// retried for a few seconds while the server starts.
fn fetch_script(ip: &str, port: u16) -> String {
    format!(
        "for i in 1 2 3 4 5 6 7 8 9 10; do \
           out=$(printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {ip} {port}) && [ -n \"$out\" ] && {{ printf '%s\\n' \"$out\"; exit 0; }}; \
           sleep 0.3; done; exit 1"
    )
}

fn argv(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[tokio::test]
async fn pods_reach_each_other_and_containers_share_localhost_and_nothing_leaks() {
    let net = NetEnv::start().await.expect("env");
    let env = &net.env;
    let mut rt = env.rt().await.expect("client");

    let pod_a = net.pod("net-a").expect("pod");
    let a = ok(env.run_pod(&mut rt, &pod_a).await, &env.criad);
    let pod_b = net.pod("net-b").expect("pod");
    let b = ok(env.run_pod(&mut rt, &pod_b).await, &env.criad);
    let ip_a = pod_ip(&mut rt, &a).await.expect("status a");
    let ip_b = pod_ip(&mut rt, &b).await.expect("status b");
    let prefix = net.subnet.trim_end_matches("0/24");
    assert!(ip_a.ip.starts_with(prefix), "{ip_a:?} in {}", net.subnet);
    assert!(ip_b.ip.starts_with(prefix), "{ip_b:?} in {}", net.subnet);
    assert_ne!(ip_a.ip, ip_b.ip);
    assert!(ip_a.additional_ips.is_empty(), "single stack: {ip_a:?}");
    assert_eq!(net.veths().len(), 2, "one veth per pod on {}", net.bridge);
    assert_eq!(net.ipam_allocations().len(), 2);

    // Pod A: a web server and a second container; pod B: a client.
    let server = env.container_config("web", &argv(&http_server("hello-from-a", 8080)));
    let web = ok(
        env.create_start(&mut rt, &a, &pod_a, &server).await,
        &env.criad,
    );
    let side = env.container_config("side", &["sleep", "3600"]);
    let side = ok(
        env.create_start(&mut rt, &a, &pod_a, &side).await,
        &env.criad,
    );
    let client = env.container_config("client", &["sleep", "3600"]);
    let client = ok(
        env.create_start(&mut rt, &b, &pod_b, &client).await,
        &env.criad,
    );
    for c in [&web, &side, &client] {
        wait_state(&mut rt, c, RUNNING, WAIT)
            .await
            .expect("running");
    }

    // The container sees the address CNI gave the pod on eth0.
    let addr = sh(&mut rt, &client, "ip -o -4 addr show eth0")
        .await
        .expect("ip addr");
    assert!(addr.contains(&format!("{}/24", ip_b.ip)), "{addr}");
    // Pod to pod over the bridge, by pod IP.
    sh(&mut rt, &client, &format!("ping -c1 -W2 {}", ip_a.ip))
        .await
        .expect("ping pod a from pod b");
    let fetch = fetch_script(&ip_a.ip, 8080);
    let body = sh(&mut rt, &client, &fetch).await.expect("http to pod a");
    assert!(body.ends_with("\r\n\r\nhello-from-a\n"), "{body:?}");
    // Two containers of one pod share the network stack: localhost.
    let local = sh(&mut rt, &side, &fetch_script("127.0.0.1", 8080))
        .await
        .expect("http over 127.0.0.1 in pod a");
    assert!(local.ends_with("\r\n\r\nhello-from-a\n"), "{local:?}");
    // /etc/hosts names the pod on its IP.
    let hosts = sh(&mut rt, &side, "cat /etc/hosts").await.expect("hosts");
    assert!(hosts.contains(&format!("{}\tnet-a", ip_a.ip)), "{hosts}");

    // Stop detaches (DEL once; a second stop is a no-op), remove drops the netns.
    for _ in 0..2 {
        ok(
            rt.stop_pod_sandbox(v1::StopPodSandboxRequest {
                pod_sandbox_id: a.clone(),
            })
            .await,
            &env.criad,
        );
    }
    assert_eq!(net.veths().len(), 1, "pod a's veth is gone after stop");
    assert_eq!(net.ipam_allocations(), vec![ip_b.ip.clone()]);
    ok(remove_pod(&mut rt, &a).await, &env.criad);
    // Remove without a Stop first still detaches.
    ok(
        rt.remove_pod_sandbox(v1::RemovePodSandboxRequest {
            pod_sandbox_id: b.clone(),
        })
        .await,
        &env.criad,
    );
    net.assert_no_leaks();
    assert!(
        !fs_exists(&env.criad.root().join("cni-cache")),
        "no CNI cache entry left"
    );
}

/// True when the dir exists and holds anything.
fn fs_exists(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut rd| rd.next().is_some())
}

#[tokio::test]
async fn host_port_reaches_the_pod_from_the_host_loopback_and_rules_go_with_it() {
    let net = NetEnv::start().await.expect("env");
    let env = &net.env;
    let mut rt = env.rt().await.expect("client");
    let host_port = free_port().expect("port");
    let mut pod = net.pod("net-hostport").expect("pod");
    pod.port_mappings = vec![v1::PortMapping {
        protocol: v1::Protocol::Tcp as i32,
        container_port: 8080,
        host_port: i32::from(host_port),
        host_ip: String::new(),
    }];
    let id = ok(env.run_pod(&mut rt, &pod).await, &env.criad);
    let server = env.container_config("web", &argv(&http_server("hello-hostport", 8080)));
    let web = ok(
        env.create_start(&mut rt, &id, &pod, &server).await,
        &env.criad,
    );
    wait_state(&mut rt, &web, RUNNING, WAIT)
        .await
        .expect("running");
    assert!(nat_rules().contains(&id), "portmap rules name the sandbox");

    let url = format!("http://127.0.0.1:{host_port}/");
    let body = wait_until(WAIT, Duration::from_millis(200), || {
        let out = std::process::Command::new("curl")
            .args(["-s", "--max-time", "2", &url])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    })
    .await;
    assert_eq!(
        body.as_deref().map(str::trim),
        Some("hello-hostport"),
        "via {url}"
    );

    ok(remove_pod(&mut rt, &id).await, &env.criad);
    assert!(
        !nat_rules().contains(&id),
        "portmap rules removed with the pod"
    );
    net.assert_no_leaks();
}

#[tokio::test]
async fn host_network_pod_sees_the_host_interfaces_and_skips_cni() {
    let net = NetEnv::start().await.expect("env");
    let env = &net.env;
    let mut rt = env.rt().await.expect("client");
    let mut pod = net.pod("net-host").expect("pod");
    if let Some(ns) = pod
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .and_then(|s| s.namespace_options.as_mut())
    {
        ns.network = v1::NamespaceMode::Node as i32;
    }
    let id = ok(env.run_pod(&mut rt, &pod).await, &env.criad);
    let c = env.container_config("c", &["sleep", "3600"]);
    let c = ok(env.create_start(&mut rt, &id, &pod, &c).await, &env.criad);
    wait_state(&mut rt, &c, RUNNING, WAIT)
        .await
        .expect("running");
    let inside = sh(&mut rt, &c, "ls /sys/class/net | sort")
        .await
        .expect("ls");
    let mut host: Vec<String> = std::fs::read_dir("/sys/class/net")
        .expect("host interfaces")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    host.sort();
    let inside: Vec<&str> = inside.lines().collect();
    for name in ["lo", "eth0"] {
        assert!(inside.contains(&name), "{inside:?}");
    }
    // Other tests may add or remove bridges meanwhile: compare the stable ones.
    for name in host
        .iter()
        .filter(|n| !n.starts_with("crb") && !n.starts_with("veth"))
    {
        assert!(
            inside.contains(&name.as_str()),
            "{name} missing in {inside:?}"
        );
    }
    let st = pod_ip(&mut rt, &id).await.expect("status");
    assert_eq!(st.ip, "", "no CNI address for a hostNetwork pod");
    assert!(net.ipam_allocations().is_empty());
    ok(remove_pod(&mut rt, &id).await, &env.criad);
    net.assert_no_leaks();
}
