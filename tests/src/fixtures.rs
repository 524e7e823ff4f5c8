//! Test images built by independent tools (umoci, GNU tar, gzip, zstd, jq,
//! python's tarfile) from Debian's busybox-static, as OCI image layouts.
//!
//! Each fixture is a shell script in `tests/fixtures/` run with `lib.sh`.
//! It is built once per test process and cached on disk in
//! `target/cria-fixtures/<name>-<key>/`, where the key hashes the scripts and
//! the busybox binary, so reruns and parallel test processes reuse it.

use std::collections::HashMap;
use std::fs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::host::{run, target_dir};
use crate::registry::Registry;

const LIB: &str = include_str!("../fixtures/lib.sh");

/// The fixture scripts by name.
const SCRIPTS: &[(&str, &str)] = &[
    ("busybox", include_str!("../fixtures/busybox.sh")),
    ("compression", include_str!("../fixtures/compression.sh")),
    ("multiarch", include_str!("../fixtures/multiarch.sh")),
    ("layers", include_str!("../fixtures/layers.sh")),
    ("shared", include_str!("../fixtures/shared.sh")),
    ("big", include_str!("../fixtures/big.sh")),
    ("hostile", include_str!("../fixtures/hostile.sh")),
    ("symlinks", include_str!("../fixtures/symlinks.sh")),
    ("inside", include_str!("../fixtures/inside.sh")),
    ("escapes", include_str!("../fixtures/escapes.sh")),
    ("users", include_str!("../fixtures/users.sh")),
];

/// An OCI image layout holding one fixture's images (by ref name).
#[derive(Debug, Clone)]
pub struct Fixture {
    layout: PathBuf,
}

fn built() -> &'static Mutex<HashMap<String, PathBuf>> {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    BUILT.get_or_init(Mutex::default)
}

impl Fixture {
    /// The fixture `name` (see `tests/fixtures/<name>.sh`), built if needed.
    pub fn get(name: &str) -> Result<Fixture> {
        let mut map = built()
            .lock()
            .map_err(|_| anyhow!("fixture lock poisoned"))?;
        if let Some(p) = map.get(name) {
            return Ok(Fixture { layout: p.clone() });
        }
        let script = SCRIPTS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| *s)
            .with_context(|| format!("no fixture named {name}"))?;
        let layout = build_cached(name, script)?;
        map.insert(name.to_owned(), layout.clone());
        Ok(Fixture { layout })
    }

    /// The layout directory.
    pub fn layout(&self) -> &Path {
        &self.layout
    }

    /// The skopeo source of image `reference` in this layout.
    pub fn src(&self, reference: &str) -> String {
        format!("oci:{}:{reference}", self.layout.display())
    }

    /// Pushes image `reference` to `registry` as `repo_tag` with skopeo
    /// (`extra`: e.g. `["--format", "v2s2"]`, `["--all"]`).
    pub fn push(
        &self,
        registry: &Registry,
        reference: &str,
        repo_tag: &str,
        extra: &[&str],
    ) -> Result<()> {
        registry.push(&self.src(reference), repo_tag, extra)
    }

    /// The path of a blob of the layout.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    }

    /// A JSON blob of the layout.
    pub fn blob_json(&self, digest: &str) -> Result<Value> {
        let p = self.blob_path(digest);
        Ok(serde_json::from_slice(
            &fs::read(&p).with_context(|| format!("reading {}", p.display()))?,
        )?)
    }

    /// The descriptor `index.json` holds for `reference`.
    pub fn descriptor(&self, reference: &str) -> Result<Value> {
        let index: Value = serde_json::from_slice(&fs::read(self.layout.join("index.json"))?)?;
        index["manifests"]
            .as_array()
            .and_then(|ms| {
                ms.iter().find(|m| {
                    m["annotations"]["org.opencontainers.image.ref.name"].as_str()
                        == Some(reference)
                })
            })
            .cloned()
            .with_context(|| format!("no ref {reference} in {}", self.layout.display()))
    }

    /// The image manifest of `reference`; through an index, the one for `arch`.
    pub fn manifest(&self, reference: &str, arch: &str) -> Result<Value> {
        let desc = self.descriptor(reference)?;
        let doc = self.blob_json(desc["digest"].as_str().context("descriptor digest")?)?;
        if doc["manifests"].is_array() {
            let m = doc["manifests"]
                .as_array()
                .and_then(|ms| {
                    ms.iter()
                        .find(|m| m["platform"]["architecture"].as_str() == Some(arch))
                })
                .with_context(|| format!("no {arch} manifest in index {reference}"))?;
            return self.blob_json(m["digest"].as_str().context("manifest digest")?);
        }
        Ok(doc)
    }

    /// The config digest (= the image ID) of `reference` for amd64.
    pub fn image_id(&self, reference: &str) -> Result<String> {
        let m = self.manifest(reference, "amd64")?;
        m["config"]["digest"]
            .as_str()
            .map(str::to_owned)
            .context("manifest has no config digest")
    }

    /// Layer blob digests of `reference` (amd64), base first.
    pub fn layer_digests(&self, reference: &str) -> Result<Vec<String>> {
        let m = self.manifest(reference, "amd64")?;
        Ok(m["layers"]
            .as_array()
            .context("manifest has no layers")?
            .iter()
            .filter_map(|l| l["digest"].as_str().map(str::to_owned))
            .collect())
    }

    /// The config's diff_ids of `reference` (amd64), base first.
    pub fn diff_ids(&self, reference: &str) -> Result<Vec<String>> {
        let cfg = self.blob_json(&self.image_id(reference)?)?;
        Ok(cfg["rootfs"]["diff_ids"]
            .as_array()
            .context("config has no diff_ids")?
            .iter()
            .filter_map(|d| d.as_str().map(str::to_owned))
            .collect())
    }

    /// The reference result of unpacking `reference` with umoci (an
    /// independent implementation of layer application) into `dest`;
    /// returns the rootfs path.
    pub fn umoci_unpack(&self, reference: &str, dest: &Path) -> Result<PathBuf> {
        run(Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:{reference}", self.layout.display()))
            .arg(dest))?;
        Ok(dest.join("rootfs"))
    }
}

/// Builds fixture `name` (a `lib.sh` script writing an OCI layout to `$OUT`)
/// unless a build with the same key is cached; also builds the benchmark's
/// images, so both share one cache, one lock and one build procedure.
pub fn build_cached(name: &str, script: &str) -> Result<PathBuf> {
    let cache = target_dir()?.join("cria-fixtures");
    fs::create_dir_all(&cache)?;
    let mut h = Sha256::new();
    h.update(LIB);
    h.update(script);
    h.update(
        fs::read("/bin/busybox")
            .context("reading /bin/busybox (apt-get install busybox-static)")?,
    );
    // The in-container checker (tests/build.rs), for the fixtures that copy it.
    let inside = env!("CRIA_INSIDE_BIN");
    if script.contains("CRIA_INSIDE_BIN") {
        h.update(fs::read(inside).with_context(|| format!("reading {inside}"))?);
    }
    let key = &hex::encode(h.finalize())[..16];
    let final_dir = cache.join(format!("{name}-{key}"));
    // One builder at a time across test processes: flock on a per-fixture file.
    let lock = fs::File::create(cache.join(format!("{name}.lock")))?;
    // SAFETY: flock on a file descriptor we own; released when `lock` drops.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        bail!(
            "locking fixture {name}: {}",
            std::io::Error::last_os_error()
        );
    }
    if final_dir.join("index.json").exists() {
        return Ok(final_dir);
    }
    let build = cache.join(format!(".build-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&build);
    let (out, work) = (build.join("out"), build.join("work"));
    fs::create_dir_all(&work)?;
    let res = run(Command::new("bash")
        .arg("-c")
        .arg(format!("{LIB}\n{script}"))
        .env("OUT", &out)
        .env("WORK", &work)
        .env("CRIA_INSIDE_BIN", inside)
        .current_dir(&work));
    if let Err(e) = res {
        let _ = fs::remove_dir_all(&build);
        return Err(e.context(format!("building fixture {name}")));
    }
    let _ = fs::remove_dir_all(&final_dir);
    fs::rename(&out, &final_dir)?;
    let _ = fs::remove_dir_all(&build);
    Ok(final_dir)
}
