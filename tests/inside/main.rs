//! cria-inside: runs as a container's process and prints, as one JSON object
//! on stdout, what it sees from inside: identity, capabilities, no_new_privs,
//! seccomp, denied syscalls (also through the i386 and x32 ABIs), masked
//! paths, read-only mounts, sysctls, namespaces, open file descriptors and
//! the working directory.
//!
//! Built by `tests/build.rs` as a static binary (std and a few glibc
//! functions only, so it needs nothing from the image) and copied into the
//! `inside` fixture image. Integers that report a probe are the result when
//! non-negative and `-errno` when the call failed.

use std::ffi::CString;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read};
use std::os::raw::{c_char, c_int, c_long, c_uint, c_ulong, c_void};

extern "C" {
    fn getuid() -> c_uint;
    fn geteuid() -> c_uint;
    fn getgid() -> c_uint;
    fn getegid() -> c_uint;
    fn getgroups(size: c_int, list: *mut c_uint) -> c_int;
    fn unshare(flags: c_int) -> c_int;
    fn mount(
        src: *const c_char,
        target: *const c_char,
        fstype: *const c_char,
        flags: c_ulong,
        data: *const c_void,
    ) -> c_int;
    fn umount(target: *const c_char) -> c_int;
    fn mknod(path: *const c_char, mode: c_uint, dev: u64) -> c_int;
    fn personality(persona: c_ulong) -> c_int;
    fn syscall(n: c_long, ...) -> c_long;
}

const CLONE_NEWUSER: c_int = 0x1000_0000;
const SYS_KEYCTL: c_long = 250; // x86_64
const KEYCTL_GET_KEYRING_ID: c_long = 0;
const KEY_SPEC_SESSION_KEYRING: c_long = -3;
const S_IFCHR: c_uint = 0o020000;
const PER_BSD: c_ulong = 0x0006;

/// Hand-written JSON object builder (the program has no dependencies).
struct Obj(String);

impl Obj {
    fn new() -> Obj {
        Obj(String::from("{"))
    }
    fn key(&mut self, k: &str) {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        push_str(&mut self.0, k);
        self.0.push(':');
    }
    fn int(&mut self, k: &str, v: i64) {
        self.key(k);
        let _ = write!(self.0, "{v}");
    }
    fn str(&mut self, k: &str, v: &str) {
        self.key(k);
        push_str(&mut self.0, v);
    }
    fn raw(&mut self, k: &str, json: &str) {
        self.key(k);
        self.0.push_str(json);
    }
    fn ints(&mut self, k: &str, vs: &[i64]) {
        let items: Vec<String> = vs.iter().map(i64::to_string).collect();
        self.raw(k, &format!("[{}]", items.join(",")));
    }
    fn finish(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

/// Appends `s` as a JSON string literal.
fn push_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `-errno` of the last failed call.
fn neg_errno() -> i64 {
    -i64::from(io::Error::last_os_error().raw_os_error().unwrap_or(0))
}

fn neg_io(e: &io::Error) -> i64 {
    -i64::from(e.raw_os_error().unwrap_or(0))
}

/// 0 when a libc call returned >= 0, else `-errno`.
fn rc(r: c_long) -> i64 {
    if r < 0 {
        neg_errno()
    } else {
        0
    }
}

fn cstr(s: &str) -> CString {
    // The probe paths are literals without NUL bytes.
    CString::new(s).expect("literal path without NUL")
}

/// The fields of /proc/self/status this program reports.
fn status_fields(o: &mut Obj) {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    for line in status.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        match k {
            "CapInh" | "CapPrm" | "CapEff" | "CapBnd" | "CapAmb" => o.str(k, v),
            "NoNewPrivs" | "Seccomp" => o.int(k, v.parse().unwrap_or(-1)),
            _ => {}
        }
    }
}

fn groups() -> Vec<i64> {
    let mut buf = [0 as c_uint; 256];
    // SAFETY: the buffer holds 256 gids and getgroups writes at most that many.
    let n = unsafe { getgroups(buf.len() as c_int, buf.as_mut_ptr()) };
    buf[..n.max(0) as usize]
        .iter()
        .map(|g| i64::from(*g))
        .collect()
}

/// Bytes of the first read of `path` (up to 4 KiB), or `-errno`.
fn first_read(path: &str) -> i64 {
    let mut buf = vec![0u8; 4096];
    match fs::File::open(path).and_then(|mut f| f.read(&mut buf)) {
        Ok(n) => n as i64,
        Err(e) => neg_io(&e),
    }
}

/// Entries of directory `path`, or `-errno`.
fn dir_entries(path: &str) -> i64 {
    match fs::read_dir(path) {
        Ok(it) => it.count() as i64,
        Err(e) => neg_io(&e),
    }
}

/// 0 when `path` can be opened for writing (nothing is written), else `-errno`.
fn open_for_write(path: &str) -> i64 {
    match fs::OpenOptions::new().write(true).open(path) {
        Ok(_) => 0,
        Err(e) => neg_io(&e),
    }
}

/// 0 when a new file can be created in `dir` (it is removed again), else `-errno`.
fn can_create(dir: &str) -> i64 {
    let p = format!("{dir}/.cria-inside-{}", std::process::id());
    match fs::OpenOptions::new().write(true).create_new(true).open(&p) {
        Ok(_) => {
            let _ = fs::remove_file(&p);
            0
        }
        Err(e) => neg_io(&e),
    }
}

fn sysctl(path: &str) -> String {
    fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|e| format!("error: {e}"))
}

fn namespaces() -> String {
    let mut o = Obj::new();
    let mut names: Vec<String> = fs::read_dir("/proc/self/ns")
        .map(|it| {
            it.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    for n in names {
        if let Ok(t) = fs::read_link(format!("/proc/self/ns/{n}")) {
            o.str(&n, &t.to_string_lossy());
        }
    }
    o.finish()
}

/// Open fds and their targets, leaving out the one reading /proc/self/fd.
fn fds() -> String {
    let own = format!("/proc/{}/fd", std::process::id());
    let mut o = Obj::new();
    let mut fds: Vec<(u32, String)> = fs::read_dir("/proc/self/fd")
        .map(|it| {
            it.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let n: u32 = e.file_name().to_str()?.parse().ok()?;
                    let t = fs::read_link(e.path()).ok()?;
                    Some((n, t.to_string_lossy().into_owned()))
                })
                .filter(|(_, t)| *t != own)
                .collect()
        })
        .unwrap_or_default();
    fds.sort();
    for (n, t) in fds {
        o.str(&n.to_string(), &t);
    }
    o.finish()
}

/// The syscalls a confined container must be refused. Run last and in this
/// order: each may change the process when allowed (a new mount, a user
/// namespace that remaps the ids the other probes read).
fn denied_syscalls(o: &mut Obj) {
    let node = cstr("/tmp/.cria-inside-null");
    // SAFETY: a valid NUL-terminated path; makedev(1, 3) is /dev/null's number.
    let r = unsafe { mknod(node.as_ptr(), S_IFCHR | 0o600, (1 << 8) | 3) };
    o.int("mknod", rc(r as c_long));
    let _ = fs::remove_file("/tmp/.cria-inside-null");

    let (src, target, fstype) = (cstr("none"), cstr("/tmp"), cstr("tmpfs"));
    // SAFETY: valid NUL-terminated strings and no data.
    let r = unsafe {
        mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    o.int("mount", rc(r as c_long));
    if r == 0 {
        // SAFETY: the path we just mounted on.
        unsafe { umount(target.as_ptr()) };
    }

    // SAFETY: keyctl(KEYCTL_GET_KEYRING_ID, session, create=0) reads an id.
    let r = unsafe { syscall(SYS_KEYCTL, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0) };
    o.int("keyctl", rc(r));

    // SAFETY: 0xffffffff only queries the persona.
    let r = unsafe { personality(0xffff_ffff) };
    o.int("personality_query", rc(r as c_long));
    // SAFETY: sets PER_BSD, restored to PER_LINUX (0) when allowed.
    let r = unsafe { personality(PER_BSD) };
    o.int("personality_bsd", rc(r as c_long));
    if r >= 0 {
        // SAFETY: back to PER_LINUX.
        unsafe { personality(0) };
    }

    // fchmodat2 (452 on every ABI, Linux 6.6) is newer than every call in
    // RuntimeDefault's table: the filter answers ENOSYS, on which libc falls
    // back to fchmodat; the kernel answers ENOENT for this path.
    let path = cstr("/.cria-inside-missing");
    // SAFETY: a valid NUL-terminated path; nothing exists there to change.
    let r = unsafe { syscall(452, -100 as c_long, path.as_ptr(), 0o644 as c_long, 0 as c_long) };
    o.int("fchmodat2", rc(r));

    other_abis(o);

    // SAFETY: plain flag argument; when allowed we only exit afterwards.
    let r = unsafe { unshare(CLONE_NEWUSER) };
    o.int("unshare_user", rc(r as c_long));
}

/// An i386 syscall through `int 0x80`: seccomp sees AUDIT_ARCH_I386 even
/// from this 64-bit process. The result, or `-errno`.
#[cfg(target_arch = "x86_64")]
fn int80(nr: u32, a: u32, b: u32) -> i64 {
    let ret: u32;
    // SAFETY: the i386 entry point with register arguments only; rbx is
    // reserved by LLVM, so the first argument travels in rsi and is swapped
    // in and out around the call (all 64 bits: LLVM keeps a pointer in rbx).
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
    // A 32-bit return value: -4095..-1 are errnos.
    i64::from(ret as i32)
}

/// An x32 syscall (number with bit 30 set): the result, or `-errno`.
#[cfg(target_arch = "x86_64")]
fn x32(nr: c_long, a: c_long, b: c_long) -> i64 {
    // SAFETY: no pointer arguments.
    let r = unsafe { syscall(0x4000_0000 | nr, a, b, 0 as c_long) };
    if r < 0 {
        neg_errno()
    } else {
        i64::from(r)
    }
}

/// The same policy on the other ABIs of the machine: i386 (`int 0x80`) and
/// x32 calls; moby's profile names them for x86_64 through its archMap.
#[cfg(target_arch = "x86_64")]
fn other_abis(o: &mut Obj) {
    // i386 numbers: getpid 20, keyctl 288, personality 136.
    o.int("i386_getpid", int80(20, 0, 0));
    // keyctl reported as "keyctl" is: 0 when it worked.
    let keyring = int80(288, KEYCTL_GET_KEYRING_ID as u32, KEY_SPEC_SESSION_KEYRING as u32);
    o.int("i386_keyctl", keyring.min(0));
    o.int("i386_personality_query", int80(136, 0xffff_ffff, 0));
    let r = int80(136, PER_BSD as u32, 0);
    o.int("i386_personality_bsd", r);
    if r >= 0 {
        int80(136, 0, 0);
    }
    // x32 numbers: getpid 39, keyctl 250 (the kernel may lack the x32 ABI:
    // then what passes the filter gets ENOSYS).
    o.int("x32_getpid", x32(39, 0, 0));
    let keyring = x32(SYS_KEYCTL, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING);
    o.int("x32_keyctl", keyring.min(0));
}

#[cfg(not(target_arch = "x86_64"))]
fn other_abis(_: &mut Obj) {}

fn main() {
    let mut o = Obj::new();
    // SAFETY: these identity calls cannot fail.
    let ids = unsafe { [getuid(), getgid(), geteuid(), getegid()] };
    for (k, v) in ["uid", "gid", "euid", "egid"].iter().zip(ids) {
        o.int(k, i64::from(v));
    }
    o.ints("groups", &groups());
    o.int("pid", i64::from(std::process::id()));
    status_fields(&mut o);
    let mut masked = Obj::new();
    for p in ["/proc/kcore", "/proc/keys", "/proc/timer_list"] {
        masked.int(p, first_read(p));
    }
    masked.int("/sys/firmware", dir_entries("/sys/firmware"));
    o.raw("masked", &masked.finish());
    o.int("root_create", can_create(""));
    o.int("proc_sys_write", open_for_write("/proc/sys/kernel/domainname"));
    o.int("sysrq_write", open_for_write("/proc/sysrq-trigger"));
    o.str(
        "ip_unprivileged_port_start",
        &sysctl("/proc/sys/net/ipv4/ip_unprivileged_port_start"),
    );
    o.str("shmmni", &sysctl("/proc/sys/kernel/shmmni"));
    o.raw("ns", &namespaces());
    o.raw("fds", &fds());
    o.str(
        "cwd",
        &fs::read_link("/proc/self/cwd")
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|e| format!("error: {e}")),
    );
    o.int("dev_entries", dir_entries("/dev"));
    denied_syscalls(&mut o);
    println!("{}", o.finish());
}
