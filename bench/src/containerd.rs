//! A private containerd 1.6 (Debian) with its CRI plugin, runc and the same
//! CNI configuration as criad: its own root, state, socket and bridge.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cria_tests::host::{kill, unmount_all_under};
use tempfile::TempDir;

use crate::procmem::pids_with_cmdline;

/// How long containerd may take to answer on its socket.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running containerd; stopped (with its shims) on drop.
pub struct Containerd {
    dir: TempDir,
    child: Option<Child>,
}

impl Containerd {
    /// Starts containerd with `pause` as sandbox image, pulling over plain
    /// HTTP from `registry` (host:port) and using the CNI list `cni_conflist`.
    pub async fn start(registry: &str, pause: &str, cni_conflist: &str) -> Result<Containerd> {
        let dir = tempfile::Builder::new()
            .prefix("cria-bench-ctd-")
            .tempdir()?;
        let d = dir.path();
        fs::create_dir_all(d.join("cni"))?;
        fs::write(d.join("cni/10-bench.conflist"), cni_conflist)?;
        let hosts = d.join("certs.d").join(registry);
        fs::create_dir_all(&hosts)?;
        fs::write(
            hosts.join("hosts.toml"),
            format!(
                "server = \"http://{registry}\"\n\n[host.\"http://{registry}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
            ),
        )?;
        fs::write(d.join("config.toml"), config(d, pause))?;
        let log = fs::File::create(d.join("containerd.log"))?;
        let child = Command::new("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting containerd (apt-get install containerd)")?;
        let mut me = Containerd {
            dir,
            child: Some(child),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(c) = me.child.as_mut() {
                if let Some(st) = c.try_wait()? {
                    me.child = None;
                    bail!("containerd exited with {st}; log:\n{}", me.log());
                }
            }
            if me.socket().exists() {
                if let Ok(ch) = cria_tests::connect(&me.socket()).await {
                    let mut rt = cria_tests::RuntimeClient::new(ch);
                    if rt
                        .version(cria_proto::v1::VersionRequest::default())
                        .await
                        .is_ok()
                    {
                        return Ok(me);
                    }
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "containerd not ready after {START_TIMEOUT:?}; log:\n{}",
                    me.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The CRI socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    /// The daemon's pid.
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    /// The shims (`containerd-shim-runc-v2`) serving this containerd.
    pub fn shim_pids(&self) -> Vec<i32> {
        let sock = self.socket();
        let sock = sock.to_string_lossy();
        pids_with_cmdline(&["containerd-shim", &format!("-address {sock} ")])
    }

    /// containerd's log.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let shims = self.shim_pids();
        if let Some(mut c) = self.child.take() {
            kill(c.id() as i32, libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        for pid in shims {
            kill(pid, libc::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(200));
        unmount_all_under(self.dir.path());
    }
}

fn config(d: &Path, pause: &str) -> String {
    let p = |s: &str| d.join(s).display().to_string();
    format!(
        r#"version = 2
root = "{root}"
state = "{state}"
oom_score = 0

[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[debug]
  level = "warn"
[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "{opt}"
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "{pause}"
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    enable_selinux = false
    # root lacks CAP_SYS_RESOURCE here: the sandbox's -998 cannot be applied
    restrict_oom_score_adj = true
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          BinaryName = "runc"
          SystemdCgroup = false
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "{cni}"
      max_conf_num = 1
    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = "{certs}"
"#,
        root = p("root"),
        state = p("state"),
        sock = p("containerd.sock"),
        opt = p("opt"),
        cni = p("cni"),
        certs = p("certs.d"),
    )
}
