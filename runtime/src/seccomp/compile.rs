//! `linux.seccomp` → BPF for the native architecture, with seccompiler.
//!
//! seccompiler gives each filter one match action. A profile with several
//! actions becomes a stack of filters: a base filter returning the default
//! action for every syscall no rule names (and ALLOW otherwise), plus one
//! filter per other action returning it where its rules match (ALLOW
//! otherwise). The kernel runs every filter and keeps the most restrictive
//! result, which is the profile's result as long as one syscall's rules do
//! not overlap with different actions (RuntimeDefault's never do).

use super::{syscalls, SeccompError};
use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction as Act, LinuxSeccompOperator as Op};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use std::collections::BTreeMap;

/// Compiled filters, loaded in order.
#[derive(Debug, Clone)]
pub(crate) struct Filters(Vec<BpfProgram>);

/// Syscall number → rules (an empty list matches unconditionally).
type RuleMap = BTreeMap<i64, Vec<SeccompRule>>;

fn target() -> Result<TargetArch, SeccompError> {
    TargetArch::try_from(std::env::consts::ARCH).map_err(|e| SeccompError::Compile(e.to_string()))
}

fn action(a: Act, errno: Option<u32>, default_errno: u32) -> Result<SeccompAction, SeccompError> {
    Ok(match a {
        Act::ScmpActAllow => SeccompAction::Allow,
        Act::ScmpActErrno => SeccompAction::Errno(errno.unwrap_or(default_errno)),
        Act::ScmpActKill | Act::ScmpActKillThread => SeccompAction::KillThread,
        Act::ScmpActKillProcess => SeccompAction::KillProcess,
        Act::ScmpActTrap => SeccompAction::Trap,
        Act::ScmpActTrace => SeccompAction::Trace(errno.unwrap_or(default_errno)),
        Act::ScmpActLog => SeccompAction::Log,
        Act::ScmpActNotify => {
            return Err(SeccompError::Unsupported(
                "SCMP_ACT_NOTIFY is not supported".into(),
            ))
        }
    })
}

fn condition(a: &oci_spec::runtime::LinuxSeccompArg) -> Result<SeccompCondition, SeccompError> {
    let op = match a.op() {
        Op::ScmpCmpEq => SeccompCmpOp::Eq,
        Op::ScmpCmpNe => SeccompCmpOp::Ne,
        Op::ScmpCmpLt => SeccompCmpOp::Lt,
        Op::ScmpCmpLe => SeccompCmpOp::Le,
        Op::ScmpCmpGt => SeccompCmpOp::Gt,
        Op::ScmpCmpGe => SeccompCmpOp::Ge,
        Op::ScmpCmpMaskedEq => SeccompCmpOp::MaskedEq(a.value()),
    };
    // libseccomp compares whole 64-bit registers; so do we.
    let value = if a.op() == Op::ScmpCmpMaskedEq {
        a.value_two().unwrap_or(0)
    } else {
        a.value()
    };
    let index = u8::try_from(a.index())
        .map_err(|_| SeccompError::Compile(format!("argument index {}", a.index())))?;
    SeccompCondition::new(index, SeccompCmpArgLen::Qword, op, value)
        .map_err(|e| SeccompError::Compile(e.to_string()))
}

/// Adds one OCI rule to `map` (unknown syscall names are skipped, as
/// libseccomp does for names the architecture lacks).
fn add(map: &mut RuleMap, s: &oci_spec::runtime::LinuxSyscall) -> Result<(), SeccompError> {
    let conds = s
        .args()
        .iter()
        .flatten()
        .map(condition)
        .collect::<Result<Vec<_>, _>>()?;
    for name in s.names() {
        let Some(nr) = syscalls::number(name) else {
            continue;
        };
        if conds.is_empty() {
            // Unconditional: matches whatever other rules say.
            map.insert(nr, Vec::new());
            continue;
        }
        let rule =
            SeccompRule::new(conds.clone()).map_err(|e| SeccompError::Compile(e.to_string()))?;
        match map.get_mut(&nr) {
            // Already unconditional: a conditional rule adds nothing.
            Some(rules) if rules.is_empty() => {}
            Some(rules) => rules.push(rule),
            None => {
                map.insert(nr, vec![rule]);
            }
        }
    }
    Ok(())
}

fn filter(
    map: RuleMap,
    mismatch: SeccompAction,
    matched: SeccompAction,
) -> Result<BpfProgram, SeccompError> {
    let f = SeccompFilter::new(map, mismatch, matched, target()?)
        .map_err(|e| SeccompError::Compile(e.to_string()))?;
    f.try_into()
        .map_err(|e: seccompiler::BackendError| SeccompError::Compile(e.to_string()))
}

impl Filters {
    /// Compiles `linux.seccomp` for the native architecture.
    pub(crate) fn compile(sc: &LinuxSeccomp) -> Result<Self, SeccompError> {
        let default_errno = sc.default_errno_ret().unwrap_or(libc::EPERM as u32);
        let default = action(sc.default_action(), sc.default_errno_ret(), default_errno)?;
        let mut all = RuleMap::new();
        let mut by_action: Vec<(SeccompAction, RuleMap)> = Vec::new();
        for s in sc.syscalls().iter().flatten() {
            let a = action(s.action(), s.errno_ret(), default_errno)?;
            add(&mut all, s)?;
            if a == SeccompAction::Allow {
                continue;
            }
            let i = match by_action.iter().position(|(x, _)| *x == a) {
                Some(i) => i,
                None => {
                    by_action.push((a, RuleMap::new()));
                    by_action.len() - 1
                }
            };
            add(&mut by_action[i].1, s)?;
        }
        let mut out = Vec::new();
        if default != SeccompAction::Allow {
            out.push(filter(all, default, SeccompAction::Allow)?);
        }
        for (a, map) in by_action {
            out.push(filter(map, SeccompAction::Allow, a)?);
        }
        Ok(Filters(out))
    }

    /// Loads the filters into the calling thread (needs no_new_privs or
    /// CAP_SYS_ADMIN).
    pub(crate) fn apply(&self) -> Result<(), SeccompError> {
        for p in &self.0 {
            seccompiler::apply_filter(p).map_err(|e| SeccompError::Load(e.to_string()))?;
        }
        Ok(())
    }
}

/// The compiled filters of a container, in its state dir, for exec.
pub(crate) const FILE: &str = "seccomp.bpf";

impl Filters {
    /// Serialises for [`FILE`]: per program a u32 instruction count, then
    /// 8-byte instructions (code u16, jt u8, jf u8, k u32), native endian.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for p in &self.0 {
            out.extend((p.len() as u32).to_ne_bytes());
            for i in p {
                out.extend(i.code.to_ne_bytes());
                out.push(i.jt);
                out.push(i.jf);
                out.extend(i.k.to_ne_bytes());
            }
        }
        out
    }

    /// Parses what [`Filters::to_bytes`] wrote.
    pub(crate) fn from_bytes(mut b: &[u8]) -> Result<Self, SeccompError> {
        let bad = || SeccompError::Load("seccomp.bpf: truncated".into());
        let mut out = Vec::new();
        while !b.is_empty() {
            let n = u32::from_ne_bytes(b.get(..4).ok_or_else(bad)?.try_into().map_err(|_| bad())?)
                as usize;
            b = &b[4..];
            let body = b.get(..n * 8).ok_or_else(bad)?;
            let prog = body
                .chunks_exact(8)
                .map(|c| seccompiler::sock_filter {
                    code: u16::from_ne_bytes([c[0], c[1]]),
                    jt: c[2],
                    jf: c[3],
                    k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
                })
                .collect();
            out.push(prog);
            b = &b[n * 8..];
        }
        Ok(Filters(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seccomp::runtime_default;

    /// Runs `probe` in a forked child after loading `sc` (with
    /// no_new_privs); the child's exit code is the probe's result.
    fn in_child(sc: &LinuxSeccomp, probe: fn() -> i32) -> i32 {
        let f = Filters::compile(sc).unwrap();
        // SAFETY: the child only makes raw syscalls and _exits.
        match unsafe { libc::fork() } {
            0 => {
                // SAFETY: plain prctl, then our filter, then raw syscalls.
                unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
                if f.apply().is_err() {
                    unsafe { libc::_exit(99) };
                }
                unsafe { libc::_exit(probe()) }
            }
            pid => {
                let mut st = 0;
                // SAFETY: waiting for our own child.
                unsafe { libc::waitpid(pid, &mut st, 0) };
                assert!(libc::WIFEXITED(st), "child died: status {st:#x}");
                libc::WEXITSTATUS(st)
            }
        }
    }

    /// errno of a raw syscall, 0 on success.
    fn errno_of(ret: libc::c_long) -> i32 {
        if ret < 0 {
            std::io::Error::last_os_error().raw_os_error().unwrap_or(-1)
        } else {
            0
        }
    }

    #[test]
    fn runtime_default_denies_and_filters_in_the_kernel() {
        let sc = runtime_default(&["CAP_CHOWN".into()]).unwrap();
        // SAFETY (all probes): raw syscalls with harmless arguments.
        let r = in_child(&sc, || unsafe { errno_of(libc::syscall(libc::SYS_getpid)) });
        assert_eq!(r, 0, "getpid allowed");
        let r = in_child(&sc, || unsafe {
            errno_of(libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUTS))
        });
        assert_eq!(r, libc::EPERM, "unshare denied");
        let r = in_child(&sc, || unsafe {
            errno_of(libc::syscall(libc::SYS_clone3, 0usize, 0usize))
        });
        assert_eq!(r, libc::ENOSYS, "clone3 ENOSYS without CAP_SYS_ADMIN");
        let r = in_child(&sc, || unsafe {
            errno_of(libc::syscall(libc::SYS_personality, 0xffff_ffffu64))
        });
        assert_eq!(r, 0, "personality query allowed");
        let r = in_child(&sc, || unsafe {
            errno_of(libc::syscall(libc::SYS_personality, 0x0040_0000u64))
        });
        assert_eq!(r, libc::EPERM, "personality READ_IMPLIES_EXEC denied");
        let r = in_child(&sc, || unsafe {
            errno_of(libc::syscall(
                libc::SYS_socket,
                libc::AF_VSOCK,
                libc::SOCK_STREAM,
                0,
            ))
        });
        assert_eq!(r, libc::EPERM, "AF_VSOCK denied");
        let r = in_child(&sc, || unsafe {
            let fd = libc::syscall(libc::SYS_socket, libc::AF_UNIX, libc::SOCK_STREAM, 0);
            errno_of(fd)
        });
        assert_eq!(r, 0, "AF_UNIX allowed");
        let r = in_child(&sc, || unsafe {
            errno_of(libc::syscall(libc::SYS_keyctl, 0, 0, 0, 0, 0))
        });
        assert_eq!(r, libc::EPERM, "keyctl denied");
        let r = in_child(&sc, || unsafe {
            // fork through clone without namespace flags still works.
            let pid = libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_long, 0, 0, 0, 0);
            if pid == 0 {
                libc::_exit(0);
            }
            if pid > 0 {
                libc::waitpid(pid as i32, std::ptr::null_mut(), 0);
            }
            errno_of(pid)
        });
        assert_eq!(r, 0, "plain clone allowed");
        let r = in_child(&sc, || unsafe {
            errno_of(libc::syscall(
                libc::SYS_clone,
                (libc::SIGCHLD | libc::CLONE_NEWUSER) as libc::c_long,
                0,
                0,
                0,
                0,
            ))
        });
        assert_eq!(r, libc::EPERM, "clone with CLONE_NEWUSER denied");
    }

    #[test]
    fn cap_sys_admin_opens_the_admin_calls() {
        let sc = runtime_default(&["CAP_SYS_ADMIN".into()]).unwrap();
        // SAFETY: raw syscall; EINVAL/EFAULT from the kernel, not EPERM/ENOSYS
        // from the filter, proves it got through.
        let r = in_child(&sc, || unsafe {
            errno_of(libc::syscall(libc::SYS_clone3, 0usize, 0usize))
        });
        assert!(
            r != libc::ENOSYS && r != libc::EPERM,
            "clone3 reached the kernel: {r}"
        );
    }

    #[test]
    fn deny_list_profiles_and_other_errnos_compile() {
        let p = crate::seccomp::parse_profile(
            br#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
              {"names":["getppid"],"action":"SCMP_ACT_ERRNO","errnoRet":13},
              {"names":["no_such_call"],"action":"SCMP_ACT_ERRNO"}]}"#,
            "t",
        )
        .unwrap();
        let sc = p.resolve(&[]).unwrap();
        // SAFETY: raw syscalls without arguments.
        assert_eq!(
            in_child(&sc, || unsafe {
                errno_of(libc::syscall(libc::SYS_getppid))
            }),
            13
        );
        assert_eq!(
            in_child(&sc, || unsafe { errno_of(libc::syscall(libc::SYS_getpid)) }),
            0
        );
    }

    #[test]
    fn filters_survive_the_state_file() {
        let f = Filters::compile(&runtime_default(&[]).unwrap()).unwrap();
        let back = Filters::from_bytes(&f.to_bytes()).unwrap();
        assert_eq!(back.to_bytes(), f.to_bytes());
        assert_eq!(back.0.len(), 2, "base filter and the clone3 ENOSYS filter");
        assert!(Filters::from_bytes(&[1, 0, 0, 0, 1]).is_err());
    }

    #[test]
    fn every_default_name_this_arch_knows_is_in_the_table() {
        // The table must not silently drop calls of the allow list: these
        // exist on both x86_64 and aarch64.
        for n in [
            "read",
            "openat",
            "clone",
            "clone3",
            "execve",
            "statx",
            "io_uring_setup",
            "close_range",
            "landlock_create_ruleset",
            "futex_waitv",
        ] {
            assert!(syscalls::number(n).is_some(), "{n} missing");
        }
        let t0 = std::time::Instant::now();
        let _ = Filters::compile(&runtime_default(&[]).unwrap()).unwrap();
        eprintln!("RuntimeDefault compiles in {:?}", t0.elapsed());
    }
}
