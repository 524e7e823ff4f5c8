//! A shorter program with the same decisions: what the kernel pays for at
//! every container start.
//!
//! seccomp(2) converts, JIT-compiles and (for its allow cache) runs a new
//! filter once per syscall number; measured here, each instruction costs
//! ~0.4 µs of that. libseccomp spends one instruction per syscall of each
//! ABI (a `JEQ` leaf under its binary tree), ~1200 for RuntimeDefault on
//! x86_64 + i386 + x32. Most of those syscalls are consecutive numbers with
//! one action, so a search over number *ranges* says the same in far fewer
//! instructions.
//!
//! The rebuild is exact by construction and checked after: the original
//! program's comparisons on the number cut the number space into intervals
//! in which every number takes the same jumps ([`emulate::cuts`]); each
//! (architecture, interval) is run symbolically with unknown arguments.
//! Where only one return value is reachable, the new program returns it
//! from a range tree; where the arguments matter, it jumps into the
//! original program pruned to the instructions those pairs pass. Then both
//! programs run on every interval's ends, with argument values around each
//! constant the original compares them with; any difference (a bug) keeps
//! the original. libseccomp stays the one source of the policy's meaning.

use std::collections::{BTreeMap, BTreeSet};

use super::bpf::{
    is_branch, Asm, AsmError, Insn, Label, ALU_AND_K, JMP_JA, JMP_JEQ_K, JMP_JGE_K, LD_W_ABS,
    OFF_ARCH, OFF_NR, RET_K,
};
use super::emulate::{self, Data, Reach, Unmodelled};

/// What one (architecture, number interval) decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// This return value, whatever the arguments.
    Ret(u32),
    /// It depends on the arguments: the pruned original decides.
    Args,
}

/// Why the original program is kept.
#[derive(Debug)]
pub(super) enum Kept {
    /// It uses an instruction or a test the rebuild does not model.
    Unmodelled(Unmodelled),
    /// Assembling the new program failed.
    Asm(AsmError),
    /// The new program would not be shorter.
    NotShorter,
    /// The check found an input the two programs answer differently.
    Differs { arch: u32, nr: u32, fill: u32 },
}

impl std::fmt::Display for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Kept::Unmodelled(u) => write!(f, "unmodelled program: {}", u.0),
            Kept::Asm(e) => write!(f, "assembly failed: {e:?}"),
            Kept::NotShorter => f.write_str("not shorter"),
            Kept::Differs { arch, nr, fill } => write!(
                f,
                "rebuild differs for arch {arch:#x} syscall {nr:#x} (arguments {fill:#x})"
            ),
        }
    }
}

impl From<Unmodelled> for Kept {
    fn from(u: Unmodelled) -> Self {
        Kept::Unmodelled(u)
    }
}

impl From<AsmError> for Kept {
    fn from(e: AsmError) -> Self {
        Kept::Asm(e)
    }
}

/// Per architecture: where each run of numbers with one outcome starts.
type Table = Vec<(u32, Outcome)>;

/// A program deciding as `prog` does in fewer instructions, or why not.
pub(super) fn compact(prog: &[Insn]) -> Result<Vec<Insn>, Kept> {
    let (arch_consts, nr_cuts) = emulate::cuts(prog)?;
    // Every architecture the program does not name behaves as this one.
    let other = (0..=u32::MAX)
        .find(|a| !arch_consts.contains(a))
        .ok_or(Kept::NotShorter)?;
    let arches: Vec<u32> = arch_consts.iter().copied().chain([other]).collect();
    let mut residual = Reach::default();
    let mut tables = Vec::with_capacity(arches.len());
    for &arch in &arches {
        let mut t: Table = Vec::new();
        for &nr in &nr_cuts {
            let mut r = Reach::default();
            emulate::explore(prog, arch, nr, &mut r)?;
            let o = match (r.rets.len(), r.rets.first()) {
                (1, Some(&k)) => Outcome::Ret(k),
                _ => Outcome::Args,
            };
            if o == Outcome::Args {
                residual.merge(r);
            }
            if t.last().map(|x| x.1) != Some(o) {
                t.push((nr, o));
            }
        }
        tables.push(t);
    }
    let short = assemble(prog, &arch_consts, &tables, &residual)?;
    if short.len() >= prog.len() {
        return Err(Kept::NotShorter);
    }
    check(
        prog,
        &short,
        &arches,
        &nr_cuts,
        &tables,
        &residual.arg_consts,
    )?;
    Ok(short)
}

fn assemble(
    prog: &[Insn],
    arch_consts: &BTreeSet<u32>,
    tables: &[Table],
    residual: &Reach,
) -> Result<Vec<Insn>, Kept> {
    let mut a = Asm::default();
    let rest = a.label();
    a.load(OFF_ARCH);
    let blocks: Vec<Label> = arch_consts.iter().map(|_| a.label()).collect();
    for (&arch, &block) in arch_consts.iter().zip(&blocks) {
        let no = a.label();
        a.branch(JMP_JEQ_K, arch, block, no);
        a.mark(no);
    }
    // No architecture matched: the last table (the "other" one).
    let (named, other) = tables.split_at(tables.len() - 1);
    numbers(&mut a, &other[0], rest);
    for (t, &block) in named.iter().zip(&blocks) {
        a.mark(block);
        numbers(&mut a, t, rest);
    }
    if !residual.seen.is_empty() {
        a.mark(rest);
        pruned(&mut a, prog, residual)?;
    }
    Ok(a.finish()?)
}

/// One architecture's decision on the number.
fn numbers(a: &mut Asm, t: &[(u32, Outcome)], rest: Label) {
    if t.len() > 1 {
        a.load(OFF_NR);
    }
    tree(a, t, rest);
}

/// Runs per search tree that share one pool of returns: its jumps to the
/// pool must stay within 8-bit offsets (a tree of n runs is n - 1
/// comparisons).
const GROUP: usize = 128;

/// A balanced search over the runs' first numbers. Comparisons jump
/// straight to a pool of the group's distinct outcomes (a return each, or
/// the jump into the pruned original) instead of a return per run, which
/// halves the tree.
fn tree(a: &mut Asm, t: &[(u32, Outcome)], rest: Label) {
    match t {
        [] => {}
        [(_, o)] => outcome(a, *o, rest),
        _ if t.len() > GROUP => {
            let (low, high) = t.split_at(t.len() / 2);
            let (hi, lo) = (a.label(), a.label());
            a.branch(JMP_JGE_K, high[0].0, hi, lo);
            a.mark(lo);
            tree(a, low, rest);
            a.mark(hi);
            tree(a, high, rest);
        }
        _ => {
            let mut pool = Vec::new();
            let at = a.label();
            node(a, t, at, &mut pool);
            for (o, l) in pool {
                a.mark(l);
                outcome(a, o, rest);
            }
        }
    }
}

fn outcome(a: &mut Asm, o: Outcome, rest: Label) {
    match o {
        Outcome::Ret(k) => a.ret(k),
        Outcome::Args => a.jump(rest),
    }
}

/// Comparisons deciding `t` (two runs or more), starting at `at`; a side
/// with one run jumps to that outcome's place in `pool`.
fn node(a: &mut Asm, t: &[(u32, Outcome)], at: Label, pool: &mut Vec<(Outcome, Label)>) {
    a.mark(at);
    let (low, high) = t.split_at(t.len() / 2);
    let mut side = |a: &mut Asm, runs: &[(u32, Outcome)]| match runs {
        [(_, o)] => match pool.iter().find(|(p, _)| p == o) {
            Some((_, l)) => *l,
            None => {
                let l = a.label();
                pool.push((*o, l));
                l
            }
        },
        _ => a.label(),
    };
    let lo = side(a, low);
    let hi = side(a, high);
    a.branch(JMP_JGE_K, high[0].0, hi, lo);
    if low.len() > 1 {
        node(a, low, lo, pool);
    }
    if high.len() > 1 {
        node(a, high, hi, pool);
    }
}

/// `prog` cut down to what `reach` passed: instructions never passed are
/// dropped, and jumps that went one way only (or `JA`s) become the place
/// they lead to.
fn pruned(a: &mut Asm, prog: &[Insn], reach: &Reach) -> Result<(), Kept> {
    let through = |pc: usize| -> Option<usize> {
        let i = prog[pc];
        if i.code == JMP_JA {
            return Some(pc + 1 + i.k as usize);
        }
        match reach.taken.get(&pc) {
            Some([true, false]) => Some(pc + 1 + i.jt as usize),
            Some([false, true]) => Some(pc + 1 + i.jf as usize),
            _ => None,
        }
    };
    let kept: Vec<usize> = reach
        .seen
        .iter()
        .copied()
        .filter(|pc| through(*pc).is_none())
        .collect();
    let labels: BTreeMap<usize, Label> = kept.iter().map(|pc| (*pc, a.label())).collect();
    // Jumps go forward, so following pass-throughs ends.
    let label_for = |mut pc: usize| -> Result<Label, Kept> {
        while let Some(to) = reach.seen.contains(&pc).then(|| through(pc)).flatten() {
            pc = to;
        }
        labels.get(&pc).copied().ok_or_else(|| {
            Kept::Unmodelled(Unmodelled(format!(
                "instruction {pc}: reached but not passed"
            )))
        })
    };
    a.jump(label_for(0)?);
    for &pc in &kept {
        let i = prog[pc];
        a.mark(labels[&pc]);
        match i.code {
            RET_K => a.ret(i.k),
            LD_W_ABS | ALU_AND_K => {
                a.plain(i.code, i.k);
                a.jump(label_for(pc + 1)?);
            }
            c if is_branch(c) => {
                let jt = label_for(pc + 1 + i.jt as usize)?;
                let jf = label_for(pc + 1 + i.jf as usize)?;
                a.branch(c, i.k, jt, jf);
            }
            c => return Err(Kept::Unmodelled(Unmodelled(format!("opcode {c:#x}")))),
        }
    }
    Ok(())
}

/// Argument values worth trying: each constant the program compares or
/// masks arguments with, its neighbours, and the extremes.
fn fills(arg_consts: &BTreeSet<u32>) -> BTreeSet<u32> {
    arg_consts
        .iter()
        .chain(&[0, 1, u32::MAX])
        .flat_map(|&c| [c.wrapping_sub(1), c, c.wrapping_add(1)])
        .collect()
}

/// Both programs on every interval's first and last number of every
/// architecture; where arguments matter, with argument words set to every
/// fill value (all words, low halves only, high halves only).
fn check(
    prog: &[Insn],
    short: &[Insn],
    arches: &[u32],
    nr_cuts: &[u32],
    tables: &[Table],
    arg_consts: &BTreeSet<u32>,
) -> Result<(), Kept> {
    let fills = fills(arg_consts);
    for (&arch, table) in arches.iter().zip(tables) {
        for &cut in nr_cuts {
            for nr in [cut, cut.wrapping_sub(1)] {
                let at = table.partition_point(|(start, _)| *start <= nr);
                let args = at > 0 && table[at - 1].1 == Outcome::Args;
                let datas: Vec<Data> = if args {
                    fills
                        .iter()
                        .flat_map(|&v| {
                            let mut lo = Data::new(arch, nr, v);
                            let mut hi = Data::new(arch, nr, v);
                            for w in (4..16).step_by(2) {
                                lo.0[w + 1] = 0;
                                hi.0[w] = 0;
                            }
                            [Data::new(arch, nr, v), lo, hi]
                        })
                        .collect()
                } else {
                    vec![Data::new(arch, nr, 0), Data::new(arch, nr, u32::MAX)]
                };
                for d in datas {
                    if emulate::run(prog, &d)? != emulate::run(short, &d)? {
                        return Err(Kept::Differs {
                            arch,
                            nr,
                            fill: d.0[4],
                        });
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seccomp::bpf::{JMP_JGT_K, JMP_JSET_K};
    use crate::seccomp::compile::Filters;
    use crate::seccomp::runtime_default;
    use oci_spec::runtime::{
        Arch, LinuxSeccompAction as Act, LinuxSeccompArgBuilder, LinuxSeccompBuilder,
        LinuxSeccompOperator as Op, LinuxSyscallBuilder,
    };

    const X86_64: u32 = 0xc000_003e;
    const I386: u32 = 0x4000_0003;

    /// The original libseccomp program and the compacted one of a profile.
    fn both(sc: &oci_spec::runtime::LinuxSeccomp) -> (Vec<Insn>, Vec<Insn>) {
        let long = Filters::uncompacted(sc).unwrap();
        let short = compact(&long).unwrap();
        (long, short)
    }

    /// Every number up to `upto` (and x32's) on x86_64, i386 and one
    /// foreign architecture, with two argument fills.
    fn same_everywhere(long: &[Insn], short: &[Insn], upto: u32) {
        for arch in [X86_64, I386, 0xc000_00b7, 0] {
            for nr in (0..upto).chain((0..upto).map(|n| n | 0x4000_0000)) {
                for fill in [0, 3, u32::MAX] {
                    let d = Data::new(arch, nr, fill);
                    assert_eq!(
                        emulate::run(long, &d),
                        emulate::run(short, &d),
                        "arch {arch:#x} nr {nr} fill {fill}"
                    );
                }
            }
        }
    }

    #[test]
    fn runtime_default_shrinks_and_decides_the_same() {
        let sc = runtime_default(&["CAP_CHOWN".into(), "CAP_SYS_PTRACE".into()]).unwrap();
        let (long, short) = both(&sc);
        assert!(
            short.len() * 2 < long.len(),
            "{} → {} instructions",
            long.len(),
            short.len()
        );
        same_everywhere(&long, &short, 1100);
        // Only what the kernel's allow cache can evaluate sits on the
        // paths of argument-free decisions: loads, K jumps, returns.
        assert!(short.iter().all(|i| matches!(
            i.code,
            LD_W_ABS | ALU_AND_K | JMP_JA | JMP_JEQ_K | JMP_JGT_K | JMP_JGE_K | JMP_JSET_K | RET_K
        )));
    }

    #[test]
    fn argument_filters_survive_with_their_actions() {
        let rule = |names: &[&str], act, args: Vec<oci_spec::runtime::LinuxSeccompArg>| {
            LinuxSyscallBuilder::default()
                .names(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .action(act)
                .args(args)
                .build()
                .unwrap()
        };
        let arg = |index: usize, value: u64, op| {
            LinuxSeccompArgBuilder::default()
                .index(index)
                .value(value)
                .op(op)
                .build()
                .unwrap()
        };
        // Syscalls allowed but every seventh (many ranges), plus argument
        // rules with 64-bit values, a mask and several actions.
        let mut names: Vec<String> = Vec::new();
        for nr in (0..330).filter(|n| n % 7 != 0) {
            if let Ok(n) = libseccomp::ScmpSyscall::from(nr).get_name() {
                names.push(n);
            }
        }
        names.retain(|n| !["socket", "personality", "kill", "ioctl"].contains(&n.as_str()));
        let mut rules = vec![LinuxSyscallBuilder::default()
            .names(names)
            .action(Act::ScmpActAllow)
            .build()
            .unwrap()];
        rules.push(rule(
            &["socket"],
            Act::ScmpActAllow,
            vec![arg(0, 1, Op::ScmpCmpEq)],
        ));
        rules.push(rule(
            &["socket"],
            Act::ScmpActAllow,
            vec![arg(0, 2, Op::ScmpCmpEq)],
        ));
        rules.push(rule(
            &["personality"],
            Act::ScmpActAllow,
            vec![arg(0, 0x1_0000_0008, Op::ScmpCmpEq)],
        ));
        rules.push(rule(
            &["kill"],
            Act::ScmpActAllow,
            vec![arg(1, 9, Op::ScmpCmpLt)],
        ));
        rules.push(rule(
            &["kill"],
            Act::ScmpActLog,
            vec![arg(1, 9, Op::ScmpCmpEq)],
        ));
        let masked = LinuxSeccompArgBuilder::default()
            .index(1usize)
            .value(0xff00u64)
            .value_two(0x5400u64)
            .op(Op::ScmpCmpMaskedEq)
            .build()
            .unwrap();
        rules.push(rule(&["ioctl"], Act::ScmpActAllow, vec![masked]));
        let sc = LinuxSeccompBuilder::default()
            .default_action(Act::ScmpActErrno)
            .architectures(vec![
                Arch::ScmpArchX86_64,
                Arch::ScmpArchX86,
                Arch::ScmpArchX32,
            ])
            .syscalls(rules)
            .build()
            .unwrap();
        let (long, short) = both(&sc);
        assert!(short.len() < long.len());
        same_everywhere(&long, &short, 600);
        // The argument rules on x86_64, concretely.
        let run = |nr, a0: u64, a1: u64| {
            let mut d = Data::new(X86_64, nr, 0);
            d.0[4] = a0 as u32;
            d.0[5] = (a0 >> 32) as u32;
            d.0[6] = a1 as u32;
            d.0[7] = (a1 >> 32) as u32;
            (
                emulate::run(&long, &d).unwrap(),
                emulate::run(&short, &d).unwrap(),
            )
        };
        let allow = 0x7fff_0000;
        let eperm = 0x0005_0001;
        for (nr, a0, a1, want) in [
            (41, 1, 0, allow),
            (41, 2, 0, allow),
            (41, 10, 0, eperm),
            (135, 0x1_0000_0008, 0, allow),
            (135, 8, 0, eperm),
            (62, 0, 8, allow),
            (62, 0, 9, 0x7ffc_0000),
            (62, 0, 10, eperm),
            (16, 0, 0x5401, allow),
            (16, 0, 0x5501, eperm),
        ] {
            assert_eq!(
                run(nr, a0, a1),
                (want, want),
                "nr {nr} a0 {a0:#x} a1 {a1:#x}"
            );
        }
    }

    #[test]
    fn long_trees_and_foreign_programs() {
        // Alternating allow/deny over a few hundred numbers: the range
        // tree needs long jumps.
        let names: Vec<String> = (0..440)
            .step_by(2)
            .filter_map(|nr| libseccomp::ScmpSyscall::from(nr).get_name().ok())
            .collect();
        let sc = LinuxSeccompBuilder::default()
            .default_action(Act::ScmpActErrno)
            .syscalls(vec![LinuxSyscallBuilder::default()
                .names(names)
                .action(Act::ScmpActAllow)
                .build()
                .unwrap()])
            .build()
            .unwrap();
        let long = Filters::uncompacted(&sc).unwrap();
        if let Ok(short) = compact(&long) {
            same_everywhere(&long, &short, 600);
        }
        // A program this model does not cover is kept.
        let ldx = [Insn {
            code: 0x01,
            jt: 0,
            jf: 0,
            k: 0,
        }];
        assert!(matches!(compact(&ldx), Err(Kept::Unmodelled(_))));
    }
}
