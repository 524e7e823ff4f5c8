//! hostPort mappings through Debian's portmap plugin: a server in a pod's
//! namespace is reached from the host's 127.0.0.1, and DEL removes the
//! pod's NAT rules. Needs root and iptables.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cria_cni::PortMapping;
use serde_json::json;
use support::{must, run, wait_until, Lab, Netns};

/// portmap's shared chains; it creates them once and never removes them.
const SHARED_CHAINS: [&str; 3] = [
    "CNI-HOSTPORT-DNAT",
    "CNI-HOSTPORT-SETMARK",
    "CNI-HOSTPORT-MASQ",
];

fn nat_rules() -> String {
    must(&["iptables", "-w", "-t", "nat", "-S"])
}

/// The per-pod DNAT chains portmap made (`-N CNI-DN-<hash>`).
fn pod_chains(rules: &str) -> Vec<String> {
    rules
        .lines()
        .filter(|l| l.starts_with("-N CNI-DN-"))
        .map(str::to_string)
        .collect()
}

/// Puts back host state the test changed: the bridge plugin's gateway mode
/// turns on ip_forward, and portmap leaves its shared chains behind. Shared
/// chains are only removed when this test created them and no pod uses them.
struct HostState {
    ip_forward: String,
    had_shared_chains: bool,
}

impl HostState {
    fn save() -> Self {
        let ip_forward =
            std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").expect("read ip_forward");
        let had_shared_chains = nat_rules().lines().any(|l| l == "-N CNI-HOSTPORT-DNAT");
        Self {
            ip_forward,
            had_shared_chains,
        }
    }
}

impl Drop for HostState {
    fn drop(&mut self) {
        let _ = std::fs::write("/proc/sys/net/ipv4/ip_forward", &self.ip_forward);
        let rules = nat_rules();
        if self.had_shared_chains || !pod_chains(&rules).is_empty() {
            return;
        }
        for line in rules.lines().filter(|l| l.starts_with("-A ")) {
            let jumps_to_shared = SHARED_CHAINS
                .iter()
                .any(|c| line.ends_with(&format!("-j {c}")));
            let in_shared = SHARED_CHAINS
                .iter()
                .any(|c| line.starts_with(&format!("-A {c} ")));
            if jumps_to_shared && !in_shared {
                // -S prints rules shell-quoted, so the shell can replay them.
                let _ = run(&["sh", "-c", &format!("iptables -w -t nat -D {}", &line[3..])]);
            }
        }
        for chain in SHARED_CHAINS {
            let _ = run(&["iptables", "-w", "-t", "nat", "-F", chain]);
        }
        for chain in SHARED_CHAINS {
            let _ = run(&["iptables", "-w", "-t", "nat", "-X", chain]);
        }
    }
}

/// busybox httpd inside a namespace, killed on drop.
struct Server(Child);

impl Server {
    fn start(ns: &Netns, root: &std::path::Path, port: u16) -> Self {
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns.name,
                "busybox",
                "httpd",
                "-f",
                "-p",
                &port.to_string(),
                "-h",
            ])
            .arg(root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start busybox httpd");
        Self(child)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_loopback_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// One HTTP GET over a fresh connection; the whole response, or None.
fn get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    conn.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .ok()?;
    let mut body = String::new();
    conn.read_to_string(&mut body).ok()?;
    Some(body)
}

#[tokio::test]
async fn host_port_reaches_the_pod_from_loopback_and_del_removes_the_rules() {
    let _host = HostState::save();
    let before = nat_rules();
    let lab = Lab::new();
    lab.write_conf(
        "10-test.conflist",
        &lab.conflist(json!([[{"subnet": "10.251.4.0/24"}]]), true),
    );
    let cni = lab.cni();
    let ns = Netns::new();
    let www = lab.tmp.path().join("www");
    std::fs::create_dir(&www).expect("mkdir www");
    let token = format!("hello from pod {}", support::random_hex(12));
    std::fs::write(www.join("index.html"), &token).expect("write index");

    let host_port = free_loopback_port();
    let mut pod = lab.pod(&ns);
    pod.capabilities.port_mappings = vec![PortMapping {
        host_port,
        container_port: 8080,
        protocol: "tcp".into(),
        host_ip: "127.0.0.1".into(),
    }];
    let att = cni.add(&pod).await.expect("ADD");
    let _server = Server::start(&ns, &www, 8080);

    let rules = nat_rules();
    assert!(
        rules.contains(&pod.container_id),
        "portmap made no rules for the pod:\n{rules}"
    );
    let addr: SocketAddr = ([127, 0, 0, 1], host_port).into();
    let mut response = None;
    assert!(
        wait_until(Duration::from_secs(5), || {
            response = get(addr, "/index.html");
            response.is_some()
        }),
        "no answer on 127.0.0.1:{host_port} (pod {:?})",
        att.pod_ips
    );
    let response = response.unwrap_or_default();
    assert!(response.contains(&token), "unexpected answer: {response}");

    cni.del(&pod).await.expect("DEL");
    let after = nat_rules();
    assert!(
        !after.contains(&pod.container_id),
        "rules left for the pod:\n{after}"
    );
    assert_eq!(
        pod_chains(&after),
        pod_chains(&before),
        "per-pod chains left:\n{after}"
    );
    assert!(
        get(addr, "/index.html").is_none_or(|r| !r.contains(&token)),
        "port still forwarded after DEL"
    );
    assert!(lab.veths().is_empty() && lab.allocations().is_empty());
}
