//! The CRI container log format (`<RFC3339Nano> <stdout|stderr> <P|F> <text>`):
//! parsing lines, joining partial (P) fragments into whole lines, and reading
//! a log file incrementally while the runtime appends to it.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Which output stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The container's standard output.
    Stdout,
    /// The container's standard error.
    Stderr,
}

/// One parsed line of a CRI log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine<'a> {
    /// The timestamp as written (RFC 3339 with nanoseconds).
    pub time: &'a str,
    /// The stream.
    pub stream: Stream,
    /// True for a `P` fragment whose line continues in the next record.
    pub partial: bool,
    /// The content, without the record's newline.
    pub text: &'a [u8],
}

/// Why a log line could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LogParseError {
    /// A field is missing.
    #[error("log line has no {0} field")]
    Missing(&'static str),
    /// The stream is neither stdout nor stderr.
    #[error("log line names unknown stream {0:?}")]
    Stream(String),
    /// The tag is neither P nor F.
    #[error("log line has unknown tag {0:?}")]
    Tag(String),
}

/// Splits off the next space-separated field (the last one may end the record).
fn field<'a>(rest: &mut &'a [u8], name: &'static str) -> Result<&'a [u8], LogParseError> {
    let data = *rest;
    if data.is_empty() {
        return Err(LogParseError::Missing(name));
    }
    match data.iter().position(|&b| b == b' ') {
        Some(i) => {
            *rest = &data[i + 1..];
            Ok(&data[..i])
        }
        None => {
            *rest = &data[data.len()..];
            Ok(data)
        }
    }
}

/// Parses one record (without its trailing newline).
pub fn parse_line(line: &[u8]) -> Result<LogLine<'_>, LogParseError> {
    let mut rest = line;
    let time = field(&mut rest, "time")?;
    let stream = match field(&mut rest, "stream")? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        other => return Err(LogParseError::Stream(String::from_utf8_lossy(other).into())),
    };
    let partial = match field(&mut rest, "tag")? {
        b"P" => true,
        b"F" => false,
        other => return Err(LogParseError::Tag(String::from_utf8_lossy(other).into())),
    };
    let time = std::str::from_utf8(time).map_err(|_| LogParseError::Missing("time"))?;
    Ok(LogLine {
        time,
        stream,
        partial,
        text: rest,
    })
}

/// A whole line of output, reassembled from its fragments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Timestamp of the first fragment.
    pub time: String,
    /// The stream.
    pub stream: Stream,
    /// The text, ending in `\n` unless the output ended mid-line.
    pub text: Vec<u8>,
}

/// Joins `P` fragments per stream until their `F` record arrives.
#[derive(Debug, Default)]
pub struct Reassembler {
    pending: [Option<Entry>; 2],
}

impl Reassembler {
    /// Adds a record; returns a whole line when this record completes one.
    pub fn push(&mut self, line: &LogLine<'_>) -> Option<Entry> {
        let slot = &mut self.pending[line.stream as usize];
        let entry = slot.get_or_insert_with(|| Entry {
            time: line.time.to_string(),
            stream: line.stream,
            text: Vec::new(),
        });
        entry.text.extend_from_slice(line.text);
        if line.partial {
            return None;
        }
        let mut done = slot.take()?;
        done.text.push(b'\n');
        Some(done)
    }

    /// Returns the fragments of lines that never got their `F` record (output ended mid-line).
    pub fn flush(&mut self) -> Vec<Entry> {
        self.pending.iter_mut().filter_map(Option::take).collect()
    }
}

/// Reads a log file as the runtime appends to it, yielding whole records.
#[derive(Debug)]
pub struct LogReader {
    file: File,
    carry: Vec<u8>,
    reassembler: Reassembler,
}

impl LogReader {
    /// Opens the log at its start.
    pub fn open(path: &Path) -> io::Result<LogReader> {
        let mut file = File::open(path)?;
        file.seek(SeekFrom::Start(0))?;
        Ok(LogReader {
            file,
            carry: Vec::new(),
            reassembler: Reassembler::default(),
        })
    }

    /// Reads what was appended since the last call and returns the completed lines.
    /// Records that do not parse are passed through whole (as stdout) rather than lost.
    pub fn read_new(&mut self) -> io::Result<Vec<Entry>> {
        let mut buf = Vec::new();
        self.file.read_to_end(&mut buf)?;
        self.carry.extend_from_slice(&buf);
        let mut out = Vec::new();
        let mut start = 0;
        while let Some(nl) = self.carry[start..].iter().position(|&b| b == b'\n') {
            let record = &self.carry[start..start + nl];
            match parse_line(record) {
                Ok(line) => out.extend(self.reassembler.push(&line)),
                Err(_) => {
                    let mut text = record.to_vec();
                    text.push(b'\n');
                    out.push(Entry {
                        time: String::new(),
                        stream: Stream::Stdout,
                        text,
                    });
                }
            }
            start += nl + 1;
        }
        self.carry.drain(..start);
        Ok(out)
    }

    /// True when `path` now names another file than the one being read: the
    /// runtime rotated the log (ReopenContainerLog) and new output goes there.
    pub fn rotated(&self, path: &Path) -> bool {
        match (self.file.metadata(), std::fs::metadata(path)) {
            (Ok(open), Ok(now)) => (open.dev(), open.ino()) != (now.dev(), now.ino()),
            // Renamed away and not recreated yet: keep reading the old one.
            _ => false,
        }
    }

    /// Continues with the file now at `path`, keeping partial lines pending.
    pub fn reopen(&mut self, path: &Path) -> io::Result<()> {
        self.file = File::open(path)?;
        // A record cut off without its newline cannot be completed from another file.
        self.carry.clear();
        Ok(())
    }

    /// Returns output left over when the container has exited.
    pub fn finish(&mut self) -> Vec<Entry> {
        self.reassembler.flush()
    }
}

/// Writes an entry to the stream it came from, optionally prefixed by its timestamp.
pub fn write_entry<O: Write, E: Write>(
    entry: &Entry,
    timestamps: bool,
    stdout: &mut O,
    stderr: &mut E,
) -> io::Result<()> {
    match entry.stream {
        Stream::Stdout => emit(entry, timestamps, stdout),
        Stream::Stderr => emit(entry, timestamps, stderr),
    }
}

fn emit(entry: &Entry, timestamps: bool, out: &mut dyn Write) -> io::Result<()> {
    if timestamps && !entry.time.is_empty() {
        out.write_all(entry.time.as_bytes())?;
        out.write_all(b" ")?;
    }
    out.write_all(&entry.text)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_and_partial_lines() {
        let l = parse_line(b"2026-01-02T03:04:05.123456789Z stdout F hello world").unwrap();
        assert_eq!(l.time, "2026-01-02T03:04:05.123456789Z");
        assert_eq!(l.stream, Stream::Stdout);
        assert!(!l.partial);
        assert_eq!(l.text, b"hello world");
        let l = parse_line(b"2026-01-02T03:04:05Z stderr P  two  spaces").unwrap();
        assert_eq!(l.stream, Stream::Stderr);
        assert!(l.partial);
        assert_eq!(l.text, b" two  spaces");
    }

    #[test]
    fn empty_lines_parse() {
        assert_eq!(parse_line(b"t stdout F ").unwrap().text, b"");
        assert_eq!(parse_line(b"t stdout F").unwrap().text, b"");
    }

    #[test]
    fn rejects_malformed_lines() {
        assert_eq!(parse_line(b""), Err(LogParseError::Missing("time")));
        assert_eq!(parse_line(b"t"), Err(LogParseError::Missing("stream")));
        assert_eq!(parse_line(b"t stdout"), Err(LogParseError::Missing("tag")));
        assert_eq!(
            parse_line(b"t stdin F x"),
            Err(LogParseError::Stream("stdin".into()))
        );
        assert_eq!(
            parse_line(b"t stdout X x"),
            Err(LogParseError::Tag("X".into()))
        );
    }

    #[test]
    fn reassembles_partials_per_stream() {
        let mut r = Reassembler::default();
        let recs: &[&[u8]] = &[
            b"t1 stdout P hel",
            b"t2 stderr P oo",
            b"t3 stdout P lo ",
            b"t4 stdout F world",
            b"t5 stderr F ps",
        ];
        let got: Vec<Entry> = recs
            .iter()
            .filter_map(|r2| r.push(&parse_line(r2).unwrap()))
            .collect();
        assert_eq!(
            got,
            vec![
                Entry {
                    time: "t1".into(),
                    stream: Stream::Stdout,
                    text: b"hello world\n".to_vec()
                },
                Entry {
                    time: "t2".into(),
                    stream: Stream::Stderr,
                    text: b"oops\n".to_vec()
                },
            ]
        );
        assert!(r.flush().is_empty());
        r.push(&parse_line(b"t6 stdout P no newline").unwrap());
        assert_eq!(r.flush()[0].text, b"no newline");
    }

    #[test]
    fn reader_follows_appends_and_splits_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut f = File::create(&path).unwrap();
        f.write_all(b"t1 stdout F one\nt2 stdout P tw").unwrap();
        let mut r = LogReader::open(&path).unwrap();
        let first = r.read_new().unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].text, b"one\n");
        // The rest of a record written in two pieces.
        f.write_all(b"\nt3 stdout F o\nt4 stderr F e\n").unwrap();
        let next = r.read_new().unwrap();
        let texts: Vec<&[u8]> = next.iter().map(|e| e.text.as_slice()).collect();
        assert_eq!(texts, vec![&b"two\n"[..], &b"e\n"[..]]);
        assert!(r.read_new().unwrap().is_empty());
    }

    #[test]
    fn reader_moves_to_a_rotated_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(&path, b"t1 stdout F old\n").unwrap();
        let mut r = LogReader::open(&path).unwrap();
        assert_eq!(r.read_new().unwrap()[0].text, b"old\n");
        assert!(!r.rotated(&path));
        std::fs::rename(&path, dir.path().join("0.log.1")).unwrap();
        assert!(!r.rotated(&path), "nothing new at the path yet");
        std::fs::write(&path, b"t2 stdout F new\n").unwrap();
        assert!(r.rotated(&path));
        r.reopen(&path).unwrap();
        assert_eq!(r.read_new().unwrap()[0].text, b"new\n");
    }

    #[test]
    fn writes_to_the_right_stream_with_timestamps() {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let e = Entry {
            time: "T".into(),
            stream: Stream::Stderr,
            text: b"x\n".to_vec(),
        };
        write_entry(&e, true, &mut out, &mut err).unwrap();
        write_entry(&e, false, &mut out, &mut err).unwrap();
        assert!(out.is_empty());
        assert_eq!(err, b"T x\nx\n");
    }
}
