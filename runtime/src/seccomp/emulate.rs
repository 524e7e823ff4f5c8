//! Running a seccomp program outside the kernel: concretely, on one
//! syscall's `seccomp_data`, and symbolically, with the syscall's arguments
//! unknown, to learn which return values a (architecture, number) can reach
//! and which instructions it passes. `compact.rs` uses both to rebuild a
//! program and to check the rebuild against the original.
//!
//! Only the instructions libseccomp and cria emit are modelled (loads from
//! `seccomp_data`, `A &= k`, `JA`, the K-form conditional jumps, `RET k`);
//! anything else is [`Unmodelled`] and the caller keeps its program as it is.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use super::bpf::{
    is_branch, Insn, ALU_AND_K, DATA_LEN, JMP_JA, JMP_JEQ_K, JMP_JGE_K, JMP_JGT_K, LD_W_ABS,
    OFF_ARCH, OFF_NR, RET_K,
};

/// The program does something this model does not cover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Unmodelled(pub(super) String);

fn unmodelled(pc: usize, what: &str) -> Unmodelled {
    Unmodelled(format!("instruction {pc}: {what}"))
}

/// One syscall as a filter sees it: `struct seccomp_data` as 32-bit words
/// (nr, arch, instruction pointer, then each argument's two halves).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Data(pub(super) [u32; (DATA_LEN / 4) as usize]);

impl Data {
    /// A syscall with every other word set to `fill`.
    pub(super) fn new(arch: u32, nr: u32, fill: u32) -> Self {
        let mut w = [fill; (DATA_LEN / 4) as usize];
        w[(OFF_NR / 4) as usize] = nr;
        w[(OFF_ARCH / 4) as usize] = arch;
        Data(w)
    }
}

/// The word a load reads, if it is one `seccomp_data` has.
fn word(pc: usize, k: u32) -> Result<usize, Unmodelled> {
    if !k.is_multiple_of(4) || k >= DATA_LEN {
        return Err(unmodelled(pc, &format!("load from offset {k}")));
    }
    Ok((k / 4) as usize)
}

fn holds(code: u16, a: u32, k: u32) -> bool {
    match code {
        JMP_JEQ_K => a == k,
        JMP_JGT_K => a > k,
        JMP_JGE_K => a >= k,
        _ => a & k != 0,
    }
}

/// Where an instruction at `pc` goes next: (when true, when false), or the
/// one place for anything else that continues.
fn next(prog: &[Insn], pc: usize) -> (usize, usize) {
    let i = prog[pc];
    match i.code {
        JMP_JA => {
            let to = pc + 1 + i.k as usize;
            (to, to)
        }
        c if is_branch(c) => (pc + 1 + i.jt as usize, pc + 1 + i.jf as usize),
        _ => (pc + 1, pc + 1),
    }
}

fn at(prog: &[Insn], pc: usize) -> Result<Insn, Unmodelled> {
    prog.get(pc)
        .copied()
        .ok_or_else(|| unmodelled(pc, "past the end"))
}

/// The value `prog` returns for `d`.
pub(super) fn run(prog: &[Insn], d: &Data) -> Result<u32, Unmodelled> {
    let mut a = 0u32;
    let mut pc = 0;
    // Jumps go forward only, so each step moves on; the bound is for a
    // program whose offsets are broken.
    for _ in 0..=prog.len() {
        let i = at(prog, pc)?;
        match i.code {
            LD_W_ABS => a = d.0[word(pc, i.k)?],
            ALU_AND_K => a &= i.k,
            RET_K => return Ok(i.k),
            c if c == JMP_JA || is_branch(c) => {
                let (t, f) = next(prog, pc);
                pc = if c == JMP_JA || holds(c, a, i.k) {
                    t
                } else {
                    f
                };
                continue;
            }
            c => return Err(unmodelled(pc, &format!("opcode {c:#x}"))),
        }
        pc += 1;
    }
    Err(unmodelled(pc, "no return"))
}

/// What the accumulator holds during a symbolic run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Val {
    Known(u32),
    /// The syscall number (only in [`cuts`]).
    Nr,
    /// The architecture (only in [`cuts`]).
    Arch,
    /// Anything else: the instruction pointer, an argument.
    Unknown,
}

/// What symbolic runs from some (architecture, number) pairs reached.
#[derive(Debug, Clone, Default)]
pub(super) struct Reach {
    /// Return values reached.
    pub(super) rets: BTreeSet<u32>,
    /// Instructions passed.
    pub(super) seen: BTreeSet<usize>,
    /// Per conditional jump passed: whether its true and its false side
    /// were taken.
    pub(super) taken: BTreeMap<usize, [bool; 2]>,
    /// Constants that arguments (or the instruction pointer) were compared
    /// or masked with.
    pub(super) arg_consts: BTreeSet<u32>,
}

impl Reach {
    /// Adds what `other` reached.
    pub(super) fn merge(&mut self, other: Reach) {
        self.rets.extend(other.rets);
        self.seen.extend(other.seen);
        self.arg_consts.extend(other.arg_consts);
        for (pc, [t, f]) in other.taken {
            let sides = self.taken.entry(pc).or_default();
            sides[0] |= t;
            sides[1] |= f;
        }
    }
}

/// Every path of `prog` from `start`, following both sides of any jump on
/// something unknown; `visit` sees each (pc, instruction, A) once and
/// returns the value A holds after a load.
fn walk(
    prog: &[Insn],
    start: Val,
    mut load: impl FnMut(usize, u32) -> Result<Val, Unmodelled>,
    mut visit: impl FnMut(usize, Insn, Val, Option<bool>) -> Result<(), Unmodelled>,
) -> Result<(), Unmodelled> {
    let mut todo = vec![(0usize, start)];
    let mut done = HashSet::new();
    while let Some((pc, a)) = todo.pop() {
        if !done.insert((pc, a)) {
            continue;
        }
        let i = at(prog, pc)?;
        match i.code {
            LD_W_ABS => {
                let v = load(pc, i.k)?;
                visit(pc, i, a, None)?;
                todo.push((pc + 1, v));
            }
            ALU_AND_K => {
                visit(pc, i, a, None)?;
                let v = match a {
                    Val::Known(x) => Val::Known(x & i.k),
                    Val::Unknown => Val::Unknown,
                    _ => return Err(unmodelled(pc, "masks the number or architecture")),
                };
                todo.push((pc + 1, v));
            }
            RET_K => visit(pc, i, a, None)?,
            JMP_JA => {
                visit(pc, i, a, None)?;
                todo.push((next(prog, pc).0, a));
            }
            c if is_branch(c) => {
                let (t, f) = next(prog, pc);
                if let Val::Known(x) = a {
                    let h = holds(c, x, i.k);
                    visit(pc, i, a, Some(h))?;
                    todo.push((if h { t } else { f }, a));
                } else {
                    visit(pc, i, a, None)?;
                    todo.push((t, a));
                    todo.push((f, a));
                }
            }
            c => return Err(unmodelled(pc, &format!("opcode {c:#x}"))),
        }
    }
    Ok(())
}

/// Adds to `reach` every path of `prog` for the syscall `nr` on `arch` with
/// any arguments.
pub(super) fn explore(
    prog: &[Insn],
    arch: u32,
    nr: u32,
    reach: &mut Reach,
) -> Result<(), Unmodelled> {
    let load = |pc, k| {
        Ok(match word(pc, k)? as u32 * 4 {
            OFF_NR => Val::Known(nr),
            OFF_ARCH => Val::Known(arch),
            _ => Val::Unknown,
        })
    };
    walk(prog, Val::Unknown, load, |pc, i, a, side| {
        reach.seen.insert(pc);
        match (i.code, side) {
            (RET_K, _) => {
                reach.rets.insert(i.k);
            }
            (_, Some(h)) => reach.taken.entry(pc).or_default()[usize::from(!h)] = true,
            (c, None) if is_branch(c) || c == ALU_AND_K => {
                if is_branch(c) {
                    reach.taken.insert(pc, [true, true]);
                }
                if a == Val::Unknown {
                    reach.arg_consts.insert(i.k);
                }
            }
            _ => {}
        }
        Ok(())
    })
}

/// How `prog` splits the space of (architecture, number): the
/// architectures it tells apart, and the numbers where its decisions on
/// the number can change (sorted, starting with 0). Between two such
/// numbers every number takes the same jumps, so one stands for all.
pub(super) fn cuts(prog: &[Insn]) -> Result<(BTreeSet<u32>, Vec<u32>), Unmodelled> {
    let mut arches = BTreeSet::new();
    let mut nrs = BTreeSet::from([0u32]);
    let load = |pc, k| {
        Ok(match word(pc, k)? as u32 * 4 {
            OFF_NR => Val::Nr,
            OFF_ARCH => Val::Arch,
            _ => Val::Unknown,
        })
    };
    walk(prog, Val::Unknown, load, |pc, i, a, _| {
        if !is_branch(i.code) {
            return Ok(());
        }
        match (a, i.code) {
            (Val::Arch, JMP_JEQ_K) => {
                arches.insert(i.k);
            }
            (Val::Arch, _) => return Err(unmodelled(pc, "orders architectures")),
            (Val::Nr, JMP_JEQ_K) => {
                nrs.extend([Some(i.k), i.k.checked_add(1)].into_iter().flatten())
            }
            (Val::Nr, JMP_JGT_K) => nrs.extend(i.k.checked_add(1)),
            (Val::Nr, JMP_JGE_K) => {
                nrs.insert(i.k);
            }
            (Val::Nr, _) => {
                // A test of one high bit (x32's marker) flips every 2^bit
                // numbers; a low or multi-bit mask would cut too finely.
                if !i.k.is_power_of_two() || i.k < 1 << 24 {
                    return Err(unmodelled(pc, &format!("tests number bits {:#x}", i.k)));
                }
                nrs.extend((0..=u32::MAX / i.k).map(|m| m * i.k));
            }
            _ => {}
        }
        Ok(())
    })?;
    Ok((arches, nrs.into_iter().collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seccomp::bpf::{Asm, JMP_JSET_K};

    const X86_64: u32 = 0xc000_003e;
    const ALLOW: u32 = 0x7fff_0000;
    const EPERM: u32 = 0x0005_0001;

    /// x86_64 only: getpid (39) allowed, personality (135) allowed when
    /// its first argument is 0, everything else EPERM; other
    /// architectures killed.
    fn sample() -> Vec<Insn> {
        let mut a = Asm::default();
        let (native, getpid, not_getpid, pers, deny, allow, kill) = (
            a.label(),
            a.label(),
            a.label(),
            a.label(),
            a.label(),
            a.label(),
            a.label(),
        );
        a.load(OFF_ARCH);
        a.branch(JMP_JEQ_K, X86_64, native, kill);
        a.mark(native);
        a.load(OFF_NR);
        a.branch(JMP_JEQ_K, 39, getpid, not_getpid);
        a.mark(getpid);
        a.jump(allow);
        a.mark(not_getpid);
        a.branch(JMP_JEQ_K, 135, pers, deny);
        a.mark(pers);
        a.load(16);
        a.branch(JMP_JEQ_K, 0, allow, deny);
        a.mark(deny);
        a.ret(EPERM);
        a.mark(allow);
        a.ret(ALLOW);
        a.mark(kill);
        a.ret(0);
        a.finish().unwrap()
    }

    #[test]
    fn concrete_runs_follow_the_program() {
        let p = sample();
        assert_eq!(run(&p, &Data::new(X86_64, 39, 7)), Ok(ALLOW));
        assert_eq!(run(&p, &Data::new(X86_64, 40, 0)), Ok(EPERM));
        assert_eq!(run(&p, &Data::new(X86_64, 135, 0)), Ok(ALLOW));
        assert_eq!(run(&p, &Data::new(X86_64, 135, 1)), Ok(EPERM));
        assert_eq!(run(&p, &Data::new(3, 39, 0)), Ok(0));
    }

    #[test]
    fn symbolic_runs_find_what_arguments_can_change() {
        let p = sample();
        let mut r = Reach::default();
        explore(&p, X86_64, 39, &mut r).unwrap();
        assert_eq!(r.rets, BTreeSet::from([ALLOW]));
        let mut r = Reach::default();
        explore(&p, X86_64, 135, &mut r).unwrap();
        assert_eq!(r.rets, BTreeSet::from([ALLOW, EPERM]));
        assert_eq!(r.arg_consts, BTreeSet::from([0]));
        assert!(
            !r.seen.contains(&(p.len() - 1)),
            "the kill return is not on this path"
        );
        let (arches, nrs) = cuts(&p).unwrap();
        assert_eq!(arches, BTreeSet::from([X86_64]));
        assert_eq!(nrs, [0, 39, 40, 135, 136]);
    }

    #[test]
    fn unmodelled_programs_are_refused() {
        let ldx = [Insn {
            code: 0x01,
            jt: 0,
            jf: 0,
            k: 0,
        }];
        assert!(run(&ldx, &Data::new(0, 0, 0)).is_err());
        let mut a = Asm::default();
        let (t, f) = (a.label(), a.label());
        a.load(OFF_NR);
        a.branch(JMP_JSET_K, 1, t, f);
        a.mark(t);
        a.ret(0);
        a.mark(f);
        a.ret(ALLOW);
        assert!(cuts(&a.finish().unwrap()).is_err(), "low number bits");
        let mut a = Asm::default();
        a.load(OFF_ARCH);
        let (t, f) = (a.label(), a.label());
        a.branch(JMP_JGT_K, 5, t, f);
        a.mark(t);
        a.ret(0);
        a.mark(f);
        a.ret(ALLOW);
        assert!(cuts(&a.finish().unwrap()).is_err(), "ordered architectures");
        let past = [Insn {
            code: JMP_JA,
            jt: 0,
            jf: 0,
            k: 3,
        }];
        assert!(run(&past, &Data::new(0, 0, 0)).is_err());
    }
}
