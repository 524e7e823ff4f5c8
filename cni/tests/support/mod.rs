//! Fixtures for the tests against Debian's real CNI plugins: network
//! namespaces, a test-unique bridge and a temp conf/cache/IPAM dir, all
//! removed by guards even when a test fails.

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use cria_cni::{Cni, CniOptions, RuntimeConf};
use serde_json::{json, Value};

/// Where Debian's containernetworking-plugins installs the plugins.
pub const DEBIAN_CNI_BIN: &str = "/usr/lib/cni";

/// A random lower-case hex string of `len` characters (`len` ≤ 16).
pub fn random_hex(len: usize) -> String {
    // RandomState is seeded randomly per instance: enough for unique names.
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())[..len].to_string()
}

/// Runs a command and returns its output; panics only if it cannot start.
pub fn run(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"))
}

/// Runs a command that must succeed and returns its stdout.
pub fn must(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `cond` every 50 ms for at most `limit`; true if it became true.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A named network namespace (`ip netns add`), deleted on drop.
pub struct Netns {
    /// The name under /run/netns.
    pub name: String,
    deleted: bool,
}

impl Netns {
    /// Creates `cria-t-<random>`.
    pub fn new() -> Self {
        let name = format!("cria-t-{}", random_hex(10));
        must(&["ip", "netns", "add", &name]);
        Self {
            name,
            deleted: false,
        }
    }

    /// The namespace's path, as passed in CNI_NETNS.
    pub fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// Deletes it now (to test DEL with the netns gone).
    pub fn delete(&mut self) {
        must(&["ip", "netns", "del", &self.name]);
        self.deleted = true;
    }

    /// Runs a command inside the namespace.
    pub fn exec(&self, args: &[&str]) -> Output {
        let mut full = vec!["ip", "netns", "exec", self.name.as_str()];
        full.extend_from_slice(args);
        run(&full)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if !self.deleted {
            let _ = run(&["ip", "netns", "del", &self.name]);
        }
    }
}

/// A test's network: unique bridge and network name, temp conf dir, cache
/// and host-local store. Dropping it deletes the bridge.
pub struct Lab {
    /// Holds conf/, cache/ and ipam/.
    pub tmp: tempfile::TempDir,
    /// The bridge the bridge plugin creates (≤ 15 chars).
    pub bridge: String,
    /// The network name (also host-local's store subdir).
    pub network: String,
}

impl Lab {
    /// A lab with nothing created yet.
    pub fn new() -> Self {
        assert!(
            Path::new(DEBIAN_CNI_BIN).join("bridge").exists(),
            "these tests need Debian's containernetworking-plugins in {DEBIAN_CNI_BIN}"
        );
        let tmp = tempfile::tempdir().expect("tempdir");
        for d in ["conf", "cache", "ipam"] {
            std::fs::create_dir(tmp.path().join(d)).expect("mkdir");
        }
        let id = random_hex(8);
        Self {
            tmp,
            bridge: format!("crt{id}"),
            network: format!("cria-test-{id}"),
        }
    }

    /// The conf dir.
    pub fn conf_dir(&self) -> PathBuf {
        self.tmp.path().join("conf")
    }

    /// host-local's dataDir.
    pub fn ipam_dir(&self) -> PathBuf {
        self.tmp.path().join("ipam")
    }

    /// A fresh client (a new one after a simulated restart shares nothing in memory).
    pub fn cni(&self) -> Cni {
        Cni::new(CniOptions {
            conf_dir: self.conf_dir(),
            bin_dirs: vec![
                PathBuf::from("/nonexistent/opt/cni/bin"),
                PathBuf::from(DEBIAN_CNI_BIN),
            ],
            cache_dir: self.tmp.path().join("cache"),
            plugin_timeout: Duration::from_secs(30),
        })
    }

    /// The bridge + loopback + portmap list with host-local over `ranges`
    /// (host-local's range sets), never masquerading.
    pub fn conflist(&self, ranges: Value, is_gateway: bool) -> Value {
        json!({
            "cniVersion": "1.0.0",
            "name": self.network,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": is_gateway,
                    "ipMasq": false,
                    "ipam": {"type": "host-local", "ranges": ranges, "dataDir": self.ipam_dir()}
                },
                {"type": "loopback"},
                {"type": "portmap", "capabilities": {"portMappings": true}}
            ]
        })
    }

    /// Writes a config file into the conf dir.
    pub fn write_conf(&self, file: &str, body: &Value) {
        std::fs::write(
            self.conf_dir().join(file),
            serde_json::to_vec_pretty(body).expect("json"),
        )
        .expect("write conf");
    }

    /// Interfaces enslaved to the bridge (the host ends of pod veths).
    pub fn veths(&self) -> Vec<String> {
        let out = run(&["ip", "-o", "link", "show", "master", &self.bridge]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Addresses host-local holds for this network (its store's per-IP files).
    pub fn allocations(&self) -> Vec<String> {
        let dir = self.ipam_dir().join(&self.network);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != "lock" && !n.starts_with("last_reserved_ip"))
            .collect()
    }

    /// Files left in the result cache.
    pub fn cache_files(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.tmp.path().join("cache"))
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default()
    }

    /// Asserts every pod is gone without a trace: no veth on the bridge, no
    /// IPAM allocation, no cached result.
    #[track_caller]
    pub fn assert_nothing_left(&self) {
        assert!(self.veths().is_empty(), "veths left: {:?}", self.veths());
        assert!(
            self.allocations().is_empty(),
            "IPAM left: {:?}",
            self.allocations()
        );
        assert!(
            self.cache_files().is_empty(),
            "cache left: {:?}",
            self.cache_files()
        );
    }

    /// Runtime parameters for a pod in `ns`.
    pub fn pod(&self, ns: &Netns) -> RuntimeConf {
        RuntimeConf::new(format!("pod{}", random_hex(12)), ns.path()).with_pod(
            "cria-test",
            &ns.name,
            &random_hex(16),
        )
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = run(&["ip", "link", "del", &self.bridge]);
    }
}
