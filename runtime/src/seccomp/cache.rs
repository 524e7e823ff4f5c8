//! Compiled filters, kept so a profile is compiled once.
//!
//! libseccomp takes tens of milliseconds for a three-ABI profile, so the
//! runtime library keeps each program in memory (criad lives long) and in a
//! root-only directory under the state root (`<state>/seccomp/`, tmpfs: one
//! boot), which serves short-lived callers (every `cria-oci run`) and a
//! restarted criad. Keys are the raw JSON of the bundle's resolved
//! `linux.seccomp`: a function of the profile, the container's
//! capabilities, the architecture and the kernel, so equal keys compile
//! equal programs. A hit hashes those bytes and never parses them: the
//! profile (hundreds of syscall names) is deserialised only to compile it.

use super::compile::Filters;
use super::SeccompError;
use oci_spec::runtime::LinuxSeccomp;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// A program's key: see [`key_of`].
type Key = [u8; 32];

type Memory = HashMap<Key, Arc<Vec<u8>>>;

/// Programs of this process by key.
static MEMORY: Mutex<Option<Memory>> = Mutex::new(None);

/// Distinct profiles kept in memory and on disk; past this a cache starts
/// over (a node runs few distinct profiles, a Localhost-heavy one must not
/// grow them forever).
const MAX_ENTRIES: usize = 64;

/// Bumped whenever compiling changes what a profile compiles to, so files
/// of an older cria are not reused.
const DISK_FORMAT: &str = "cria-seccomp-4";

fn cache_err(what: &str, e: impl std::fmt::Display) -> SeccompError {
    SeccompError::Compile(format!("cache {what}: {e}"))
}

/// The key of a `linux.seccomp` value's raw JSON: a SHA-256 over the
/// format, the libseccomp version (a newer one may know more syscall names)
/// and those bytes. Another spelling of the same profile (pretty or compact
/// JSON) is another key: one more compile, never a wrong program.
fn key_of(raw: &str) -> Key {
    let v = libseccomp::ScmpVersion::current()
        .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
        .unwrap_or_default();
    let mut h = Sha256::new();
    for part in [DISK_FORMAT, &v, raw] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    h.finalize().into()
}

/// The file name of `key`'s program in the disk cache.
fn disk_name(key: &Key) -> String {
    format!("{}.bpf", hex::encode(key))
}

/// Compiles the `linux.seccomp` JSON `raw` to the state file's bytes.
fn compile(raw: &str) -> Result<Vec<u8>, SeccompError> {
    let sc: LinuxSeccomp = serde_json::from_str(raw).map_err(|e| SeccompError::Malformed {
        what: "linux.seccomp".into(),
        problem: e.to_string(),
    })?;
    let t0 = std::time::Instant::now();
    let bytes = Filters::compile(&sc)?.to_bytes();
    tracing::debug!(
        micros = t0.elapsed().as_micros() as u64,
        bytes = bytes.len(),
        "seccomp: profile compiled"
    );
    Ok(bytes)
}

/// The program for `raw` (whose key is `key`) from `dir`, else compiled
/// and stored there. Disk trouble never fails a container: the compiled
/// program is returned.
fn from_disk_or_compile(raw: &str, key: &Key, dir: &Path) -> Result<Vec<u8>, SeccompError> {
    let path = dir.join(disk_name(key));
    if let Ok(b) = std::fs::read(&path) {
        // A damaged or foreign file is compiled over.
        if Filters::from_bytes(&b).is_ok() {
            return Ok(b);
        }
    }
    let bytes = compile(raw)?;
    if let Err(e) = store(dir, &path, &bytes) {
        tracing::debug!(dir = %dir.display(), error = %e, "seccomp: program not cached on disk");
    }
    Ok(bytes)
}

/// Writes `bytes` to `path` in `dir` (0700) atomically, emptying `dir`
/// first when it is full.
fn store(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), SeccompError> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| cache_err("mkdir", e))?;
    let entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| cache_err("list", e))?
        .flatten()
        .map(|e| e.path())
        .collect();
    if entries.len() >= MAX_ENTRIES {
        for p in entries {
            let _ = std::fs::remove_file(p);
        }
    }
    // Unique per process and thread: racing writers each rename a whole file.
    let tmp = dir.join(format!(
        ".tmp-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| cache_err("create", e))?;
    f.write_all(bytes).map_err(|e| cache_err("write", e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        cache_err("rename", e)
    })
}

/// The seccomp state file's bytes (`compile::FILE`) for the `linux.seccomp`
/// JSON `raw`: from memory, else from `dir` when given, else compiled (and
/// kept in both).
pub(crate) fn compiled(raw: &str, dir: Option<&Path>) -> Result<Arc<Vec<u8>>, SeccompError> {
    let key = key_of(raw);
    let hit = |m: &Option<Memory>| m.as_ref().and_then(|m| m.get(&key)).cloned();
    if let Some(b) = hit(&MEMORY.lock().unwrap_or_else(|e| e.into_inner())) {
        return Ok(b);
    }
    // Outside the lock: two racing creates may both compile, which costs
    // time, not correctness.
    let bytes = Arc::new(match dir {
        Some(d) => from_disk_or_compile(raw, &key, d)?,
        None => compile(raw)?,
    });
    let mut m = MEMORY.lock().unwrap_or_else(|e| e.into_inner());
    let map = m.get_or_insert_with(HashMap::new);
    if map.len() >= MAX_ENTRIES {
        map.clear();
    }
    map.insert(key, bytes.clone());
    Ok(bytes)
}

/// The part of `config.json` this module reads: `linux.seccomp` as raw
/// JSON, borrowed from the file's bytes (the rest is skipped unparsed).
#[derive(serde::Deserialize)]
struct SpecSeccomp<'a> {
    #[serde(borrow)]
    linux: Option<LinuxSeccompOnly<'a>>,
}

#[derive(serde::Deserialize)]
struct LinuxSeccompOnly<'a> {
    #[serde(borrow)]
    seccomp: Option<&'a RawValue>,
}

/// The raw JSON of the spec `config`'s `linux.seccomp`; `None` when it has
/// none (absent or null), or when `config` is not JSON of a spec's shape
/// (whoever parses the whole spec reports that with its own error).
fn spec_seccomp(config: &[u8]) -> Option<&RawValue> {
    let spec = serde_json::from_slice::<SpecSeccomp<'_>>(config).ok()?;
    spec.linux.and_then(|l| l.seccomp)
}

/// Replaces the spec `config`'s `linux.seccomp` by `null` (space-padded, in
/// place) and says whether it had one. For the monitor: it gets the compiled
/// program on stdin, and deserialising RuntimeDefault's hundreds of names
/// only to drop them cost more than this extra scan.
pub(crate) fn take_spec_seccomp(config: &mut [u8]) -> bool {
    let span = {
        let Some(raw) = spec_seccomp(config) else {
            return false;
        };
        // A RawValue borrowed from a slice is a part of that slice.
        let at = (raw.get().as_ptr() as usize).checked_sub(config.as_ptr() as usize);
        at.map(|at| at..at + raw.get().len())
    };
    // Out of range cannot happen (see above); then, and for a value shorter
    // than `null` (never a valid profile), the value stays for the spec's
    // parser: slower or its error, never a lost filter.
    if let Some(value) = span.and_then(|r| config.get_mut(r)) {
        if let Some((null, rest)) = value.split_first_chunk_mut::<4>() {
            *null = *b"null";
            rest.fill(b' ');
        }
    }
    true
}

/// The compiled filter (the state file's bytes) for the bundle's
/// `linux.seccomp`, cached in memory and in `dir`; `None` when it has none,
/// or when `config.json` cannot be read or parsed (the monitor reports that
/// with its own error).
pub(crate) fn bundle_filter(
    bundle: &Path,
    dir: &Path,
) -> Result<Option<Arc<Vec<u8>>>, SeccompError> {
    let Ok(json) = std::fs::read(bundle.join("config.json")) else {
        return Ok(None);
    };
    spec_seccomp(&json)
        .map(|raw| compiled(raw.get(), Some(dir)))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seccomp::runtime_default;

    /// RuntimeDefault for `caps` as the JSON a spec holds.
    fn default_json(caps: &[&str]) -> String {
        let caps: Vec<String> = caps.iter().map(|c| c.to_string()).collect();
        serde_json::to_string(&runtime_default(&caps).unwrap()).unwrap()
    }

    #[test]
    fn a_profile_compiles_once_per_process() {
        // Only this test uses the memory cache, so the first call misses.
        let raw = default_json(&["CAP_SYS_PACCT"]);
        let t0 = std::time::Instant::now();
        let first = compiled(&raw, None).unwrap();
        let cold = t0.elapsed();
        let t1 = std::time::Instant::now();
        let second = compiled(&raw, None).unwrap();
        let warm = t1.elapsed();
        assert!(Arc::ptr_eq(&first, &second), "the second is the cached one");
        // A capability the profile does not look at resolves to the same
        // profile, hence the same program.
        let same = compiled(&default_json(&["CAP_SYS_PACCT", "CAP_LEASE"]), None).unwrap();
        assert!(Arc::ptr_eq(&first, &same));
        let other = compiled(&default_json(&[]), None).unwrap();
        assert_ne!(first, other, "acct is allowed only with CAP_SYS_PACCT");
        // The same profile spelt otherwise is compiled again, to the same
        // program.
        let pretty = serde_json::to_string_pretty(&runtime_default(&[]).unwrap()).unwrap();
        let again = compiled(&pretty, None).unwrap();
        assert!(!Arc::ptr_eq(&other, &again) && other == again);
        // JSON that is no linux.seccomp is refused, naming the problem.
        let e = compiled(r#"{"defaultAction": 3}"#, None).unwrap_err();
        assert!(e.to_string().contains("linux.seccomp: malformed"), "{e}");
        eprintln!(
            "RuntimeDefault: {} bytes, compiled in {cold:?}, cached in {warm:?}",
            first.len()
        );
    }

    #[test]
    fn the_disk_cache_serves_other_processes_and_heals() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("seccomp");
        let raw = default_json(&["CAP_SYS_TIME"]);
        let key = key_of(&raw);
        let t0 = std::time::Instant::now();
        let fresh = from_disk_or_compile(&raw, &key, &dir).unwrap();
        let cold = t0.elapsed();
        let file = dir.join(disk_name(&key));
        assert_eq!(std::fs::read(&file).unwrap(), fresh);
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(&dir), mode(&file)), (0o700, 0o600));
        // What another process finds there is used as it is.
        let t1 = std::time::Instant::now();
        assert_eq!(from_disk_or_compile(&raw, &key, &dir).unwrap(), fresh);
        eprintln!("from disk in {:?} (compiled in {cold:?})", t1.elapsed());
        let mut other = fresh.clone();
        // A valid program of another shape: one instruction less.
        other.truncate(other.len() - 8);
        std::fs::write(&file, &other).unwrap();
        assert_eq!(from_disk_or_compile(&raw, &key, &dir).unwrap(), other);
        // A damaged file is compiled over.
        std::fs::write(&file, b"junk").unwrap();
        assert_eq!(from_disk_or_compile(&raw, &key, &dir).unwrap(), fresh);
        assert_eq!(std::fs::read(&file).unwrap(), fresh);
        // Other capabilities, another file.
        let raw2 = default_json(&[]);
        let key2 = key_of(&raw2);
        assert_ne!(disk_name(&key), disk_name(&key2));
        // A full directory starts over.
        for i in 0..MAX_ENTRIES {
            std::fs::write(dir.join(format!("{i}.bpf")), b"x").unwrap();
        }
        from_disk_or_compile(&raw2, &key2, &dir).unwrap();
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "only the new program");
        // Nothing is stored for JSON that is no linux.seccomp.
        let bad = r#"{"syscalls": 1}"#;
        assert!(from_disk_or_compile(bad, &key_of(bad), &dir).is_err());
        assert!(!dir.join(disk_name(&key_of(bad))).exists());
    }

    #[test]
    fn keys_follow_the_bytes() {
        let raw = default_json(&[]);
        assert_eq!(key_of(&raw), key_of(&raw.clone()));
        assert_ne!(key_of(&raw), key_of(&format!(" {raw}")));
        assert_ne!(key_of(&raw), key_of(&default_json(&["CAP_SYS_ADMIN"])));
    }

    #[test]
    fn bundles_without_seccomp_or_config_have_no_filter() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("cache");
        assert!(bundle_filter(tmp.path(), &cache).unwrap().is_none());
        let config = tmp.path().join("config.json");
        for json in [
            r#"{"linux":{}}"#,
            r#"{"linux":{"seccomp":null}}"#,
            r#"{"linux":{"seccomp":"#,
        ] {
            std::fs::write(&config, json).unwrap();
            assert!(
                bundle_filter(tmp.path(), &cache).unwrap().is_none(),
                "{json}"
            );
        }
        std::fs::write(&config, r#"{"linux":{"seccomp":{"defaultAction":3}}}"#).unwrap();
        assert!(bundle_filter(tmp.path(), &cache).is_err());
        let sc = runtime_default(&[]).unwrap();
        let spec = serde_json::json!({"ociVersion": "1.0.2", "linux": {"seccomp": sc}});
        // Pretty, as criad used to write it: the value's bytes keep their
        // layout.
        std::fs::write(&config, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
        let b = bundle_filter(tmp.path(), &cache)
            .unwrap()
            .expect("a filter");
        assert!(Filters::from_bytes(&b).is_ok());
        assert_eq!(**b, Filters::compile(&sc).unwrap().to_bytes());
        let files: Vec<_> = std::fs::read_dir(&cache).unwrap().flatten().collect();
        assert_eq!(files.len(), 1, "one program on disk");
    }

    #[test]
    fn taking_the_seccomp_section_leaves_the_rest_of_the_spec() {
        use oci_spec::runtime::Spec;
        let mut spec = Spec::default();
        let mut annotations = HashMap::new();
        // A string that looks like the section is not the section.
        annotations.insert("note".to_string(), r#""seccomp": {"x": 1}"#.to_string());
        spec.set_annotations(Some(annotations));
        let mut linux = spec.linux().clone().unwrap_or_default();
        linux.set_seccomp(Some(runtime_default(&[]).unwrap()));
        spec.set_linux(Some(linux));
        for json in [
            serde_json::to_vec(&spec).unwrap(),
            serde_json::to_vec_pretty(&spec).unwrap(),
        ] {
            let mut taken = json.clone();
            assert!(take_spec_seccomp(&mut taken));
            assert_eq!(taken.len(), json.len(), "same length, offsets kept");
            let back: Spec = serde_json::from_slice(&taken).unwrap();
            let mut want = spec.clone();
            let mut linux = want.linux().clone().unwrap();
            linux.set_seccomp(None);
            want.set_linux(Some(linux));
            assert_eq!(back, want);
            // Taken once, there is none left.
            assert!(!take_spec_seccomp(&mut taken));
        }
        // No section, a null one, or no spec at all: nothing taken.
        for json in [
            r#"{"linux":{}}"#,
            r#"{"linux":{"seccomp":null}}"#,
            "{",
            "[]",
        ] {
            let mut b = json.as_bytes().to_vec();
            assert!(!take_spec_seccomp(&mut b), "{json}");
            assert_eq!(b, json.as_bytes());
        }
        // A value too short to hold `null` is left to the spec's parser,
        // but counts: the filter it asks for is never silently dropped.
        let mut b = br#"{"linux":{"seccomp":{}}}"#.to_vec();
        assert!(take_spec_seccomp(&mut b));
        assert_eq!(b, br#"{"linux":{"seccomp":{}}}"#);
    }
}
