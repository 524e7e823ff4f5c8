//! Finding plugin executables in the bin dirs.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::{CniError, Result};

/// Where plugins are looked for when the caller does not say: the upstream
/// default and Debian's containernetworking-plugins.
pub const DEFAULT_BIN_DIRS: [&str; 2] = ["/opt/cni/bin", "/usr/lib/cni"];

/// The first executable regular file named `name` in `dirs`, in order.
pub fn find_plugin(name: &str, dirs: &[PathBuf]) -> Result<PathBuf> {
    let not_found = || CniError::PluginNotFound {
        name: name.to_string(),
        dirs: dirs.to_vec(),
    };
    // Config parsing already refuses such types; this keeps the function safe on its own.
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(not_found());
    }
    dirs.iter()
        .map(|d| d.join(name))
        .find(|p| is_executable_file(p))
        .ok_or_else(not_found)
}

fn is_executable_file(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path, mode: u32) {
        std::fs::write(path, "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    #[test]
    fn first_dir_holding_an_executable_wins() {
        let a = tempfile::tempdir().expect("tempdir");
        let b = tempfile::tempdir().expect("tempdir");
        touch(&a.path().join("bridge"), 0o644); // not executable: skipped
        touch(&b.path().join("bridge"), 0o755);
        std::fs::create_dir(a.path().join("portmap")).expect("mkdir"); // a dir: skipped
        touch(&b.path().join("portmap"), 0o755);
        let dirs = vec![a.path().to_path_buf(), b.path().to_path_buf()];
        assert_eq!(
            find_plugin("bridge", &dirs).expect("found"),
            b.path().join("bridge")
        );
        assert_eq!(
            find_plugin("portmap", &dirs).expect("found"),
            b.path().join("portmap")
        );
        touch(&a.path().join("bridge"), 0o755);
        assert_eq!(
            find_plugin("bridge", &dirs).expect("found"),
            a.path().join("bridge")
        );
    }

    #[test]
    fn missing_plugin_names_it_and_the_dirs() {
        let a = tempfile::tempdir().expect("tempdir");
        let dirs = vec![a.path().to_path_buf(), PathBuf::from("/nonexistent/cni")];
        let err = find_plugin("flannel", &dirs)
            .expect_err("absent")
            .to_string();
        assert!(
            err.contains("flannel")
                && err.contains("/nonexistent/cni")
                && err.contains(&a.path().display().to_string()),
            "{err}"
        );
        assert!(find_plugin("../bridge", &dirs).is_err());
    }
}
