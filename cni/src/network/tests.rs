//! Unit tests of the CNI logic with a recording fake in place of plugin processes.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::sync::Mutex;

use serde_json::json;

use super::*;
use crate::runtime_conf::PortMapping;

/// One recorded call: plugin, command, environment, stdin.
type Call = (String, Command, BTreeMap<String, String>, Value);

type Responder = Box<dyn Fn(&ExecRequest, &Value) -> Result<Vec<u8>> + Send + Sync>;

/// Records every call and answers through a responder.
struct FakeExec {
    calls: Mutex<Vec<Call>>,
    respond: Responder,
}

impl FakeExec {
    fn new(
        respond: impl Fn(&ExecRequest, &Value) -> Result<Vec<u8>> + Send + Sync + 'static,
    ) -> Self {
        Self {
            calls: Mutex::new(Vec::new()),
            respond: Box::new(respond),
        }
    }

    /// (plugin, command) of every call so far.
    fn order(&self) -> Vec<(String, Command)> {
        self.calls
            .lock()
            .expect("lock")
            .iter()
            .map(|(p, c, _, _)| (p.clone(), *c))
            .collect()
    }

    fn call(&self, i: usize) -> Call {
        self.calls.lock().expect("lock")[i].clone()
    }
}

impl PluginExec for FakeExec {
    async fn exec(&self, req: ExecRequest) -> Result<Vec<u8>> {
        let stdin: Value = serde_json::from_slice(&req.stdin).expect("stdin is JSON");
        let env = req.env.iter().cloned().collect();
        self.calls.lock().expect("lock").push((
            req.plugin.clone(),
            req.command,
            env,
            stdin.clone(),
        ));
        (self.respond)(&req, &stdin)
    }
}

/// Answers ADD like a well-behaved chain: the first plugin makes a result,
/// later ones pass prevResult on; everything else prints nothing.
fn well_behaved(req: &ExecRequest, stdin: &Value) -> Result<Vec<u8>> {
    if req.command != Command::Add {
        return Ok(Vec::new());
    }
    let out = match stdin.get("prevResult") {
        Some(prev) => prev.clone(),
        None => json!({
            "cniVersion": stdin["cniVersion"],
            "interfaces": [{"name": "cni0"}, {"name": "eth0", "sandbox": "/run/netns/x"}],
            "ips": [{"address": "fd00::2/64", "interface": 1}, {"address": "10.88.0.2/16", "gateway": "10.88.0.1", "interface": 1}]
        }),
    };
    Ok(serde_json::to_vec(&out).expect("json"))
}

struct Fixture {
    _tmp: tempfile::TempDir,
    opts: CniOptions,
}

impl Fixture {
    fn new(plugins: &[&str]) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let bin = tmp.path().join("bin");
        std::fs::create_dir(&bin).expect("mkdir bin");
        for p in plugins {
            let path = bin.join(p);
            std::fs::write(&path, "#!/bin/sh\nexit 1\n").expect("write plugin");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let opts = CniOptions {
            conf_dir: tmp.path().join("net.d"),
            bin_dirs: vec![tmp.path().join("empty-bin"), bin],
            cache_dir: tmp.path().join("cache"),
            plugin_timeout: Duration::from_secs(5),
        };
        std::fs::create_dir(&opts.conf_dir).expect("mkdir conf");
        Self { _tmp: tmp, opts }
    }

    fn write_conf(&self, name: &str, body: &Value) {
        std::fs::write(
            self.opts.conf_dir.join(name),
            serde_json::to_vec(body).expect("json"),
        )
        .expect("write conf");
    }

    fn cni(&self, exec: FakeExec) -> Cni<FakeExec> {
        Cni::with_exec(self.opts.clone(), exec)
    }
}

fn chain(version: &str) -> Value {
    json!({
        "cniVersion": version,
        "name": "testnet",
        "plugins": [
            {"type": "bridge", "bridge": "cni0", "ipam": {"type": "host-local"}},
            {"type": "portmap", "capabilities": {"portMappings": true}, "runtimeConfig": {"keep": 1}},
            {"type": "tuning"}
        ]
    })
}

fn pod() -> RuntimeConf {
    let mut rt =
        RuntimeConf::new("sb1", "/nonexistent/netns/sb1").with_pod("default", "web", "uid-1");
    rt.capabilities.port_mappings = vec![PortMapping {
        host_port: 8080,
        container_port: 80,
        protocol: "tcp".into(),
        host_ip: String::new(),
    }];
    rt
}

#[tokio::test]
async fn add_runs_in_order_chaining_prev_result_and_injecting_capabilities() {
    let fx = Fixture::new(&["bridge", "portmap", "tuning"]);
    fx.write_conf("10-net.conflist", &chain("1.0.0"));
    let cni = fx.cni(FakeExec::new(well_behaved));
    let att = cni.add(&pod()).await.expect("add");
    assert_eq!(att.network, "testnet");
    let ips: Vec<String> = att.pod_ips.iter().map(ToString::to_string).collect();
    assert_eq!(ips, ["10.88.0.2", "fd00::2"]);
    let exec = &cni.exec;
    assert_eq!(
        exec.order(),
        [
            ("bridge".into(), Command::Add),
            ("portmap".into(), Command::Add),
            ("tuning".into(), Command::Add)
        ]
    );

    let (_, _, env, bridge) = exec.call(0);
    assert_eq!(env["CNI_COMMAND"], "ADD");
    assert_eq!(env["CNI_CONTAINERID"], "sb1");
    assert_eq!(env["CNI_NETNS"], "/nonexistent/netns/sb1");
    assert_eq!(env["CNI_IFNAME"], "eth0");
    assert_eq!(
        env["CNI_ARGS"],
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=sb1;K8S_POD_UID=uid-1"
    );
    let bins: Vec<String> = fx
        .opts
        .bin_dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    assert_eq!(env["CNI_PATH"], bins.join(":"));
    assert_eq!(bridge["name"], "testnet");
    assert_eq!(bridge["cniVersion"], "1.0.0");
    assert!(bridge.get("prevResult").is_none());
    assert!(
        bridge.get("runtimeConfig").is_none(),
        "bridge declares no capability"
    );

    let (_, _, _, portmap) = exec.call(1);
    assert_eq!(portmap["prevResult"]["ips"][1]["address"], "10.88.0.2/16");
    assert_eq!(
        portmap["runtimeConfig"],
        json!({"keep": 1, "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]})
    );
    let (_, _, _, tuning) = exec.call(2);
    assert_eq!(tuning["prevResult"], portmap["prevResult"]);

    let cached = cni
        .cached_result("sb1", "eth0")
        .expect("read cache")
        .expect("cached");
    assert_eq!(cached, att.result);
}

#[tokio::test]
async fn failed_add_returns_the_plugin_message_and_tears_down_in_reverse() {
    let fx = Fixture::new(&["bridge", "portmap", "tuning"]);
    fx.write_conf("10-net.conflist", &chain("1.0.0"));
    let cni = fx.cni(FakeExec::new(|req, stdin| {
        if req.plugin == "portmap" && req.command == Command::Add {
            return Err(CniError::Plugin {
                plugin: "portmap".into(),
                command: "ADD",
                code: 999,
                msg: "iptables exploded".into(),
                details: String::new(),
            });
        }
        well_behaved(req, stdin)
    }));
    let err = cni.add(&pod()).await.expect_err("add fails");
    assert!(err.to_string().contains("iptables exploded"), "{err}");
    assert_eq!(
        cni.exec.order(),
        [
            ("bridge".into(), Command::Add),
            ("portmap".into(), Command::Add),
            ("tuning".into(), Command::Del),
            ("portmap".into(), Command::Del),
            ("bridge".into(), Command::Del)
        ]
    );
    assert!(cni.cached_result("sb1", "eth0").expect("read").is_none());
    assert!(
        !cni.cache.path("sb1", "eth0").exists(),
        "rolled-back ADD leaves no cache"
    );
}

#[tokio::test]
async fn del_uses_the_cached_config_after_the_conf_dir_changed() {
    let fx = Fixture::new(&["bridge", "portmap", "tuning", "other"]);
    fx.write_conf("10-net.conflist", &chain("1.0.0"));
    let cni = fx.cni(FakeExec::new(well_behaved));
    let att = cni.add(&pod()).await.expect("add");
    std::fs::remove_file(fx.opts.conf_dir.join("10-net.conflist")).expect("rm conf");
    fx.write_conf(
        "05-other.conf",
        &json!({"cniVersion": "1.0.0", "name": "othernet", "type": "other"}),
    );

    // A fresh client, as after a criad restart; the caller passes no capabilities.
    let cni = fx.cni(FakeExec::new(well_behaved));
    cni.del(&RuntimeConf::new("sb1", "/nonexistent/netns/sb1"))
        .await
        .expect("del");
    assert_eq!(
        cni.exec.order(),
        [
            ("tuning".into(), Command::Del),
            ("portmap".into(), Command::Del),
            ("bridge".into(), Command::Del)
        ]
    );
    let (_, _, env, portmap) = cni.exec.call(1);
    assert_eq!(
        env["CNI_NETNS"], "",
        "a netns that is gone is passed as empty"
    );
    assert!(
        env["CNI_ARGS"].contains("K8S_POD_NAME=web"),
        "cached CNI_ARGS are reused"
    );
    assert_eq!(portmap["name"], "testnet");
    assert_eq!(
        portmap["runtimeConfig"]["portMappings"][0]["hostPort"],
        8080
    );
    let prev: CniResult =
        serde_json::from_value(portmap["prevResult"].clone()).expect("prevResult");
    assert_eq!(prev.ips, att.result.ips);
    assert!(!cni.cache.path("sb1", "eth0").exists());

    // Second DEL: no cache any more, so the current config runs, still fine.
    cni.del(&RuntimeConf::new("sb1", "/nonexistent/netns/sb1"))
        .await
        .expect("second del");
    assert_eq!(
        cni.exec.order().last(),
        Some(&("other".to_string(), Command::Del))
    );
}

#[tokio::test]
async fn del_continues_past_failures_and_reports_them_all() {
    let fx = Fixture::new(&["bridge", "portmap", "tuning"]);
    fx.write_conf("10-net.conflist", &chain("0.4.0"));
    let failing = FakeExec::new(|req, stdin| match (req.plugin.as_str(), req.command) {
        ("tuning" | "bridge", Command::Del) => Err(CniError::Plugin {
            plugin: req.plugin.clone(),
            command: "DEL",
            code: 11,
            msg: format!("{} broke", req.plugin),
            details: String::new(),
        }),
        _ => well_behaved(req, stdin),
    });
    let cni = fx.cni(failing);
    cni.add(&pod()).await.expect("add");
    let err = cni.del(&pod()).await.expect_err("del reports failures");
    match &err {
        CniError::Teardown { errors, .. } => assert_eq!(errors.len(), 2),
        other => panic!("want Teardown, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("tuning broke") && text.contains("bridge broke"),
        "{text}"
    );
    assert_eq!(
        cni.exec
            .order()
            .iter()
            .filter(|(_, c)| *c == Command::Del)
            .count(),
        3
    );
    assert!(
        cni.cache.path("sb1", "eth0").exists(),
        "cache kept so DEL can be retried"
    );
}

#[tokio::test]
async fn del_without_cache_or_config_is_a_no_op() {
    let fx = Fixture::new(&[]);
    let cni = fx.cni(FakeExec::new(well_behaved));
    cni.del(&pod()).await.expect("del");
    assert!(cni.exec.order().is_empty());
}

#[tokio::test]
async fn check_uses_the_cached_result_and_respects_version_and_disable_check() {
    let fx = Fixture::new(&["bridge", "portmap", "tuning"]);
    fx.write_conf("10-net.conflist", &chain("1.0.0"));
    let cni = fx.cni(FakeExec::new(well_behaved));
    assert!(matches!(
        cni.check(&pod()).await,
        Err(CniError::NoCachedResult { .. })
    ));
    let att = cni.add(&pod()).await.expect("add");
    cni.check(&pod()).await.expect("check");
    let checks: Vec<_> = cni
        .exec
        .order()
        .into_iter()
        .filter(|(_, c)| *c == Command::Check)
        .collect();
    assert_eq!(checks.len(), 3);
    let (_, _, _, stdin) = cni.exec.call(3);
    let prev: CniResult = serde_json::from_value(stdin["prevResult"].clone()).expect("prevResult");
    assert_eq!(prev.ips, att.result.ips);
    cni.del(&pod()).await.expect("del");

    let mut disabled = chain("1.0.0");
    disabled["disableCheck"] = json!(true);
    fx.write_conf("10-net.conflist", &disabled);
    let cni = fx.cni(FakeExec::new(well_behaved));
    cni.add(&pod()).await.expect("add");
    cni.check(&pod()).await.expect("check disabled");
    assert!(cni.exec.order().iter().all(|(_, c)| *c == Command::Add));
    cni.del(&pod()).await.expect("del");

    fx.write_conf("10-net.conflist", &chain("0.3.1"));
    let cni = fx.cni(FakeExec::new(well_behaved));
    cni.add(&pod()).await.expect("add");
    assert!(matches!(
        cni.check(&pod()).await,
        Err(CniError::Unsupported { .. })
    ));
    // 0.3.1 DEL gets no prevResult.
    cni.del(&pod()).await.expect("del");
    let (_, _, _, stdin) = cni.exec.call(3);
    assert!(stdin.get("prevResult").is_none());
}

#[tokio::test]
async fn status_follows_the_conf_dir_and_installed_plugins() {
    let fx = Fixture::new(&["bridge"]);
    let cni = fx.cni(FakeExec::new(well_behaved));
    let st = cni.status();
    assert!(!st.ready);
    assert_eq!(st.reason, NOT_READY_REASON);
    assert!(
        st.message.contains("no valid network config"),
        "{}",
        st.message
    );
    assert!(matches!(
        cni.add(&pod()).await,
        Err(CniError::NoConfig { .. })
    ));

    fx.write_conf("10-net.conflist", &chain("1.0.0"));
    let st = cni.status();
    assert!(!st.ready);
    assert!(st.message.contains("portmap not found"), "{}", st.message);

    fx.write_conf(
        "10-net.conflist",
        &json!({"cniVersion": "1.0.0", "name": "solo", "plugins": [{"type": "bridge"}]}),
    );
    let st = cni.status();
    assert!(st.ready, "{st:?}");
    assert_eq!(st.reason, "");
}

#[tokio::test]
async fn missing_plugin_fails_add_naming_it() {
    let fx = Fixture::new(&["bridge"]);
    fx.write_conf("10-net.conflist", &chain("1.0.0"));
    let cni = fx.cni(FakeExec::new(well_behaved));
    let err = cni.add(&pod()).await.expect_err("portmap missing");
    assert!(
        matches!(&err, CniError::PluginNotFound { name, .. } if name == "portmap"),
        "{err:?}"
    );
}

#[tokio::test]
async fn version_reads_supported_versions() {
    let fx = Fixture::new(&["bridge"]);
    let cni = fx.cni(FakeExec::new(|req, stdin| {
        assert_eq!(req.command, Command::Version);
        assert_eq!(stdin["cniVersion"], "1.0.0");
        Ok(br#"{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}"#.to_vec())
    }));
    assert_eq!(
        cni.version("bridge").await.expect("version"),
        ["0.4.0", "1.0.0"]
    );
}

#[test]
fn legacy_lists_get_no_prev_result() {
    let list = NetworkConfigList::from_conf_bytes(
        br#"{"cniVersion":"0.2.0","name":"old","type":"bridge"}"#,
        Path::new("old.conf"),
    )
    .expect("conf");
    let stdin = plugin_stdin(
        &list,
        &list.plugins[0],
        &CapabilityArgs::default(),
        Some(&json!({"ips": []})),
    );
    assert_eq!(
        stdin,
        json!({"cniVersion": "0.2.0", "name": "old", "type": "bridge"})
    );
}

#[test]
fn only_nsfs_files_count_as_a_netns() {
    assert!(is_netns(Path::new("/proc/self/ns/net")));
    let file = tempfile::NamedTempFile::new().expect("tempfile");
    assert!(
        !is_netns(file.path()),
        "a leftover pin file is not a namespace"
    );
    assert!(!is_netns(Path::new("/nonexistent/netns")));
    assert!(!is_netns(Path::new("")));
}
