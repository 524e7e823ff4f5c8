//! The measurements of issue 8 (one module each) and what they share.

pub mod cri_pods;
pub mod pull;
pub mod runtime;

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::images::Images;
use crate::report::Report;

/// Lines of a strace summary kept in the results.
const PROFILE_LINES: usize = 25;

/// What every measurement needs.
pub struct Ctx {
    /// One run per figure (CI smoke) instead of the full counts.
    pub quick: bool,
    /// Registry and images.
    pub images: Images,
    /// Where the results go.
    pub report: Report,
    /// Directory of the release binaries (criad, cria-monitor, cria-oci).
    pub bin_dir: PathBuf,
}

impl Ctx {
    /// `full` runs, or one in quick mode.
    pub fn runs(&self, full: usize) -> usize {
        if self.quick {
            1
        } else {
            full
        }
    }

    /// `full`, or `quick` in quick mode (sizes of the scale tests).
    pub fn size(&self, full: usize, quick: usize) -> usize {
        if self.quick {
            quick
        } else {
            full
        }
    }

    /// Runs `cmd` once under `strace -c -w -f` (wall-clock time per
    /// syscall, children included) and keeps the summary.
    pub fn profile_command(&mut self, title: &str, cmd: &mut Command) {
        let Ok(dir) = tempfile::tempdir() else { return };
        let out = dir.path().join("strace.txt");
        let status = Command::new("strace")
            .args(["-c", "-w", "-f", "-o"])
            .arg(&out)
            .arg(cmd.get_program())
            .args(cmd.get_args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        self.keep_profile(title, status.map(|_| ()), &out);
    }

    /// Attaches `strace -c -w -f` to `pid` and returns the tracer; finish it
    /// with [`Ctx::end_profile`] after the work to profile.
    pub fn begin_profile(&self, pid: i32) -> Option<(Child, tempfile::TempDir)> {
        let dir = tempfile::tempdir().ok()?;
        let child = Command::new("strace")
            .args(["-c", "-w", "-f", "-p", &pid.to_string(), "-o"])
            .arg(dir.path().join("strace.txt"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        // strace needs a moment to attach to every thread.
        std::thread::sleep(Duration::from_millis(500));
        Some((child, dir))
    }

    /// Stops a tracer from [`Ctx::begin_profile`] and keeps its summary.
    pub fn end_profile(&mut self, title: &str, tracer: Option<(Child, tempfile::TempDir)>) {
        let Some((mut child, dir)) = tracer else {
            self.report
                .notes
                .push(format!("profile {title}: strace could not start"));
            return;
        };
        cria_tests::host::kill(child.id() as i32, libc::SIGINT);
        let _ = child.wait();
        self.keep_profile(title, Ok(()), &dir.path().join("strace.txt"));
    }

    fn keep_profile(&mut self, title: &str, res: std::io::Result<()>, out: &std::path::Path) {
        match res.and_then(|()| fs::read_to_string(out)) {
            Ok(text) => {
                let text: Vec<&str> = text.lines().take(PROFILE_LINES).collect();
                self.report.profiles.push((title.into(), text.join("\n")));
            }
            Err(e) => self.report.notes.push(format!(
                "profile {title}: strace failed ({e}); apt-get install strace"
            )),
        }
    }
}
