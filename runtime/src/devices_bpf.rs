//! cgroup v2 device rules: a `BPF_PROG_TYPE_CGROUP_DEVICE` program.
//!
//! v2 has no `devices.allow`/`devices.deny`; the kernel asks an eBPF program
//! attached to the cgroup. The OCI rule list (plus the default allow list
//! every container gets) is compiled into a program that checks the rules
//! from last to first and returns the first match's verdict (so later rules
//! override earlier ones, as with v1 writes), allowing what no rule matches
//! (the v1 default of a fresh cgroup below an unrestricted parent).

use crate::RuntimeError;
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

// eBPF opcodes used here (linux/bpf.h, linux/bpf_common.h).
const LDX_W: u8 = 0x61; // BPF_LDX | BPF_W | BPF_MEM
const AND32_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const RSH32_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const MOV32_K: u8 = 0xb4; // BPF_ALU | BPF_MOV | BPF_K
const MOV32_X: u8 = 0xbc; // BPF_ALU | BPF_MOV | BPF_X
const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JNE_X: u8 = 0x5d; // BPF_JMP | BPF_JNE | BPF_X
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

const DEV_BLOCK: i32 = 1; // BPF_DEVCG_DEV_BLOCK
const DEV_CHAR: i32 = 2; // BPF_DEVCG_DEV_CHAR
const ACC_MKNOD: i32 = 1; // BPF_DEVCG_ACC_MKNOD
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

/// One eBPF instruction (`struct bpf_insn`), encoded.
pub type Insn = u64;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    (code as u64)
        | (((dst & 0xf) | ((src & 0xf) << 4)) as u64) << 8
        | ((off as u16) as u64) << 16
        | ((imm as u32) as u64) << 32
}

/// A rule in kernel terms: type (0 = any), access bits, major/minor (-1 = any).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// `DEV_BLOCK`, `DEV_CHAR`, or 0 for all.
    pub typ: i32,
    /// Access bits (mknod 1, read 2, write 4).
    pub access: i32,
    /// Major number, -1 for any.
    pub major: i64,
    /// Minor number, -1 for any.
    pub minor: i64,
    /// Verdict when the rule matches.
    pub allow: bool,
}

fn access_bits(s: &str) -> i32 {
    s.chars().fold(0, |a, c| {
        a | match c {
            'm' => ACC_MKNOD,
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            _ => 0,
        }
    })
}

/// The rules for a spec's device list, the default allow list appended.
pub fn rules(spec_rules: &[LinuxDeviceCgroup]) -> Vec<Rule> {
    let mut out: Vec<Rule> = spec_rules
        .iter()
        .filter_map(|d| {
            let typ = match d.typ().unwrap_or(LinuxDeviceType::A) {
                LinuxDeviceType::A => 0,
                LinuxDeviceType::B => DEV_BLOCK,
                LinuxDeviceType::C | LinuxDeviceType::U => DEV_CHAR,
                // Fifos are not checked by the device controller.
                LinuxDeviceType::P => return None,
            };
            Some(Rule {
                typ,
                access: access_bits(d.access().as_deref().unwrap_or("rwm")),
                major: d.major().unwrap_or(-1),
                minor: d.minor().unwrap_or(-1),
                allow: d.allow(),
            })
        })
        .collect();
    for r in crate::cgroup::DEFAULT_DEVICE_RULES {
        if let Some(rule) = parse_rule(r) {
            out.push(rule);
        }
    }
    out
}

/// Parses a v1-style rule (`c 1:3 rwm`, `c *:* m`) as an allow rule.
fn parse_rule(s: &str) -> Option<Rule> {
    let mut it = s.split(' ');
    let typ = match it.next()? {
        "a" => 0,
        "b" => DEV_BLOCK,
        "c" => DEV_CHAR,
        _ => return None,
    };
    let (ma, mi) = it.next()?.split_once(':')?;
    let num = |x: &str| if x == "*" { Some(-1) } else { x.parse().ok() };
    Some(Rule {
        typ,
        access: access_bits(it.next()?),
        major: num(ma)?,
        minor: num(mi)?,
        allow: true,
    })
}

/// Compiles `rules` (last match wins, default allow) into eBPF.
pub fn program(rules: &[Rule]) -> Vec<Insn> {
    // r2 = type, r3 = access, r4 = major, r5 = minor (from bpf_cgroup_dev_ctx).
    let mut p = vec![
        insn(LDX_W, 2, 1, 0, 0),
        insn(AND32_K, 2, 0, 0, 0xffff),
        insn(LDX_W, 3, 1, 0, 0),
        insn(RSH32_K, 3, 0, 0, 16),
        insn(LDX_W, 4, 1, 4, 0),
        insn(LDX_W, 5, 1, 8, 0),
    ];
    for r in rules.iter().rev() {
        // Each check jumps past the rest of this rule's block on mismatch;
        // `None` marks such jumps until the block length is known.
        let mut block: Vec<(u8, u8, u8, i32)> = Vec::new();
        if r.typ != 0 {
            block.push((JNE_K, 2, 0, r.typ));
        }
        if r.access != ACC_MKNOD | ACC_READ | ACC_WRITE {
            // Match only if every requested access is in the rule's.
            block.push((MOV32_X, 1, 3, 0));
            block.push((AND32_K, 1, 0, r.access));
            block.push((JNE_X, 1, 3, 0));
        }
        if r.major >= 0 {
            block.push((JNE_K, 4, 0, r.major as i32));
        }
        if r.minor >= 0 {
            block.push((JNE_K, 5, 0, r.minor as i32));
        }
        let unconditional = block.is_empty();
        block.push((MOV32_K, 0, 0, i32::from(r.allow)));
        block.push((EXIT, 0, 0, 0));
        let len = block.len();
        for (i, (code, dst, src, imm)) in block.into_iter().enumerate() {
            let off = if code == JNE_K || code == JNE_X {
                (len - i - 1) as i16
            } else {
                0
            };
            p.push(insn(code, dst, src, off, imm));
        }
        // A rule matching everything decides: what follows would be
        // unreachable, which the verifier refuses.
        if unconditional {
            return p;
        }
    }
    p.push(insn(MOV32_K, 0, 0, 0, 1));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

/// `union bpf_attr` as used by BPF_PROG_LOAD (prefix; the rest zero).
#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    _rest: [u8; 96],
}

/// `union bpf_attr` as used by BPF_PROG_ATTACH.
#[repr(C)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    _rest: [u8; 112],
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;

/// BPF_PROG_LOAD of `prog`; with `log`, the verifier writes its log there.
fn load(prog: &[Insn], log: Option<&mut Vec<u8>>) -> std::io::Result<i32> {
    let license = c"Apache-2.0";
    let (level, size, buf) = match log {
        Some(l) => (1, l.len() as u32, l.as_mut_ptr() as u64),
        None => (0, 0, 0),
    };
    let attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: prog.len() as u32,
        insns: prog.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: level,
        log_size: size,
        log_buf: buf,
        kern_version: 0,
        prog_flags: 0,
        _rest: [0; 96],
    };
    // SAFETY: bpf(2) with a properly sized, initialised attr whose pointers
    // (program, license, log) outlive the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoadAttr,
            std::mem::size_of::<ProgLoadAttr>(),
        )
    };
    if fd < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(fd as i32)
    }
}

/// Loads the program for `rules` and attaches it to the cgroup2 dir `dir`,
/// replacing the program attached before (a live update).
pub fn attach(dir: &Path, rules: &[Rule]) -> Result<(), RuntimeError> {
    let prog = program(rules);
    let fd = match load(&prog, None) {
        Ok(fd) => fd,
        Err(e) => {
            // Load again with the verifier's log, only to explain the error
            // (with logging on, a full log buffer alone fails the load).
            let mut log = vec![0u8; 256 * 1024];
            let _ = load(&prog, Some(&mut log));
            let text = String::from_utf8_lossy(&log);
            let tail: String = text
                .trim_end_matches('\0')
                .chars()
                .rev()
                .take(400)
                .collect();
            let tail: String = tail.chars().rev().collect();
            return Err(RuntimeError::io(
                "load device program for",
                dir,
                std::io::Error::new(e.kind(), format!("{e}: {}", tail.trim())),
            ));
        }
    };
    // SAFETY: bpf returned a new fd that we now own.
    let prog_fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let cg = std::fs::File::open(dir).map_err(|e| RuntimeError::io("open", dir, e))?;
    let attr = ProgAttachAttr {
        target_fd: cg.as_raw_fd() as u32,
        attach_bpf_fd: prog_fd.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: 0,
        _rest: [0; 112],
    };
    // SAFETY: as above; both fds are open for the duration of the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_ATTACH,
            &attr as *const ProgAttachAttr,
            std::mem::size_of::<ProgAttachAttr>(),
        )
    };
    if r < 0 {
        return Err(RuntimeError::io(
            "attach device program to",
            dir,
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Device rules as kubelet sends them, for tests: deny every device, then
/// allow the char device `major:minor` with `access`.
#[cfg(test)]
pub(crate) fn deny_all_but_char(
    major: i64,
    minor: i64,
    access: &str,
) -> Vec<oci_spec::runtime::LinuxDeviceCgroup> {
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;
    vec![
        LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()
            .unwrap(),
        LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(LinuxDeviceType::C)
            .major(major)
            .minor(minor)
            .access(access)
            .build()
            .unwrap(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_matches_the_kernel_layout() {
        // r2 = *(u32 *)(r1 + 4): code 0x61, dst 2, src 1, off 4.
        assert_eq!(insn(LDX_W, 2, 1, 4, 0), 0x0000_0000_0004_1261);
        // if r4 != 136 goto +3
        assert_eq!(insn(JNE_K, 4, 0, 3, 136), 0x0000_0088_0003_0455);
    }

    #[test]
    fn rules_are_checked_last_first_with_default_allow() {
        let spec = deny_all_but_char(10, 200, "rw");
        let rs = rules(&spec);
        assert_eq!(
            rs[0],
            Rule {
                typ: 0,
                access: 7,
                major: -1,
                minor: -1,
                allow: false
            }
        );
        assert_eq!(
            rs[1],
            Rule {
                typ: DEV_CHAR,
                access: 6,
                major: 10,
                minor: 200,
                allow: true
            }
        );
        assert_eq!(rs.len(), 2 + crate::cgroup::DEFAULT_DEVICE_RULES.len());
        let p = program(&rs);
        // The deny-all rule (first in the list, checked last) ends the
        // program: no unreachable default after it.
        let n = p.len();
        assert_eq!(p[n - 2], insn(MOV32_K, 0, 0, 0, 0));
        assert_eq!(p[n - 1], insn(EXIT, 0, 0, 0, 0));
        // Without it, unmatched requests are allowed.
        let p = program(&rs[1..]);
        assert_eq!(p[p.len() - 2], insn(MOV32_K, 0, 0, 0, 1));
    }
}
