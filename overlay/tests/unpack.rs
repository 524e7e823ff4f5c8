//! Unpacking real layers made by GNU tar: every file type and attribute
//! lands as the archive says; bad streams keep nothing.

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use common::{chain_id, diff_id, gnu_tar, gzip, zstd, FailAtEnd, Fixture, RawTar};
use cria_overlay::{Compression, OverlayError, SnapshotStore};
use rustix::fs::{Timespec, Timestamps};

/// security.capability (VFS v2) granting cap_net_bind_service, effective.
const CAP_NET_BIND_SERVICE: [u8; 20] = [
    0x01, 0x00, 0x00, 0x02, // magic v2 | effective
    0x00, 0x04, 0x00, 0x00, // permitted low word: bit 10
    0, 0, 0, 0, // inheritable low
    0, 0, 0, 0, // permitted high
    0, 0, 0, 0, // inheritable high
];

fn set_times(path: &Path, secs: i64, nanos: i64) {
    let t = Timespec {
        tv_sec: secs,
        tv_nsec: nanos,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn getxattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    match rustix::fs::lgetxattr(path, name, &mut buf) {
        Ok(n) => Some(buf[..n].to_vec()),
        Err(_) => None,
    }
}

fn mknod(path: &Path, kind: rustix::fs::FileType, dev: u64) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        kind,
        rustix::fs::Mode::from_raw_mode(0o640),
        dev,
    )
    .unwrap();
}

/// A source tree with every kind of entry an image layer can hold.
fn rich_tree(src: &Path) {
    use std::fs;
    fs::create_dir_all(src.join("bin")).unwrap();
    fs::write(src.join("bin/tool"), b"#!/bin/sh\necho hi\n").unwrap();
    chmod(&src.join("bin/tool"), 0o4755); // setuid
    fs::write(src.join("bin/ping"), b"ping").unwrap();
    rustix::fs::setxattr(
        src.join("bin/ping"),
        "security.capability",
        &CAP_NET_BIND_SERVICE,
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    std::os::unix::fs::chown(src.join("bin/ping"), Some(1000), Some(2000)).unwrap();
    // chown cleared the capability; set it again as an image would have it.
    rustix::fs::setxattr(
        src.join("bin/ping"),
        "security.capability",
        &CAP_NET_BIND_SERVICE,
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    fs::write(src.join("bin/note"), b"note").unwrap();
    rustix::fs::setxattr(
        src.join("bin/note"),
        "user.origin",
        b"gnu tar",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    fs::hard_link(src.join("bin/tool"), src.join("bin/tool-link")).unwrap();
    std::os::unix::fs::symlink("tool", src.join("bin/alias")).unwrap();
    std::os::unix::fs::symlink("/etc/absolute", src.join("bin/abs")).unwrap();
    fs::create_dir(src.join("shared")).unwrap();
    chmod(&src.join("shared"), 0o2775); // setgid dir
    std::os::unix::fs::chown(src.join("shared"), Some(0), Some(50)).unwrap();
    chmod(&src.join("shared"), 0o2775);
    fs::create_dir(src.join("tmp")).unwrap();
    chmod(&src.join("tmp"), 0o1777); // sticky
    fs::create_dir(src.join("dev")).unwrap();
    mknod(
        &src.join("dev/null"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::makedev(1, 3),
    );
    mknod(
        &src.join("dev/loop9"),
        rustix::fs::FileType::BlockDevice,
        rustix::fs::makedev(7, 9),
    );
    mknod(&src.join("dev/pipe"), rustix::fs::FileType::Fifo, 0);
    // Whiteouts as OCI layers carry them.
    fs::create_dir(src.join("etc")).unwrap();
    fs::write(src.join("etc/.wh.passwd"), b"").unwrap();
    fs::create_dir(src.join("opaque")).unwrap();
    fs::write(src.join("opaque/.wh..wh..opq"), b"").unwrap();
    fs::write(src.join("opaque/new"), b"new").unwrap();
    fs::write(src.join(".wh..wh.plnk"), b"").unwrap();
    // A path past ustar's 100 bytes and a long symlink target.
    let deep = src.join("d".repeat(60)).join("e".repeat(60));
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("f".repeat(30)), b"deep").unwrap();
    std::os::unix::fs::symlink("t".repeat(150), src.join("longlink")).unwrap();
    // Times last, directories after their contents.
    for p in [
        "bin/tool",
        "bin/ping",
        "bin/note",
        "opaque/new",
        "bin/alias",
    ] {
        set_times(&src.join(p), 1_500_000_000, 0);
    }
    for p in ["bin", "shared", "tmp", "dev", "etc", "opaque", "."] {
        set_times(&src.join(p), 1_600_000_000, 0);
    }
}

fn check_rich_tree(fs_dir: &Path, with_xattrs: bool) {
    let meta =
        |p: &str| std::fs::symlink_metadata(fs_dir.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    assert_eq!(
        std::fs::read(fs_dir.join("bin/tool")).unwrap(),
        b"#!/bin/sh\necho hi\n"
    );
    assert_eq!(meta("bin/tool").mode() & 0o7777, 0o4755, "setuid kept");
    assert_eq!(meta("bin/tool").mtime(), 1_500_000_000);
    assert_eq!(
        meta("bin/tool").ino(),
        meta("bin/tool-link").ino(),
        "hardlink shares the inode"
    );
    assert_eq!(meta("bin/tool").nlink(), 2);
    assert_eq!(
        (meta("bin/ping").uid(), meta("bin/ping").gid()),
        (1000, 2000)
    );
    if with_xattrs {
        assert_eq!(
            getxattr(&fs_dir.join("bin/ping"), "security.capability").as_deref(),
            Some(&CAP_NET_BIND_SERVICE[..]),
            "file capability survives the chown"
        );
        assert_eq!(
            getxattr(&fs_dir.join("bin/note"), "user.origin").as_deref(),
            Some(&b"gnu tar"[..])
        );
    }
    assert_eq!(
        std::fs::read_link(fs_dir.join("bin/alias"))
            .unwrap()
            .to_str(),
        Some("tool")
    );
    assert_eq!(
        meta("bin/alias").mtime(),
        1_500_000_000,
        "symlink mtime set without following"
    );
    assert_eq!(
        std::fs::read_link(fs_dir.join("bin/abs")).unwrap().to_str(),
        Some("/etc/absolute")
    );
    assert_eq!(meta("shared").mode() & 0o7777, 0o2775, "setgid dir");
    assert_eq!(meta("shared").gid(), 50);
    assert_eq!(meta("tmp").mode() & 0o7777, 0o1777, "sticky dir");
    let null = meta("dev/null");
    assert!(null.file_type().is_char_device());
    assert_eq!(
        (
            rustix::fs::major(null.rdev()),
            rustix::fs::minor(null.rdev())
        ),
        (1, 3)
    );
    assert_eq!(null.mode() & 0o7777, 0o640);
    let lp = meta("dev/loop9");
    assert!(lp.file_type().is_block_device());
    assert_eq!(
        (rustix::fs::major(lp.rdev()), rustix::fs::minor(lp.rdev())),
        (7, 9)
    );
    assert!(meta("dev/pipe").file_type().is_fifo());
    // Whiteout: a 0/0 char device of the name, no .wh. file.
    let wh = meta("etc/passwd");
    assert!(wh.file_type().is_char_device());
    assert_eq!(wh.rdev(), 0);
    assert!(!fs_dir.join("etc/.wh.passwd").exists());
    // Opaque dir: xattr, no marker file, contents kept.
    assert_eq!(
        getxattr(&fs_dir.join("opaque"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert!(!fs_dir.join("opaque/.wh..wh..opq").exists());
    assert_eq!(std::fs::read(fs_dir.join("opaque/new")).unwrap(), b"new");
    assert!(
        std::fs::symlink_metadata(fs_dir.join(".wh..wh.plnk")).is_err(),
        "meta whiteouts ignored"
    );
    let deep = fs_dir
        .join("d".repeat(60))
        .join("e".repeat(60))
        .join("f".repeat(30));
    assert_eq!(std::fs::read(deep).unwrap(), b"deep");
    assert_eq!(
        std::fs::read_link(fs_dir.join("longlink"))
            .unwrap()
            .as_os_str()
            .len(),
        150
    );
    // Directory mtimes hold although files were created in them later.
    for dir in ["bin", "shared", "tmp", "dev", "etc", "opaque", ""] {
        assert_eq!(meta(dir).mtime(), 1_600_000_000, "mtime of dir {dir:?}");
    }
}

#[test]
fn gnu_format_layer_with_every_entry_kind() {
    let src = tempfile::tempdir().unwrap();
    rich_tree(src.path());
    let tar = gnu_tar(src.path(), "gnu");
    let fx = Fixture::new();
    let stats = fx.apply("rich", &tar).unwrap();
    check_rich_tree(&fx.fs("rich"), false);
    assert!(stats.inodes >= 20, "{stats:?}");
    assert_eq!(fx.store.list().unwrap(), [chain_id("rich")]);
    fx.assert_canary_intact();
}

#[test]
fn pax_format_layer_keeps_xattrs_and_nanosecond_mtimes() {
    let src = tempfile::tempdir().unwrap();
    rich_tree(src.path());
    std::fs::write(src.path().join("precise"), b"x").unwrap();
    set_times(&src.path().join("precise"), 1_700_000_000, 123_456_789);
    set_times(src.path(), 1_600_000_000, 0);
    let tar = gnu_tar(src.path(), "posix");
    let fx = Fixture::new();
    fx.apply("pax", &tar).unwrap();
    check_rich_tree(&fx.fs("pax"), true);
    let precise = std::fs::metadata(fx.fs("pax").join("precise")).unwrap();
    assert_eq!(
        (precise.mtime(), precise.mtime_nsec()),
        (1_700_000_000, 123_456_789)
    );
}

#[test]
fn gzip_zstd_and_plain_streams_unpack_alike() {
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("data"), vec![7u8; 300_000]).unwrap();
    let tar = gnu_tar(src.path(), "gnu");
    let fx = Fixture::new();
    for (label, blob, compression) in [
        ("plain", tar.clone(), Compression::None),
        ("gzip", gzip(&tar), Compression::Gzip),
        ("zstd", zstd(&tar), Compression::Zstd),
    ] {
        let stats = fx.apply_blob(label, &blob, compression, &tar).unwrap();
        assert_eq!(stats.bytes, 300_000, "{label}");
        assert_eq!(
            std::fs::read(fx.fs(label).join("data")).unwrap(),
            vec![7u8; 300_000]
        );
    }
    // Multi-member gzip (as eStargz writes) is one stream.
    let half = tar.len() / 2;
    let mut multi = gzip(&tar[..half]);
    multi.extend(gzip(&tar[half..]));
    fx.apply_blob("multi", &multi, Compression::Gzip, &tar)
        .unwrap();
    assert_eq!(
        std::fs::read(fx.fs("multi").join("data")).unwrap().len(),
        300_000
    );
}

#[test]
fn diff_id_mismatch_keeps_nothing() {
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("f"), b"content").unwrap();
    let tar = gnu_tar(src.path(), "gnu");
    let fx = Fixture::new();
    let wrong = diff_id(b"something else");
    let err = fx
        .store
        .apply_layer(
            &chain_id("l"),
            &mut &gzip(&tar)[..],
            Compression::Gzip,
            &wrong,
        )
        .unwrap_err();
    assert!(matches!(err, OverlayError::DiffIdMismatch { .. }), "{err}");
    assert!(err.to_string().contains(&diff_id(&tar)), "{err}");
    fx.assert_store_empty();
    assert!(!fx.store.is_committed(&chain_id("l")));
}

#[test]
fn diff_id_covers_bytes_after_the_end_of_archive() {
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("f"), b"content").unwrap();
    let mut tar = gnu_tar(src.path(), "gnu");
    let honest = diff_id(&tar);
    tar.extend_from_slice(&[0u8; 4096]);
    let fx = Fixture::new();
    let err = fx
        .store
        .apply_layer(&chain_id("l"), &mut &tar[..], Compression::None, &honest)
        .unwrap_err();
    assert!(matches!(err, OverlayError::DiffIdMismatch { .. }), "{err}");
    fx.assert_store_empty();
    fx.apply("l", &tar).unwrap();
}

#[test]
fn reader_failing_at_the_end_keeps_nothing() {
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("f"), vec![1u8; 100_000]).unwrap();
    let tar = gnu_tar(src.path(), "gnu");
    let fx = Fixture::new();
    for (blob, compression) in [
        (tar.clone(), Compression::None),
        (gzip(&tar), Compression::Gzip),
        (zstd(&tar), Compression::Zstd),
    ] {
        let err = fx
            .store
            .apply_layer(
                &chain_id("l"),
                &mut FailAtEnd { data: &blob },
                compression,
                &diff_id(&tar),
            )
            .unwrap_err();
        assert!(matches!(err, OverlayError::Stream { .. }), "{err}");
        assert!(err.to_string().contains("blob digest mismatch"), "{err}");
        fx.assert_store_empty();
    }
}

#[test]
fn corrupt_and_truncated_streams_keep_nothing() {
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("f"), vec![1u8; 100_000]).unwrap();
    let tar = gnu_tar(src.path(), "gnu");
    let fx = Fixture::new();
    let gz = gzip(&tar);
    let truncated = &gz[..gz.len() / 2];
    let err = fx
        .apply_blob("l", truncated, Compression::Gzip, &tar)
        .unwrap_err();
    assert!(matches!(err, OverlayError::Stream { .. }), "{err}");
    let err = fx
        .apply_blob("l", &tar, Compression::Zstd, &tar)
        .unwrap_err();
    assert!(matches!(err, OverlayError::Stream { .. }), "{err}");
    fx.assert_store_empty();
}

#[test]
fn later_entries_replace_earlier_ones_and_update_directories() {
    let tar = RawTar::new()
        .dir("d")
        .file("d/f", b"first")
        .file("d/f", b"second")
        .dir("x")
        .file("x/inner", b"gone with x")
        .file("x", b"x is a file now")
        .symlink("s", "elsewhere")
        .dir("s")
        .entry(tar::EntryType::Directory, "d", "", b"")
        .finish();
    let fx = Fixture::new();
    fx.apply("replace", &tar).unwrap();
    let fs = fx.fs("replace");
    assert_eq!(std::fs::read(fs.join("d/f")).unwrap(), b"second");
    assert_eq!(std::fs::read(fs.join("x")).unwrap(), b"x is a file now");
    assert!(std::fs::symlink_metadata(fs.join("s")).unwrap().is_dir());
    assert!(
        fs.join("d/f").exists(),
        "a repeated dir entry keeps its contents"
    );
}

#[test]
fn missing_parent_directories_are_created() {
    let tar = RawTar::new()
        .file("usr/share/doc/readme", b"hi")
        .file("./a/.wh.b", b"")
        .finish();
    let fx = Fixture::new();
    fx.apply("parents", &tar).unwrap();
    let fs = fx.fs("parents");
    assert_eq!(
        std::fs::read(fs.join("usr/share/doc/readme")).unwrap(),
        b"hi"
    );
    assert_eq!(
        std::fs::metadata(fs.join("usr/share")).unwrap().mode() & 0o7777,
        0o755
    );
    assert!(std::fs::symlink_metadata(fs.join("a/b"))
        .unwrap()
        .file_type()
        .is_char_device());
}

#[test]
fn overlay_internal_xattrs_from_the_archive_are_dropped() {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_size(0);
    header.set_mode(0o755);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    builder
        .append_pax_extensions([
            ("SCHILY.xattr.trusted.overlay.redirect", &b"/etc"[..]),
            ("SCHILY.xattr.user.kept", b"yes"),
        ])
        .unwrap();
    builder.append_data(&mut header, "d", &[][..]).unwrap();
    let tar = builder.into_inner().unwrap();
    let fx = Fixture::new();
    fx.apply("xattrs", &tar).unwrap();
    let d = fx.fs("xattrs").join("d");
    assert_eq!(getxattr(&d, "trusted.overlay.redirect"), None);
    assert_eq!(getxattr(&d, "user.kept").as_deref(), Some(&b"yes"[..]));
}

#[test]
fn concurrent_unpacks_of_one_layer_both_succeed() {
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("f"), vec![3u8; 1_000_000]).unwrap();
    let tar = gnu_tar(src.path(), "gnu");
    let fx = Fixture::new();
    std::thread::scope(|s| {
        let runs: Vec<_> = (0..4).map(|_| s.spawn(|| fx.apply("same", &tar))).collect();
        for run in runs {
            run.join().unwrap().unwrap();
        }
    });
    assert_eq!(fx.store.list().unwrap(), [chain_id("same")]);
    let names: Vec<_> = std::fs::read_dir(fx.store.dir()).unwrap().collect();
    assert_eq!(names.len(), 1, "losers' temp dirs removed");
}

#[test]
fn open_removes_leftovers_and_remove_list_usage_work() {
    let fx = Fixture::new();
    let leftover = fx.store.dir().join(".tmp-deadbeef-1-0/fs/x");
    std::fs::create_dir_all(&leftover).unwrap();
    let store = SnapshotStore::open(fx.store.dir()).unwrap();
    fx.assert_store_empty();
    assert_eq!(
        std::fs::metadata(store.dir()).unwrap().mode() & 0o777,
        0o700
    );

    let tar = RawTar::new().file("a", &vec![1u8; 50_000]).finish();
    fx.apply("one", &tar).unwrap();
    fx.apply("two", &tar).unwrap();
    let mut expected = vec![chain_id("one"), chain_id("two")];
    expected.sort();
    assert_eq!(store.list().unwrap(), expected);
    let usage = store.usage().unwrap();
    assert!(usage.bytes >= 100_000 && usage.inodes >= 7, "{usage:?}");
    assert!(store.remove(&chain_id("one")).unwrap());
    assert!(
        !store.remove(&chain_id("one")).unwrap(),
        "second remove finds nothing"
    );
    assert_eq!(store.list().unwrap(), [chain_id("two")]);
    assert!(store.is_committed(&chain_id("two")) && !store.is_committed(&chain_id("one")));
    assert!(matches!(
        store.remove("../x"),
        Err(OverlayError::InvalidChainId { .. })
    ));
    assert!(!store.is_committed("sha256:../../etc"));
}

#[test]
fn layer_root_entry_sets_the_root_metadata() {
    let src = tempfile::tempdir().unwrap();
    chmod(src.path(), 0o750);
    set_times(src.path(), 1_234_567_890, 0);
    let tar = gnu_tar(src.path(), "gnu");
    let fx = Fixture::new();
    fx.apply("root", &tar).unwrap();
    let root = std::fs::metadata(fx.fs("root")).unwrap();
    assert_eq!(root.mode() & 0o7777, 0o750);
    assert_eq!(root.mtime(), 1_234_567_890);
    // Without a `./` entry the root is 0755.
    fx.apply("plain", &RawTar::new().file("f", b"").finish())
        .unwrap();
    assert_eq!(
        std::fs::metadata(fx.fs("plain")).unwrap().mode() & 0o7777,
        0o755
    );
}

#[test]
fn empty_streams_and_whiteout_only_layers() {
    let fx = Fixture::new();
    let stats = fx.apply("nothing", b"").unwrap();
    assert_eq!(stats, Default::default());
    assert!(fx.store.is_committed(&chain_id("nothing")));
    let tar = RawTar::new()
        .file(".wh.gone", b"")
        .file("d/.wh..wh..opq", b"")
        .finish();
    fx.apply("whiteouts", &tar).unwrap();
    let fs = fx.fs("whiteouts");
    assert!(std::fs::symlink_metadata(fs.join("gone"))
        .unwrap()
        .file_type()
        .is_char_device());
    assert_eq!(
        getxattr(&fs.join("d"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
}

#[test]
fn directory_recreated_after_its_whiteout_is_opaque() {
    let tar = RawTar::new()
        .file(".wh.d", b"")
        .dir("d")
        .file("d/new", b"n")
        .finish();
    let fx = Fixture::new();
    fx.apply("recreate", &tar).unwrap();
    let d = fx.fs("recreate").join("d");
    assert!(std::fs::symlink_metadata(&d).unwrap().is_dir());
    assert_eq!(
        getxattr(&d, "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
}
