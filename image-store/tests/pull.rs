//! Pulls from a real `docker-registry` on 127.0.0.1 with images built by
//! umoci and GNU tar and pushed by skopeo, unpacked by GNU tar.

mod common;

use std::collections::HashMap;
use std::fs;
use std::process::Command;
use std::sync::{Arc, Mutex};

use common::{busybox_rootfs, file_rootfs, run, Layout, Registry, RegistryOpts, TarUnpacker};
use cria_image_store::digest::chain_ids;
use cria_image_store::{
    Compression, Credentials, ImageError, ImageStore, ImageStoreConfig, Platform, Progress,
    ProgressFn,
};

fn open(root: &std::path::Path, unpacker: &Arc<TarUnpacker>) -> ImageStore {
    ImageStore::open(ImageStoreConfig::new(root), unpacker.clone()).unwrap()
}

fn open_with(cfg: ImageStoreConfig, unpacker: &Arc<TarUnpacker>) -> ImageStore {
    ImageStore::open(cfg, unpacker.clone()).unwrap()
}

/// A store that holds nothing: no images, no blobs, no ingest files.
fn assert_empty(store: &ImageStore) {
    assert!(store.list().unwrap().is_empty());
    assert_eq!(store.content().list().unwrap(), Vec::<String>::new());
    assert_eq!(store.content().ingest_count(), 0);
}

/// The manifest as the registry serves it, via curl.
fn registry_manifest(reg: &Registry, repo: &str, tag: &str) -> serde_json::Value {
    let out = run(Command::new("curl").args([
        "-fsS",
        "-H",
        "Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
        &format!("http://{}/v2/{repo}/manifests/{tag}", reg.host()),
    ]));
    serde_json::from_str(&out).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn pulls_umoci_image_then_resolves_repulls_and_removes() {
    let reg = Registry::start();
    let layout = tempfile::tempdir().unwrap();
    let l = layout.path().join("oci");
    let img = format!("{}:t", l.display());
    run(Command::new("umoci").args(["init", "--layout"]).arg(&l));
    run(Command::new("umoci").args(["new", "--image", &img]));
    // Two layers, each by unpack → change → repack (umoci 0.4's `insert`
    // writes tar streams without their end-of-archive blocks).
    let bundle = layout.path().join("bundle");
    run(Command::new("umoci")
        .args(["unpack", "--image", &img])
        .arg(&bundle));
    fs::create_dir_all(bundle.join("rootfs/bin")).unwrap();
    fs::copy("/bin/busybox", bundle.join("rootfs/bin/busybox")).unwrap();
    run(Command::new("umoci")
        .args(["repack", "--image", &img])
        .arg(&bundle));
    fs::remove_dir_all(&bundle).unwrap();
    run(Command::new("umoci")
        .args(["unpack", "--image", &img])
        .arg(&bundle));
    fs::create_dir_all(bundle.join("rootfs/etc")).unwrap();
    fs::write(bundle.join("rootfs/etc/motd"), "second layer\n").unwrap();
    run(Command::new("umoci")
        .args(["repack", "--image", &img])
        .arg(&bundle));
    reg.push(&l, "t", "test/busybox:1", &[]);
    let served = registry_manifest(&reg, "test/busybox", "1");

    let root = tempfile::tempdir().unwrap();
    let unpacker = Arc::new(TarUnpacker::new());
    let store = open(root.path(), &unpacker);
    let events: Arc<Mutex<Vec<Progress>>> = Arc::default();
    let sink = events.clone();
    let progress: ProgressFn = Arc::new(move |p: &Progress| sink.lock().unwrap().push(p.clone()));
    let reference = format!("{}/test/busybox:1", reg.host());
    let image = store.pull(&reference, None, Some(progress)).await.unwrap();

    // Identity and names.
    assert_eq!(image.id, served["config"]["digest"].as_str().unwrap());
    assert_eq!(image.repo_tags, vec![reference.clone()]);
    assert_eq!(image.repo_digests.len(), 1);
    let digest_ref = image.repo_digests[0].clone();
    assert!(digest_ref.starts_with(&format!("{}/test/busybox@sha256:", reg.host())));
    // Size: compressed layers plus config, as the manifest states them.
    let layers = served["layers"].as_array().unwrap();
    let want_size: u64 = layers
        .iter()
        .map(|l| l["size"].as_u64().unwrap())
        .sum::<u64>()
        + served["config"]["size"].as_u64().unwrap();
    assert_eq!(image.size, want_size);
    assert_eq!(image.layers.len(), 2);
    assert_eq!(
        image
            .config
            .config()
            .as_ref()
            .and_then(|c| c.user().clone()),
        None
    );

    // Layers: chain IDs from diff IDs, unpacked by tar, content identical.
    let diff_ids: Vec<String> = image.layers.iter().map(|l| l.diff_id.clone()).collect();
    assert_eq!(image.chain_ids, chain_ids(&diff_ids));
    let mut unpacked = unpacker.calls();
    unpacked.sort();
    let mut want = image.chain_ids.clone();
    want.sort();
    assert_eq!(unpacked, want);
    let bb = fs::read(unpacker.dir(&image.chain_ids[0]).join("bin/busybox")).unwrap();
    assert_eq!(bb, fs::read("/bin/busybox").unwrap());
    let motd = fs::read_to_string(unpacker.dir(&image.chain_ids[1]).join("etc/motd")).unwrap();
    assert_eq!(motd, "second layer\n");
    for d in image.blob_digests() {
        assert!(store.content().contains(&d), "blob {d} stored");
    }
    assert_eq!(store.content().ingest_count(), 0);
    // Progress: every layer finished with all its bytes.
    for l in &image.layers {
        let ev = events.lock().unwrap();
        let last = ev.iter().rfind(|p| p.digest == l.digest).unwrap();
        assert!(last.finished);
        assert_eq!((last.done, last.total), (l.size, l.size));
    }

    // Lookups by every kind of name.
    let short_id = image.id.trim_start_matches("sha256:")[..12].to_string();
    for name in [
        reference.as_str(),
        &digest_ref,
        &image.id,
        &short_id,
        &format!("sha256:{short_id}"),
    ] {
        assert_eq!(store.resolve(name).unwrap().unwrap().id, image.id, "{name}");
    }
    assert!(store
        .resolve(&format!("{}/test/busybox:2", reg.host()))
        .unwrap()
        .is_none());
    assert!(matches!(
        store.resolve("Bad:Ref"),
        Err(ImageError::InvalidReference { .. })
    ));
    assert_eq!(store.referenced_chain_ids().unwrap().len(), 2);
    let usage = store.usage().unwrap();
    // Blobs take at least their size on disk; each is an inode.
    assert!(usage.bytes >= image.size && usage.inodes >= 5, "{usage:?}");

    // Metadata survives a restart; a second pull downloads and unpacks nothing.
    drop(store);
    let store = open(root.path(), &unpacker);
    assert_eq!(store.list().unwrap().len(), 1);
    let calls_before = unpacker.calls().len();
    let again = store.pull(&reference, None, None).await.unwrap();
    assert_eq!(again.id, image.id);
    assert_eq!(unpacker.calls().len(), calls_before);

    // Removing the tag leaves the digest reference; removing that removes it all.
    let removed = store.remove(&reference).unwrap().unwrap();
    assert_eq!(removed.id, image.id);
    let left = store.resolve(&digest_ref).unwrap().unwrap();
    assert!(left.repo_tags.is_empty());
    assert!(store.remove(&reference).unwrap().is_none());
    store.remove(&digest_ref).unwrap().unwrap();
    assert_empty(&store);
    assert!(store.referenced_chain_ids().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn pulls_docker_schema2_zstd_and_uncompressed_layers() {
    let reg = Registry::start();
    let mut layout = Layout::new();
    let bb = busybox_rootfs();
    let gz = layout.layer(bb.path(), Compression::Gzip);
    let zst = layout.layer(bb.path(), Compression::Zstd);
    let plain_dir = file_rootfs("plain", "uncompressed\n");
    let plain = layout.layer(plain_dir.path(), Compression::None);
    let docker = layout.image("amd64", None, std::slice::from_ref(&gz));
    layout.tag("docker", &docker);
    let mixed = layout.image("amd64", None, &[zst.clone(), plain.clone()]);
    layout.tag("mixed", &mixed);
    reg.push(
        layout.path(),
        "docker",
        "x/docker:v1",
        &["--format", "v2s2"],
    );
    reg.push(layout.path(), "mixed", "x/mixed:v1", &[]);
    let served = registry_manifest(&reg, "x/docker", "v1");
    assert_eq!(
        served["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );

    let root = tempfile::tempdir().unwrap();
    let unpacker = Arc::new(TarUnpacker::new());
    let store = open(root.path(), &unpacker);
    let d = store
        .pull(&format!("{}/x/docker:v1", reg.host()), None, None)
        .await
        .unwrap();
    assert_eq!(
        d.layers[0].media_type,
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );
    assert_eq!(d.layers[0].compression, Compression::Gzip);
    let m = store
        .pull(&format!("{}/x/mixed:v1", reg.host()), None, None)
        .await
        .unwrap();
    assert_eq!(m.layers[0].compression, Compression::Zstd);
    assert_eq!(m.layers[1].compression, Compression::None);
    // Same busybox content under gzip and zstd: same diff ID, same base snapshot.
    assert_eq!(d.chain_ids[0], m.chain_ids[0]);
    let bin = fs::read(unpacker.dir(&m.chain_ids[0]).join("bin/busybox")).unwrap();
    assert_eq!(bin, fs::read("/bin/busybox").unwrap());
    assert_eq!(
        fs::read_link(unpacker.dir(&m.chain_ids[0]).join("bin/sh")).unwrap(),
        std::path::PathBuf::from("busybox")
    );
    let p = fs::read_to_string(unpacker.dir(&m.chain_ids[1]).join("etc/plain")).unwrap();
    assert_eq!(p, "uncompressed\n");
    // The zstd blob is stored although its snapshot already existed.
    assert!(store.content().contains(&zst.digest));
    assert!(store.content().contains(&gz.digest));
    assert_eq!(
        m.config.config().as_ref().unwrap().user().as_deref(),
        Some("1000")
    );

    // By digest (and tag@digest, where the digest wins): the same image, a digest name, no new tag.
    let by_digest = format!("{}/x/mixed@{}", reg.host(), mixed.digest);
    let calls = unpacker.calls().len();
    let again = store.pull(&by_digest, None, None).await.unwrap();
    assert_eq!(again.id, m.id);
    assert_eq!(again.repo_tags, vec![format!("{}/x/mixed:v1", reg.host())]);
    assert_eq!(again.repo_digests, vec![by_digest.clone()]);
    let tagged = format!("{}/x/mixed:other@{}", reg.host(), mixed.digest);
    let again = store.pull(&tagged, None, None).await.unwrap();
    assert_eq!(again.repo_tags.len(), 1);
    assert_eq!(unpacker.calls().len(), calls);
    assert_eq!(store.resolve(&tagged).unwrap().unwrap().id, m.id);
    // A digest the repository has no manifest for.
    let err = store
        .pull(
            &format!("{}/x/mixed@{}", reg.host(), docker.digest),
            None,
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::NotFound { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn multi_arch_index_chooses_the_platform() {
    let reg = Registry::start();
    let mut layout = Layout::new();
    let amd = file_rootfs("arch", "amd64\n");
    let arm = file_rootfs("arch", "arm64\n");
    let la = layout.layer(amd.path(), Compression::Gzip);
    let lr = layout.layer(arm.path(), Compression::Gzip);
    let ma = layout.image("amd64", None, &[la]);
    let mr = layout.image("arm64", Some("v8"), &[lr]);
    let index = layout.index(&[(&ma, "amd64", None), (&mr, "arm64", Some("v8"))]);
    layout.tag("multi", &index);
    reg.push(layout.path(), "multi", "x/multi:1", &[]);
    let reference = format!("{}/x/multi:1", reg.host());

    let pull_as = |platform: Platform| {
        let reference = reference.clone();
        async move {
            let root = tempfile::tempdir().unwrap();
            let unpacker = Arc::new(TarUnpacker::new());
            let mut cfg = ImageStoreConfig::new(root.path());
            cfg.registry.platform = Some(platform);
            let store = open_with(cfg, &unpacker);
            let result = store.pull(&reference, None, None).await;
            let arch = result.as_ref().ok().map(|img| {
                fs::read_to_string(unpacker.dir(&img.chain_ids[0]).join("etc/arch")).unwrap()
            });
            (result, arch, store, root)
        }
    };
    let (img, arch, _s, _r) = pull_as(Platform::new("linux", "amd64", None)).await;
    let img = img.unwrap();
    assert_eq!(arch.as_deref(), Some("amd64\n"));
    assert_eq!(img.manifest_digest, ma.digest);
    // The repo digest is the index's (what the tag resolved to).
    assert_eq!(
        img.repo_digests,
        vec![format!("{}/x/multi@{}", reg.host(), index.digest)]
    );
    let (img, arch, _s, _r) = pull_as(Platform::new("linux", "aarch64", None)).await;
    assert_eq!(arch.as_deref(), Some("arm64\n"));
    assert_eq!(img.unwrap().manifest_digest, mr.digest);
    let (err, _, store, _r) = pull_as(Platform::new("linux", "s390x", None)).await;
    let err = err.unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, ImageError::NoMatchingPlatform { .. }),
        "{err:?}"
    );
    assert!(
        msg.contains("linux/s390x") && msg.contains("linux/amd64, linux/arm64/v8"),
        "{msg}"
    );
    assert_empty(&store);
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupted_blob_and_missing_tag_fail_and_keep_nothing() {
    let reg = Registry::start();
    let mut layout = Layout::new();
    let bb = busybox_rootfs();
    let layer = layout.layer(bb.path(), Compression::Gzip);
    let m = layout.image("amd64", None, std::slice::from_ref(&layer));
    layout.tag("c", &m);
    reg.push(layout.path(), "c", "x/corrupt:1", &[]);
    // Flip one byte in the middle of the layer as the registry stores it.
    let data = reg.blob_data(&layer.digest);
    let mut bytes = fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&data, &bytes).unwrap();

    let root = tempfile::tempdir().unwrap();
    let unpacker = Arc::new(TarUnpacker::new());
    let store = open(root.path(), &unpacker);
    let err = store
        .pull(&format!("{}/x/corrupt:1", reg.host()), None, None)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err:?}");
    assert!(msg.contains(&layer.digest), "{msg}");
    assert_empty(&store);
    assert!(unpacker.calls().is_empty());
    assert_eq!(
        common::files_under(unpacker.root.path()),
        Vec::<String>::new()
    );

    for (reference, what) in [
        (format!("{}/x/corrupt:nope", reg.host()), "tag nope"),
        (format!("{}/x/absent:1", reg.host()), "tag 1"),
    ] {
        let err = store.pull(&reference, None, None).await.unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ImageError::NotFound { .. }), "{err:?}");
        assert!(msg.contains(what) && msg.contains(&reg.host()), "{msg}");
        assert!(msg.contains(&reference), "{msg}");
    }
    // A layer type cria cannot unpack is refused by name before any download.
    let mut odd = layer.clone();
    odd.media_type = "application/vnd.example.layer.v1.tar+bzip2".into();
    let m = layout.image("amd64", None, &[odd]);
    layout.tag("odd", &m);
    reg.push(layout.path(), "odd", "x/odd:1", &[]);
    let err = store
        .pull(&format!("{}/x/odd:1", reg.host()), None, None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ImageError::UnsupportedMediaType { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("application/vnd.example.layer.v1.tar+bzip2"),
        "{err}"
    );
    assert_empty(&store);

    let err = store.pull("UPPER/case", None, None).await.unwrap_err();
    assert!(matches!(err, ImageError::InvalidReference { .. }));
    assert_empty(&store);
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_registry_with_basic_auth() {
    let reg = Registry::start_with(RegistryOpts {
        tls: true,
        htpasswd: Some(("alice".into(), "s3cret".into())),
        ..Default::default()
    });
    let layout = Layout::one_file("secret", "only with credentials\n", "a");
    reg.push(
        layout.path(),
        "a",
        "private/app:1",
        &["--dest-creds", "alice:s3cret"],
    );
    let reference = format!("{}/private/app:1", reg.host());

    let certs = tempfile::tempdir().unwrap();
    fs::create_dir(certs.path().join(reg.host())).unwrap();
    fs::copy(
        reg.ca_dir().join("ca.crt"),
        certs.path().join(reg.host()).join("ca.crt"),
    )
    .unwrap();
    let root = tempfile::tempdir().unwrap();
    let unpacker = Arc::new(TarUnpacker::new());
    let mut cfg = ImageStoreConfig::new(root.path());
    cfg.registry.certs_dir = Some(certs.path().to_path_buf());
    let store = open_with(cfg.clone(), &unpacker);

    let err = store.pull(&reference, None, None).await.unwrap_err();
    assert!(matches!(err, ImageError::Unauthorized { .. }), "{err:?}");
    assert!(err.to_string().contains(&reg.host()), "{err}");
    let wrong = Credentials {
        username: "alice".into(),
        password: "wrong".into(),
        ..Default::default()
    };
    let err = store
        .pull(&reference, Some(&wrong), None)
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::Unauthorized { .. }), "{err:?}");
    assert_empty(&store);

    // CRI-style `auth` (base64 user:password).
    let creds = Credentials {
        auth: "YWxpY2U6czNjcmV0".into(),
        ..Default::default()
    };
    let img = store.pull(&reference, Some(&creds), None).await.unwrap();
    let text = fs::read_to_string(unpacker.dir(&img.chain_ids[0]).join("etc/secret")).unwrap();
    assert_eq!(text, "only with credentials\n");
    drop(store);

    // The same from a docker config.json, in a fresh store.
    let root2 = tempfile::tempdir().unwrap();
    let auth_file = root2.path().join("config.json");
    fs::write(
        &auth_file,
        format!(
            r#"{{"auths":{{"https://{}":{{"username":"alice","password":"s3cret"}}}}}}"#,
            reg.host()
        ),
    )
    .unwrap();
    let mut cfg2 = cfg.clone();
    cfg2.root = root2.path().join("store");
    cfg2.registry.auth_file = Some(auth_file);
    let store = open_with(cfg2, &unpacker);
    store.pull(&reference, None, None).await.unwrap();

    // Without the CA the certificate is not trusted (and plain HTTP is no way around it).
    let mut cfg3 = ImageStoreConfig::new(root2.path().join("store3"));
    cfg3.registry.auth_file = cfg.registry.auth_file.clone();
    let store = open_with(cfg3, &unpacker);
    let err = store
        .pull(&reference, Some(&creds), None)
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::Registry { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn client_certificate_from_certs_d() {
    let reg = Registry::start_with(RegistryOpts {
        tls: true,
        client_certs: true,
        ..Default::default()
    });
    let layout = Layout::one_file("mtls", "mutual tls\n", "m");
    reg.push(layout.path(), "m", "x/mtls:1", &[]);
    let reference = format!("{}/x/mtls:1", reg.host());

    // certs.d/<host>/ with the CA only: the registry refuses the handshake.
    let certs = tempfile::tempdir().unwrap();
    let host_dir = certs.path().join(reg.host());
    fs::create_dir(&host_dir).unwrap();
    fs::copy(reg.ca_dir().join("ca.crt"), host_dir.join("ca.crt")).unwrap();
    let root = tempfile::tempdir().unwrap();
    let unpacker = Arc::new(TarUnpacker::new());
    let mut cfg = ImageStoreConfig::new(root.path().join("a"));
    cfg.registry.certs_dir = Some(certs.path().to_path_buf());
    let store = open_with(cfg.clone(), &unpacker);
    let err = store.pull(&reference, None, None).await.unwrap_err();
    assert!(matches!(err, ImageError::Registry { .. }), "{err:?}");
    drop(store);

    // With the client pair beside it (a fresh store: clients are cached per host).
    for f in ["client.cert", "client.key"] {
        fs::copy(reg.ca_dir().join(f), host_dir.join(f)).unwrap();
    }
    cfg.root = root.path().join("b");
    let store = open_with(cfg, &unpacker);
    let img = store.pull(&reference, None, None).await.unwrap();
    let text = fs::read_to_string(unpacker.dir(&img.chain_ids[0]).join("etc/mtls")).unwrap();
    assert_eq!(text, "mutual tls\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_pulls_share_layers_and_store_each_blob_once() {
    let reg = Registry::start();
    let mut layout = Layout::new();
    let bb = busybox_rootfs();
    let base = layout.layer(bb.path(), Compression::Gzip);
    let mut tops = Vec::new();
    for i in 0..3 {
        let d = file_rootfs("n", &format!("{i}\n"));
        let top = layout.layer(d.path(), Compression::Gzip);
        let m = layout.image("amd64", None, &[base.clone(), top]);
        layout.tag(&format!("i{i}"), &m);
        reg.push(
            layout.path(),
            &format!("i{i}"),
            &format!("x/shared{i}:1"),
            &[],
        );
        tops.push(m);
    }
    let root = tempfile::tempdir().unwrap();
    let unpacker = Arc::new(TarUnpacker::new());
    let mut cfg = ImageStoreConfig::new(root.path());
    cfg.max_concurrent_downloads = 2;
    let store = open_with(cfg, &unpacker);
    let mut handles = Vec::new();
    // Each image twice, all at once.
    for i in [0, 1, 2, 0, 1, 2] {
        let store = store.clone();
        let reference = format!("{}/x/shared{i}:1", reg.host());
        handles.push(tokio::spawn(async move {
            store.pull(&reference, None, None).await
        }));
    }
    let mut ids = Vec::new();
    for h in handles {
        ids.push(h.await.unwrap().unwrap().id);
    }
    assert_eq!(store.list().unwrap().len(), 3);
    // Every snapshot was unpacked exactly once: the base shared by all.
    let mut counts: HashMap<String, usize> = HashMap::new();
    for c in unpacker.calls() {
        *counts.entry(c).or_default() += 1;
    }
    assert_eq!(counts.len(), 4, "{counts:?}");
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
    // 1 base + 3 tops + 3 configs + 3 manifests.
    assert_eq!(store.content().list().unwrap().len(), 10);
    assert_eq!(store.content().ingest_count(), 0);
    // Removing one image keeps the shared base blob for the others.
    store.remove(&ids[0]).unwrap().unwrap();
    assert!(store.content().contains(&base.digest));
    assert_eq!(store.content().list().unwrap().len(), 7);
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_pull_lists_nothing_and_the_next_pull_completes_it() {
    let reg = Registry::start();
    let mut layout = Layout::new();
    let bb = busybox_rootfs();
    let base = layout.layer(bb.path(), Compression::Gzip);
    let d = file_rootfs("top", "top\n");
    let top = layout.layer(d.path(), Compression::Gzip);
    let m = layout.image("amd64", None, &[base.clone(), top.clone()]);
    layout.tag("f", &m);
    reg.push(layout.path(), "f", "x/fail:1", &[]);
    let reference = format!("{}/x/fail:1", reg.host());
    let chains = chain_ids(&[base.diff_id.clone(), top.diff_id.clone()]);

    let root = tempfile::tempdir().unwrap();
    let unpacker = Arc::new(TarUnpacker::new());
    *unpacker.fail_chain.lock().unwrap() = Some(chains[1].clone());
    let store = open(root.path(), &unpacker);
    let err = store.pull(&reference, None, None).await.unwrap_err();
    assert!(matches!(err, ImageError::Unpack { .. }), "{err:?}");
    assert!(err.to_string().contains(&top.digest), "{err}");
    assert!(store.list().unwrap().is_empty());
    assert!(store.resolve(&reference).unwrap().is_none());
    assert_eq!(store.content().ingest_count(), 0);

    // A restart, then the pull again: the base snapshot is reused.
    drop(store);
    *unpacker.fail_chain.lock().unwrap() = None;
    let store = open(root.path(), &unpacker);
    let img = store.pull(&reference, None, None).await.unwrap();
    assert_eq!(img.chain_ids, chains);
    let calls = unpacker.calls();
    assert_eq!(
        calls.iter().filter(|c| **c == chains[0]).count(),
        1,
        "{calls:?}"
    );
    assert_eq!(
        calls.iter().filter(|c| **c == chains[1]).count(),
        1,
        "{calls:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_cancelled_mid_layer_lists_nothing_and_is_completed_later() {
    let reg = Registry::start();
    let mut layout = Layout::new();
    let bb = busybox_rootfs();
    // 8 MB that gzip cannot shrink: far more than the chunks queued between
    // download and unpacker, so holding the unpacker stalls the download.
    let mut noise = Vec::with_capacity(8 << 20);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while noise.len() < 8 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        noise.extend_from_slice(&x.to_le_bytes());
    }
    fs::write(bb.path().join("noise"), &noise).unwrap();
    let base = layout.layer(bb.path(), Compression::Gzip);
    let d = file_rootfs("late", "late layer\n");
    let top = layout.layer(d.path(), Compression::Gzip);
    let m = layout.image("amd64", None, &[base.clone(), top.clone()]);
    layout.tag("c", &m);
    reg.push(layout.path(), "c", "x/cancel:1", &[]);
    let reference = format!("{}/x/cancel:1", reg.host());
    let chains = chain_ids(&[base.diff_id.clone(), top.diff_id.clone()]);

    let root = tempfile::tempdir().unwrap();
    let unpacker = Arc::new(TarUnpacker::new());
    *unpacker.hold_chain.lock().unwrap() = Some(chains[0].clone());
    let store = open(root.path(), &unpacker);
    let task = {
        let store = store.clone();
        let reference = reference.clone();
        tokio::spawn(async move { store.pull(&reference, None, None).await })
    };
    // Wait (bounded) until the base layer is inside the unpacker, then drop
    // the pull the way a client going away (or a crash) would.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !unpacker.held.load(std::sync::atomic::Ordering::SeqCst) {
        assert!(std::time::Instant::now() < deadline, "unpack never started");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    unpacker
        .release
        .store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(store.list().unwrap().is_empty());
    assert!(store.resolve(&reference).unwrap().is_none());
    drop(store);

    // The stream the held unpacker reads was cut short: it must not commit.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while common::files_under(unpacker.root.path())
        .iter()
        .any(|f| f.starts_with(".tmp-"))
    {
        assert!(std::time::Instant::now() < deadline, "unpack did not end");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(!unpacker.is_unpacked_dir(&chains[0]));
    assert!(!root
        .path()
        .join("content/blobs/sha256")
        .join(base.digest.trim_start_matches("sha256:"))
        .exists());

    *unpacker.hold_chain.lock().unwrap() = None;
    // The aborted pull's tasks let go of the store (and its database) as the
    // runtime drops them: retry the open for a bounded time.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let store = loop {
        match ImageStore::open(ImageStoreConfig::new(root.path()), unpacker.clone()) {
            Ok(s) => break s,
            Err(e) => {
                assert!(std::time::Instant::now() < deadline, "reopen: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    };
    assert!(store.list().unwrap().is_empty());
    let img = store.pull(&reference, None, None).await.unwrap();
    assert_eq!(img.chain_ids, chains);
    let top_text = fs::read_to_string(unpacker.dir(&chains[1]).join("etc/late")).unwrap();
    assert_eq!(top_text, "late layer\n");
    assert_eq!(store.content().ingest_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn mirrors_are_tried_in_order_before_the_origin() {
    let reg = Registry::start();
    let layout = Layout::one_file("hub", "from the mirror\n", "h");
    reg.push(layout.path(), "h", "library/busybox:latest", &[]);
    // A port nobody listens on: the first mirror fails, the second serves.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);

    let root = tempfile::tempdir().unwrap();
    let unpacker = Arc::new(TarUnpacker::new());
    let mut cfg = ImageStoreConfig::new(root.path());
    cfg.registry.mirrors.insert(
        "docker.io".into(),
        vec![
            format!("http://127.0.0.1:{dead_port}"),
            format!("http://{}/v2/", reg.host()),
        ],
    );
    let store = open_with(cfg, &unpacker);
    let img = store.pull("busybox", None, None).await.unwrap();
    assert_eq!(img.repo_tags, vec!["docker.io/library/busybox:latest"]);
    let text = fs::read_to_string(unpacker.dir(&img.chain_ids[0]).join("etc/hub")).unwrap();
    assert_eq!(text, "from the mirror\n");
    assert!(store.resolve("busybox").unwrap().is_some());
    assert!(store
        .resolve("docker.io/library/busybox:latest")
        .unwrap()
        .is_some());
}
