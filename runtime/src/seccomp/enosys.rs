//! ENOSYS for syscalls newer than the profile, as runc does: a short BPF
//! prefix that answers ENOSYS to every syscall number above the highest one
//! the profile names on that ABI, so libc falls back to an older call (as
//! glibc does for fchmodat2, clone3, …) instead of failing with the default
//! action's EPERM. Numbers up to that highest one go to libseccomp's program
//! unchanged.

use super::bpf::{
    Asm, Insn, Label, JMP_JEQ_K, JMP_JGE_K, JMP_JGT_K, JMP_JSET_K, OFF_ARCH, OFF_NR, RET_ERRNO,
};
use libseccomp::{ScmpArch, ScmpSyscall};

/// x32's marker in x86_64 syscall numbers (`__X32_SYSCALL_BIT`).
const X32_BIT: u32 = 0x4000_0000;
/// 32-bit arm's private syscalls (breakpoint, cacheflush, set_tls) live at
/// 0x0f0001…: apart from the numbered table, so they neither raise its
/// highest number nor get ENOSYS from it.
const ARM_PRIVATE: u32 = 0x000f_0000;

/// The audit architecture the kernel reports for an ABI's syscalls (x32
/// reports x86_64's, with [`X32_BIT`] in the number); `None` for ABIs this
/// prefix leaves alone.
fn audit_arch(a: ScmpArch) -> Option<u32> {
    Some(match a {
        ScmpArch::X8664 | ScmpArch::X32 => 0xc000_003e,
        ScmpArch::X86 => 0x4000_0003,
        ScmpArch::Aarch64 => 0xc000_00b7,
        ScmpArch::Arm => 0x4000_0028,
        ScmpArch::Riscv64 => 0xc000_00f3,
        _ => return None,
    })
}

/// The highest number `names` resolve to on `arch` (x32 numbers include
/// [`X32_BIT`]; arm's private ones do not count); `None` when none exists
/// there.
fn highest(names: &[&str], arch: ScmpArch) -> Option<u32> {
    names
        .iter()
        .filter_map(|n| ScmpSyscall::from_name_by_arch(n, arch).ok())
        .filter_map(|s| u32::try_from(i32::from(s)).ok())
        .filter(|nr| arch != ScmpArch::Arm || *nr < ARM_PRIVATE)
        .max()
}

/// The prefix for a filter over `arches` whose rules name `names`; empty
/// when no ABI has a known highest number.
pub(super) fn prefix(names: &[&str], arches: &[ScmpArch]) -> Vec<Insn> {
    let mut a = Asm::default();
    let (enosys, main) = (a.label(), a.label());
    a.load(OFF_ARCH);
    // One block per audit architecture: check it, load the number, compare.
    let mut done: Vec<u32> = Vec::new();
    for &abi in arches {
        let Some(audit) = audit_arch(abi) else {
            continue;
        };
        if done.contains(&audit) {
            continue;
        }
        let block = if audit_arch(ScmpArch::X8664) == Some(audit) {
            // x86_64 and x32 share the audit architecture: x32 numbers carry
            // bit 30 and are compared against x32's highest.
            let known = |abi| arches.contains(&abi).then(|| highest(names, abi)).flatten();
            let (native, x32) = (known(ScmpArch::X8664), known(ScmpArch::X32));
            if native.is_none() && x32.is_none() {
                continue;
            }
            Block::X86_64 { native, x32 }
        } else {
            let Some(m) = highest(names, abi) else {
                continue;
            };
            Block::Other {
                highest: m,
                arm: abi == ScmpArch::Arm,
            }
        };
        done.push(audit);
        let (body, next) = (a.label(), a.label());
        a.branch(JMP_JEQ_K, audit, body, next);
        a.mark(body);
        a.load(OFF_NR);
        block.emit(&mut a, enosys, main);
        a.mark(next);
    }
    if done.is_empty() {
        return Vec::new();
    }
    // An architecture no block matched: libseccomp's program decides.
    a.jump(main);
    a.mark(enosys);
    a.ret(RET_ERRNO | libc::ENOSYS as u32);
    a.mark(main);
    // A few dozen instructions: nothing a builder bug could not show in the
    // tests below.
    a.finish().expect("the ENOSYS prefix assembles")
}

/// The comparisons of one architecture, after its number is loaded.
enum Block {
    /// x86_64's audit architecture, with the highest x86_64 and x32 numbers
    /// (either may be absent).
    X86_64 {
        native: Option<u32>,
        x32: Option<u32>,
    },
    /// Any other architecture (arm keeps its private calls apart).
    Other { highest: u32, arm: bool },
}

impl Block {
    fn emit(&self, a: &mut Asm, enosys: Label, main: Label) {
        let above = |a: &mut Asm, highest: u32| a.branch(JMP_JGT_K, highest, enosys, main);
        match *self {
            Block::X86_64 { native, x32 } => {
                let (is_x32, not_x32) = (a.label(), a.label());
                a.branch(JMP_JSET_K, X32_BIT, is_x32, not_x32);
                a.mark(not_x32);
                match native {
                    Some(n) => above(a, n),
                    None => a.jump(main),
                }
                a.mark(is_x32);
                match x32 {
                    Some(n) => above(a, n),
                    None => a.jump(main),
                }
            }
            Block::Other { highest, arm } => {
                if arm {
                    let numbered = a.label();
                    a.branch(JMP_JGE_K, ARM_PRIVATE, main, numbered);
                    a.mark(numbered);
                }
                above(a, highest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seccomp::bpf::{JMP_JA, LD_W_ABS, RET_K};

    /// Where each instruction may continue (indexes; `len` is the main
    /// program's first instruction).
    fn targets(p: &[Insn]) -> Vec<usize> {
        p.iter()
            .enumerate()
            .flat_map(|(i, x)| match x.code {
                JMP_JA => vec![i + 1 + x.k as usize],
                RET_K => vec![],
                c if c & 0x07 == 0x05 => vec![i + 1 + x.jt as usize, i + 1 + x.jf as usize],
                _ => vec![i + 1],
            })
            .collect()
    }

    #[test]
    fn every_jump_lands_in_the_prefix_or_on_the_main_program() {
        let arches = [
            ScmpArch::X8664,
            ScmpArch::X86,
            ScmpArch::X32,
            ScmpArch::Aarch64,
            ScmpArch::Arm,
        ];
        let p = prefix(&["read", "getpid", "openat"], &arches);
        assert_eq!((p[0].code, p[0].k), (LD_W_ABS, OFF_ARCH));
        let last = p[p.len() - 1];
        assert_eq!(
            (last.code, last.k),
            (RET_K, RET_ERRNO | libc::ENOSYS as u32)
        );
        assert!(targets(&p).iter().all(|t| *t <= p.len()));
        // One block per audit architecture (x86_64 and x32 share one).
        let checks = p.iter().filter(|x| x.code == JMP_JEQ_K).count();
        assert_eq!(checks, 4);
        // The highest of these on x86_64 is openat (257); on x32 the same
        // number with bit 30.
        assert!(
            p.iter().any(|x| x.code == JMP_JGT_K && x.k == 257),
            "openat"
        );
        assert!(p
            .iter()
            .any(|x| x.code == JMP_JGT_K && x.k == X32_BIT | 257));
        assert!(prefix(&["read"], &[ScmpArch::Ppc64Le]).is_empty());
        // arm: set_tls (0xf0005) neither counts nor gets ENOSYS.
        let arm = prefix(&["read", "set_tls"], &[ScmpArch::Aarch64, ScmpArch::Arm]);
        let jgt: Vec<u32> = arm
            .iter()
            .filter(|x| x.code == JMP_JGT_K)
            .map(|x| x.k)
            .collect();
        assert_eq!(jgt, [63, 3], "read on aarch64 and on arm");
        assert!(arm
            .iter()
            .any(|x| x.code == JMP_JGE_K && x.k == ARM_PRIVATE));
        assert!(targets(&arm).iter().all(|t| *t <= arm.len()));
        assert!(prefix(&["no_such_call"], &[ScmpArch::X8664]).is_empty());
    }
}
