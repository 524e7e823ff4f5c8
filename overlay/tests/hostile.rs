//! Hostile layers: every attempt to write outside the snapshot fails the
//! layer with a clear error, keeps nothing and leaves the canary untouched.

mod common;

use common::{Fixture, RawTar};
use cria_overlay::OverlayError;

/// Applies `tar`, expects a refusal naming `entry` with `reason` in its
/// message, then checks the store is empty and the canary intact.
fn assert_refused(fx: &Fixture, tar: &[u8], entry: &str, reason: &str) {
    let err = fx
        .apply("hostile", tar)
        .expect_err("hostile layer accepted");
    let message = err.to_string();
    match &err {
        OverlayError::BadEntry { entry: got, .. } => assert_eq!(got, entry, "{message}"),
        other => panic!("expected BadEntry for {entry:?}, got {other:?}"),
    }
    assert!(
        message.contains(reason),
        "message {message:?} lacks {reason:?}"
    );
    fx.assert_store_empty();
    fx.assert_canary_intact();
}

#[test]
fn dotdot_entry_is_refused() {
    let fx = Fixture::new();
    let tar = RawTar::new()
        .file("ok", b"1")
        .file("../x", b"pwned")
        .finish();
    assert_refused(&fx, &tar, "../x", "climbs out of the layer root");
    let tar = RawTar::new().file("a/../../../canary/x", b"pwned").finish();
    assert_refused(&fx, &tar, "a/../../../canary/x", "climbs out");
}

#[test]
fn absolute_entry_is_refused() {
    let fx = Fixture::new();
    let target = fx.canary().join("x");
    let name = target.to_str().unwrap();
    let tar = RawTar::new().file(name, b"pwned").finish();
    assert_refused(&fx, &tar, name, "absolute path");
    let tar = RawTar::new().dir("/etc/x").finish();
    assert_refused(&fx, &tar, "/etc/x", "absolute path");
}

#[test]
fn write_through_symlink_to_root_is_refused() {
    let fx = Fixture::new();
    // `a -> /`, then a path through it into the canary (the class of
    // `a/etc/passwd`, aimed where a bug could not hurt the host).
    let through = format!("a{}/pwned", fx.canary().display());
    let tar = RawTar::new()
        .symlink("a", "/")
        .file(&through, b"pwned")
        .finish();
    assert_refused(&fx, &tar, &through, "goes through a symlink");
}

#[test]
fn write_through_relative_escaping_symlink_is_refused() {
    let fx = Fixture::new();
    // The layer root is <tmp>/snapshots/.tmp-*/fs: three levels up is <tmp>.
    let tar = RawTar::new()
        .symlink("a", "../../..")
        .file("a/canary/pwned", b"pwned")
        .finish();
    assert_refused(&fx, &tar, "a/canary/pwned", "goes through a symlink");
}

#[test]
fn symlinks_planted_in_the_layer_cannot_redirect_any_kind_of_entry() {
    let fx = Fixture::new();
    let canary = fx.canary();
    let canary = canary.to_str().unwrap();
    for (entry, tar) in [
        ("d/sub", RawTar::new().symlink("d", canary).dir("d/sub")),
        (
            "d/.wh.keep",
            RawTar::new().symlink("d", canary).file("d/.wh.keep", b""),
        ),
        (
            "d/.wh..wh..opq",
            RawTar::new()
                .symlink("d", canary)
                .file("d/.wh..wh..opq", b""),
        ),
        (
            "d/x/y",
            RawTar::new()
                .dir("d")
                .dir("d/x")
                .symlink("d/x", canary)
                .file("d/x/y", b""),
        ),
        (
            "l",
            RawTar::new().symlink("d", canary).hardlink("l", "d/keep"),
        ),
    ] {
        assert_refused(&fx, &tar.finish(), entry, "goes through a symlink");
    }
}

#[test]
fn hardlinks_outside_the_layer_are_refused() {
    let fx = Fixture::new();
    let tar = RawTar::new().hardlink("passwd", "/etc/passwd").finish();
    assert_refused(&fx, &tar, "passwd", "absolute path");
    let tar = RawTar::new().hardlink("x", "../outside").finish();
    assert_refused(&fx, &tar, "x", "climbs out of the layer root");
    let tar = RawTar::new().hardlink("x", "../../../canary/keep").finish();
    assert_refused(&fx, &tar, "x", "climbs out of the layer root");
    let tar = RawTar::new().hardlink("x", "missing").finish();
    assert_refused(&fx, &tar, "x", "not an entry of this layer");
    let tar = RawTar::new().dir("d").hardlink("x", "d").finish();
    assert_refused(&fx, &tar, "x", "is a directory");
}

#[test]
fn entry_replacing_a_planted_symlink_does_not_write_through_it() {
    let fx = Fixture::new();
    let keep = fx.canary().join("keep");
    // `a -> <canary>/keep`, then a regular file `a`: the symlink is replaced,
    // the canary's file is not opened.
    let tar = RawTar::new()
        .symlink("a", keep.to_str().unwrap())
        .file("a", b"layer data")
        .finish();
    fx.apply("replace", &tar).unwrap();
    let a = fx.fs("replace").join("a");
    assert!(std::fs::symlink_metadata(&a).unwrap().is_file());
    assert_eq!(std::fs::read(a).unwrap(), b"layer data");
    fx.store.remove(&common::chain_id("replace")).unwrap();
    fx.assert_store_empty();
    fx.assert_canary_intact();
}

#[test]
fn symlink_targets_are_stored_verbatim() {
    let fx = Fixture::new();
    // Targets pointing anywhere are fine as long as nothing is written
    // through them: they resolve inside the container later.
    let tar = RawTar::new()
        .symlink("root", "/")
        .symlink("up", "../../..")
        .symlink("passwd", "/etc/passwd")
        .finish();
    fx.apply("links", &tar).unwrap();
    let fs = fx.fs("links");
    assert_eq!(
        std::fs::read_link(fs.join("root")).unwrap().to_str(),
        Some("/")
    );
    assert_eq!(
        std::fs::read_link(fs.join("up")).unwrap().to_str(),
        Some("../../..")
    );
    assert_eq!(
        std::fs::read_link(fs.join("passwd")).unwrap().to_str(),
        Some("/etc/passwd")
    );
    fx.assert_canary_intact();
}

#[test]
fn malformed_entries_are_refused() {
    let fx = Fixture::new();
    let tar = RawTar::new().file(".wh.", b"").finish();
    assert_refused(&fx, &tar, ".wh.", "whiteout names no file");
    let tar = RawTar::new().file("./", b"").finish();
    assert_refused(&fx, &tar, "./", "the layer root must be a directory");
    let tar = RawTar::new().file("f", b"").file("f/g", b"").finish();
    assert_refused(&fx, &tar, "f/g", "is not a directory");
}
