//! Seccomp: profiles in the OCI/docker JSON format, containerd/moby's
//! RuntimeDefault as a Rust table, and their compilation to BPF with
//! seccompiler.
//!
//! criad resolves a profile (RuntimeDefault or a Localhost file) against the
//! container's capabilities and the native architecture into the spec's
//! `linux.seccomp`; the monitor compiles that to BPF while it sets the
//! container up and loads it last (see `init.rs`).

mod compile;
mod default;
mod profile;
mod syscalls;

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
    /// seccompiler refused the filter.
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
