//! `linux.seccomp` → one classic BPF program, with libseccomp (the library
//! runc, crun and containerd use).
//!
//! libseccomp resolves syscall names per ABI, so one program covers the
//! native ABI and the profile's sub-architectures (x86_64 with i386 and x32,
//! aarch64 with arm), handles 64-bit argument comparisons on 32-bit ABIs, and
//! gives each rule its own action. The program is exported as raw BPF: the
//! monitor loads it with seccomp(2) and never calls libseccomp itself.
//!
//! Compiling happens in the runtime library (criad, cria-oci), which keeps
//! the programs (`cache.rs`).

use super::SeccompError;
use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction as Act, LinuxSeccompArg, LinuxSeccompFilterFlag as Flag,
    LinuxSeccompOperator as Op,
};

use super::bpf::Insn;

/// The kernel's `struct sock_fprog`.
#[repr(C)]
struct Fprog {
    len: u16,
    filter: *const Insn,
}

/// A compiled filter: the program and the seccomp(2) flags to load it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Filters {
    flags: u32,
    prog: Vec<Insn>,
}

fn lib_err(what: &str, e: impl std::fmt::Display) -> SeccompError {
    SeccompError::Compile(format!("{what}: {e}"))
}

fn errno(v: Option<u32>, default_errno: u32) -> Result<i32, SeccompError> {
    let v = v.unwrap_or(default_errno);
    i32::try_from(v)
        .ok()
        .filter(|e| *e <= i32::from(u16::MAX))
        .ok_or_else(|| SeccompError::Unsupported(format!("errno {v} is out of range")))
}

fn action(a: Act, ret: Option<u32>, default_errno: u32) -> Result<ScmpAction, SeccompError> {
    Ok(match a {
        Act::ScmpActAllow => ScmpAction::Allow,
        Act::ScmpActErrno => ScmpAction::Errno(errno(ret, default_errno)?),
        Act::ScmpActKill | Act::ScmpActKillThread => ScmpAction::KillThread,
        Act::ScmpActKillProcess => ScmpAction::KillProcess,
        Act::ScmpActTrap => ScmpAction::Trap,
        // Trace's value is an errno-sized message for the tracer.
        Act::ScmpActTrace => ScmpAction::Trace(errno(ret, default_errno)? as u16),
        Act::ScmpActLog => ScmpAction::Log,
        Act::ScmpActNotify => {
            return Err(SeccompError::Unsupported(
                "SCMP_ACT_NOTIFY is not supported".into(),
            ))
        }
    })
}

fn condition(a: &LinuxSeccompArg) -> Result<ScmpArgCompare, SeccompError> {
    // For SCMP_CMP_MASKED_EQ the OCI `value` is the mask and `valueTwo` the
    // compared value (as runc passes them).
    let (op, datum) = match a.op() {
        Op::ScmpCmpEq => (ScmpCompareOp::Equal, a.value()),
        Op::ScmpCmpNe => (ScmpCompareOp::NotEqual, a.value()),
        Op::ScmpCmpLt => (ScmpCompareOp::Less, a.value()),
        Op::ScmpCmpLe => (ScmpCompareOp::LessOrEqual, a.value()),
        Op::ScmpCmpGt => (ScmpCompareOp::Greater, a.value()),
        Op::ScmpCmpGe => (ScmpCompareOp::GreaterEqual, a.value()),
        Op::ScmpCmpMaskedEq => (
            ScmpCompareOp::MaskedEqual(a.value()),
            a.value_two().unwrap_or(0),
        ),
    };
    let index = u32::try_from(a.index())
        .ok()
        .filter(|i| *i < 6)
        .ok_or_else(|| lib_err("argument index", a.index()))?;
    Ok(ScmpArgCompare::new(index, op, datum))
}

/// libseccomp's name for an OCI architecture (the same `SCMP_ARCH_*`
/// spelling).
fn scmp_arch(a: Arch) -> Result<ScmpArch, SeccompError> {
    let name = a.to_string();
    name.parse().map_err(|e| lib_err(&name, e))
}

/// seccomp(2) flag bits of the OCI filter flags.
fn flag_bits(flags: &[Flag]) -> u32 {
    flags
        .iter()
        .map(|f| match f {
            Flag::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC as u32,
            Flag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG as u32,
            Flag::SeccompFilterFlagSpecAllow => libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW as u32,
            // Only meaningful with a notify listener, which is refused.
            Flag::SeccompFilterFlagWaitKillableRecv => 0,
        })
        .fold(0, |a, b| a | b)
}

impl Filters {
    /// Compiles `linux.seccomp` for the native ABI plus the architectures it
    /// lists. Syscall names no listed ABI knows are skipped (logged), as
    /// runc does; when the default action refuses, syscalls numbered above
    /// every one the profile names get ENOSYS (`enosys.rs`). The program is
    /// then compacted (`compact.rs`), or kept as libseccomp made it where
    /// that cannot be done.
    pub(crate) fn compile(sc: &LinuxSeccomp) -> Result<Self, SeccompError> {
        let long = Self::uncompacted(sc)?;
        let prog = match super::compact::compact(&long) {
            Ok(short) => {
                tracing::debug!(
                    from = long.len(),
                    to = short.len(),
                    "seccomp: program compacted"
                );
                short
            }
            Err(why) => {
                tracing::debug!(instructions = long.len(), %why, "seccomp: program kept as compiled");
                long
            }
        };
        Ok(Filters {
            flags: flag_bits(sc.flags().as_deref().unwrap_or_default()),
            prog,
        })
    }

    /// The program as libseccomp and the ENOSYS prefix make it.
    pub(super) fn uncompacted(sc: &LinuxSeccomp) -> Result<Vec<Insn>, SeccompError> {
        let default_errno = sc.default_errno_ret().unwrap_or(libc::EPERM as u32);
        let default = action(sc.default_action(), sc.default_errno_ret(), default_errno)?;
        let mut ctx = ScmpFilterContext::new(default).map_err(|e| lib_err("new filter", e))?;
        let mut arches = vec![ScmpArch::native()];
        // We set no_new_privs ourselves, where the spec says so.
        ctx.set_ctl_nnp(false)
            .map_err(|e| lib_err("no_new_privs attribute", e))?;
        // A binary tree over syscall numbers instead of libseccomp's linear
        // list: the kernel, when it attaches a filter, runs it once per
        // syscall number and ABI to build its allow cache, and every syscall
        // of the container runs it again; a few hundred comparisons each
        // made RuntimeDefault cost ~2 ms per container start.
        ctx.set_ctl_optimize(2)
            .map_err(|e| lib_err("optimize attribute", e))?;
        for a in sc.architectures().iter().flatten() {
            let arch = scmp_arch(*a)?;
            // The native ABI is already there; libseccomp refuses it twice.
            if !ctx.is_arch_present(arch).unwrap_or(false) {
                ctx.add_arch(arch)
                    .map_err(|e| lib_err(&format!("add {a}"), e))?;
                arches.push(arch);
            }
        }
        for s in sc.syscalls().iter().flatten() {
            let act = action(s.action(), s.errno_ret(), default_errno)?;
            // libseccomp refuses rules that repeat the default action.
            if act == default {
                continue;
            }
            let conds = s
                .args()
                .iter()
                .flatten()
                .map(condition)
                .collect::<Result<Vec<_>, _>>()?;
            for name in s.names() {
                let Ok(nr) = ScmpSyscall::from_name(name) else {
                    tracing::debug!(syscall = %name, "seccomp: unknown syscall name skipped");
                    continue;
                };
                ctx.add_rule_conditional(act, nr, &conds)
                    .map_err(|e| lib_err(&format!("rule for {name}"), e))?;
            }
        }
        let mut prog = match default {
            // An allow-list: newer syscalls must fail the way an old kernel
            // fails them.
            ScmpAction::Errno(_)
            | ScmpAction::KillThread
            | ScmpAction::KillProcess
            | ScmpAction::Trap => {
                let names: Vec<&str> = sc
                    .syscalls()
                    .iter()
                    .flatten()
                    .flat_map(|s| s.names().iter().map(String::as_str))
                    .collect();
                super::enosys::prefix(&names, &arches)
            }
            _ => Vec::new(),
        };
        let main = insns(&export(&ctx)?).ok_or_else(|| lib_err("export", "odd program length"))?;
        prog.extend(main);
        Ok(prog)
    }

    /// Loads the filter into the calling thread (needs no_new_privs or
    /// CAP_SYS_ADMIN).
    pub(crate) fn apply(&self) -> Result<(), SeccompError> {
        let len = u16::try_from(self.prog.len())
            .map_err(|_| SeccompError::Load(format!("{} instructions", self.prog.len())))?;
        let fprog = Fprog {
            len,
            filter: self.prog.as_ptr(),
        };
        // SAFETY: fprog points at `len` instructions that outlive the call;
        // the kernel copies the program.
        let r = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                self.flags,
                &fprog as *const Fprog,
            )
        };
        if r != 0 {
            return Err(SeccompError::Load(
                std::io::Error::last_os_error().to_string(),
            ));
        }
        Ok(())
    }
}

/// The raw BPF of `ctx` (libseccomp 2.5 exports to a file descriptor only;
/// a memfd keeps it off the disk).
fn export(ctx: &ScmpFilterContext) -> Result<Vec<u8>, SeccompError> {
    use std::io::{Read, Seek};
    let fd = rustix::fs::memfd_create("cria-seccomp", rustix::fs::MemfdFlags::CLOEXEC)
        .map_err(|e| lib_err("memfd", e))?;
    let mut f = std::fs::File::from(fd);
    ctx.export_bpf(&f).map_err(|e| lib_err("export", e))?;
    let mut out = Vec::new();
    f.rewind()
        .and_then(|_| f.read_to_end(&mut out))
        .map_err(|e| lib_err("read exported program", e))?;
    Ok(out)
}

/// Native-endian `struct sock_filter` bytes → instructions.
fn insns(b: &[u8]) -> Option<Vec<Insn>> {
    if !b.len().is_multiple_of(8) {
        return None;
    }
    Some(
        b.chunks_exact(8)
            .map(|c| Insn {
                code: u16::from_ne_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect(),
    )
}

/// The compiled filter of a container, in its state dir, for exec.
pub(crate) const FILE: &str = "seccomp.bpf";

/// First bytes of [`FILE`] (and of what the library sends the monitor).
const MAGIC: &[u8; 4] = b"csf1";

impl Filters {
    /// Serialises for [`FILE`]: magic, the seccomp(2) flags (u32), then the
    /// program's 8-byte instructions (code u16, jt u8, jf u8, k u32), all
    /// native endian.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.prog.len() * 8);
        out.extend(MAGIC);
        out.extend(self.flags.to_ne_bytes());
        for i in &self.prog {
            out.extend(i.code.to_ne_bytes());
            out.push(i.jt);
            out.push(i.jf);
            out.extend(i.k.to_ne_bytes());
        }
        out
    }

    /// Parses what [`Filters::to_bytes`] wrote.
    pub(crate) fn from_bytes(b: &[u8]) -> Result<Self, SeccompError> {
        let bad = |what: &str| SeccompError::Load(format!("seccomp filter: {what}"));
        let rest = b
            .strip_prefix(MAGIC)
            .ok_or_else(|| bad("missing or not ours"))?;
        let (flags, body) = rest.split_at_checked(4).ok_or_else(|| bad("truncated"))?;
        let flags = u32::from_ne_bytes([flags[0], flags[1], flags[2], flags[3]]);
        let prog = insns(body).filter(|p| !p.is_empty());
        Ok(Filters {
            flags,
            prog: prog.ok_or_else(|| bad("truncated"))?,
        })
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

    /// An i386 syscall through `int 0x80` (AUDIT_ARCH_I386 in seccomp's
    /// view, even from this 64-bit process); the raw return value.
    #[cfg(target_arch = "x86_64")]
    fn int80(nr: u32, a: u32, b: u32) -> i64 {
        let ret: u32;
        // SAFETY: the i386 entry point with register arguments only; rbx is
        // reserved by LLVM, so the first argument travels through rsi and is
        // swapped in and out around the call (all 64 bits: LLVM keeps a
        // pointer there).
        unsafe {
            std::arch::asm!(
                "xchg rsi, rbx",
                "int 0x80",
                "xchg rsi, rbx",
                inlateout("eax") nr => ret,
                inout("rsi") u64::from(a) => _,
                in("ecx") b,
                // Not preserved by every kernel's int 0x80 entry.
                out("r8") _,
                out("r9") _,
                out("r10") _,
                out("r11") _,
                options(nostack),
            );
        }
        // The i386 ABI returns a 32-bit value; -4095..-1 are errnos.
        i64::from(ret as i32)
    }

    /// The result of an x32 syscall (nr | __X32_SYSCALL_BIT), `-errno` on
    /// failure.
    #[cfg(target_arch = "x86_64")]
    fn x32(nr: i64) -> i64 {
        // SAFETY: raw syscall without pointer arguments.
        let r = unsafe { libc::syscall(0x4000_0000 | nr, 0, 0) };
        if r < 0 {
            -i64::from(errno_of(r))
        } else {
            r
        }
    }

    /// Exit code for an i386/x32 probe: 0 when it matched, else which check
    /// failed.
    #[cfg(target_arch = "x86_64")]
    fn check(results: &[bool]) -> i32 {
        results
            .iter()
            .position(|ok| !ok)
            .map_or(0, |i| i as i32 + 1)
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn i386_and_x32_follow_the_same_policy() {
        let sc = runtime_default(&["CAP_CHOWN".into()]).unwrap();
        let r = in_child(&sc, || {
            // SAFETY: raw getpid.
            let pid = unsafe { libc::syscall(libc::SYS_getpid) };
            let eperm = -i64::from(libc::EPERM);
            check(&[
                // getpid (20): allowed, the same pid.
                int80(20, 0, 0) == pid,
                // keyctl (288) and unshare (310): not in the profile.
                int80(288, 0, 0) == eperm,
                int80(310, libc::CLONE_NEWUSER as u32, 0) == eperm,
                // personality (136): argument filters on the i386 ABI too.
                int80(136, 0xffff_ffff, 0) >= 0,
                int80(136, 0x0040_0000, 0) == eperm,
                // x32 getpid (39) passes the filter: the pid, or ENOSYS
                // where the kernel lacks the x32 ABI; x32 keyctl (250) is
                // refused by the filter whatever the kernel.
                [pid, -i64::from(libc::ENOSYS)].contains(&x32(39)),
                x32(250) == eperm,
            ])
        });
        assert_eq!(r, 0, "check {r} failed (1-based)");
        // A profile listing x86_64 alone kills i386 callers (bad arch), as
        // runc does.
        let mut only64 = sc.clone();
        only64.set_architectures(Some(vec![Arch::ScmpArchX86_64]));
        let f = Filters::compile(&only64).unwrap();
        // SAFETY: as in_child, but the child is expected to die.
        match unsafe { libc::fork() } {
            0 => {
                unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
                if f.apply().is_err() {
                    unsafe { libc::_exit(99) };
                }
                int80(20, 0, 0);
                unsafe { libc::_exit(0) }
            }
            pid => {
                let mut st = 0;
                // SAFETY: waiting for our own child.
                unsafe { libc::waitpid(pid, &mut st, 0) };
                assert!(
                    libc::WIFSIGNALED(st) && libc::WTERMSIG(st) == libc::SIGSYS,
                    "status {st:#x}"
                );
            }
        }
    }

    #[test]
    fn syscalls_newer_than_the_profile_get_enosys() {
        let sc = runtime_default(&["CAP_CHOWN".into()]).unwrap();
        // SAFETY: raw syscalls; 452 is fchmodat2 (not in the table, newer
        // than everything in it), 1000 does not exist yet.
        let r = in_child(&sc, || unsafe {
            errno_of(libc::syscall(452, libc::AT_FDCWD, c"/".as_ptr(), 0, 0))
        });
        assert_eq!(r, libc::ENOSYS, "fchmodat2: libc falls back");
        let r = in_child(&sc, || unsafe { errno_of(libc::syscall(1000)) });
        assert_eq!(r, libc::ENOSYS);
        #[cfg(target_arch = "x86_64")]
        {
            let r = in_child(&sc, || {
                let enosys = -i64::from(libc::ENOSYS);
                check(&[int80(452, 0, 0) == enosys, x32(1000) == enosys])
            });
            assert_eq!(r, 0, "check {r} failed (1-based)");
        }
    }

    /// The boundary is the highest number the profile names: x86_64's
    /// getppid 110, exit_group 231; tkill (200) below it keeps the default
    /// action, epoll_wait (232) above it gets ENOSYS.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn enosys_starts_above_the_highest_named_syscall() {
        let p = crate::seccomp::parse_profile(
            br#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
              {"names":["getppid","exit","exit_group"],"action":"SCMP_ACT_ALLOW"}]}"#,
            "t",
        )
        .unwrap();
        let sc = p.resolve(&[]).unwrap();
        // SAFETY: raw syscalls refused by the filter before the kernel.
        let r = in_child(&sc, || unsafe { errno_of(libc::syscall(200, 0, 0)) });
        assert_eq!(r, libc::EPERM);
        let r = in_child(&sc, || unsafe { errno_of(libc::syscall(232, 0, 0, 0, 0)) });
        assert_eq!(r, libc::ENOSYS);
        let r = in_child(&sc, || unsafe {
            errno_of(libc::syscall(libc::SYS_getppid))
        });
        assert_eq!(r, 0);
        // A deny-list (default ALLOW) gets no prefix: its program is
        // libseccomp's alone, which starts by loading the architecture.
        let p = crate::seccomp::parse_profile(
            br#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
              {"names":["getppid"],"action":"SCMP_ACT_ERRNO"}]}"#,
            "t",
        )
        .unwrap();
        let f = Filters::compile(&p.resolve(&[]).unwrap()).unwrap();
        let g = Filters::compile(&sc).unwrap();
        assert_eq!((f.prog[0].code, f.prog[0].k), (0x20, 4), "ld arch");
        assert!(g.prog.len() > f.prog.len());
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
        assert_eq!(back, f);
        assert!(Filters::from_bytes(&[1, 0, 0, 0, 1]).is_err());
        assert!(Filters::from_bytes(b"").is_err(), "nothing sent");
        assert!(Filters::from_bytes(b"csf1\0\0\0\0").is_err(), "no program");
        let mut cut = f.to_bytes();
        cut.pop();
        assert!(Filters::from_bytes(&cut).is_err());
    }

    #[test]
    fn profile_flags_reach_seccomp() {
        let mut sc = runtime_default(&[]).unwrap();
        sc.set_flags(Some(vec![Flag::SeccompFilterFlagLog]));
        let f = Filters::compile(&sc).unwrap();
        assert_eq!(f.flags, libc::SECCOMP_FILTER_FLAG_LOG as u32);
        // The kernel accepts the flag with the program.
        let r = in_child(&sc, || unsafe { errno_of(libc::syscall(libc::SYS_getpid)) });
        assert_eq!(r, 0);
    }
}
