//! The CRI container log format, written by the monitor.
//!
//! Each line is `<RFC3339Nano timestamp> <stream> <tag> <content>\n` where the
//! tag is `F` for a full line (the newline ended it) and `P` for a partial
//! one (continued by the next entry). Lines longer than [`MAX_LINE`] bytes are
//! split into `P` parts and a last `F`. Output that ends without a newline is
//! written as `P` when the stream closes: the reader (kubelet) then adds no
//! newline that the program never wrote.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Longest content of one log entry (containerd's default
/// `max_container_log_line_size`).
pub const MAX_LINE: usize = 16 * 1024;

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// stdout (and a pty's output).
    Stdout,
    /// stderr.
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Formats `t` as RFC 3339 in UTC with nine fraction digits
/// (`2006-01-02T15:04:05.000000000Z`, containerd's fixed-width form).
pub fn rfc3339_nano(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, dd) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn entry(out: &mut Vec<u8>, ts: &str, stream: Stream, tag: u8, content: &[u8]) {
    out.extend_from_slice(ts.as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.name().as_bytes());
    out.push(b' ');
    out.push(tag);
    out.push(b' ');
    out.extend_from_slice(content);
    out.push(b'\n');
}

/// Splits one stream's output into log entries, keeping an unterminated
/// remainder until more data, the line limit, or the end of the stream.
#[derive(Debug)]
pub struct LineFramer {
    stream: Stream,
    pending: Vec<u8>,
}

impl LineFramer {
    /// A framer for `stream`.
    pub fn new(stream: Stream) -> Self {
        LineFramer {
            stream,
            pending: Vec::new(),
        }
    }

    /// Appends to `out` the entries completed by `data`.
    pub fn push(&mut self, data: &[u8], now: SystemTime, out: &mut Vec<u8>) {
        let ts = rfc3339_nano(now);
        self.pending.extend_from_slice(data);
        let mut start = 0;
        loop {
            let rest = &self.pending[start..];
            match rest.iter().position(|&b| b == b'\n') {
                Some(nl) if nl <= MAX_LINE => {
                    entry(out, &ts, self.stream, b'F', &rest[..nl]);
                    start += nl + 1;
                }
                _ if rest.len() > MAX_LINE
                    || (rest.len() == MAX_LINE && !rest.contains(&b'\n')) =>
                {
                    entry(out, &ts, self.stream, b'P', &rest[..MAX_LINE]);
                    start += MAX_LINE;
                }
                _ => break,
            }
        }
        self.pending.drain(..start);
    }

    /// At the end of the stream: writes an unterminated remainder as `P`.
    pub fn finish(&mut self, now: SystemTime, out: &mut Vec<u8>) {
        if !self.pending.is_empty() {
            entry(out, &rfc3339_nano(now), self.stream, b'P', &self.pending);
            self.pending.clear();
        }
    }
}

/// The open CRI log file; reopened on request so kubelet can rotate it.
#[derive(Debug)]
pub struct LogFile {
    path: Option<PathBuf>,
    file: Option<File>,
}

impl LogFile {
    /// Opens (appending, creating with 0640) `path`; `None` discards.
    pub fn open(path: Option<&Path>) -> std::io::Result<Self> {
        let mut l = LogFile {
            path: path.map(Path::to_path_buf),
            file: None,
        };
        l.reopen()?;
        Ok(l)
    }

    /// Closes and opens the file again by path (after a rename by kubelet).
    pub fn reopen(&mut self) -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        self.file = None;
        if let Some(p) = &self.path {
            if let Some(dir) = p.parent() {
                std::fs::create_dir_all(dir)?;
            }
            self.file = Some(
                std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .mode(0o640)
                    .custom_flags(libc::O_CLOEXEC)
                    .open(p)?,
            );
        }
        Ok(())
    }

    /// Writes formatted entries; a full disk loses log lines, never the
    /// container, so errors are returned for the caller to count, not abort.
    pub fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        match &mut self.file {
            Some(f) if !data.is_empty() => f.write_all(data),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn t0() -> SystemTime {
        UNIX_EPOCH + Duration::new(1_700_000_000, 5)
    }

    fn lines(out: &[u8]) -> Vec<String> {
        String::from_utf8(out.to_vec())
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn timestamp_format() {
        assert_eq!(rfc3339_nano(t0()), "2023-11-14T22:13:20.000000005Z");
        assert_eq!(rfc3339_nano(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        // a leap day
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339_nano(leap), "2000-02-29T00:00:00.000000000Z");
    }

    #[test]
    fn full_lines_and_remainder() {
        let mut f = LineFramer::new(Stream::Stdout);
        let mut out = Vec::new();
        f.push(b"one\ntw", t0(), &mut out);
        f.push(b"o\n\nthree", t0(), &mut out);
        let ts = "2023-11-14T22:13:20.000000005Z";
        assert_eq!(
            lines(&out),
            vec![
                format!("{ts} stdout F one"),
                format!("{ts} stdout F two"),
                format!("{ts} stdout F "),
            ]
        );
        out.clear();
        f.finish(t0(), &mut out);
        assert_eq!(lines(&out), vec![format!("{ts} stdout P three")]);
    }

    #[test]
    fn long_lines_split_into_partials() {
        let mut f = LineFramer::new(Stream::Stderr);
        let mut out = Vec::new();
        let mut data = vec![b'a'; MAX_LINE * 2 + 10];
        data.push(b'\n');
        f.push(&data, t0(), &mut out);
        let l = lines(&out);
        assert_eq!(l.len(), 3);
        assert!(l[0].contains(" stderr P ") && l[0].ends_with(&"a".repeat(MAX_LINE)));
        assert!(l[1].contains(" stderr P "));
        assert!(l[2].ends_with(" stderr F aaaaaaaaaa"));
    }

    #[test]
    fn exactly_max_line_is_full() {
        let mut f = LineFramer::new(Stream::Stdout);
        let mut out = Vec::new();
        let mut data = vec![b'x'; MAX_LINE];
        data.push(b'\n');
        f.push(&data[..MAX_LINE], t0(), &mut out);
        assert!(out.is_empty() || lines(&out)[0].contains(" P "));
        f.push(&data[MAX_LINE..], t0(), &mut out);
        let l = lines(&out);
        // either one F line, or a P part and an empty F terminator
        assert!(l.last().unwrap().contains(" stdout F"));
        let content: usize = l
            .iter()
            .map(|x| x.splitn(4, ' ').nth(3).unwrap().len())
            .sum();
        assert_eq!(content, MAX_LINE);
    }
}
