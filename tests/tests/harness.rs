//! The harness itself against the real tools: every fixture builds and pushes,
//! the TLS + htpasswd registry really demands its CA and password, and the
//! hostile tars really contain what they claim.

use std::process::Command;

use cria_tests::host::run_stdout;
use cria_tests::tree::Tree;
use cria_tests::{Fixture, Registry};

fn curl_code(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
        ])
        .args(args)
        .output()
        .expect("curl runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn every_fixture_builds_and_pushes() {
    let reg = Registry::start().expect("registry");
    let pushes: &[(&str, &str, &[&str])] = &[
        ("busybox", "latest", &[]),
        ("busybox", "latest", &["--format", "v2s2"]),
        ("compression", "gzip", &["--preserve-digests"]),
        ("compression", "zstd", &["--preserve-digests"]),
        ("compression", "none", &["--preserve-digests"]),
        ("multiarch", "multi", &["--all", "--preserve-digests"]),
        ("layers", "layers", &["--preserve-digests"]),
        ("shared", "one", &["--preserve-digests"]),
        ("shared", "two", &["--preserve-digests"]),
        ("hostile", "dotdot", &["--preserve-digests"]),
    ];
    for (i, (name, reference, extra)) in pushes.iter().enumerate() {
        let f = Fixture::get(name).expect("fixture builds");
        f.push(&reg, reference, &format!("t{i}/{name}:{reference}"), extra)
            .expect("push");
        let code = curl_code(&[
            "-H",
            "Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json",
            &format!("{}/v2/t{i}/{name}/manifests/{reference}", reg.url()),
        ]);
        assert_eq!(code, "200", "manifest of {name}:{reference} served");
    }
    // --preserve-digests keeps the hand-made layer blobs byte for byte.
    let c = Fixture::get("compression").expect("fixture");
    for d in c.layer_digests("zstd").expect("layers") {
        assert!(
            reg.blob_data_path(&d).exists(),
            "zstd layer {d} stored as is"
        );
    }
}

#[test]
fn tls_auth_registry_demands_ca_and_password() {
    let reg = Registry::start_tls_auth("alice", "s3cret").expect("registry");
    let ca = reg.ca_cert().expect("tls registry has a ca");
    let ca = ca.to_string_lossy();
    let url = format!("{}/v2/", reg.url());
    assert_eq!(curl_code(&[&url]), "000", "unknown CA is refused");
    assert_eq!(curl_code(&["--cacert", &ca, &url]), "401");
    assert_eq!(
        curl_code(&["--cacert", &ca, "-u", "alice:wrong", &url]),
        "401"
    );
    assert_eq!(
        curl_code(&["--cacert", &ca, "-u", "alice:s3cret", &url]),
        "200"
    );
    Fixture::get("busybox")
        .expect("fixture")
        .push(&reg, "latest", "auth/busybox:latest", &[])
        .expect("push with creds and CA");
}

#[test]
fn hostile_layers_hold_the_hostile_entries() {
    let f = Fixture::get("hostile").expect("fixture");
    let expect = [
        ("dotdot", "ok/../../cria-hostile-dotdot-canary"),
        ("absolute", "/tmp/cria-hostile-absolute-canary"),
        ("symlink-escape", "a -> /"),
        ("symlink-parent", "b -> ../../../../../../../../tmp"),
        ("hardlink-escape", "link to /etc/passwd"),
    ];
    for (reference, needle) in expect {
        let layer = f.layer_digests(reference).expect("layers").remove(0);
        // python's tarfile lists names verbatim (GNU tar strips leading slashes).
        let listing = run_stdout(
            Command::new("python3")
                .arg("-c")
                .arg("import sys,tarfile\nfor m in tarfile.open(sys.argv[1]):\n print(m.name, '->' if m.issym() else 'link to' if m.islnk() else '', m.linkname)")
                .arg(f.blob_path(&layer)),
        )
        .expect("tarfile lists");
        assert!(
            listing.contains(needle),
            "{reference}: {needle:?} not in\n{listing}"
        );
    }
}

#[test]
fn umoci_applies_the_layers_fixture_as_the_oci_spec_says() {
    let f = Fixture::get("layers").expect("fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    let rootfs = f
        .umoci_unpack("layers", &dir.path().join("bundle"))
        .expect("umoci unpack");
    let t = Tree::read(&rootfs).expect("tree");
    let has = |p: &str| t.entries.contains_key(p);
    assert!(has("a/keep") && has("a/new") && !has("a/gone") && !has("a/sub"));
    assert!(has("opq/fresh") && !has("opq/old1") && !has("opq/sub"));
    assert!(!has("fifo") && !t.entries.keys().any(|k| k.contains(".wh.")));
    assert_eq!(t.entries["swap"].kind, "dir");
    assert_eq!(t.entries["mode/suid"].mode, 0o4755);
    assert_eq!(t.entries["mode/sticky"].mode, 0o1777);
    assert_eq!(
        (t.entries["owned/file"].uid, t.entries["owned/file"].gid),
        (1234, 5678)
    );
    assert_eq!(t.entries["mtime"].mtime, 1_000_000_000);
    assert_eq!(t.entries["dev/null2"].kind, "char");
    assert!(t
        .hardlinks
        .iter()
        .any(|g| g.contains("hl/orig") && g.contains("hl/link")));
    assert!(t
        .hardlinks
        .iter()
        .any(|g| g.contains("hl/late") && g.contains("hl/late2")));
}

#[test]
fn throttled_proxy_forwards_and_throttles() {
    let reg = Registry::start().expect("registry");
    let f = Fixture::get("busybox").expect("fixture");
    f.push(&reg, "latest", "p/busybox:latest", &[])
        .expect("push");
    let layer = f.layer_digests("latest").expect("layers").remove(0);
    let proxy = cria_tests::ThrottledProxy::start(reg.port(), 2_000_000).expect("proxy");
    let url = format!("http://{}/v2/p/busybox/blobs/{layer}", proxy.host());
    let t = std::time::Instant::now();
    let out = Command::new("curl")
        .args(["-sf", "--max-time", "20", &url])
        .output()
        .expect("curl");
    assert!(out.status.success(), "GET through the proxy");
    assert_eq!(cria_tests::store::sha256_digest(&out.stdout), layer);
    let expected = out.stdout.len() as f64 / 2_000_000.0;
    assert!(
        t.elapsed().as_secs_f64() >= expected * 0.8,
        "{:?} for {} bytes",
        t.elapsed(),
        out.stdout.len()
    );
}
