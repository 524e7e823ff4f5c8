//! The monitor loads compiled seccomp programs with plain seccomp(2): it
//! must not need libseccomp at run time (docs/decisions.md, 11), while the
//! library's callers (cria-oci here) compile with it.

/// Whether the ELF file at `path` names libseccomp's shared object (as a
/// DT_NEEDED entry's string in .dynstr would).
fn names_libseccomp(path: &str) -> bool {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let needle = b"libseccomp.so";
    bytes.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn the_monitor_does_not_link_libseccomp() {
    assert!(
        !names_libseccomp(env!("CARGO_BIN_EXE_cria-monitor")),
        "cria-monitor would need libseccomp"
    );
    assert!(
        names_libseccomp(env!("CARGO_BIN_EXE_cria-oci")),
        "cria-oci compiles filters with libseccomp"
    );
}
