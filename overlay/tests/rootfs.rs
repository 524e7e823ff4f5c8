//! Container rootfs mounts on the real kernel: whiteouts and opaque dirs
//! seen through the overlay, 128 layers, read-only and empty images.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::{chain_id, gnu_tar, is_mounted, Fixture, MountGuard};
use cria_overlay::{OverlayError, Rootfs};

/// Builds a layer from `(path, content)` files with GNU tar and commits it.
fn layer(fx: &Fixture, label: &str, files: &[(&str, &[u8])]) -> String {
    let src = tempfile::tempdir().unwrap();
    for (path, content) in files {
        let path = src.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    fx.apply(label, &gnu_tar(src.path(), "gnu")).unwrap();
    chain_id(label)
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn target(fx: &Fixture, name: &str) -> PathBuf {
    let target = fx.dir.path().join(name);
    std::fs::create_dir(&target).unwrap();
    target
}

#[test]
fn three_layers_whiteouts_and_opaque_dirs_through_the_mount() {
    let fx = Fixture::new();
    let base = layer(
        &fx,
        "base",
        &[
            ("etc/passwd", b"root:x:0:0"),
            ("etc/shadow", b"secret"),
            ("data/old1", b"1"),
            ("data/old2", b"2"),
            ("keep", b"base"),
        ],
    );
    let middle = layer(&fx, "middle", &[("keep", b"middle"), ("added", b"m")]);
    let top = layer(
        &fx,
        "top",
        &[
            ("etc/.wh.shadow", b""),
            ("data/.wh..wh..opq", b""),
            ("data/new", b"n"),
            (".wh.added", b""),
        ],
    );
    let container = fx.dir.path().join("container");
    let rootfs = Rootfs::prepare(&fx.store, &[base, middle, top], &container).unwrap();
    assert_eq!(rootfs.lower_dirs()[0], fx.fs("top"), "lowers are top-first");
    let mnt = target(&fx, "mnt");
    let _guard = MountGuard(mnt.clone());
    rootfs.mount(&mnt).unwrap();
    assert!(is_mounted(&mnt));

    assert_eq!(
        names(&mnt.join("etc")),
        ["passwd"],
        "whiteout hides the lower file"
    );
    assert_eq!(
        names(&mnt.join("data")),
        ["new"],
        "opaque dir hides the lower contents"
    );
    assert_eq!(
        std::fs::read(mnt.join("keep")).unwrap(),
        b"middle",
        "upper layers win"
    );
    assert!(
        !mnt.join("added").exists(),
        "whiteout of a middle layer's file"
    );
    assert_eq!(
        std::fs::metadata(&mnt).unwrap().mode() & 0o7777,
        0o755,
        "the container's / mode"
    );

    // Writes go to upper/, counted by usage(); the snapshots stay untouched.
    std::fs::write(mnt.join("written"), vec![9u8; 64 * 1024]).unwrap();
    std::fs::remove_file(mnt.join("etc/passwd")).unwrap();
    assert!(container.join("upper/written").exists());
    assert!(fx.fs("base").join("etc/passwd").exists());
    let usage = rootfs.usage().unwrap();
    assert!(usage.bytes >= 64 * 1024 && usage.inodes >= 3, "{usage:?}");

    cria_overlay::unmount(&mnt).unwrap();
    assert!(!is_mounted(&mnt));
    assert!(names(&mnt).is_empty());
    cria_overlay::unmount(&mnt).unwrap(); // idempotent
}

#[test]
fn a_rootfs_of_128_layers_mounts() {
    let fx = Fixture::new();
    let ids: Vec<String> = (0..128)
        .map(|i| {
            let name = format!("layer-{i}");
            layer(
                &fx,
                &name,
                &[(name.as_str(), b"x"), ("which", name.as_bytes())],
            )
        })
        .collect();
    // The classic option string would not fit a page with these paths.
    let classic_len: usize = ids
        .iter()
        .map(|id| fx.store.fs_path(id).unwrap().as_os_str().len() + 1)
        .sum();
    assert!(
        classic_len > 4096,
        "test must exceed the page limit, got {classic_len}"
    );
    let rootfs = Rootfs::prepare(&fx.store, &ids, &fx.dir.path().join("c")).unwrap();
    let mnt = target(&fx, "mnt");
    let _guard = MountGuard(mnt.clone());
    rootfs.mount(&mnt).unwrap();
    assert_eq!(std::fs::read(mnt.join("which")).unwrap(), b"layer-127");
    for i in 0..128 {
        assert!(mnt.join(format!("layer-{i}")).exists(), "layer-{i} missing");
    }
    cria_overlay::unmount(&mnt).unwrap();
}

#[test]
fn read_only_rootfs_with_one_and_two_layers() {
    let fx = Fixture::new();
    let one = layer(&fx, "one", &[("a", b"1")]);
    let two = layer(&fx, "two", &[("b", b"2")]);
    for (label, ids) in [("single", vec![one.clone()]), ("pair", vec![one, two])] {
        let rootfs =
            Rootfs::prepare_read_only(&fx.store, &ids, &fx.dir.path().join(label)).unwrap();
        assert_eq!(rootfs.upper_dir(), None);
        let mnt = target(&fx, &format!("mnt-{label}"));
        let _guard = MountGuard(mnt.clone());
        rootfs.mount(&mnt).unwrap();
        assert_eq!(std::fs::read(mnt.join("a")).unwrap(), b"1", "{label}");
        let err = std::fs::write(mnt.join("new"), b"x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{label}: {err}");
        assert_eq!(rootfs.usage().unwrap(), Default::default());
        cria_overlay::unmount(&mnt).unwrap();
    }
}

#[test]
fn an_image_without_layers_gets_an_empty_writable_rootfs() {
    let fx = Fixture::new();
    let no_layers: [&str; 0] = [];
    let rootfs = Rootfs::prepare(&fx.store, &no_layers, &fx.dir.path().join("c")).unwrap();
    let mnt = target(&fx, "mnt");
    let _guard = MountGuard(mnt.clone());
    rootfs.mount(&mnt).unwrap();
    assert!(names(&mnt).is_empty());
    std::fs::write(mnt.join("f"), b"x").unwrap();
    cria_overlay::unmount(&mnt).unwrap();
    assert!(fx.dir.path().join("c/upper/f").exists());
}

#[test]
fn prepare_refuses_missing_snapshots_and_is_repeatable() {
    let fx = Fixture::new();
    let one = layer(&fx, "one", &[("a", b"1")]);
    let missing = chain_id("never unpacked");
    let err = Rootfs::prepare(
        &fx.store,
        &[one.clone(), missing.clone()],
        &fx.dir.path().join("c"),
    )
    .unwrap_err();
    assert!(
        matches!(err, OverlayError::NotCommitted { ref chain_id } if *chain_id == missing),
        "{err}"
    );
    let container = fx.dir.path().join("c");
    Rootfs::prepare(&fx.store, std::slice::from_ref(&one), &container).unwrap();
    std::fs::write(container.join("upper/kept"), b"").unwrap();
    // Preparing again (e.g. after a daemon restart) keeps the writable layer.
    let again = Rootfs::prepare(&fx.store, &[one], &container).unwrap();
    assert!(again.upper_dir().unwrap().join("kept").exists());
}

#[test]
fn a_directory_recreated_after_its_whiteout_hides_the_lower_one() {
    let fx = Fixture::new();
    let base = layer(&fx, "base", &[("d/old", b"o")]);
    let tar = common::RawTar::new()
        .file(".wh.d", b"")
        .dir("d")
        .file("d/new", b"n")
        .finish();
    fx.apply("top", &tar).unwrap();
    let rootfs = Rootfs::prepare(
        &fx.store,
        &[base, chain_id("top")],
        &fx.dir.path().join("c"),
    )
    .unwrap();
    let mnt = target(&fx, "mnt");
    let _guard = MountGuard(mnt.clone());
    rootfs.mount(&mnt).unwrap();
    assert_eq!(names(&mnt.join("d")), ["new"]);
    cria_overlay::unmount(&mnt).unwrap();
}

#[test]
fn escaping_symlinks_in_a_rootfs_resolve_inside_it() {
    use rustix::fs::{openat2, Mode, OFlags, ResolveFlags};
    let fx = Fixture::new();
    let canary = fx.canary();
    let tar = common::RawTar::new()
        .symlink("root", "/")
        .symlink("up", "../../../../../../..")
        .symlink("abs", canary.to_str().unwrap())
        .finish();
    fx.apply("links", &tar).unwrap();
    let rootfs =
        Rootfs::prepare(&fx.store, &[chain_id("links")], &fx.dir.path().join("c")).unwrap();
    let mnt = target(&fx, "mnt");
    let _guard = MountGuard(mnt.clone());
    rootfs.mount(&mnt).unwrap();
    // The rootfs holds the links verbatim and nothing of the host ...
    assert_eq!(names(&mnt), ["abs", "root", "up"]);
    // ... and resolved the way a container sees them (in root), every one
    // stays inside: the host's canary is not reachable through them.
    let keep = canary.join("keep");
    let rel = keep.strip_prefix("/").unwrap();
    let dir = rustix::fs::open(&mnt, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
    // A `..` walked while another test mounts something gives EAGAIN (the
    // kernel asks to retry); that is not an answer about where it leads.
    let resolve_in_root = |path: &Path| {
        for _ in 0..64 {
            match openat2(
                &dir,
                path,
                OFlags::RDONLY,
                Mode::empty(),
                ResolveFlags::IN_ROOT,
            ) {
                Err(rustix::io::Errno::AGAIN) => continue,
                other => return other,
            }
        }
        Err(rustix::io::Errno::AGAIN)
    };
    for link in ["root", "up"] {
        let err = resolve_in_root(&Path::new(link).join(rel)).expect_err("resolved to the host");
        assert_eq!(err, rustix::io::Errno::NOENT, "{link}");
    }
    let err = resolve_in_root(Path::new("abs/keep")).expect_err("resolved to the host");
    assert_eq!(err, rustix::io::Errno::NOENT);
    drop(dir);
    cria_overlay::unmount(&mnt).unwrap();
    fx.assert_canary_intact_beside(&["c", "mnt"]);
}
