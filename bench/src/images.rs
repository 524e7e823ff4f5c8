//! The benchmark's images, built by independent tools (GNU tar, gzip, jq,
//! umoci through the test harness's fixture scripts) and pushed to a private
//! registry on 127.0.0.1 that the benchmark starts itself.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use cria_tests::host::run;
use cria_tests::{Fixture, Registry};

/// The harness's shell helpers (layout_init, dir_layer, mk_manifest, …).
const LIB: &str = include_str!("../../tests/fixtures/lib.sh");
const PAUSE: &str = include_str!("../images/pause.sh");
const BIG: &str = include_str!("../images/big.sh");

/// The registry and the references of every image the benchmark uses.
pub struct Images {
    /// The loopback registry (stopped on drop).
    pub registry: Registry,
    /// 1-layer busybox-static image (the harness's `busybox` fixture).
    pub small: String,
    /// The sandbox image containerd needs.
    pub pause: String,
    /// The ~200 MB, 6-layer gzip image.
    pub big: String,
    /// The big image's compressed layer blobs, base first.
    pub big_layers: Vec<PathBuf>,
}

impl Images {
    /// Starts a registry and pushes the images (building them if not cached
    /// under `<target>/cria-bench-images/`).
    pub fn prepare(target: &Path) -> Result<Images> {
        let registry = Registry::start()?;
        let busybox = Fixture::get("busybox")?;
        busybox.push(&registry, "latest", "library/busybox:latest", &[])?;
        let pause = build(target, "pause", PAUSE)?;
        registry.push(&oci_src(&pause), "bench/pause:latest", &[])?;
        let big = build(target, "big", BIG)?;
        registry.push(&oci_src(&big), "bench/big:latest", &[])?;
        let big_layers = layer_blobs(&big)?;
        let host = registry.host();
        Ok(Images {
            small: format!("{host}/library/busybox:latest"),
            pause: format!("{host}/bench/pause:latest"),
            big: format!("{host}/bench/big:latest"),
            big_layers,
            registry,
        })
    }

    /// Total compressed bytes of the big image's layers.
    pub fn big_compressed_bytes(&self) -> u64 {
        self.big_layers
            .iter()
            .filter_map(|p| fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }
}

fn oci_src(layout: &Path) -> String {
    format!("oci:{}:latest", layout.display())
}

/// The layer blob paths of the `latest` manifest of an OCI layout.
fn layer_blobs(layout: &Path) -> Result<Vec<PathBuf>> {
    let read = |digest: &str| -> Result<serde_json::Value> {
        let p = blob(layout, digest);
        Ok(serde_json::from_slice(
            &fs::read(&p).with_context(|| format!("reading {}", p.display()))?,
        )?)
    };
    let index: serde_json::Value = serde_json::from_slice(&fs::read(layout.join("index.json"))?)?;
    let mdigest = index["manifests"][0]["digest"]
        .as_str()
        .context("index.json has no manifest")?;
    let manifest = read(mdigest)?;
    Ok(manifest["layers"]
        .as_array()
        .context("manifest has no layers")?
        .iter()
        .filter_map(|l| l["digest"].as_str())
        .map(|d| blob(layout, d))
        .collect())
}

fn blob(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// Runs `script` with the fixture helpers into a cached OCI layout.
fn build(target: &Path, name: &str, script: &str) -> Result<PathBuf> {
    let cache = target.join("cria-bench-images");
    let key = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (LIB, script).hash(&mut h);
        h.finish()
    };
    let done = cache.join(format!("{name}-{key:016x}"));
    if done.join("index.json").exists() {
        return Ok(done);
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
        .current_dir(&work));
    if let Err(e) = res {
        let _ = fs::remove_dir_all(&build);
        return Err(e.context(format!("building bench image {name}")));
    }
    let _ = fs::remove_dir_all(&done);
    fs::rename(&out, &done)?;
    let _ = fs::remove_dir_all(&build);
    Ok(done)
}
