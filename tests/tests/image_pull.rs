//! Issue 2: PullImage of every supported image shape from a real registry,
//! checked against what independent tools built and what the registry serves.

use std::fs;
use std::path::PathBuf;

use cria_tests::client::{image_status, list_images, pull};
use cria_tests::expect::ok;
use cria_tests::host::OverlayView;
use cria_tests::store::{chain_ids, ingest_entries, snapshot_fs};
use cria_tests::tree::Tree;
use cria_tests::{Criad, Fixture};

/// The committed snapshot dirs of an image, base first.
fn snapshot_dirs(criad: &Criad, diff_ids: &[String]) -> Vec<PathBuf> {
    chain_ids(diff_ids)
        .iter()
        .map(|c| snapshot_fs(&criad.root(), c))
        .collect()
}

#[tokio::test]
async fn oci_image_built_by_umoci_is_pulled_listed_and_unpacked() {
    let (reg, criad) = Criad::with_registry().await.expect("registry and criad");
    let f = Fixture::get("busybox").expect("fixture");
    f.push(&reg, "latest", "library/busybox:latest", &[])
        .expect("push");
    let name = format!("{}/library/busybox:latest", reg.host());
    let manifest_digest = reg
        .manifest_digest("library/busybox", "latest")
        .expect("digest");
    let manifest = reg.manifest("library/busybox", "latest").expect("manifest");
    // An OCI manifest (umoci leaves the optional mediaType field out).
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    let config_digest = manifest["config"]["digest"]
        .as_str()
        .expect("config digest")
        .to_owned();

    let mut c = criad.images().await.expect("client");
    let id = ok(pull(&mut c, &name, None).await, &criad);
    assert_eq!(id, config_digest, "PullImage answers the config digest");

    let images = ok(list_images(&mut c, None).await, &criad);
    assert_eq!(images.len(), 1);
    let img = &images[0];
    assert_eq!(img.id, config_digest);
    assert_eq!(img.repo_tags, vec![name.clone()]);
    assert_eq!(
        img.repo_digests,
        vec![format!("{}/library/busybox@{manifest_digest}", reg.host())]
    );
    let layer_size: u64 = manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .filter_map(|l| l["size"].as_u64())
        .sum();
    assert!(
        img.size >= layer_size,
        "size {} covers the layers ({layer_size})",
        img.size
    );

    // The unpacked layer holds Debian's busybox byte for byte.
    let cfg: serde_json::Value = serde_json::from_slice(
        &fs::read(cria_tests::store::blob_path(&criad.root(), &config_digest))
            .expect("config blob"),
    )
    .expect("config json");
    let diff_ids: Vec<String> = cfg["rootfs"]["diff_ids"]
        .as_array()
        .expect("diff_ids")
        .iter()
        .map(|d| d.as_str().unwrap_or("").to_owned())
        .collect();
    let top = snapshot_dirs(&criad, &diff_ids).pop().expect("a layer");
    assert_eq!(
        fs::read(top.join("bin/busybox")).expect("busybox unpacked"),
        fs::read("/bin/busybox").expect("host busybox")
    );
    assert_eq!(
        fs::read_link(top.join("bin/sh")).expect("sh symlink"),
        PathBuf::from("busybox")
    );
    assert!(ingest_entries(&criad.root()).is_empty());

    // A second pull of a present image answers the same id without downloading again.
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .expect("layer")
        .to_owned();
    assert_eq!(reg.blob_gets(&layer), 1);
    assert_eq!(ok(pull(&mut c, &name, None).await, &criad), config_digest);
    assert_eq!(
        reg.blob_gets(&layer),
        1,
        "a present layer is not downloaded again"
    );
}

#[tokio::test]
async fn docker_schema2_image_is_pulled() {
    let (reg, criad) = Criad::with_registry().await.expect("registry and criad");
    let f = Fixture::get("busybox").expect("fixture");
    f.push(&reg, "latest", "docker/busybox:v2", &["--format", "v2s2"])
        .expect("push");
    let manifest = reg.manifest("docker/busybox", "v2").expect("manifest");
    assert_eq!(
        manifest["mediaType"], "application/vnd.docker.distribution.manifest.v2+json",
        "fixture is schema2"
    );
    let config_digest = manifest["config"]["digest"]
        .as_str()
        .expect("config")
        .to_owned();
    let mut c = criad.images().await.expect("client");
    let name = format!("{}/docker/busybox:v2", reg.host());
    assert_eq!(ok(pull(&mut c, &name, None).await, &criad), config_digest);
    let st = ok(image_status(&mut c, &name, false).await, &criad);
    assert_eq!(st.image.expect("image known").id, config_digest);
}

#[tokio::test]
async fn multi_arch_index_resolves_to_amd64() {
    let (reg, criad) = Criad::with_registry().await.expect("registry and criad");
    let f = Fixture::get("multiarch").expect("fixture");
    f.push(
        &reg,
        "multi",
        "multi/arch:latest",
        &["--all", "--preserve-digests"],
    )
    .expect("push");
    let index = reg.manifest("multi/arch", "latest").expect("index");
    assert_eq!(
        index["manifests"][0]["platform"]["architecture"], "arm64",
        "arm64 is listed first"
    );
    let amd64 = f.image_id("multi").expect("amd64 config");
    let mut c = criad.images().await.expect("client");
    let name = format!("{}/multi/arch:latest", reg.host());
    assert_eq!(ok(pull(&mut c, &name, None).await, &criad), amd64);
    let top = snapshot_dirs(&criad, &f.diff_ids("multi").expect("diff ids"))
        .pop()
        .expect("layer");
    assert_eq!(
        fs::read_to_string(top.join("arch")).expect("arch file"),
        "amd64\n"
    );
    // The repo digest is the index's, as kubelet and crictl show it.
    let index_digest = reg.manifest_digest("multi/arch", "latest").expect("digest");
    let img = ok(image_status(&mut c, &name, false).await, &criad)
        .image
        .expect("image");
    assert_eq!(
        img.repo_digests,
        vec![format!("{}/multi/arch@{index_digest}", reg.host())]
    );
}

#[tokio::test]
async fn zstd_and_uncompressed_layers_unpack_like_gzip() {
    let (reg, criad) = Criad::with_registry().await.expect("registry and criad");
    let f = Fixture::get("compression").expect("fixture");
    let mut c = criad.images().await.expect("client");
    let mut trees = Vec::new();
    for comp in ["gzip", "zstd", "none"] {
        f.push(
            &reg,
            comp,
            &format!("comp/{comp}:latest"),
            &["--preserve-digests"],
        )
        .expect("push");
        let m = reg
            .manifest(&format!("comp/{comp}"), "latest")
            .expect("manifest");
        let mt = m["layers"][0]["mediaType"]
            .as_str()
            .expect("media type")
            .to_owned();
        let want = match comp {
            "gzip" => "application/vnd.oci.image.layer.v1.tar+gzip",
            "zstd" => "application/vnd.oci.image.layer.v1.tar+zstd",
            _ => "application/vnd.oci.image.layer.v1.tar",
        };
        assert_eq!(mt, want, "registry serves a {comp} layer");
        let id = ok(
            pull(&mut c, &format!("{}/comp/{comp}:latest", reg.host()), None).await,
            &criad,
        );
        assert_eq!(id, f.image_id(comp).expect("id"));
        let dir = snapshot_dirs(&criad, &f.diff_ids(comp).expect("diff ids"))
            .pop()
            .expect("layer");
        trees.push(Tree::read(&dir).expect("tree"));
    }
    // Same tar inside, so one snapshot (same chain id) and the same files.
    assert_eq!(trees[0].diff(&trees[1]), "");
    assert_eq!(trees[0].diff(&trees[2]), "");
    // The three manifests share one config, so one image id carries three tags.
    let images = ok(list_images(&mut c, None).await, &criad);
    assert_eq!(images.len(), 1, "{images:?}");
    for comp in ["gzip", "zstd", "none"] {
        assert!(images[0]
            .repo_tags
            .contains(&format!("{}/comp/{comp}:latest", reg.host())));
    }
}

#[tokio::test]
async fn pull_by_digest_reference() {
    let (reg, criad) = Criad::with_registry().await.expect("registry and criad");
    let f = Fixture::get("busybox").expect("fixture");
    f.push(&reg, "latest", "library/busybox:latest", &[])
        .expect("push");
    let digest = reg
        .manifest_digest("library/busybox", "latest")
        .expect("digest");
    let name = format!("{}/library/busybox@{digest}", reg.host());
    let mut c = criad.images().await.expect("client");
    let id = ok(pull(&mut c, &name, None).await, &criad);
    let img = ok(image_status(&mut c, &name, false).await, &criad)
        .image
        .expect("known by digest");
    assert_eq!(img.id, id);
    assert_eq!(img.repo_digests, vec![name]);
}

#[tokio::test]
async fn layers_with_whiteouts_opaque_dirs_and_links_match_umoci_file_by_file() {
    let (reg, criad) = Criad::with_registry().await.expect("registry and criad");
    let f = Fixture::get("layers").expect("fixture");
    f.push(
        &reg,
        "layers",
        "layers/test:latest",
        &["--preserve-digests"],
    )
    .expect("push");
    let mut c = criad.images().await.expect("client");
    let name = format!("{}/layers/test:latest", reg.host());
    let id = ok(pull(&mut c, &name, None).await, &criad);
    assert_eq!(id, f.image_id("layers").expect("id"));
    let img = ok(image_status(&mut c, &name, false).await, &criad)
        .image
        .expect("image");
    assert_eq!(
        img.uid.map(|u| u.value),
        Some(1234),
        "uid from the config's User 1234:5678"
    );

    let mut lowers = snapshot_dirs(&criad, &f.diff_ids("layers").expect("diff ids"));
    for l in &lowers {
        assert!(l.is_dir(), "snapshot {} committed", l.display());
    }
    lowers.reverse(); // overlay wants the top layer first
    let view = OverlayView::mount(&lowers).expect("overlay mount of cria's snapshots");
    let actual = Tree::read(&view.path()).expect("tree of the overlay");

    let scratch = tempfile::tempdir().expect("tempdir");
    let reference = f
        .umoci_unpack("layers", &scratch.path().join("bundle"))
        .expect("umoci unpack");
    let expected = Tree::read(&reference).expect("tree of umoci's unpack");
    let diff = expected.diff(&actual);
    assert!(
        diff.is_empty(),
        "cria's snapshots differ from umoci's unpack:\n{diff}"
    );
    // The point of the fixture, spelled out.
    assert!(!actual.entries.contains_key("a/gone") && !actual.entries.contains_key("opq/old1"));
    assert!(actual.entries.contains_key("opq/fresh"));
}
