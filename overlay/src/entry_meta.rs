//! The metadata a tar entry carries: owner, mode, times and xattrs, read
//! from the ustar/GNU header and its PAX records.

use rustix::fs::Timespec;

/// PAX key prefix of extended attributes (as written by GNU tar and Docker).
const PAX_XATTR_PREFIX: &[u8] = b"SCHILY.xattr.";

/// Xattrs a layer may not set: overlayfs reads `trusted.overlay.*` (and, in
/// userxattr mode, `user.overlay.*`) itself, so an image could otherwise fake
/// opaque dirs, redirects or metacopy origins. Opaque markers come only from
/// `.wh..wh..opq` entries.
const FORBIDDEN_XATTR_PREFIXES: [&[u8]; 2] = [b"trusted.overlay.", b"user.overlay."];

/// Owner, permissions, times and xattrs of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EntryMeta {
    /// Numeric owner.
    pub uid: u32,
    /// Numeric group.
    pub gid: u32,
    /// Permission bits including setuid/setgid/sticky (`0o7777` mask).
    pub mode: u32,
    /// Modification time.
    pub mtime: Timespec,
    /// Access time (PAX `atime`, else the mtime).
    pub atime: Timespec,
    /// Extended attributes (name, value), forbidden ones already dropped.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Reads the metadata of `entry`; `Err` carries a reason for the caller's
/// error message.
pub(crate) fn read_meta<R: std::io::Read>(
    entry: &mut tar::Entry<'_, R>,
) -> Result<EntryMeta, String> {
    let header = entry.header();
    // The tar crate already applied PAX uid/gid records to the header.
    let uid = header.uid().map_err(|e| format!("bad uid field: {e}"))?;
    let gid = header.gid().map_err(|e| format!("bad gid field: {e}"))?;
    let uid = u32::try_from(uid).map_err(|_| format!("uid {uid} out of range"))?;
    let gid = u32::try_from(gid).map_err(|_| format!("gid {gid} out of range"))?;
    let mode = header.mode().map_err(|e| format!("bad mode field: {e}"))? & 0o7777;
    let header_mtime = header
        .mtime()
        .map_err(|e| format!("bad mtime field: {e}"))?;
    let mut mtime = Timespec {
        tv_sec: i64::try_from(header_mtime).unwrap_or(i64::MAX),
        tv_nsec: 0,
    };
    let mut atime = None;
    let mut xattrs = Vec::new();
    if let Some(records) = entry
        .pax_extensions()
        .map_err(|e| format!("bad pax extensions: {e}"))?
    {
        for record in records {
            let record = record.map_err(|e| format!("bad pax record: {e}"))?;
            let key = record.key_bytes();
            let value = record.value_bytes();
            if key == b"mtime" {
                mtime = parse_pax_time(value).ok_or("bad pax mtime")?;
            } else if key == b"atime" {
                atime = Some(parse_pax_time(value).ok_or("bad pax atime")?);
            } else if let Some(name) = key.strip_prefix(PAX_XATTR_PREFIX) {
                if name.is_empty() || name.contains(&0) {
                    return Err("bad xattr name in pax record".to_owned());
                }
                if FORBIDDEN_XATTR_PREFIXES.iter().any(|p| name.starts_with(p)) {
                    tracing::debug!(
                        xattr = %String::from_utf8_lossy(name),
                        "dropping overlay-internal xattr from layer"
                    );
                    continue;
                }
                xattrs.push((name.to_vec(), value.to_vec()));
            }
        }
    }
    Ok(EntryMeta {
        uid,
        gid,
        mode,
        mtime,
        atime: atime.unwrap_or(mtime),
        xattrs,
    })
}

/// Parses a PAX time (`<seconds>[.<fraction>]`, possibly negative) into a
/// timespec, keeping nanoseconds.
pub(crate) fn parse_pax_time(value: &[u8]) -> Option<Timespec> {
    let text = std::str::from_utf8(value).ok()?;
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = secs.parse().ok()?;
    // Take at most 9 fractional digits, right-padded to nanoseconds.
    let mut nanos: i64 = 0;
    for i in 0..9 {
        let digit = frac.as_bytes().get(i).map_or(0, |b| i64::from(b - b'0'));
        nanos = nanos * 10 + digit;
    }
    Some(if !negative {
        Timespec {
            tv_sec: secs,
            tv_nsec: nanos,
        }
    } else if nanos == 0 {
        Timespec {
            tv_sec: -secs,
            tv_nsec: 0,
        }
    } else {
        // -1.25 s is -2 s + 0.75 s: tv_nsec must stay in [0, 1e9).
        Timespec {
            tv_sec: -secs - 1,
            tv_nsec: 1_000_000_000 - nanos,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(tv_sec: i64, tv_nsec: i64) -> Timespec {
        Timespec { tv_sec, tv_nsec }
    }

    #[test]
    fn parses_pax_times() {
        assert_eq!(parse_pax_time(b"1700000000"), Some(ts(1_700_000_000, 0)));
        assert_eq!(
            parse_pax_time(b"1700000000.5"),
            Some(ts(1_700_000_000, 500_000_000))
        );
        assert_eq!(
            parse_pax_time(b"1.1234567891"),
            Some(ts(1, 123_456_789)),
            "digits past nanoseconds are cut"
        );
        assert_eq!(parse_pax_time(b"-1.25"), Some(ts(-2, 750_000_000)));
        assert_eq!(parse_pax_time(b"-3"), Some(ts(-3, 0)));
        assert_eq!(parse_pax_time(b""), None);
        assert_eq!(parse_pax_time(b"1.x"), None);
        assert_eq!(parse_pax_time(b".5"), None);
    }

    #[test]
    fn reads_header_and_pax_metadata() {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(0);
        header.set_mode(0o104755);
        header.set_uid(1000);
        header.set_gid(2000);
        header.set_mtime(1234);
        builder
            .append_pax_extensions([
                ("mtime", &b"1700000000.25"[..]),
                ("SCHILY.xattr.user.note", b"hello"),
                ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
            ])
            .unwrap();
        builder.append_data(&mut header, "bin/su", &[][..]).unwrap();
        let bytes = builder.into_inner().unwrap();
        let mut archive = tar::Archive::new(&bytes[..]);
        let mut entry = archive.entries().unwrap().next().unwrap().unwrap();
        let meta = read_meta(&mut entry).unwrap();
        assert_eq!((meta.uid, meta.gid, meta.mode), (1000, 2000, 0o4755));
        assert_eq!(meta.mtime, ts(1_700_000_000, 250_000_000));
        assert_eq!(meta.atime, meta.mtime);
        assert_eq!(
            meta.xattrs,
            vec![(b"user.note".to_vec(), b"hello".to_vec())]
        );
    }
}
