//! Builds `inside/main.rs` (the in-container checker of the security tests)
//! as a static binary with the same rustc, and tells the harness its path
//! through `CRIA_INSIDE_BIN`.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let bin = out.join("cria-inside");
    println!("cargo:rerun-if-changed=inside/main.rs");
    // Static with glibc (libc6-dev's libc.a): the image has no libc.
    let status = Command::new(rustc)
        .args([
            "-O",
            "-C",
            "target-feature=+crt-static",
            "--edition",
            "2021",
        ])
        .arg("inside/main.rs")
        .arg("-o")
        .arg(&bin)
        .status()
        .expect("running rustc for tests/inside/main.rs");
    assert!(status.success(), "building tests/inside/main.rs failed");
    println!("cargo:rustc-env=CRIA_INSIDE_BIN={}", bin.display());
}
