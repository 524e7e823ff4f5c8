//! Seccomp: profiles in the OCI/docker JSON format, containerd/moby's
//! RuntimeDefault as a Rust table, and their compilation to BPF with
//! libseccomp.
//!
//! criad resolves a profile (RuntimeDefault or a Localhost file) against the
//! container's capabilities and the native architecture into the spec's
//! `linux.seccomp` (with the architectures it covers: x86_64 with i386 and
//! x32, aarch64 with arm). The runtime library compiles that to one BPF
//! program (cached per distinct profile) and hands it to the monitor, which
//! keeps it in the state dir for exec and loads it last (see `init.rs`)
//! with plain seccomp(2).

mod bpf;
mod cache;
mod compact;
mod compile;
mod default;
mod emulate;
mod enosys;
mod profile;

pub(crate) use cache::{bundle_filter, take_spec_seccomp};
pub(crate) use compile::{Filters, FILE};
pub use default::runtime_default;
pub use profile::{load_profile, parse_profile, Profile};

use std::path::PathBuf;

/// What can go wrong reading, resolving or compiling a seccomp profile.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The Localhost profile file does not exist.
    #[error("seccomp profile {0:?}: no such file")]
    NotFound(PathBuf),
    /// The profile file could not be read.
    #[error("seccomp profile {path:?}: read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The profile is not valid JSON of the expected shape.
    #[error("seccomp profile {what}: malformed: {problem}")]
    Malformed {
        /// The file or `"inline"`.
        what: String,
        /// What serde or the checks found.
        problem: String,
    },
    /// The profile asks for something this runtime cannot do.
    #[error("seccomp profile: {0}")]
    Unsupported(String),
    /// libseccomp refused the filter.
    #[error("seccomp compile: {0}")]
    Compile(String),
    /// The kernel refused the filter.
    #[error("seccomp load: {0}")]
    Load(String),
}

/// The docker name of the architecture this binary runs on (`amd64`,
/// `arm64`), as moby matches `includes.arches` against it.
pub fn native_arch() -> &'static str {
    if cfg!(target_arch = "x86_64") {
        "amd64"
    } else if cfg!(target_arch = "aarch64") {
        "arm64"
    } else {
        std::env::consts::ARCH
    }
}

/// The seccomp (`SCMP_ARCH_*`) architecture of a docker architecture name,
/// as moby matches `archMap` entries against the native one.
pub(crate) fn scmp_arch_of(docker: &str) -> Option<oci_spec::runtime::Arch> {
    use oci_spec::runtime::Arch as A;
    Some(match docker {
        "amd64" => A::ScmpArchX86_64,
        "386" | "x86" => A::ScmpArchX86,
        "arm64" => A::ScmpArchAarch64,
        "arm" => A::ScmpArchArm,
        "riscv64" => A::ScmpArchRiscv64,
        "s390x" => A::ScmpArchS390x,
        "ppc64le" => A::ScmpArchPpc64le,
        "loongarch64" => A::ScmpArchLoongarch64,
        "mips64" => A::ScmpArchMips64,
        "mips64le" => A::ScmpArchMipsel64,
        _ => return None,
    })
}
