//! Seccomp profiles in the docker/OCI JSON format and their resolution
//! (includes/excludes by capability, architecture and kernel version) into
//! the OCI spec's `linux.seccomp`.

use super::{native_arch, scmp_arch_of, SeccompError};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall,
};
use serde::Deserialize;
use std::path::Path;

/// A seccomp profile as docker and containerd write it (superset of the OCI
/// `linux.seccomp` object).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Profile {
    /// Action for syscalls no rule matches.
    pub default_action: LinuxSeccompAction,
    /// Errno for an `SCMP_ACT_ERRNO` default (EPERM when absent).
    #[serde(default)]
    pub default_errno_ret: Option<u32>,
    /// Architectures (`SCMP_ARCH_*`) the filter covers besides the native
    /// one (the OCI form).
    #[serde(default)]
    pub architectures: Option<Vec<Arch>>,
    /// docker's form: per native architecture, the sub-architectures its
    /// filter also covers (x86_64 → x86, x32).
    #[serde(default)]
    pub arch_map: Option<Vec<ArchMap>>,
    /// OCI filter flags (`SECCOMP_FILTER_FLAG_*`), passed to seccomp(2).
    #[serde(default)]
    pub flags: Option<Vec<LinuxSeccompFilterFlag>>,
    /// The listener fields of SCMP_ACT_NOTIFY (unsupported, refused if used).
    #[serde(default)]
    pub listener_path: Option<String>,
    /// Opaque metadata passed to a notify listener.
    #[serde(default)]
    pub listener_metadata: Option<String>,
    /// The rules, first match wins within one action.
    #[serde(default)]
    pub syscalls: Option<Vec<Rule>>,
}

/// One `archMap` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchMap {
    /// A native architecture.
    pub architecture: Arch,
    /// The ABIs a filter on it also covers.
    #[serde(default)]
    pub sub_architectures: Vec<Arch>,
}

/// One rule: syscalls, action, argument conditions, and when it applies.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// Syscall names.
    #[serde(default)]
    pub names: Vec<String>,
    /// The older single-name form.
    #[serde(default)]
    pub name: Option<String>,
    /// What happens when the rule matches.
    pub action: LinuxSeccompAction,
    /// Errno for `SCMP_ACT_ERRNO` (the profile default, else EPERM).
    #[serde(default)]
    pub errno_ret: Option<u32>,
    /// Argument conditions, all of which must hold.
    #[serde(default)]
    pub args: Option<Vec<Arg>>,
    /// The rule applies only when all of these hold.
    #[serde(default)]
    pub includes: Option<Filter>,
    /// The rule does not apply when any of these holds.
    #[serde(default)]
    pub excludes: Option<Filter>,
    /// Free text.
    #[serde(default)]
    pub comment: Option<String>,
}

/// A syscall argument condition.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Arg {
    /// Argument index (0..6).
    pub index: usize,
    /// The value (the mask for `SCMP_CMP_MASKED_EQ`).
    pub value: u64,
    /// The compared value for `SCMP_CMP_MASKED_EQ`.
    #[serde(default)]
    pub value_two: u64,
    /// The comparison.
    pub op: LinuxSeccompOperator,
}

/// Conditions of docker's `includes`/`excludes`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    /// Capabilities (`CAP_…`).
    #[serde(default)]
    pub caps: Option<Vec<String>>,
    /// Architectures in docker's naming (`amd64`, `arm64`, `x32`, …).
    #[serde(default)]
    pub arches: Option<Vec<String>>,
    /// Minimum kernel version (`"4.8"`).
    #[serde(default)]
    pub min_kernel: Option<String>,
}

/// Reads and parses a Localhost profile file.
pub fn load_profile(path: &Path) -> Result<Profile, SeccompError> {
    let bytes = std::fs::read(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            SeccompError::NotFound(path.to_path_buf())
        } else {
            SeccompError::Read {
                path: path.to_path_buf(),
                source: e,
            }
        }
    })?;
    parse_profile(&bytes, &format!("{path:?}"))
}

/// Parses a profile from JSON; `what` names it in errors.
pub fn parse_profile(json: &[u8], what: &str) -> Result<Profile, SeccompError> {
    let p: Profile = serde_json::from_slice(json).map_err(|e| SeccompError::Malformed {
        what: what.to_string(),
        problem: e.to_string(),
    })?;
    if p.architectures.as_ref().is_some_and(|a| !a.is_empty())
        && p.arch_map.as_ref().is_some_and(|m| !m.is_empty())
    {
        // moby refuses this too: which one wins would be a guess.
        return Err(SeccompError::Malformed {
            what: what.to_string(),
            problem: "both architectures and archMap are given".into(),
        });
    }
    for (i, r) in p.syscalls.iter().flatten().enumerate() {
        if r.names.is_empty() && r.name.is_none() {
            return Err(SeccompError::Malformed {
                what: what.to_string(),
                problem: format!("syscalls[{i}] has neither names nor name"),
            });
        }
        if let Some(a) = r.args.iter().flatten().find(|a| a.index > 5) {
            return Err(SeccompError::Malformed {
                what: what.to_string(),
                problem: format!("syscalls[{i}] argument index {} is above 5", a.index),
            });
        }
    }
    Ok(p)
}

/// `"6.18.0-foo"` → (6, 18); unparsable parts count as 0.
fn kernel_version(s: &str) -> (u32, u32) {
    let mut it = s.split(|c: char| !c.is_ascii_digit());
    let major = it.next().and_then(|x| x.parse().ok()).unwrap_or(0);
    let minor = it.next().and_then(|x| x.parse().ok()).unwrap_or(0);
    (major, minor)
}

/// The running kernel's release, `(0, 0)` when unknown (then no
/// minKernel rule applies, the safe side).
fn running_kernel() -> (u32, u32) {
    nix::sys::utsname::uname()
        .map(|u| kernel_version(&u.release().to_string_lossy()))
        .unwrap_or((0, 0))
}

impl Profile {
    /// Resolves includes/excludes against `caps` (the container's bounding
    /// set), the native architecture and the running kernel, and the
    /// architectures to cover (`architectures`, or the native entry of
    /// `archMap`), as moby does, giving the OCI `linux.seccomp` to put in
    /// the spec.
    pub fn resolve(&self, caps: &[String]) -> Result<LinuxSeccomp, SeccompError> {
        self.resolve_for(caps, native_arch(), running_kernel())
    }

    /// The architectures the filter covers on the docker architecture
    /// `arch`: the listed ones, else the native one's `archMap` entry with
    /// its sub-architectures (none: the native ABI alone).
    fn arches_for(&self, arch: &str) -> Vec<Arch> {
        let native = scmp_arch_of(arch);
        let mut out: Vec<Arch> = self.architectures.clone().unwrap_or_default();
        for m in self.arch_map.iter().flatten() {
            if Some(m.architecture) == native {
                out.push(m.architecture);
                out.extend(&m.sub_architectures);
            }
        }
        let mut seen = Vec::with_capacity(out.len());
        out.retain(|a| {
            let first = !seen.contains(a);
            seen.push(*a);
            first
        });
        out
    }

    fn resolve_for(
        &self,
        caps: &[String],
        arch: &str,
        kernel: (u32, u32),
    ) -> Result<LinuxSeccomp, SeccompError> {
        if self.default_action == LinuxSeccompAction::ScmpActNotify {
            return Err(SeccompError::Unsupported(
                "SCMP_ACT_NOTIFY is not supported".into(),
            ));
        }
        let has_cap = |c: &String| caps.iter().any(|x| x == c);
        let mut out = Vec::new();
        for r in self.syscalls.iter().flatten() {
            if r.action == LinuxSeccompAction::ScmpActNotify {
                return Err(SeccompError::Unsupported(
                    "SCMP_ACT_NOTIFY is not supported".into(),
                ));
            }
            if let Some(inc) = &r.includes {
                if let Some(a) = &inc.arches {
                    if !a.is_empty() && !a.iter().any(|x| x == arch) {
                        continue;
                    }
                }
                if let Some(c) = &inc.caps {
                    if !c.iter().all(has_cap) {
                        continue;
                    }
                }
                if let Some(k) = &inc.min_kernel {
                    if kernel < kernel_version(k) {
                        continue;
                    }
                }
            }
            if let Some(exc) = &r.excludes {
                if exc.arches.iter().flatten().any(|x| x == arch) {
                    continue;
                }
                if exc.caps.iter().flatten().any(has_cap) {
                    continue;
                }
                if let Some(k) = &exc.min_kernel {
                    if kernel >= kernel_version(k) {
                        continue;
                    }
                }
            }
            let mut names = r.names.clone();
            names.extend(r.name.clone());
            let args = r
                .args
                .iter()
                .flatten()
                .map(|a| {
                    LinuxSeccompArgBuilder::default()
                        .index(a.index)
                        .value(a.value)
                        .value_two(a.value_two)
                        .op(a.op)
                        .build()
                        .map_err(|e| SeccompError::Compile(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut s = LinuxSyscall::default();
            s.set_names(names)
                .set_action(r.action)
                .set_errno_ret(r.errno_ret)
                .set_args(if args.is_empty() { None } else { Some(args) });
            out.push(s);
        }
        let mut sc = LinuxSeccomp::default();
        let arches = self.arches_for(arch);
        sc.set_default_action(self.default_action)
            .set_default_errno_ret(self.default_errno_ret)
            .set_architectures((!arches.is_empty()).then_some(arches))
            .set_flags(self.flags.clone().filter(|f| !f.is_empty()))
            .set_syscalls(Some(out));
        Ok(sc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_and_missing_profiles_name_the_problem() {
        let e = parse_profile(b"{\"defaultAction\": 3}", "p.json").unwrap_err();
        assert!(e.to_string().contains("p.json") && e.to_string().contains("malformed"));
        let e = parse_profile(b"{\"defaultAction\":\"SCMP_ACT_ALLOW\",\"syscalls\":[{\"action\":\"SCMP_ACT_ERRNO\"}]}", "q").unwrap_err();
        assert!(e.to_string().contains("neither names nor name"), "{e}");
        let e = load_profile(Path::new("/nonexistent/cria.json")).unwrap_err();
        assert!(matches!(e, SeccompError::NotFound(_)), "{e}");
    }

    #[test]
    fn old_name_form_and_includes_resolve() {
        let p = parse_profile(
            br#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
              {"name":"read","action":"SCMP_ACT_ALLOW"},
              {"names":["mount"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_SYS_ADMIN"]}},
              {"names":["arch_prctl"],"action":"SCMP_ACT_ALLOW","includes":{"arches":["amd64"]}},
              {"names":["clone3"],"action":"SCMP_ACT_ERRNO","errnoRet":38,"excludes":{"caps":["CAP_SYS_ADMIN"]}},
              {"names":["ptrace"],"action":"SCMP_ACT_ALLOW","includes":{"minKernel":"4.8"}}]}"#,
            "t",
        )
        .unwrap();
        let names = |sc: &LinuxSeccomp| -> Vec<String> {
            sc.syscalls()
                .iter()
                .flatten()
                .flat_map(|s| s.names().clone())
                .collect()
        };
        let plain = p.resolve_for(&[], "arm64", (4, 4)).unwrap();
        assert_eq!(names(&plain), ["read", "clone3"]);
        let admin = p
            .resolve_for(&["CAP_SYS_ADMIN".into()], "amd64", (6, 1))
            .unwrap();
        assert_eq!(names(&admin), ["read", "mount", "arch_prctl", "ptrace"]);
    }

    #[test]
    fn architectures_come_from_the_list_or_the_native_arch_map_entry() {
        let arches = |json: &str, arch: &str| {
            let p = parse_profile(json.as_bytes(), "t").unwrap();
            p.resolve_for(&[], arch, (6, 1))
                .unwrap()
                .architectures()
                .clone()
        };
        let map = r#"{"defaultAction":"SCMP_ACT_ERRNO","archMap":[
            {"architecture":"SCMP_ARCH_X86_64","subArchitectures":["SCMP_ARCH_X86","SCMP_ARCH_X32"]},
            {"architecture":"SCMP_ARCH_AARCH64","subArchitectures":["SCMP_ARCH_ARM"]}]}"#;
        use Arch::*;
        assert_eq!(
            arches(map, "amd64"),
            Some(vec![ScmpArchX86_64, ScmpArchX86, ScmpArchX32])
        );
        assert_eq!(
            arches(map, "arm64"),
            Some(vec![ScmpArchAarch64, ScmpArchArm])
        );
        assert_eq!(arches(map, "riscv64"), None, "no entry: native only");
        let list = r#"{"defaultAction":"SCMP_ACT_ERRNO",
            "architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86","SCMP_ARCH_X86"]}"#;
        assert_eq!(
            arches(list, "amd64"),
            Some(vec![ScmpArchX86_64, ScmpArchX86]),
            "listed once each, whatever the native one"
        );
        let none = r#"{"defaultAction":"SCMP_ACT_ERRNO"}"#;
        assert_eq!(arches(none, "amd64"), None);
        let both = r#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86"],
            "archMap":[{"architecture":"SCMP_ARCH_X86_64"}]}"#;
        let e = parse_profile(both.as_bytes(), "b.json").unwrap_err();
        assert!(
            e.to_string().contains("both architectures and archMap"),
            "{e}"
        );
        let bad = r#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_Z80"]}"#;
        let e = parse_profile(bad.as_bytes(), "z.json").unwrap_err();
        assert!(e.to_string().contains("z.json"), "{e}");
    }

    #[test]
    fn runtime_default_covers_moby_s_sub_architectures() {
        use Arch::*;
        let p = crate::seccomp::default::default_profile();
        let on = |arch| p.resolve_for(&[], arch, (6, 1)).unwrap();
        assert_eq!(
            on("amd64").architectures().clone(),
            Some(vec![ScmpArchX86_64, ScmpArchX86, ScmpArchX32])
        );
        assert_eq!(
            on("arm64").architectures().clone(),
            Some(vec![ScmpArchAarch64, ScmpArchArm])
        );
        // Per-architecture rules follow the native (docker) name.
        let has = |sc: &LinuxSeccomp, n: &str| {
            sc.syscalls()
                .iter()
                .flatten()
                .any(|s| s.names().iter().any(|x| x == n))
        };
        assert!(has(&on("amd64"), "arch_prctl") && !has(&on("arm64"), "arch_prctl"));
        assert!(has(&on("arm64"), "set_tls") && !has(&on("amd64"), "set_tls"));
        assert!(has(&on("amd64"), "modify_ldt"));
    }

    #[test]
    fn capabilities_select_rules() {
        let p = crate::seccomp::default::default_profile();
        let rules = |caps: &[&str]| {
            let caps: Vec<String> = caps.iter().map(|c| c.to_string()).collect();
            p.resolve_for(&caps, "amd64", (6, 1))
                .unwrap()
                .syscalls()
                .clone()
                .unwrap_or_default()
        };
        let find = |rs: &[LinuxSyscall], n: &str| -> Vec<LinuxSyscall> {
            rs.iter()
                .filter(|s| s.names().iter().any(|x| x == n))
                .cloned()
                .collect()
        };
        let plain = rules(&["CAP_CHOWN"]);
        // clone: only the namespace-flag-free rule; clone3: ENOSYS.
        let clone = find(&plain, "clone");
        assert_eq!(clone.len(), 1);
        assert!(clone[0].args().is_some(), "clone is argument-filtered");
        let clone3 = find(&plain, "clone3");
        assert_eq!(clone3.len(), 1);
        assert_eq!(clone3[0].action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(clone3[0].errno_ret(), Some(libc::ENOSYS as u32));
        for n in ["mount", "unshare", "kcmp", "acct", "reboot"] {
            assert!(find(&plain, n).is_empty(), "{n} needs a capability");
        }
        // ptrace from kernel 4.8 on (seccomp is checked after ptrace there).
        assert!(!find(&plain, "ptrace").is_empty());
        let admin = rules(&["CAP_SYS_ADMIN", "CAP_SYS_PTRACE"]);
        let clone = find(&admin, "clone");
        assert_eq!(clone.len(), 1);
        assert!(
            clone[0].args().is_none(),
            "clone unconditional with SYS_ADMIN"
        );
        let clone3 = find(&admin, "clone3");
        assert_eq!(clone3.len(), 1);
        assert_eq!(clone3[0].action(), LinuxSeccompAction::ScmpActAllow);
        for n in ["mount", "unshare", "kcmp", "pidfd_getfd"] {
            assert!(!find(&admin, n).is_empty(), "{n} with its capability");
        }
        assert!(find(&admin, "acct").is_empty());
    }

    #[test]
    fn flags_pass_through_and_notify_is_refused() {
        let p = parse_profile(
            br#"{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_LOG"]}"#,
            "f",
        )
        .unwrap();
        let sc = p.resolve_for(&[], "amd64", (6, 1)).unwrap();
        assert_eq!(
            sc.flags().clone(),
            Some(vec![LinuxSeccompFilterFlag::SeccompFilterFlagLog])
        );
        let p = parse_profile(
            br#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_NOTIFY"}]}"#,
            "n",
        )
        .unwrap();
        assert!(matches!(
            p.resolve_for(&[], "amd64", (6, 1)),
            Err(SeccompError::Unsupported(_))
        ));
    }

    #[test]
    fn kernel_versions_parse() {
        assert_eq!(kernel_version("6.18.0-1-amd64"), (6, 18));
        assert_eq!(kernel_version("4.8"), (4, 8));
        assert!(kernel_version("4.10") > kernel_version("4.8"));
    }
}
