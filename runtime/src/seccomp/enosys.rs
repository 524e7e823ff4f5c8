//! ENOSYS for syscalls newer than the profile, as runc does: a short BPF
//! prefix that answers ENOSYS to every syscall number above the highest one
//! the profile names on that ABI, so libc falls back to an older call (as
//! glibc does for fchmodat2, clone3, …) instead of failing with the default
//! action's EPERM. Numbers up to that highest one go to libseccomp's program
//! unchanged.

use super::compile::Insn;
use libseccomp::{ScmpArch, ScmpSyscall};

// Classic BPF opcodes (linux/filter.h) and seccomp's data layout and return
// values (linux/seccomp.h).
const LD_W_ABS: u16 = 0x20;
const JMP_JA: u16 = 0x05;
const JMP_JEQ_K: u16 = 0x15;
const JMP_JGT_K: u16 = 0x25;
const JMP_JGE_K: u16 = 0x35;
const JMP_JSET_K: u16 = 0x45;
const RET_K: u16 = 0x06;
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const RET_ERRNO: u32 = 0x0005_0000;
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

/// Where a jump of the prefix goes.
#[derive(Clone, Copy)]
enum To {
    /// The next instruction.
    Next,
    /// The ENOSYS return, the prefix's last instruction.
    Enosys,
    /// libseccomp's program, right after the prefix.
    Main,
    /// The first instruction of the next architecture's block.
    NextBlock,
    /// Over this many instructions after the next.
    Skip(usize),
}

/// A prefix instruction before its jumps are resolved to offsets.
struct Op {
    code: u16,
    k: u32,
    jt: To,
    jf: To,
}

fn op(code: u16, k: u32, jt: To, jf: To) -> Op {
    Op { code, k, jt, jf }
}

/// The prefix for a filter over `arches` whose rules name `names`; empty
/// when no ABI has a known highest number.
pub(super) fn prefix(names: &[&str], arches: &[ScmpArch]) -> Vec<Insn> {
    // One block per audit architecture: check it, load the number, compare.
    let mut blocks: Vec<Vec<Op>> = Vec::new();
    let mut done: Vec<u32> = Vec::new();
    for &a in arches {
        let Some(audit) = audit_arch(a) else { continue };
        if done.contains(&audit) {
            continue;
        }
        done.push(audit);
        let mut b = vec![
            op(JMP_JEQ_K, audit, To::Next, To::NextBlock),
            op(LD_W_ABS, OFF_NR, To::Next, To::Next),
        ];
        if audit_arch(ScmpArch::X8664) == Some(audit) {
            // x86_64 and x32 share the audit architecture: x32 numbers carry
            // bit 30 and are compared against x32's highest.
            let known = |abi| arches.contains(&abi).then(|| highest(names, abi)).flatten();
            match (known(ScmpArch::X8664), known(ScmpArch::X32)) {
                (Some(native), Some(x32)) => b.extend([
                    op(JMP_JSET_K, X32_BIT, To::Skip(1), To::Next),
                    op(JMP_JGT_K, native, To::Enosys, To::Main),
                    op(JMP_JGT_K, x32, To::Enosys, To::Main),
                ]),
                (Some(native), None) => b.extend([
                    op(JMP_JSET_K, X32_BIT, To::Main, To::Next),
                    op(JMP_JGT_K, native, To::Enosys, To::Main),
                ]),
                (None, Some(x32)) => b.extend([
                    op(JMP_JSET_K, X32_BIT, To::Next, To::Main),
                    op(JMP_JGT_K, x32, To::Enosys, To::Main),
                ]),
                (None, None) => continue,
            }
        } else {
            let Some(m) = highest(names, a) else { continue };
            if a == ScmpArch::Arm {
                b.push(op(JMP_JGE_K, ARM_PRIVATE, To::Main, To::Next));
            }
            b.push(op(JMP_JGT_K, m, To::Enosys, To::Main));
        }
        blocks.push(b);
    }
    if blocks.is_empty() {
        return Vec::new();
    }
    // Layout: [load arch] blocks… [ja main] [ret ENOSYS], then main.
    let mut ops = vec![op(LD_W_ABS, OFF_ARCH, To::Next, To::Next)];
    let mut starts = Vec::new();
    for b in blocks {
        starts.push(ops.len());
        ops.extend(b);
    }
    let tail = ops.len();
    // An architecture no block matched: libseccomp's program decides.
    ops.push(op(JMP_JA, 0, To::Main, To::Next));
    ops.push(op(
        RET_K,
        RET_ERRNO | libc::ENOSYS as u32,
        To::Next,
        To::Next,
    ));
    let enosys = ops.len() - 1;
    let main = ops.len();
    let block_end = |i: usize| starts.iter().copied().find(|s| *s > i).unwrap_or(tail);
    ops.iter()
        .enumerate()
        .map(|(i, o)| {
            let target = |t: To| match t {
                To::Next => i + 1,
                To::Enosys => enosys,
                To::Main => main,
                To::NextBlock => block_end(i),
                To::Skip(n) => i + 1 + n,
            };
            // Forward offsets from the next instruction; the prefix is a few
            // dozen instructions, far below the u8 range.
            let off = |t: To| (target(t) - (i + 1)) as u8;
            if o.code == JMP_JA {
                // An unconditional jump's offset is its k.
                Insn {
                    code: o.code,
                    jt: 0,
                    jf: 0,
                    k: (target(o.jt) - (i + 1)) as u32,
                }
            } else {
                Insn {
                    code: o.code,
                    jt: off(o.jt),
                    jf: off(o.jf),
                    k: o.k,
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
