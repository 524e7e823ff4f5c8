//! A real distribution registry (Debian's `docker-registry`) on 127.0.0.1,
//! optionally behind TLS with a test-made CA and htpasswd basic auth, plus a
//! throttling TCP proxy so a test can interrupt a pull mid-stream.

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tempfile::TempDir;

use crate::host::{free_port, run, run_stdout, wait_for};

/// How a registry is served.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Serve HTTPS with a certificate signed by a fresh test CA.
    pub tls: bool,
    /// Require basic auth with this user and password (htpasswd, bcrypt).
    pub basic_auth: Option<(String, String)>,
}

/// A running registry; killed and its storage removed on drop.
pub struct Registry {
    child: Child,
    dir: TempDir,
    port: u16,
    opts: RegistryOptions,
}

impl Registry {
    /// A plain-HTTP registry without auth.
    pub fn start() -> Result<Self> {
        Self::start_with(RegistryOptions::default())
    }

    /// An HTTPS registry requiring `user`/`password`.
    pub fn start_tls_auth(user: &str, password: &str) -> Result<Self> {
        Self::start_with(RegistryOptions {
            tls: true,
            basic_auth: Some((user.to_owned(), password.to_owned())),
        })
    }

    /// Starts a registry as described by `opts`, waiting until `/v2/` answers.
    pub fn start_with(opts: RegistryOptions) -> Result<Self> {
        let mut dir = tempfile::Builder::new()
            .prefix("cria-registry-")
            .tempdir()?;
        fs::create_dir_all(dir.path().join("storage"))?;
        if opts.tls {
            make_tls_material(dir.path())?;
        }
        if let Some((user, pass)) = &opts.basic_auth {
            let line = run_stdout(Command::new("htpasswd").args(["-Bbn", user, pass]))?;
            fs::write(
                dir.path().join("htpasswd"),
                line.trim_end().to_owned() + "\n",
            )?;
        }
        // The free port can be taken between probing and binding: retry a few times.
        let mut last_err = None;
        for _ in 0..3 {
            let port = free_port()?;
            fs::write(
                dir.path().join("config.yml"),
                registry_config(dir.path(), port, &opts),
            )?;
            let log = fs::File::create(dir.path().join("registry.log"))?;
            let child = Command::new("docker-registry")
                .arg("serve")
                .arg(dir.path().join("config.yml"))
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .context("starting docker-registry (apt-get install docker-registry)")?;
            let mut reg = Registry {
                child,
                dir,
                port,
                opts: opts.clone(),
            };
            match reg.wait_ready() {
                Ok(()) => return Ok(reg),
                Err(e) => {
                    last_err = Some(e);
                    // Keep the temp dir (certs, htpasswd) for the next attempt.
                    let _ = reg.child.kill();
                    let _ = reg.child.wait();
                    dir = std::mem::replace(&mut reg.dir, tempfile::tempdir()?);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("registry did not start")))
    }

    fn wait_ready(&mut self) -> Result<()> {
        let url = format!("{}/v2/", self.url());
        let ca = self.ca_cert();
        let child = &mut self.child;
        let ready = wait_for(Duration::from_secs(15), Duration::from_millis(50), || {
            if let Ok(Some(_)) = child.try_wait() {
                return Some(false);
            }
            let mut c = Command::new("curl");
            c.args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "2",
            ]);
            if let Some(ca) = &ca {
                c.arg("--cacert").arg(ca);
            }
            let code = c.arg(&url).output().ok()?;
            let code = String::from_utf8_lossy(&code.stdout).into_owned();
            (code == "200" || code == "401").then_some(true)
        });
        match ready {
            Some(true) => Ok(()),
            _ => bail!(
                "registry on port {} did not answer /v2/; log:\n{}",
                self.port,
                self.log()
            ),
        }
    }

    /// `127.0.0.1:<port>`, the registry host as it appears in image references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>` or `https://…`.
    pub fn url(&self) -> String {
        let scheme = if self.opts.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.host())
    }

    /// The test CA's certificate (PEM) when the registry serves TLS.
    pub fn ca_cert(&self) -> Option<PathBuf> {
        self.opts
            .tls
            .then(|| self.dir.path().join("tls/ca-only/ca.crt"))
    }

    /// The registry's storage root (filesystem driver).
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// Where the registry keeps the bytes of blob `sha256:<hex>`.
    pub fn blob_data_path(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.storage()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2.min(hex.len())])
            .join(hex)
            .join("data")
    }

    /// The registry's log so far (access log included).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// How many successful GETs of blob `digest` (any repository) the access log shows.
    pub fn blob_gets(&self, digest: &str) -> usize {
        let needle = format!("/blobs/{digest} ");
        self.log()
            .lines()
            .filter(|l| l.contains("\"GET /v2/") && l.contains(&needle) && l.contains("\" 200 "))
            .count()
    }

    /// The digest the registry serves for `repo:reference` (its
    /// `Docker-Content-Digest` header), with the `Accept` of a CRI client.
    pub fn manifest_digest(&self, repo: &str, reference: &str) -> Result<String> {
        let headers = run_stdout(
            self.curl()
                .args(["-sf", "-o", "/dev/null", "-D", "-"])
                .arg(format!("{}/v2/{repo}/manifests/{reference}", self.url())),
        )?;
        headers
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("docker-content-digest")
                    .then(|| v.trim().to_owned())
            })
            .with_context(|| format!("no Docker-Content-Digest for {repo}:{reference}"))
    }

    /// The manifest (or index) the registry serves for `repo:reference`.
    pub fn manifest(&self, repo: &str, reference: &str) -> Result<serde_json::Value> {
        let body = run_stdout(
            self.curl()
                .arg("-sf")
                .arg(format!("{}/v2/{repo}/manifests/{reference}", self.url())),
        )?;
        Ok(serde_json::from_str(&body)?)
    }

    /// Uploads `data` as a blob of `repo` over the distribution API (POST +
    /// PUT); returns its digest. For documents skopeo would refuse to copy.
    pub fn put_blob(&self, repo: &str, data: &[u8]) -> Result<String> {
        let digest = crate::store::sha256_digest(data);
        let headers = run_stdout(
            self.curl()
                .args(["-sf", "-X", "POST", "-o", "/dev/null", "-D", "-"])
                .arg(format!("{}/v2/{repo}/blobs/uploads/", self.url())),
        )?;
        let location = headers
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("location")
                    .then(|| v.trim().to_owned())
            })
            .context("upload has no Location")?;
        let location = if location.starts_with("http") {
            location
        } else {
            format!("{}{location}", self.url())
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let file = tempfile::NamedTempFile::new()?;
        fs::write(file.path(), data)?;
        run(self
            .curl()
            .args([
                "-sf",
                "-X",
                "PUT",
                "-H",
                "Content-Type: application/octet-stream",
                "--data-binary",
            ])
            .arg(format!("@{}", file.path().display()))
            .arg(format!("{location}{sep}digest={digest}")))?;
        Ok(digest)
    }

    /// Uploads a manifest document under `repo:reference` with `media_type`.
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        doc: &[u8],
    ) -> Result<String> {
        let file = tempfile::NamedTempFile::new()?;
        fs::write(file.path(), doc)?;
        run(self
            .curl()
            .args(["-sf", "-X", "PUT", "-H"])
            .arg(format!("Content-Type: {media_type}"))
            .arg("--data-binary")
            .arg(format!("@{}", file.path().display()))
            .arg(format!("{}/v2/{repo}/manifests/{reference}", self.url())))?;
        Ok(crate::store::sha256_digest(doc))
    }

    /// curl with this registry's CA, credentials and the manifest media types.
    fn curl(&self) -> Command {
        let mut c = Command::new("curl");
        c.args(["--max-time", "10", "-H"]).arg(
            "Accept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
             application/vnd.docker.distribution.manifest.list.v2+json, \
             application/vnd.docker.distribution.manifest.v2+json",
        );
        if let Some(ca) = self.ca_cert() {
            c.arg("--cacert").arg(ca);
        }
        if let Some((u, p)) = &self.opts.basic_auth {
            c.arg("-u").arg(format!("{u}:{p}"));
        }
        c
    }

    /// Pushes `src` (a skopeo source such as `oci:/layout:ref`) to `<host>/<repo_tag>`
    /// with skopeo; `extra` adds flags such as `--format v2s2` or `--all`.
    pub fn push(&self, src: &str, repo_tag: &str, extra: &[&str]) -> Result<()> {
        let mut c = Command::new("skopeo");
        c.args(["copy", "--quiet", "--retry-times", "2"])
            .args(extra);
        if let Some(ca) = self.ca_cert() {
            c.arg("--dest-cert-dir")
                .arg(ca.parent().context("ca has a dir")?);
        } else {
            c.arg("--dest-tls-verify=false");
        }
        if let Some((u, p)) = &self.opts.basic_auth {
            c.arg("--dest-creds").arg(format!("{u}:{p}"));
        }
        c.arg(src)
            .arg(format!("docker://{}/{repo_tag}", self.host()));
        run(&mut c).map(|_| ())
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn registry_config(dir: &Path, port: u16, opts: &RegistryOptions) -> String {
    let mut cfg = format!(
        "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n\
         storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
         http:\n  addr: 127.0.0.1:{port}\n",
        dir.join("storage").display()
    );
    if opts.tls {
        cfg += &format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            dir.join("tls/server.crt").display(),
            dir.join("tls/server.key").display()
        );
    }
    if opts.basic_auth.is_some() {
        cfg += &format!(
            "auth:\n  htpasswd:\n    realm: cria-test\n    path: {}\n",
            dir.join("htpasswd").display()
        );
    }
    cfg
}

/// A fresh CA and a server certificate for 127.0.0.1/localhost signed by it (openssl).
fn make_tls_material(dir: &Path) -> Result<()> {
    let tls = dir.join("tls");
    fs::create_dir_all(&tls)?;
    let script = r#"
set -euo pipefail
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout ca.key -out ca.crt -days 2 -subj /CN=cria-test-ca \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout server.key -out server.csr -subj /CN=127.0.0.1 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n' > ext.cnf
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
  -out server.crt -days 2 -extfile ext.cnf 2>/dev/null
# A dir holding only the CA certificate: what certs.d-style consumers expect.
mkdir -p ca-only && cp ca.crt ca-only/ca.crt
"#;
    run(Command::new("bash").arg("-c").arg(script).current_dir(&tls))?;
    Ok(())
}

/// A TCP proxy on 127.0.0.1 in front of a registry whose download direction
/// can be throttled, so a test can catch a pull while a layer streams.
pub struct ThrottledProxy {
    port: u16,
    rate: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    accept: Option<JoinHandle<()>>,
}

impl ThrottledProxy {
    /// Proxies 127.0.0.1:<new port> to `upstream_port`, serving at most
    /// `bytes_per_sec` downstream (0 = unlimited).
    pub fn start(upstream_port: u16, bytes_per_sec: u64) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let rate = Arc::new(AtomicU64::new(bytes_per_sec));
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (r, s, c) = (rate.clone(), stop.clone(), conns.clone());
        let accept = std::thread::spawn(move || {
            for client in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(upstream) = TcpStream::connect(("127.0.0.1", upstream_port)) else {
                    continue;
                };
                if let (Ok(a), Ok(b), Ok(mut list)) =
                    (client.try_clone(), upstream.try_clone(), c.lock())
                {
                    list.push(a);
                    list.push(b);
                }
                let (Ok(c2), Ok(u2)) = (client.try_clone(), upstream.try_clone()) else {
                    continue;
                };
                std::thread::spawn(move || pump(client, upstream, None));
                let r = r.clone();
                std::thread::spawn(move || pump(u2, c2, Some(r)));
            }
        });
        Ok(ThrottledProxy {
            port,
            rate,
            stop,
            conns,
            accept: Some(accept),
        })
    }

    /// `127.0.0.1:<proxy port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Changes the downstream rate (0 = unlimited) for data not yet sent.
    pub fn set_rate(&self, bytes_per_sec: u64) {
        self.rate.store(bytes_per_sec, Ordering::SeqCst);
    }
}

/// Copies `from` → `to` until EOF, sleeping to keep under `rate` bytes/s.
fn pump(mut from: TcpStream, mut to: TcpStream, rate: Option<Arc<AtomicU64>>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        if let Some(r) = &rate {
            let r = r.load(Ordering::SeqCst);
            if r > 0 {
                std::thread::sleep(Duration::from_secs_f64(n as f64 / r as f64));
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

impl Drop for ThrottledProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Ok(list) = self.conns.lock() {
            for s in list.iter() {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}
