//! Test harness: a real `docker-registry` on 127.0.0.1 (optionally TLS and
//! htpasswd), OCI image layouts built with umoci or GNU tar + gzip/zstd and
//! pushed with skopeo, and a `LayerUnpacker` that extracts with GNU tar.

#![allow(dead_code)] // each test binary uses a different part

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cria_image_store::{Compression, LayerInfo, LayerUnpacker, UnpackError};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

/// Runs a command, panicking with its output when it fails.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// A registry started for one test; killed on drop.
pub struct Registry {
    child: Child,
    pub dir: TempDir,
    pub port: u16,
    pub tls: bool,
}

#[derive(Default)]
pub struct RegistryOpts {
    pub tls: bool,
    pub htpasswd: Option<(String, String)>,
    /// A complete `auth:` block (e.g. from [`TokenServer::registry_auth`]).
    pub auth_block: Option<String>,
    /// With `tls`: require a client certificate signed by the test CA
    /// (`client.cert`/`client.key` are put beside `ca.crt` in [`Registry::ca_dir`]).
    pub client_certs: bool,
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("bound socket has an address").port()
}

impl Registry {
    pub fn start() -> Registry {
        Registry::start_with(RegistryOpts::default())
    }

    pub fn start_with(opts: RegistryOpts) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut extra = String::new();
        if opts.tls {
            make_certs(d);
            extra.push_str(&format!(
                "  tls:\n    certificate: {0}/server.crt\n    key: {0}/server.key\n",
                d.display()
            ));
            if opts.client_certs {
                make_client_cert(d);
                extra.push_str(&format!(
                    "    clientcas:\n      - {}/ca/ca.crt\n",
                    d.display()
                ));
            }
        }
        let mut auth = opts.auth_block.clone().unwrap_or_default();
        if let Some((u, p)) = &opts.htpasswd {
            let line = run(Command::new("htpasswd").args(["-Bbn", u, p]));
            fs::write(d.join("htpasswd"), line.trim_end().to_string() + "\n").unwrap();
            auth = format!(
                "auth:\n  htpasswd:\n    realm: cria-test\n    path: {}/htpasswd\n",
                d.display()
            );
        }
        // A port can be taken between probing and binding: try a few.
        for _ in 0..5 {
            let port = free_port();
            let config = format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {0}/storage\n  delete:\n    enabled: true\n\
                 {auth}http:\n  addr: 127.0.0.1:{port}\n{extra}",
                d.display()
            );
            fs::write(d.join("config.yml"), config).unwrap();
            let log = fs::File::create(d.join("registry.log")).unwrap();
            let mut child = Command::new("docker-registry")
                .arg("serve")
                .arg(d.join("config.yml"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("docker-registry is installed (apt-get install docker-registry)");
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut up = false;
            while Instant::now() < deadline {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    up = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if up {
                return Registry {
                    child,
                    dir,
                    port,
                    tls: opts.tls,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "registry did not start: {}",
            fs::read_to_string(d.join("registry.log")).unwrap_or_default()
        );
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A directory holding only the CA certificate (skopeo's --dest-cert-dir).
    pub fn ca_dir(&self) -> PathBuf {
        self.dir.path().join("ca")
    }

    /// Where the registry keeps a blob's bytes on disk.
    pub fn blob_data(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Pushes `oci:<layout>:<name>` to `<host>/<dest>` with skopeo.
    pub fn push(&self, layout: &Path, name: &str, dest: &str, extra: &[&str]) {
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--quiet", "--all"]);
        // Converting the manifest format changes digests; otherwise keep them
        // (and the layers' compression) exactly as built.
        if !extra.contains(&"--format") {
            cmd.arg("--preserve-digests");
        }
        if self.tls {
            cmd.arg("--dest-cert-dir").arg(self.ca_dir());
        } else {
            cmd.arg("--dest-tls-verify=false");
        }
        cmd.args(extra);
        cmd.arg(format!("oci:{}:{name}", layout.display()));
        cmd.arg(format!("docker://{}/{dest}", self.host()));
        run(&mut cmd);
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test CA and a server certificate for 127.0.0.1 signed by it.
fn make_certs(d: &Path) {
    fs::create_dir_all(d.join("ca")).unwrap();
    self_signed_cert("/CN=cria test CA", &d.join("ca.key"), &d.join("ca/ca.crt"));
    ca_signed_cert(
        d,
        CaSigned {
            subject: "/CN=127.0.0.1",
            csr: "server.csr",
            extfile: "ext.cnf",
            extensions: "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
            key: "server.key",
            cert: "server.crt",
        },
    );
}

/// A client certificate signed by the test CA, as `ca/client.cert` + `ca/client.key`.
fn make_client_cert(d: &Path) {
    ca_signed_cert(
        d,
        CaSigned {
            subject: "/CN=cria test client",
            csr: "client.csr",
            extfile: "client-ext.cnf",
            extensions: "extendedKeyUsage=clientAuth\n",
            key: "ca/client.key",
            cert: "ca/client.cert",
        },
    );
}

/// A new RSA key at `key` and a self-signed certificate for `subject` at
/// `cert`, valid for two days.
fn self_signed_cert(subject: &str, key: &Path, cert: &Path) {
    run(Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", subject,
            "-keyout",
        ])
        .arg(key)
        .arg("-out")
        .arg(cert));
}

/// A certificate to be signed by the test CA; every path is relative to the
/// certificate directory.
struct CaSigned<'a> {
    subject: &'a str,
    /// Where the signing request is written.
    csr: &'a str,
    /// Where `extensions` (openssl extfile syntax) are written.
    extfile: &'a str,
    extensions: &'a str,
    key: &'a str,
    cert: &'a str,
}

/// A new RSA key and a certificate signed by the test CA in `d` (`ca.key`,
/// `ca/ca.crt`), valid for two days.
fn ca_signed_cert(d: &Path, c: CaSigned<'_>) {
    let p = |n: &str| d.join(n).display().to_string();
    run(Command::new("openssl").args([
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        c.subject,
        "-keyout",
        &p(c.key),
        "-out",
        &p(c.csr),
    ]));
    fs::write(d.join(c.extfile), c.extensions).unwrap();
    run(Command::new("openssl").args([
        "x509",
        "-req",
        "-in",
        &p(c.csr),
        "-CA",
        &p("ca/ca.crt"),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &p(c.extfile),
        "-out",
        &p(c.cert),
    ]));
}

/// A hand-built OCI image layout (blobs + index.json), for skopeo to push.
pub struct Layout {
    pub dir: TempDir,
    refs: Vec<serde_json::Value>,
}

/// A layer as built: descriptor fields and its diff ID.
#[derive(Clone, Debug)]
pub struct Layer {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
    pub diff_id: String,
}

/// A manifest or index as built.
#[derive(Clone, Debug)]
pub struct Desc {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
}

impl Layout {
    pub fn new() -> Layout {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("blobs/sha256")).unwrap();
        fs::write(
            dir.path().join("oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        let l = Layout { dir, refs: vec![] };
        l.write_index();
        l
    }

    /// A layout with one amd64 image, tagged `tag`, whose one gzip layer
    /// holds the file `/etc/<name>` with `content`.
    pub fn one_file(name: &str, content: &str, tag: &str) -> Layout {
        let mut layout = Layout::new();
        let rootfs = file_rootfs(name, content);
        let layer = layout.layer(rootfs.path(), Compression::Gzip);
        let m = layout.image("amd64", None, &[layer]);
        layout.tag(tag, &m);
        layout
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn put_blob(&self, data: &[u8]) -> (String, u64) {
        let hex = sha256_hex(data);
        fs::write(self.dir.path().join("blobs/sha256").join(&hex), data).unwrap();
        (format!("sha256:{hex}"), data.len() as u64)
    }

    /// A layer from a directory: GNU tar, then gzip/zstd (or none).
    pub fn layer(&self, dir: &Path, compression: Compression) -> Layer {
        let tar = Command::new("tar")
            .args(["--sort=name", "--numeric-owner", "--format=gnu", "-C"])
            .arg(dir)
            .args(["-cf", "-", "."])
            .output()
            .unwrap();
        assert!(tar.status.success());
        let diff_id = format!("sha256:{}", sha256_hex(&tar.stdout));
        let (bytes, media_type) = match compression {
            Compression::None => (tar.stdout, "application/vnd.oci.image.layer.v1.tar"),
            Compression::Gzip => (
                pipe(Command::new("gzip").args(["-n", "-c"]), &tar.stdout),
                "application/vnd.oci.image.layer.v1.tar+gzip",
            ),
            Compression::Zstd => (
                pipe(Command::new("zstd").args(["-q", "-c"]), &tar.stdout),
                "application/vnd.oci.image.layer.v1.tar+zstd",
            ),
        };
        let (digest, size) = self.put_blob(&bytes);
        Layer {
            digest,
            size,
            media_type: media_type.into(),
            diff_id,
        }
    }

    /// Config + manifest for these layers.
    pub fn image(&self, arch: &str, variant: Option<&str>, layers: &[Layer]) -> Desc {
        let mut config = serde_json::json!({
            "architecture": arch, "os": "linux",
            "config": {"Cmd": ["/bin/busybox", "sh"], "User": "1000"},
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>()},
        });
        if let Some(v) = variant {
            config["variant"] = v.into();
        }
        let (cd, cs) = self.put_blob(config.to_string().as_bytes());
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
            "layers": layers.iter().map(|l| serde_json::json!({
                "mediaType": l.media_type, "digest": l.digest, "size": l.size})).collect::<Vec<_>>(),
        });
        let (digest, size) = self.put_blob(manifest.to_string().as_bytes());
        Desc {
            digest,
            size,
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        }
    }

    /// An index over (manifest, arch, variant).
    pub fn index(&self, entries: &[(&Desc, &str, Option<&str>)]) -> Desc {
        let manifests: Vec<_> = entries
            .iter()
            .map(|(d, arch, variant)| {
                let mut platform = serde_json::json!({"architecture": arch, "os": "linux"});
                if let Some(v) = variant {
                    platform["variant"] = (*v).into();
                }
                serde_json::json!({"mediaType": d.media_type, "digest": d.digest, "size": d.size, "platform": platform})
            })
            .collect();
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        });
        let (digest, size) = self.put_blob(index.to_string().as_bytes());
        Desc {
            digest,
            size,
            media_type: "application/vnd.oci.image.index.v1+json".into(),
        }
    }

    /// Names a manifest or index in the layout's index.json.
    pub fn tag(&mut self, name: &str, d: &Desc) {
        self.refs.push(serde_json::json!({
            "mediaType": d.media_type, "digest": d.digest, "size": d.size,
            "annotations": {"org.opencontainers.image.ref.name": name},
        }));
        self.write_index();
    }

    fn write_index(&self) {
        let index = serde_json::json!({"schemaVersion": 2, "manifests": self.refs});
        fs::write(self.dir.path().join("index.json"), index.to_string()).unwrap();
    }
}

fn pipe(cmd: &mut Command, input: &[u8]) -> Vec<u8> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success());
    out.stdout
}

/// A root dir with busybox-static as /bin/busybox and a symlink /bin/sh.
pub fn busybox_rootfs() -> TempDir {
    let d = tempfile::tempdir().unwrap();
    fs::create_dir_all(d.path().join("bin")).unwrap();
    fs::copy("/bin/busybox", d.path().join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", d.path().join("bin/sh")).unwrap();
    d
}

/// A root dir with one small file.
pub fn file_rootfs(name: &str, content: &str) -> TempDir {
    let d = tempfile::tempdir().unwrap();
    fs::create_dir_all(d.path().join("etc")).unwrap();
    fs::write(d.path().join("etc").join(name), content).unwrap();
    d
}

/// Unpacks layers with GNU tar into `<root>/<chain hex>`; counts its calls.
pub struct TarUnpacker {
    pub root: TempDir,
    pub unpacked: Mutex<Vec<String>>,
    /// Fail (after reading everything) when asked to unpack this chain ID.
    pub fail_chain: Mutex<Option<String>>,
    /// Hold the unpack of this chain ID (before reading) until `release` is set.
    pub hold_chain: Mutex<Option<String>>,
    pub held: std::sync::atomic::AtomicBool,
    pub release: std::sync::atomic::AtomicBool,
    n: AtomicUsize,
}

impl TarUnpacker {
    pub fn new() -> TarUnpacker {
        TarUnpacker {
            root: tempfile::tempdir().unwrap(),
            unpacked: Mutex::new(vec![]),
            fail_chain: Mutex::new(None),
            hold_chain: Mutex::new(None),
            held: Default::default(),
            release: Default::default(),
            n: AtomicUsize::new(0),
        }
    }

    pub fn dir(&self, chain_id: &str) -> PathBuf {
        self.root
            .path()
            .join(chain_id.trim_start_matches("sha256:"))
    }

    pub fn is_unpacked_dir(&self, chain_id: &str) -> bool {
        self.dir(chain_id).is_dir()
    }

    pub fn calls(&self) -> Vec<String> {
        self.unpacked.lock().unwrap().clone()
    }
}

impl LayerUnpacker for TarUnpacker {
    fn is_unpacked(&self, chain_id: &str) -> bool {
        self.dir(chain_id).is_dir()
    }

    fn unpack(&self, layer: &LayerInfo, compressed: &mut dyn Read) -> Result<(), UnpackError> {
        if self.hold_chain.lock().unwrap().as_deref() == Some(layer.chain_id.as_str()) {
            self.held.store(true, Ordering::SeqCst);
            let deadline = Instant::now() + Duration::from_secs(30);
            while !self.release.load(Ordering::SeqCst) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let tmp = self
            .root
            .path()
            .join(format!(".tmp-{}", self.n.fetch_add(1, Ordering::Relaxed)));
        fs::create_dir(&tmp)?;
        let result = extract(layer, compressed, &tmp);
        let fail = self.fail_chain.lock().unwrap().as_deref() == Some(layer.chain_id.as_str());
        match result {
            Ok(()) if !fail => {
                let dest = self.dir(&layer.chain_id);
                if dest.exists() {
                    fs::remove_dir_all(&tmp)?;
                } else {
                    fs::rename(&tmp, &dest)?;
                }
                self.unpacked.lock().unwrap().push(layer.chain_id.clone());
                Ok(())
            }
            Ok(()) => {
                fs::remove_dir_all(&tmp)?;
                Err(UnpackError::new("injected unpack failure"))
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                Err(e)
            }
        }
    }
}

/// Feeds the whole stream (to EOF, so its verification runs) to `tar -x`.
fn extract(layer: &LayerInfo, r: &mut dyn Read, dir: &Path) -> Result<(), UnpackError> {
    let mut cmd = Command::new("tar");
    cmd.arg("-x")
        .arg("-C")
        .arg(dir)
        .args(["--no-same-owner", "-f", "-"]);
    match layer.compression {
        Compression::None => {}
        Compression::Gzip => {
            cmd.arg("-z");
        }
        Compression::Zstd => {
            cmd.arg("--zstd");
        }
    }
    let mut child = cmd.stdin(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let mut stdin = child.stdin.take().expect("stdin was piped");
    let mut buf = vec![0u8; 64 * 1024];
    let mut tar_open = true;
    let read_result = loop {
        match r.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                if tar_open && stdin.write_all(&buf[..n]).is_err() {
                    // tar stopped reading (end of archive); keep draining.
                    tar_open = false;
                }
            }
            Err(e) => break Err(e),
        }
    };
    drop(stdin);
    let out = child.wait_with_output()?;
    read_result?;
    if !out.status.success() {
        return Err(UnpackError::new(format!(
            "tar failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(())
}

/// Files (not dirs) under a directory, relative, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path().strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// A minimal bearer-token server (docker token spec) for a registry with
/// `auth: token:`. Tokens are JWTs signed RS256 with a test key whose
/// certificate travels in the `x5c` header and is the registry's root bundle.
pub struct TokenServer {
    pub port: u16,
    /// Token requests served (any outcome).
    pub requests: std::sync::Arc<AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub dir: TempDir,
}

pub const TOKEN_ISSUER: &str = "cria-test-issuer";
pub const TOKEN_SERVICE: &str = "cria-test-registry";

impl TokenServer {
    /// Grants what is asked to `user:password` (GET with basic auth) or to the
    /// refresh token (POST); anonymous callers get a token with no access.
    pub fn start(user: &str, password: &str, refresh_token: &str) -> TokenServer {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n).display().to_string();
        self_signed_cert(
            "/CN=cria token signer",
            &dir.path().join("token.key"),
            &dir.path().join("token.crt"),
        );
        let der = run_bytes(Command::new("openssl").args([
            "x509",
            "-in",
            &p("token.crt"),
            "-outform",
            "DER",
        ]));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = std::sync::Arc::new(AtomicUsize::new(0));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ctx = TokenCtx {
            key: dir.path().join("token.key"),
            x5c: base64_std(&der),
            basic: format!(
                "Basic {}",
                base64_std(format!("{user}:{password}").as_bytes())
            ),
            user: user.to_string(),
            refresh: refresh_token.to_string(),
        };
        let (req2, stop2) = (requests.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut conn) = conn else { continue };
                req2.fetch_add(1, Ordering::SeqCst);
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = serve_token(&ctx, &mut conn);
            }
        });
        TokenServer {
            port,
            requests,
            stop,
            thread: Some(thread),
            dir,
        }
    }

    /// The registry config's `auth:` block for this server.
    pub fn registry_auth(&self) -> String {
        format!(
            "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
            self.port,
            self.dir.path().join("token.crt").display()
        )
    }

    pub fn count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct TokenCtx {
    key: PathBuf,
    x5c: String,
    basic: String,
    user: String,
    refresh: String,
}

fn run_bytes(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?} failed");
    out.stdout
}

fn base64_std(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn base64_url(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

fn serve_token(ctx: &TokenCtx, conn: &mut TcpStream) -> std::io::Result<()> {
    // Read the head, then a body of Content-Length bytes.
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        data.extend_from_slice(&buf[..n]);
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if data.len() > 64 * 1024 {
            return Ok(());
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).to_string();
    let mut lines = head.lines();
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or("");
    let target = parts.next().unwrap_or("/");
    let mut auth = None;
    let mut length = 0usize;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "authorization" => auth = Some(v.trim().to_string()),
                "content-length" => length = v.trim().parse().unwrap_or(0),
                _ => {}
            }
        }
    }
    while data.len() < head_end + length {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            break;
        }
        data.extend_from_slice(&buf[..n]);
    }
    let body = String::from_utf8_lossy(&data[head_end..]).to_string();
    let url = reqwest::Url::parse(&format!("http://token.invalid{target}")).unwrap();
    let form = reqwest::Url::parse(&format!("http://token.invalid/?{body}")).unwrap();
    let params: Vec<(String, String)> = if method == "POST" {
        form.query_pairs().into_owned().collect()
    } else {
        url.query_pairs().into_owned().collect()
    };
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let scopes: Vec<String> = params
        .iter()
        .filter(|(n, _)| n == "scope")
        .map(|(_, v)| v.clone())
        .collect();

    let (status, subject) = if method == "POST" {
        if get("grant_type").as_deref() == Some("refresh_token")
            && get("refresh_token").as_deref() == Some(ctx.refresh.as_str())
        {
            ("200 OK", Some(ctx.user.clone()))
        } else {
            ("401 Unauthorized", None)
        }
    } else {
        match auth {
            Some(a) if a == ctx.basic => ("200 OK", Some(ctx.user.clone())),
            Some(_) => ("401 Unauthorized", None),
            None => ("200 OK", None), // anonymous: a token without access
        }
    };
    let body = if status.starts_with("200") {
        let access: Vec<serde_json::Value> = if subject.is_some() {
            scopes
                .iter()
                .filter_map(|s| {
                    let mut it = s.splitn(3, ':');
                    let (t, name, actions) = (it.next()?, it.next()?, it.next()?);
                    Some(serde_json::json!({"type": t, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
                })
                .collect()
        } else {
            vec![]
        };
        let jwt = sign_jwt(ctx, subject.as_deref().unwrap_or(""), access);
        serde_json::json!({"token": jwt, "expires_in": 300}).to_string()
    } else {
        r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#.to_string()
    };
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(resp.as_bytes())
}

fn sign_jwt(ctx: &TokenCtx, subject: &str, access: Vec<serde_json::Value>) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [ctx.x5c]});
    let claims = serde_json::json!({
        "iss": TOKEN_ISSUER, "sub": subject, "aud": TOKEN_SERVICE,
        "exp": now + 300, "nbf": now - 10, "iat": now - 10,
        "jti": format!("{now}-{}", std::process::id()), "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        base64_url(header.to_string().as_bytes()),
        base64_url(claims.to_string().as_bytes())
    );
    let sig = pipe(
        Command::new("openssl")
            .arg("dgst")
            .arg("-sha256")
            .arg("-sign")
            .arg(&ctx.key),
        signing_input.as_bytes(),
    );
    format!("{signing_input}.{}", base64_url(&sig))
}
