//! The benchmark's images, built by independent tools (GNU tar, gzip, jq,
//! umoci through the test harness's fixture scripts) and pushed to a private
//! registry on 127.0.0.1 that the benchmark starts itself.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cria_tests::fixtures::build_cached;
use cria_tests::{Fixture, Registry};

/// The harness's shell helpers (layout_init, dir_layer, mk_manifest, …).
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
    /// Starts a registry and pushes the images (building them with the test
    /// harness's fixture builder unless cached under `<target>/cria-fixtures/`).
    pub fn prepare() -> Result<Images> {
        let registry = Registry::start()?;
        let busybox = Fixture::get("busybox")?;
        busybox.push(&registry, "latest", "library/busybox:latest", &[])?;
        let pause = build_cached("pause", PAUSE)?;
        registry.push(&oci_src(&pause), "bench/pause:latest", &[])?;
        let big = build_cached("big", BIG)?;
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
