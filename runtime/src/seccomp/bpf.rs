//! Classic BPF as seccomp runs it: the instruction, the opcodes cria emits
//! or reads, `struct seccomp_data`'s layout, and a small assembler with
//! labels that turns forward jumps into the kernel's 8-bit offsets.
//!
//! Hand-written because libseccomp exports finished programs only and no
//! maintained crate assembles classic BPF with labels; the two users are
//! the ENOSYS prefix (`enosys.rs`) and the compaction of whole programs
//! (`compact.rs`).

/// One BPF instruction as the kernel's `struct sock_filter`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Insn {
    pub(super) code: u16,
    pub(super) jt: u8,
    pub(super) jf: u8,
    pub(super) k: u32,
}

// Opcodes (linux/filter.h): the subset libseccomp and cria use.
/// `A = data[k]` (32-bit word at byte offset k).
pub(super) const LD_W_ABS: u16 = 0x20;
/// `A &= k`.
pub(super) const ALU_AND_K: u16 = 0x54;
/// Jump forward by k.
pub(super) const JMP_JA: u16 = 0x05;
/// `A == k`.
pub(super) const JMP_JEQ_K: u16 = 0x15;
/// `A > k`.
pub(super) const JMP_JGT_K: u16 = 0x25;
/// `A >= k`.
pub(super) const JMP_JGE_K: u16 = 0x35;
/// `A & k != 0`.
pub(super) const JMP_JSET_K: u16 = 0x45;
/// Return k.
pub(super) const RET_K: u16 = 0x06;

/// Byte offset of `seccomp_data.nr`.
pub(super) const OFF_NR: u32 = 0;
/// Byte offset of `seccomp_data.arch`.
pub(super) const OFF_ARCH: u32 = 4;
/// `sizeof(struct seccomp_data)`: nr, arch, instruction pointer, six
/// 64-bit arguments.
pub(super) const DATA_LEN: u32 = 64;
/// `SECCOMP_RET_ERRNO`; the errno goes in the low 16 bits.
pub(super) const RET_ERRNO: u32 = 0x0005_0000;
/// The kernel's limit on one filter's length (`BPF_MAXINSNS`).
pub(super) const MAX_INSNS: usize = 4096;

/// Whether `code` is one of the conditional jumps above.
pub(super) fn is_branch(code: u16) -> bool {
    matches!(code, JMP_JEQ_K | JMP_JGT_K | JMP_JGE_K | JMP_JSET_K)
}

/// A place in an [`Asm`] program, jumped to before or after it is marked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Label(usize);

#[derive(Debug, Clone, Copy)]
enum Item {
    /// A load, an ALU operation or a return: no jump targets.
    Plain(Insn),
    /// `JA`.
    Jump(Label),
    /// A conditional jump.
    Branch {
        code: u16,
        k: u32,
        jt: Label,
        jf: Label,
    },
    /// Where a label points: the next instruction.
    Mark(Label),
}

/// Why a program could not be assembled (a bug in its builder).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum AsmError {
    /// A jump to a label that was never marked.
    Unplaced,
    /// A jump backwards (classic BPF jumps forward only).
    Backward,
    /// Longer than the kernel takes.
    TooLong(usize),
}

/// A program built from instructions and forward jumps to labels.
#[derive(Debug, Default)]
pub(super) struct Asm {
    items: Vec<Item>,
    labels: usize,
}

impl Asm {
    /// A fresh label.
    pub(super) fn label(&mut self) -> Label {
        self.labels += 1;
        Label(self.labels - 1)
    }

    /// Points `l` at the next instruction added.
    pub(super) fn mark(&mut self, l: Label) {
        self.items.push(Item::Mark(l));
    }

    /// An instruction without jump targets (load, ALU, return).
    pub(super) fn plain(&mut self, code: u16, k: u32) {
        self.items.push(Item::Plain(Insn {
            code,
            jt: 0,
            jf: 0,
            k,
        }));
    }

    /// `A = data[off]`.
    pub(super) fn load(&mut self, off: u32) {
        self.plain(LD_W_ABS, off);
    }

    /// Return `k`.
    pub(super) fn ret(&mut self, k: u32) {
        self.plain(RET_K, k);
    }

    /// An unconditional jump (dropped when `to` is the next instruction).
    pub(super) fn jump(&mut self, to: Label) {
        self.items.push(Item::Jump(to));
    }

    /// A conditional jump: to `jt` when it holds, else to `jf`.
    pub(super) fn branch(&mut self, code: u16, k: u32, jt: Label, jf: Label) {
        debug_assert!(is_branch(code));
        self.items.push(Item::Branch { code, k, jt, jf });
    }

    /// The instructions, with every jump resolved. A conditional jump
    /// farther than its 8-bit offsets reach goes through `JA`s placed
    /// right after it.
    pub(super) fn finish(self) -> Result<Vec<Insn>, AsmError> {
        let items = drop_jumps_to_next(self.items);
        // Which branches need the long form; growing one can push others
        // out of reach, so repeat until nothing changes (each round only
        // adds long forms, so this ends).
        let mut long = vec![false; items.len()];
        loop {
            let (pos, at) = layout(&items, &long, self.labels)?;
            let mut grew = false;
            for (i, item) in items.iter().enumerate() {
                if let Item::Branch { jt, jf, .. } = item {
                    if long[i] {
                        continue;
                    }
                    let far = |l: &Label| at[l.0].map(|t| t.saturating_sub(pos[i] + 1) > 255);
                    if far(jt).ok_or(AsmError::Unplaced)? || far(jf).ok_or(AsmError::Unplaced)? {
                        long[i] = true;
                        grew = true;
                    }
                }
            }
            if !grew {
                return emit(&items, &long, &pos, &at);
            }
        }
    }
}

/// Removes `JA`s to the very next instruction.
fn drop_jumps_to_next(items: Vec<Item>) -> Vec<Item> {
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        if let Item::Jump(to) = item {
            let lands_next = items[i + 1..]
                .iter()
                .take_while(|x| matches!(x, Item::Mark(_)))
                .any(|x| matches!(x, Item::Mark(l) if l == to));
            if lands_next {
                continue;
            }
        }
        out.push(*item);
    }
    out
}

/// Each item's instruction index and each label's, for the given long
/// forms (a long branch is `branch 0,1; ja jt; ja jf`).
#[allow(clippy::type_complexity)]
fn layout(
    items: &[Item],
    long: &[bool],
    labels: usize,
) -> Result<(Vec<usize>, Vec<Option<usize>>), AsmError> {
    let mut pos = Vec::with_capacity(items.len());
    let mut at = vec![None; labels];
    let mut n = 0;
    for (i, item) in items.iter().enumerate() {
        pos.push(n);
        n += match item {
            Item::Mark(l) => {
                at[l.0] = Some(n);
                0
            }
            Item::Branch { .. } if long[i] => 3,
            _ => 1,
        };
    }
    if n > MAX_INSNS {
        return Err(AsmError::TooLong(n));
    }
    Ok((pos, at))
}

fn emit(
    items: &[Item],
    long: &[bool],
    pos: &[usize],
    at: &[Option<usize>],
) -> Result<Vec<Insn>, AsmError> {
    let target = |l: Label| at[l.0].ok_or(AsmError::Unplaced);
    // Forward distance from the instruction at `from` to `to`.
    let dist = |from: usize, to: usize| to.checked_sub(from + 1).ok_or(AsmError::Backward);
    let ja = |from: usize, to: usize| -> Result<Insn, AsmError> {
        Ok(Insn {
            code: JMP_JA,
            jt: 0,
            jf: 0,
            k: dist(from, to)? as u32,
        })
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let p = pos[i];
        match *item {
            Item::Mark(_) => {}
            Item::Plain(insn) => out.push(insn),
            Item::Jump(to) => out.push(ja(p, target(to)?)?),
            Item::Branch { code, k, jt, jf } if long[i] => {
                out.push(Insn {
                    code,
                    jt: 0,
                    jf: 1,
                    k,
                });
                out.push(ja(p + 1, target(jt)?)?);
                out.push(ja(p + 2, target(jf)?)?);
            }
            Item::Branch { code, k, jt, jf } => {
                // `finish` checked both fit in 8 bits.
                let off = |l| dist(p, target(l)?).map(|d| d as u8);
                out.push(Insn {
                    code,
                    jt: off(jt)?,
                    jf: off(jf)?,
                    k,
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_resolve_to_forward_offsets_and_jumps_to_next_vanish() {
        let mut a = Asm::default();
        let (yes, no, next) = (a.label(), a.label(), a.label());
        a.load(OFF_NR);
        a.branch(JMP_JEQ_K, 39, yes, no);
        a.mark(no);
        a.jump(next);
        a.mark(next);
        a.ret(RET_ERRNO | 1);
        a.mark(yes);
        a.ret(0x7fff_0000);
        let p = a.finish().unwrap();
        assert_eq!(p.len(), 4, "{p:?}");
        assert_eq!((p[1].code, p[1].jt, p[1].jf, p[1].k), (JMP_JEQ_K, 1, 0, 39));
        assert_eq!(p[3].k, 0x7fff_0000);
    }

    #[test]
    fn a_branch_beyond_255_goes_through_jumps() {
        let mut a = Asm::default();
        let (far, near) = (a.label(), a.label());
        a.load(OFF_NR);
        a.branch(JMP_JGE_K, 100, far, near);
        a.mark(near);
        for i in 0..300 {
            a.ret(i);
        }
        a.mark(far);
        a.ret(0x7fff_0000);
        let p = a.finish().unwrap();
        assert_eq!((p[1].code, p[1].jt, p[1].jf), (JMP_JGE_K, 0, 1));
        assert_eq!(p[2].code, JMP_JA);
        let far_at = 3 + p[2].k as usize;
        assert_eq!(p[far_at].k, 0x7fff_0000);
        assert_eq!(p[4 + p[3].k as usize].k, 0, "the near side: first return");
    }

    #[test]
    fn unplaced_backward_and_too_long_programs_are_refused() {
        let mut a = Asm::default();
        let l = a.label();
        a.jump(l);
        a.ret(0);
        assert_eq!(a.finish(), Err(AsmError::Unplaced));
        let mut a = Asm::default();
        let l = a.label();
        a.mark(l);
        a.ret(0);
        a.jump(l);
        assert_eq!(a.finish(), Err(AsmError::Backward));
        let mut a = Asm::default();
        for _ in 0..=MAX_INSNS {
            a.ret(0);
        }
        assert_eq!(a.finish(), Err(AsmError::TooLong(MAX_INSNS + 1)));
    }
}
