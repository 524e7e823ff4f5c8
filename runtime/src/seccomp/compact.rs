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
    tree(a, &with_exceptions(t), rest);
}

/// A run of numbers with one outcome, but for a few single numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Run {
    start: u32,
    outcome: Outcome,
    exceptions: Vec<(u32, Outcome)>,
}

impl Run {
    /// Instructions it adds to a tree: a comparison, and one per exception.
    fn weight(&self) -> usize {
        1 + self.exceptions.len()
    }
}

/// Single-number exceptions per run: each costs a comparison on the path
/// of every number of the run that the kernel's cache does not answer.
const MAX_EXCEPTIONS: usize = 8;

/// Folds a lone number between two runs of one outcome (a syscall denied
/// amid allowed ones) into one run with an exception: one `JEQ` instead of
/// the two range comparisons around it.
fn with_exceptions(t: &[(u32, Outcome)]) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    let mut i = 0;
    while i < t.len() {
        let (start, outcome) = t[i];
        if let (Some(last), Some(&(after, resumed))) = (out.last_mut(), t.get(i + 1)) {
            let lone = start.checked_add(1) == Some(after);
            if lone && resumed == last.outcome && last.exceptions.len() < MAX_EXCEPTIONS {
                last.exceptions.push((start, outcome));
                i += 2;
                continue;
            }
        }
        out.push(Run {
            start,
            outcome,
            exceptions: Vec::new(),
        });
        i += 1;
    }
    out
}

/// Instructions per search tree that share one pool of returns: its jumps
/// to the pool must stay within 8-bit offsets.
const GROUP: usize = 128;

/// A balanced search over the runs' first numbers. Comparisons jump
/// straight to a pool of the group's distinct outcomes (a return each, or
/// the jump into the pruned original) instead of a return per run, which
/// halves the tree.
fn tree(a: &mut Asm, t: &[Run], rest: Label) {
    match t {
        [] => {}
        [r] if r.exceptions.is_empty() => outcome(a, r.outcome, rest),
        _ if t.len() > 1 && t.iter().map(Run::weight).sum::<usize>() > GROUP => {
            let (low, high) = t.split_at(t.len() / 2);
            let (hi, lo) = (a.label(), a.label());
            a.branch(JMP_JGE_K, high[0].start, hi, lo);
            a.mark(lo);
            tree(a, low, rest);
            a.mark(hi);
            tree(a, high, rest);
        }
        _ => {
            let mut pool = Pool::default();
            let at = a.label();
            decide(a, t, at, &mut pool);
            for (o, l) in pool.0 {
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

/// One place per distinct outcome of a group.
#[derive(Default)]
struct Pool(Vec<(Outcome, Label)>);

impl Pool {
    fn get(&mut self, a: &mut Asm, o: Outcome) -> Label {
        match self.0.iter().find(|(p, _)| *p == o) {
            Some((_, l)) => *l,
            None => {
                let l = a.label();
                self.0.push((o, l));
                l
            }
        }
    }
}

/// Where deciding `t` starts: the pool, for one run without exceptions.
fn entry(a: &mut Asm, t: &[Run], pool: &mut Pool) -> Label {
    match t {
        [r] if r.exceptions.is_empty() => pool.get(a, r.outcome),
        _ => a.label(),
    }
}

/// Decides `t` at `at` (nothing to emit when `entry` gave a pool place):
/// a comparison between two halves, or one run's exceptions.
fn decide(a: &mut Asm, t: &[Run], at: Label, pool: &mut Pool) {
    match t {
        [r] if r.exceptions.is_empty() => {}
        [r] => {
            a.mark(at);
            for (i, &(nr, o)) in r.exceptions.iter().enumerate() {
                let hit = pool.get(a, o);
                let miss = if i + 1 == r.exceptions.len() {
                    pool.get(a, r.outcome)
                } else {
                    a.label()
                };
                a.branch(JMP_JEQ_K, nr, hit, miss);
                if i + 1 < r.exceptions.len() {
                    a.mark(miss);
                }
            }
        }
        _ => {
            a.mark(at);
            let (low, high) = t.split_at(t.len() / 2);
            let lo = entry(a, low, pool);
            let hi = entry(a, high, pool);
            a.branch(JMP_JGE_K, high[0].start, hi, lo);
            decide(a, low, lo, pool);
            decide(a, high, hi, pool);
        }
    }
}

/// `prog` cut down to what `reach` passed: instructions never passed are
/// dropped, and jumps that went one way only (or `JA`s) become the place
/// they lead to.
fn pruned(a: &mut Asm, prog: &[Insn], reach: &Reach) -> Result<(), Kept> {
    // Where each passed instruction really continues: itself, or, for one
    // that decides nothing (a `JA`, a jump that went one way or whose sides
    // lead to one place, a load the next instruction overwrites), where it
    // leads.
    // Filled backwards: jumps go forward.
    let mut lands: BTreeMap<usize, usize> = BTreeMap::new();
    for &pc in reach.seen.iter().rev() {
        let i = prog[pc];
        let follow =
            |lands: &BTreeMap<usize, usize>, to: usize| lands.get(&to).copied().unwrap_or(to);
        let (jt, jf) = (pc + 1 + i.jt as usize, pc + 1 + i.jf as usize);
        let to = match i.code {
            JMP_JA => Some(pc + 1 + i.k as usize),
            c if is_branch(c) => match reach.taken.get(&pc) {
                Some([true, false]) => Some(jt),
                Some([false, true]) => Some(jf),
                _ => (follow(&lands, jt) == follow(&lands, jf)).then_some(jt),
            },
            LD_W_ABS => {
                let next = follow(&lands, pc + 1);
                (prog.get(next).map(|n| n.code) == Some(LD_W_ABS)).then_some(next)
            }
            _ => None,
        };
        let at = to.map_or(pc, |t| follow(&lands, t));
        lands.insert(pc, at);
    }
    let kept: Vec<usize> = lands
        .iter()
        .filter(|(pc, at)| pc == at)
        .map(|(pc, _)| *pc)
        .collect();
    let labels: BTreeMap<usize, Label> = kept.iter().map(|pc| (*pc, a.label())).collect();
    let label_for = |pc: usize| -> Result<Label, Kept> {
        let at = lands.get(&pc).copied().unwrap_or(pc);
        labels.get(&at).copied().ok_or_else(|| {
            Kept::Unmodelled(Unmodelled(format!(
                "instruction {at}: reached but not passed"
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
    fn lone_numbers_fold_into_their_neighbours_runs() {
        let (allow, deny) = (Outcome::Ret(0x7fff_0000), Outcome::Ret(0x0005_0001));
        let t = [
            (0, allow),
            (5, deny),
            (6, allow),
            (9, deny),
            (10, allow),
            (20, deny),
            (22, allow),
        ];
        let runs = with_exceptions(&t);
        assert_eq!(
            runs,
            [
                Run {
                    start: 0,
                    outcome: allow,
                    exceptions: vec![(5, deny), (9, deny)],
                },
                Run {
                    start: 20,
                    outcome: deny,
                    exceptions: vec![],
                },
                Run {
                    start: 22,
                    outcome: allow,
                    exceptions: vec![],
                },
            ]
        );
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
