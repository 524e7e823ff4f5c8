//! Shared by the network_* tests: a criad whose CNI conf dir holds a
//! bridge + host-local + portmap (+ loopback) network with a test-unique
//! bridge and subnet, and checks that teardown left nothing behind.

#![allow(dead_code)] // each test binary uses its own subset

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;
use cria_proto::v1;
use cria_tests::client::RuntimeClient;
use cria_tests::criad::{rand_u64, CriadConfig};
use cria_tests::host::run_stdout;
use cria_tests::pod::PodEnv;

/// A pod environment with a real CNI network.
pub struct NetEnv {
    /// Registry, busybox and criad.
    pub env: PodEnv,
    /// Bridge name (`crb<hex>`, at most 15 bytes).
    pub bridge: String,
    /// The subnet pods get addresses from, `10.<a>.<b>.0/24`.
    pub subnet: String,
    /// host-local's store (`dataDir`) in the test's temp dir.
    pub ipam_dir: PathBuf,
    /// The network's name (also host-local's directory under `ipam_dir`).
    pub network: String,
}

/// The conflist the tests install: no masquerade, no default route, so
/// traffic stays between namespaces the test created.
pub fn conflist(network: &str, bridge: &str, subnet: &str, ipam_dir: &Path) -> String {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": network,
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": true,
                "isDefaultGateway": false,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": subnet }]],
                    "dataDir": ipam_dir,
                }
            },
            { "type": "portmap", "capabilities": { "portMappings": true } },
            { "type": "loopback" }
        ]
    })
    .to_string()
}

impl NetEnv {
    /// Starts criad and installs the network config.
    pub async fn start() -> Result<NetEnv> {
        Self::start_with(CriadConfig::default()).await
    }

    /// The same with plugins looked for in `bin_dirs` (`[cni] bin_dirs`).
    pub async fn start_with_bin_dirs(bin_dirs: &[&Path]) -> Result<NetEnv> {
        let dirs: Vec<String> = bin_dirs
            .iter()
            .map(|d| serde_json::Value::String(d.to_string_lossy().into_owned()).to_string())
            .collect();
        // The harness renders `[cni]` last, so this lands in that section.
        Self::start_with(CriadConfig {
            extra_toml: format!("bin_dirs = [{}]\n", dirs.join(", ")),
            ..Default::default()
        })
        .await
    }

    async fn start_with(config: CriadConfig) -> Result<NetEnv> {
        let env = PodEnv::start_with(config).await?;
        let r = rand_u64();
        let bridge = format!("crb{:x}", r & 0xff_ffff_ffff);
        let subnet = format!("10.{}.{}.0/24", 100 + (r >> 40) % 100, (r >> 48) % 256);
        let ipam_dir = env.criad.dir().join("ipam");
        let network = format!("cria-test-{:x}", r & 0xffff);
        let me = NetEnv {
            env,
            bridge,
            subnet,
            ipam_dir,
            network,
        };
        me.install_config()?;
        Ok(me)
    }

    /// The CNI conf dir of this criad.
    pub fn conf_dir(&self) -> PathBuf {
        self.env.criad.dir().join("cni")
    }

    /// Writes the conflist into the conf dir.
    pub fn install_config(&self) -> Result<()> {
        fs::write(
            self.conf_dir().join("10-test.conflist"),
            conflist(&self.network, &self.bridge, &self.subnet, &self.ipam_dir),
        )?;
        Ok(())
    }

    /// A pod config for the pod network.
    pub fn pod(&self, name: &str) -> Result<v1::PodSandboxConfig> {
        self.env.pod_config(name)
    }

    /// Addresses host-local has handed out and not released.
    pub fn ipam_allocations(&self) -> Vec<String> {
        let dir = self.ipam_dir.join(&self.network);
        let Ok(rd) = fs::read_dir(dir) else {
            return Vec::new();
        };
        rd.filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
            .collect()
    }

    /// Interfaces enslaved to the test bridge (the pods' host-side veths).
    pub fn veths(&self) -> Vec<String> {
        let out = Command::new("ip")
            .args(["-o", "link", "show", "master", &self.bridge])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        out.lines()
            .filter_map(|l| l.split(": ").nth(1).map(str::to_owned))
            .collect()
    }

    /// Pinned network namespaces under criad's state dir.
    pub fn netns_files(&self) -> Vec<PathBuf> {
        fs::read_dir(self.env.criad.state().join("netns"))
            .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default()
    }

    /// Asserts that no veth, netns or IPAM allocation is left.
    pub fn assert_no_leaks(&self) {
        assert_eq!(
            self.veths(),
            Vec::<String>::new(),
            "veths left on the bridge"
        );
        assert_eq!(
            self.netns_files(),
            Vec::<PathBuf>::new(),
            "netns files left"
        );
        assert_eq!(
            self.ipam_allocations(),
            Vec::<String>::new(),
            "host-local allocations left"
        );
    }
}

impl Drop for NetEnv {
    fn drop(&mut self) {
        // The bridge plugin creates the bridge and never removes it.
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
    }
}

/// The pod's IP from PodSandboxStatus.
pub async fn pod_ip(rt: &mut RuntimeClient, id: &str) -> Result<v1::PodSandboxNetworkStatus> {
    let st = rt
        .pod_sandbox_status(v1::PodSandboxStatusRequest {
            pod_sandbox_id: id.to_owned(),
            verbose: false,
        })
        .await
        .map_err(|s| anyhow::anyhow!("PodSandboxStatus: {s:?}"))?
        .into_inner();
    st.status
        .and_then(|s| s.network)
        .ok_or_else(|| anyhow::anyhow!("no network in status"))
}

/// The nat table rules (iptables-save).
pub fn nat_rules() -> String {
    run_stdout(Command::new("iptables-save").args(["-t", "nat"])).unwrap_or_default()
}
