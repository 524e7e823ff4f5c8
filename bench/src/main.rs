//! `cria-bench`: cria side by side with runc, crun and containerd on this
//! machine, in one interleaved run (issue 8). Started by `bench/run`, which
//! installs the peers and builds the release binaries first.
//!
//! Writes `results.md` and `results.png` to `--out` (docs/benchmarks/ for a
//! full run; a temp dir for `--quick`).

mod containerd;
mod cri;
mod images;
mod machine;
mod measure;
mod procmem;
mod report;
mod stats;
mod systems;

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;

use measure::Ctx;

/// The measurements, by the names `--only` takes.
const NAMES: &[&str] = &["runtime", "pod", "pull", "memory", "density", "list"];

#[derive(Parser)]
#[command(
    name = "cria-bench",
    about = "cria vs runc, crun and containerd, interleaved"
)]
struct Args {
    /// One run of every measurement at reduced sizes (CI smoke; numbers not judged).
    #[arg(long)]
    quick: bool,
    /// Run one measurement only: runtime, pod, pull, memory, density, list.
    #[arg(long)]
    only: Option<String>,
    /// Where results.md and results.png go.
    #[arg(long)]
    out: PathBuf,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(o) = &args.only {
        if !NAMES.contains(&o.as_str()) {
            bail!(
                "--only {o}: unknown measurement (one of {})",
                NAMES.join(", ")
            );
        }
    }
    // The harness finds criad, cria-monitor and cria-oci beside this binary,
    // and caches images under the target dir. Set before any thread exists.
    let bin_dir = std::env::current_exe()?
        .parent()
        .context("binary has no directory")?
        .to_path_buf();
    let target = bin_dir
        .parent()
        .context("binary is not in target/<profile>")?
        .to_path_buf();
    if std::env::var_os("CRIA_CRIAD").is_none() {
        std::env::set_var("CRIA_CRIAD", bin_dir.join("criad"));
    }
    if std::env::var_os("CARGO_TARGET_DIR").is_none() {
        std::env::set_var("CARGO_TARGET_DIR", &target);
    }
    for b in ["criad", "cria-monitor", "cria-oci"] {
        if !bin_dir.join(b).exists() {
            bail!(
                "{} missing: build the release binaries first (bench/run does)",
                bin_dir.join(b).display()
            );
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run(args, bin_dir))
}

async fn run(args: Args, bin_dir: PathBuf) -> Result<()> {
    let started = Instant::now();
    let load_start = machine::load();
    eprintln!("cria-bench: load average at start {load_start}; preparing images");
    let images = tokio::task::block_in_place(images::Images::prepare)?;
    let mut ctx = Ctx {
        quick: args.quick,
        images,
        report: report::Report::default(),
        bin_dir,
    };
    let want = |n: &str| args.only.as_deref().is_none_or(|o| o == n);
    if want("runtime") {
        eprintln!("cria-bench: 1. runtime start");
        tokio::task::block_in_place(|| measure::runtime::measure(&mut ctx))?;
    }
    if ["pod", "memory", "density", "list"].iter().any(|n| want(n)) {
        eprintln!("cria-bench: 2, 4, 5, 6, 7 through CRI");
        measure::cri_pods::measure(&mut ctx, args.only.as_deref()).await?;
    }
    if want("pull") {
        eprintln!("cria-bench: 3. pull");
        measure::pull::measure(&mut ctx).await?;
    }
    let took = started.elapsed().as_secs_f64();
    ctx.report.notes.push(format!(
        "This run: {}{}, {took:.0} s in all.",
        if args.quick {
            "--quick (one run each, reduced sizes: numbers not meaningful)"
        } else {
            "full"
        },
        args.only
            .as_deref()
            .map(|o| format!(", --only {o}"))
            .unwrap_or_default()
    ));
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let desc = machine::describe(&load_start, &commit);
    ctx.report.write(
        &args.out,
        &desc,
        "cria benchmarks: cria vs runc, crun and containerd",
    )?;
    eprintln!(
        "cria-bench: wrote {} in {took:.0} s",
        args.out.join("results.md").display()
    );
    Ok(())
}
