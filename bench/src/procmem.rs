//! Process memory from `/proc/<pid>/smaps_rollup`: RSS and PSS.

use std::fs;

/// Resident and proportional set sizes of a group of processes, in KiB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mem {
    /// Sum of `Rss:` (pages shared between the processes count once per process).
    pub rss_kib: u64,
    /// Sum of `Pss:` (shared pages split between their users).
    pub pss_kib: u64,
    /// Processes that were read.
    pub procs: usize,
}

/// Parses the `Rss:` and `Pss:` lines of a smaps_rollup text.
pub fn parse_rollup(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        text.lines().find_map(|l| {
            let rest = l.strip_prefix(name)?;
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
    };
    Some((field("Rss:")?, field("Pss:")?))
}

/// The memory of `pids` together; processes that vanished are skipped.
pub fn of_pids(pids: &[i32]) -> Mem {
    let mut m = Mem::default();
    for pid in pids {
        let Ok(text) = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else {
            continue;
        };
        if let Some((rss, pss)) = parse_rollup(&text) {
            m.rss_kib += rss;
            m.pss_kib += pss;
            m.procs += 1;
        }
    }
    m
}

/// Pids whose command line contains every one of `needles` (e.g. the shim
/// binary name and our containerd's socket path).
pub fn pids_with_cmdline(needles: &[&str]) -> Vec<i32> {
    let Ok(rd) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    let c = String::from_utf8_lossy(&c).replace('\0', " ");
                    needles.iter().all(|n| c.contains(n))
                })
                .unwrap_or(false)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rollup() {
        let t = "55d0-7ffd ---p 00000000 00:00 0 [rollup]\nRss:                1234 kB\nPss:                 567 kB\nPss_Anon: 1 kB\n";
        assert_eq!(parse_rollup(t), Some((1234, 567)));
        assert_eq!(parse_rollup("Rss: 1 kB\n"), None);
    }

    #[test]
    fn reads_own_memory() {
        let m = of_pids(&[std::process::id() as i32, -5]);
        assert_eq!(m.procs, 1);
        assert!(m.rss_kib > 0 && m.pss_kib > 0 && m.pss_kib <= m.rss_kib);
    }

    #[test]
    fn finds_itself_by_cmdline() {
        let me = std::env::args().next().unwrap_or_default();
        assert!(pids_with_cmdline(&[&me]).contains(&(std::process::id() as i32)));
    }
}
