//! Showing a pull as it happens: one bar per layer (bytes, speed, ETA) on a
//! terminal, one line per layer start and finish otherwise, and a spinner with
//! the elapsed time when the runtime reports no per-layer progress.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::humanize;

/// Where progress goes: `cria pull` uses stdout, `cria run` stderr (stdout is the container's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Where one layer stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Known from the manifest, not started.
    Waiting,
    /// Bytes are arriving.
    Downloading,
    /// Verified and unpacked, or already present.
    Done,
    /// Failed, with the runtime's reason.
    Failed(String),
}

/// The state of one layer as reported by the runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerProgress {
    /// The layer's digest (`sha256:...`).
    pub digest: String,
    /// Bytes downloaded so far.
    pub done: u64,
    /// The layer's size; 0 when unknown.
    pub total: u64,
    /// Where the layer stands.
    pub phase: Phase,
}

/// Renders pull progress for people (bars) or logs and pipes (lines).
pub struct PullDisplay {
    out: Box<dyn Write + Send>,
    started: Instant,
    mode: Mode,
}

enum Mode {
    Bars {
        multi: MultiProgress,
        layers: HashMap<String, ProgressBar>,
        spinner: Option<ProgressBar>,
    },
    Lines {
        started: HashMap<String, bool>,
    },
}

impl PullDisplay {
    /// Bars when `target` is a terminal, lines otherwise.
    pub fn new(target: Target) -> PullDisplay {
        let (tty, out): (bool, Box<dyn Write + Send>) = match target {
            Target::Stdout => (std::io::stdout().is_terminal(), Box::new(std::io::stdout())),
            Target::Stderr => (std::io::stderr().is_terminal(), Box::new(std::io::stderr())),
        };
        if !tty {
            return PullDisplay::lines(out);
        }
        let draw = match target {
            Target::Stdout => ProgressDrawTarget::stdout(),
            Target::Stderr => ProgressDrawTarget::stderr(),
        };
        PullDisplay {
            out,
            started: Instant::now(),
            mode: Mode::Bars {
                multi: MultiProgress::with_draw_target(draw),
                layers: HashMap::new(),
                spinner: None,
            },
        }
    }

    /// Plain lines written to `out` (for pipes, logs and tests).
    pub fn lines(out: Box<dyn Write + Send>) -> PullDisplay {
        PullDisplay {
            out,
            started: Instant::now(),
            mode: Mode::Lines {
                started: HashMap::new(),
            },
        }
    }

    fn line(&mut self, text: &str) {
        // Progress is best effort: a closed pipe must not fail the pull.
        let _ = writeln!(self.out, "{text}").and_then(|()| self.out.flush());
    }

    /// Announces the pull; on a terminal shows a spinner until layers are reported.
    pub fn begin(&mut self, reference: &str) {
        match &mut self.mode {
            Mode::Bars { multi, spinner, .. } => {
                let s = multi.add(ProgressBar::new_spinner());
                s.set_style(
                    ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                s.set_message(format!("pulling {reference}"));
                s.enable_steady_tick(Duration::from_millis(120));
                *spinner = Some(s);
            }
            Mode::Lines { .. } => self.line(&format!("pulling {reference}")),
        }
    }

    /// Updates one layer.
    pub fn layer(&mut self, p: &LayerProgress) {
        let short = format!("{}…", &p.digest[..p.digest.len().min(19)]);
        match &mut self.mode {
            Mode::Bars {
                multi,
                layers,
                spinner,
            } => {
                if let Some(s) = spinner.take() {
                    s.finish_and_clear();
                }
                let bar = layers.entry(p.digest.clone()).or_insert_with(|| {
                    let b = multi.add(ProgressBar::new(p.total));
                    b.set_style(
                        ProgressStyle::with_template(
                            "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    );
                    b.set_prefix(short.clone());
                    b
                });
                if bar.is_finished() {
                    return;
                }
                if p.total > 0 {
                    bar.set_length(p.total);
                }
                match &p.phase {
                    Phase::Waiting => bar.set_message("waiting"),
                    Phase::Downloading => {
                        bar.set_message("");
                        bar.set_position(p.done);
                    }
                    Phase::Done => {
                        bar.set_position(p.total.max(p.done));
                        bar.finish_with_message("done");
                    }
                    Phase::Failed(why) => bar.abandon_with_message(format!("failed: {why}")),
                }
            }
            Mode::Lines { started } => {
                let total = humanize::size(p.total);
                let seen = started.get(&p.digest).copied();
                let text = match (&p.phase, seen) {
                    (Phase::Downloading, None) => {
                        started.insert(p.digest.clone(), false);
                        format!("{short} {}/{total}", humanize::size(p.done))
                    }
                    (Phase::Done, None) if p.done == 0 => {
                        started.insert(p.digest.clone(), true);
                        format!("{short} already present")
                    }
                    (Phase::Done, None | Some(false)) => {
                        started.insert(p.digest.clone(), true);
                        format!("{short} {total}/{total} done")
                    }
                    (Phase::Failed(why), None | Some(false)) => {
                        started.insert(p.digest.clone(), true);
                        format!("{short} failed: {why}")
                    }
                    _ => return,
                };
                self.line(&text);
            }
        }
    }

    /// Ends the display and reports how long the pull took.
    pub fn finish(&mut self, reference: &str) {
        let took = format!("{:.1}s", self.started.elapsed().as_secs_f64());
        if let Mode::Bars {
            spinner, layers, ..
        } = &mut self.mode
        {
            if let Some(s) = spinner.take() {
                s.finish_and_clear();
            }
            for b in layers.values().filter(|b| !b.is_finished()) {
                b.finish();
            }
        }
        self.line(&format!("pulled {reference} in {took}"));
    }

    /// Clears the bars after a failed pull so the error is readable.
    pub fn abandon(&mut self) {
        if let Mode::Bars {
            spinner, layers, ..
        } = &mut self.mode
        {
            if let Some(s) = spinner.take() {
                s.finish_and_clear();
            }
            for b in layers.values() {
                b.abandon();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn layer(digest: &str, done: u64, phase: Phase) -> LayerProgress {
        LayerProgress {
            digest: digest.into(),
            done,
            total: 40 * 1024 * 1024,
            phase,
        }
    }

    #[test]
    fn plain_lines_once_per_layer_start_and_finish() {
        let buf = Shared::default();
        let mut d = PullDisplay::lines(Box::new(buf.clone()));
        d.begin("busybox");
        let a = "sha256:aaaaaaaaaaaaaaaaaaaaaaaa";
        let b = "sha256:bbbbbbbbbbbbbbbbbbbbbbbb";
        d.layer(&layer(a, 0, Phase::Waiting));
        d.layer(&layer(a, 1024, Phase::Downloading));
        d.layer(&layer(a, 12_897_485, Phase::Downloading));
        d.layer(&layer(b, 0, Phase::Done));
        d.layer(&layer(a, 40 * 1024 * 1024, Phase::Done));
        d.layer(&layer(a, 40 * 1024 * 1024, Phase::Done));
        d.finish("busybox");
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[..4],
            [
                "pulling busybox",
                "sha256:aaaaaaaaaaaa… 1.0 KiB/40.0 MiB",
                "sha256:bbbbbbbbbbbb… already present",
                "sha256:aaaaaaaaaaaa… 40.0 MiB/40.0 MiB done",
            ]
        );
        assert!(lines[4].starts_with("pulled busybox in "), "{text}");
        assert_eq!(lines.len(), 5);
    }

    #[test]
    fn failed_layer_is_reported() {
        let buf = Shared::default();
        let mut d = PullDisplay::lines(Box::new(buf.clone()));
        d.layer(&layer("sha256:cc", 5, Phase::Downloading));
        d.layer(&layer(
            "sha256:cc",
            5,
            Phase::Failed("digest mismatch".into()),
        ));
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert!(
            text.ends_with("sha256:cc… failed: digest mismatch\n"),
            "{text}"
        );
    }
}
