//! The two CRI systems under test behind one face: criad (with its
//! monitors) and containerd (with its shims), each with its own root, state,
//! socket, cgroup parent and bridge, on the same CNI configuration.

use std::fs;
use std::path::PathBuf;

use anyhow::{Context, Result};
use cria_tests::host::destroy_cgroup;
use cria_tests::{connect, Criad, CriadConfig, ImageClient, RuntimeClient};

use crate::containerd::Containerd;
use crate::procmem::{self, Mem};

/// Which CRI system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// criad + cria-monitor.
    Cria,
    /// containerd 1.6 + containerd-shim-runc-v2 + runc.
    Containerd,
}

impl Kind {
    /// The name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Cria => "criad",
            Kind::Containerd => "containerd",
        }
    }

    /// Per-system network numbers, so both can run at once.
    fn net(self) -> (&'static str, &'static str) {
        match self {
            Kind::Cria => ("cria-bench0", "10.231.0.0/16"),
            Kind::Containerd => ("ctd-bench0", "10.232.0.0/16"),
        }
    }
}

/// The CNI network list both systems get: bridge + host-local + portmap,
/// no masquerading and no default route (pod traffic stays on the host).
pub fn cni_conflist(kind: Kind, ipam_dir: &std::path::Path) -> String {
    let (bridge, subnet) = kind.net();
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "bench-net",
        "plugins": [
            {
                "type": "bridge", "bridge": bridge, "isGateway": true,
                "isDefaultGateway": false, "ipMasq": false, "hairpinMode": true,
                "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]],
                         "dataDir": ipam_dir}
            },
            {"type": "portmap", "capabilities": {"portMappings": true}}
        ]
    })
    .to_string()
}

enum Inner {
    Cria(Criad),
    Containerd(Containerd),
}

/// One running system.
pub struct System {
    inner: Inner,
    /// The pod cgroup parent this system's pods use (removed on drop).
    pub cgroup_parent: String,
    /// Where pod logs go.
    pub log_dir: PathBuf,
    _scratch: tempfile::TempDir,
}

impl System {
    /// Starts a fresh instance of `kind` (empty store).
    pub async fn start(kind: Kind, registry: &str, pause: &str) -> Result<System> {
        let scratch = tempfile::Builder::new().prefix("cria-bench-").tempdir()?;
        let ipam = scratch.path().join("ipam");
        let log_dir = scratch.path().join("logs");
        fs::create_dir_all(&log_dir)?;
        let conflist = cni_conflist(kind, &ipam);
        let inner = match kind {
            Kind::Cria => {
                let c = Criad::start(CriadConfig {
                    insecure: vec![registry.to_owned()],
                    ..Default::default()
                })
                .await?;
                fs::write(c.dir().join("cni/10-bench.conflist"), &conflist)?;
                Inner::Cria(c)
            }
            Kind::Containerd => {
                Inner::Containerd(Containerd::start(registry, pause, &conflist).await?)
            }
        };
        Ok(System {
            inner,
            cgroup_parent: format!("/cria-bench-{}-{}", kind.name(), std::process::id()),
            log_dir,
            _scratch: scratch,
        })
    }

    /// Which system this is.
    pub fn kind(&self) -> Kind {
        match self.inner {
            Inner::Cria(_) => Kind::Cria,
            Inner::Containerd(_) => Kind::Containerd,
        }
    }

    /// The CRI socket.
    pub fn socket(&self) -> PathBuf {
        match &self.inner {
            Inner::Cria(c) => c.socket(),
            Inner::Containerd(c) => c.socket(),
        }
    }

    /// A RuntimeService client.
    pub async fn runtime(&self) -> Result<RuntimeClient> {
        Ok(RuntimeClient::new(connect(&self.socket()).await?))
    }

    /// An ImageService client.
    pub async fn images(&self) -> Result<ImageClient> {
        Ok(ImageClient::new(connect(&self.socket()).await?))
    }

    /// The daemon's pid.
    pub fn daemon_pid(&self) -> Option<i32> {
        match &self.inner {
            Inner::Cria(c) => c.pid(),
            Inner::Containerd(c) => c.pid(),
        }
    }

    /// The per-container (cria) or per-pod (containerd) helper processes.
    pub fn helper_pids(&self) -> Vec<i32> {
        match &self.inner {
            Inner::Cria(c) => monitor_pids(&c.state().join("containers")),
            Inner::Containerd(c) => c.shim_pids(),
        }
    }

    /// Memory of the daemon alone, and of its helpers together.
    pub fn memory(&self) -> (Mem, Mem) {
        let daemon = procmem::of_pids(&self.daemon_pid().into_iter().collect::<Vec<_>>());
        (daemon, procmem::of_pids(&self.helper_pids()))
    }

    /// The daemon's log (for error messages).
    pub fn log(&self) -> String {
        match &self.inner {
            Inner::Cria(c) => c.log(),
            Inner::Containerd(c) => c.log(),
        }
    }
}

impl Drop for System {
    fn drop(&mut self) {
        destroy_cgroup(&self.cgroup_parent);
        // The bridge is per system and per run: take it down with the system.
        let _ = std::process::Command::new("ip")
            .args(["link", "del", self.kind().net().0])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Live monitor pids from `<state>/containers/*/monitor.pid`.
fn monitor_pids(containers: &std::path::Path) -> Vec<i32> {
    let Ok(rd) = fs::read_dir(containers) else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok())
        .filter_map(|e| fs::read_to_string(e.path().join("monitor.pid")).ok())
        .filter_map(|s| s.trim().parse::<i32>().ok())
        .filter(|pid| cria_tests::host::pid_alive(*pid))
        .collect()
}

/// Starts both systems, for measurements that interleave them.
pub async fn start_both(registry: &str, pause: &str) -> Result<[System; 2]> {
    let c = System::start(Kind::Cria, registry, pause)
        .await
        .context("starting criad")?;
    let d = System::start(Kind::Containerd, registry, pause)
        .await
        .context("starting containerd")?;
    Ok([c, d])
}
