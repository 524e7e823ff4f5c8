//! The confinement parts of a container's spec: seccomp (RuntimeDefault,
//! Localhost, Unconfined and the deprecated path strings), AppArmor and
//! SELinux (absent from this kernel: refused when a profile needs them),
//! and the pod's sysctls (namespaced ones only).

use super::SpecError;
use cria_proto::v1::security_profile::ProfileType;
use cria_proto::v1::LinuxContainerSecurityContext;
use oci_spec::runtime::LinuxSeccomp;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

/// Which seccomp profile a container asked for.
#[derive(Debug, PartialEq, Eq)]
enum Choice<'a> {
    Unconfined,
    RuntimeDefault,
    Localhost(&'a str),
}

/// Reads the structured field, else the deprecated string (kubelets before
/// 1.25); an empty one is Unconfined, as in containerd.
fn choice(security: &LinuxContainerSecurityContext) -> Result<Choice<'_>, SpecError> {
    if let Some(p) = &security.seccomp {
        return Ok(match p.profile_type() {
            ProfileType::Unconfined => Choice::Unconfined,
            ProfileType::RuntimeDefault => Choice::RuntimeDefault,
            ProfileType::Localhost => Choice::Localhost(&p.localhost_ref),
        });
    }
    #[allow(deprecated)]
    let path = security.seccomp_profile_path.as_str();
    match path {
        "" | "unconfined" => Ok(Choice::Unconfined),
        "runtime/default" | "docker/default" => Ok(Choice::RuntimeDefault),
        p if p.starts_with("localhost/") => Ok(Choice::Localhost(&p["localhost/".len()..])),
        p => Err(SpecError::invalid(
            "linux.security_context.seccomp_profile_path",
            format!("{p:?} is not unconfined, runtime/default, docker/default or localhost/<path>"),
        )),
    }
}

/// The spec's `linux.seccomp` for a container whose bounding set is `caps`
/// (`CAP_…` names); `None` runs it unconfined. Privileged containers are
/// never filtered.
pub(super) fn seccomp(
    security: &LinuxContainerSecurityContext,
    caps: &[String],
) -> Result<Option<LinuxSeccomp>, SpecError> {
    let choice = choice(security)?;
    if security.privileged {
        return Ok(None);
    }
    let field = "linux.security_context.seccomp";
    let bad = |e: cria_runtime::seccomp::SeccompError| SpecError::invalid(field, e.to_string());
    match choice {
        Choice::Unconfined => Ok(None),
        Choice::RuntimeDefault => runtime_default(caps).map(Some).map_err(bad),
        Choice::Localhost(path) => {
            if !Path::new(path).is_absolute() {
                return Err(SpecError::invalid(
                    field,
                    format!("Localhost profile {path:?} is not an absolute path"),
                ));
            }
            let profile = cria_runtime::seccomp::load_profile(Path::new(path)).map_err(bad)?;
            profile.resolve(caps).map(Some).map_err(bad)
        }
    }
}

/// Distinct bounding sets whose RuntimeDefault is kept; past this the memo
/// starts over (pods rarely vary their capabilities much).
const RESOLVED_MAX: usize = 64;

/// RuntimeDefault for the bounding set `caps`, resolved once per distinct
/// set (as a set: order and repeats do not matter to the resolution):
/// resolving walks moby's whole table, ~60 µs per CreateContainer, and a
/// node's containers share a few sets. The architecture and kernel it also
/// depends on do not change under a running criad.
fn runtime_default(caps: &[String]) -> Result<LinuxSeccomp, cria_runtime::seccomp::SeccompError> {
    static RESOLVED: Mutex<Option<HashMap<Vec<String>, LinuxSeccomp>>> = Mutex::new(None);
    let mut key = caps.to_vec();
    key.sort_unstable();
    key.dedup();
    let memo = || RESOLVED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(sc) = memo().as_ref().and_then(|m| m.get(&key)) {
        return Ok(sc.clone());
    }
    let sc = cria_runtime::seccomp::runtime_default(caps)?;
    let mut m = memo();
    let map = m.get_or_insert_with(HashMap::new);
    if map.len() >= RESOLVED_MAX {
        map.clear();
    }
    map.insert(key, sc.clone());
    Ok(sc)
}

/// The LSMs this kernel runs (`/sys/kernel/security/lsm`), for errors.
fn has_lsm(name: &str) -> bool {
    std::fs::read_to_string("/sys/kernel/security/lsm")
        .map(|s| s.trim().split(',').any(|l| l == name))
        .unwrap_or(false)
}

fn lsm_missing(field: &str, lsm: &str, what: &str) -> SpecError {
    let why = if has_lsm(&lsm.to_lowercase()) {
        format!("cria does not load {lsm} profiles")
    } else {
        format!("this node's kernel has no {lsm}")
    };
    SpecError::invalid(field, format!("{what} needs {lsm}, but {why}"))
}

/// AppArmor and SELinux: cria applies neither. Unconfined, empty and
/// RuntimeDefault (which has nothing to load without AppArmor, as in
/// containerd) pass; a named profile or SELinux label is refused.
pub(super) fn check_lsm(security: &LinuxContainerSecurityContext) -> Result<(), SpecError> {
    if let Some(p) = &security.apparmor {
        if p.profile_type() == ProfileType::Localhost {
            return Err(lsm_missing(
                "linux.security_context.apparmor",
                "AppArmor",
                &format!("Localhost profile {:?}", p.localhost_ref),
            ));
        }
    } else {
        #[allow(deprecated)]
        let a = security.apparmor_profile.as_str();
        if !matches!(a, "" | "unconfined" | "runtime/default") {
            return Err(lsm_missing(
                "linux.security_context.apparmor_profile",
                "AppArmor",
                &format!("profile {a:?}"),
            ));
        }
    }
    if let Some(s) = &security.selinux_options {
        if !(s.user.is_empty() && s.role.is_empty() && s.r#type.is_empty() && s.level.is_empty()) {
            return Err(lsm_missing(
                "linux.security_context.selinux_options",
                "SELinux",
                &format!("label {}:{}:{}:{}", s.user, s.role, s.r#type, s.level),
            ));
        }
    }
    Ok(())
}

/// Whether the kernel namespaces `name` per network or IPC namespace.
fn namespaced(name: &str) -> Option<&'static str> {
    if name.starts_with("net.") {
        Some("net")
    } else if name.starts_with("kernel.shm")
        || name.starts_with("kernel.msg")
        || name == "kernel.sem"
        || name.starts_with("fs.mqueue.")
    {
        Some("ipc")
    } else {
        None
    }
}

/// The pod's sysctls, checked: only namespaced ones, `net.*` only with the
/// pod's own network namespace, `kernel.shm*`/`msg*`/`sem`/`fs.mqueue.*`
/// only with its own IPC namespace.
pub(crate) fn sysctls(
    requested: &HashMap<String, String>,
    host_network: bool,
    host_ipc: bool,
) -> Result<HashMap<String, String>, SpecError> {
    for name in requested.keys() {
        let field = format!("linux.sysctls[{name:?}]");
        match namespaced(name) {
            None => {
                return Err(SpecError::invalid(
                    field,
                    "not a namespaced sysctl (allowed: net.*, kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*)",
                ))
            }
            Some("net") if host_network => {
                return Err(SpecError::invalid(field, "a hostNetwork pod may not set net.* sysctls"))
            }
            Some("ipc") if host_ipc => {
                return Err(SpecError::invalid(field, "a hostIPC pod may not set IPC sysctls"))
            }
            Some(_) => {}
        }
    }
    Ok(requested.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cria_proto::v1::SecurityProfile;

    fn ctx(path: &str) -> LinuxContainerSecurityContext {
        #[allow(deprecated)]
        LinuxContainerSecurityContext {
            seccomp_profile_path: path.into(),
            ..Default::default()
        }
    }

    #[test]
    fn runtime_default_is_resolved_per_bounding_set_whatever_its_order() {
        let caps = |c: &[&str]| c.iter().map(|c| c.to_string()).collect::<Vec<_>>();
        let admin = caps(&["CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_CHOWN"]);
        for set in [caps(&[]), caps(&["CAP_CHOWN"]), admin.clone()] {
            // The first call resolves (or finds another test's), the second
            // finds it: both are what the runtime library resolves.
            let fresh = cria_runtime::seccomp::runtime_default(&set).unwrap();
            assert_eq!(runtime_default(&set).unwrap(), fresh);
            assert_eq!(runtime_default(&set).unwrap(), fresh);
        }
        let mut shuffled = admin.clone();
        shuffled.reverse();
        shuffled.push("CAP_SYS_ADMIN".into());
        assert_eq!(
            runtime_default(&shuffled).unwrap(),
            cria_runtime::seccomp::runtime_default(&admin).unwrap()
        );
        // Different sets keep different profiles (mount needs SYS_ADMIN).
        assert_ne!(
            runtime_default(&admin).unwrap(),
            runtime_default(&caps(&["CAP_CHOWN"])).unwrap()
        );
    }

    #[test]
    fn deprecated_paths_choose_profiles() {
        assert_eq!(choice(&ctx("")).unwrap(), Choice::Unconfined);
        assert_eq!(choice(&ctx("unconfined")).unwrap(), Choice::Unconfined);
        assert_eq!(
            choice(&ctx("runtime/default")).unwrap(),
            Choice::RuntimeDefault
        );
        assert_eq!(
            choice(&ctx("docker/default")).unwrap(),
            Choice::RuntimeDefault
        );
        assert_eq!(
            choice(&ctx("localhost//a/b.json")).unwrap(),
            Choice::Localhost("/a/b.json")
        );
        let e = choice(&ctx("bogus")).unwrap_err();
        assert!(matches!(e, SpecError::Invalid { .. }), "{e}");
    }

    #[test]
    fn runtime_default_and_privileged() {
        let mut c = LinuxContainerSecurityContext {
            seccomp: Some(SecurityProfile {
                profile_type: ProfileType::RuntimeDefault as i32,
                localhost_ref: String::new(),
            }),
            ..Default::default()
        };
        let sc = seccomp(&c, &[]).unwrap().expect("a filter");
        let names: Vec<String> = sc
            .syscalls()
            .iter()
            .flatten()
            .flat_map(|s| s.names().clone())
            .collect();
        assert!(names.iter().any(|n| n == "read"));
        assert!(
            !names.iter().any(|n| n == "mount"),
            "mount needs CAP_SYS_ADMIN"
        );
        c.privileged = true;
        assert!(seccomp(&c, &[]).unwrap().is_none());
    }

    #[test]
    fn localhost_errors_name_the_file() {
        let c = LinuxContainerSecurityContext {
            seccomp: Some(SecurityProfile {
                profile_type: ProfileType::Localhost as i32,
                localhost_ref: "/nonexistent/cria-profile.json".into(),
            }),
            ..Default::default()
        };
        let e = seccomp(&c, &[]).unwrap_err().to_string();
        assert!(
            e.contains("/nonexistent/cria-profile.json") && e.contains("no such file"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("bad.json");
        std::fs::write(&f, "{\"defaultAction\": ").unwrap();
        let c = LinuxContainerSecurityContext {
            seccomp: Some(SecurityProfile {
                profile_type: ProfileType::Localhost as i32,
                localhost_ref: f.to_string_lossy().into(),
            }),
            ..Default::default()
        };
        let e = seccomp(&c, &[]).unwrap_err().to_string();
        assert!(e.contains("bad.json") && e.contains("malformed"), "{e}");
    }

    #[test]
    fn lsm_profiles_are_refused_unconfined_passes() {
        let mut c = LinuxContainerSecurityContext::default();
        check_lsm(&c).unwrap();
        c.apparmor = Some(SecurityProfile {
            profile_type: ProfileType::Localhost as i32,
            localhost_ref: "k8s-nginx".into(),
        });
        let e = check_lsm(&c).unwrap_err().to_string();
        assert!(e.contains("AppArmor") && e.contains("k8s-nginx"), "{e}");
        c.apparmor = None;
        c.selinux_options = Some(cria_proto::v1::SeLinuxOption {
            r#type: "spc_t".into(),
            ..Default::default()
        });
        let e = check_lsm(&c).unwrap_err().to_string();
        assert!(e.contains("SELinux") && e.contains("spc_t"), "{e}");
    }

    #[test]
    fn only_namespaced_sysctls_pass() {
        let m = |k: &str| HashMap::from([(k.to_string(), "1".to_string())]);
        sysctls(&m("net.ipv4.ip_forward"), false, false).unwrap();
        sysctls(&m("kernel.shmmax"), false, false).unwrap();
        sysctls(&m("fs.mqueue.msg_max"), false, false).unwrap();
        let e = sysctls(&m("kernel.panic"), false, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("kernel.panic"), "{e}");
        let e = sysctls(&m("net.ipv4.ip_forward"), true, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("hostNetwork"), "{e}");
    }
}
