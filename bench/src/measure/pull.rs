//! Measurement 3, pull and unpack from the loopback registry into an empty
//! store: criad vs containerd (a fresh instance for every run), beside
//! skopeo copy + tar -xzf of the same layers and the single-core gzip -dc of
//! their bytes.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result};
use cria_tests::host::run;

use super::Ctx;
use crate::cri::pull;
use crate::stats::Samples;
use crate::systems::{Kind, System};

const BIG: &str = "pull+unpack ~200 MB, 6 gzip layers";
const SMALL: &str = "pull+unpack busybox, 1 layer";

/// Pulls `image` into a fresh instance of `kind`; returns seconds.
async fn pull_fresh(ctx: &Ctx, kind: Kind, image: &str) -> Result<f64> {
    let sys = System::start(kind, &ctx.images.registry.host(), &ctx.images.pause).await?;
    let mut c = sys.images().await?;
    let d = pull(&mut c, image)
        .await
        .with_context(|| format!("{} pull; log:\n{}", kind.name(), tail(&sys.log())))?;
    Ok(d.as_secs_f64())
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// `skopeo copy` to an OCI layout then `tar -xzf` of each layer; seconds.
fn skopeo_tar(image: &str) -> Result<f64> {
    let dir = tempfile::Builder::new()
        .prefix("cria-bench-skopeo-")
        .tempdir()?;
    let layout = dir.path().join("layout");
    let t = Instant::now();
    run(Command::new("skopeo")
        .args(["copy", "--quiet", "--src-tls-verify=false"])
        .arg(format!("docker://{image}"))
        .arg(format!("oci:{}:latest", layout.display())))?;
    let index: serde_json::Value = serde_json::from_slice(&fs::read(layout.join("index.json"))?)?;
    let blob = |d: &str| {
        layout
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let m: serde_json::Value = serde_json::from_slice(&fs::read(blob(
        index["manifests"][0]["digest"]
            .as_str()
            .context("no manifest")?,
    ))?)?;
    for (i, l) in m["layers"]
        .as_array()
        .context("no layers")?
        .iter()
        .enumerate()
    {
        let to = dir.path().join(format!("rootfs{i}"));
        fs::create_dir_all(&to)?;
        run(Command::new("tar")
            .arg("-xzf")
            .arg(blob(l["digest"].as_str().context("no digest")?))
            .arg("-C")
            .arg(&to))?;
    }
    Ok(t.elapsed().as_secs_f64())
}

/// `gzip -dc` of every layer of the big image, one after the other, on one core.
fn gunzip(layers: &[std::path::PathBuf]) -> Result<f64> {
    let t = Instant::now();
    for l in layers {
        let st = Command::new("gzip")
            .arg("-dc")
            .arg(l)
            .stdout(Stdio::null())
            .status()?;
        anyhow::ensure!(st.success(), "gzip -dc {} failed", l.display());
    }
    Ok(t.elapsed().as_secs_f64())
}

/// Bytes of a directory tree (for the note on unpacked size).
fn unpacked_bytes(p: &Path) -> u64 {
    let out = Command::new("du").arg("-sb").arg(p).output();
    out.ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Runs the measurement.
pub async fn measure(ctx: &mut Ctx) -> Result<()> {
    let (big, small) = (ctx.images.big.clone(), ctx.images.small.clone());
    let (mut cb, mut db, mut sb, mut gz) = (
        Samples::default(),
        Samples::default(),
        Samples::default(),
        Samples::default(),
    );
    let (mut cs, mut ds) = (Samples::default(), Samples::default());
    let n_big = ctx.runs(5);
    for i in 0..n_big {
        // Alternate who goes first.
        let order: [u8; 3] = if i % 2 == 0 { [0, 1, 2] } else { [1, 0, 2] };
        for w in order {
            match w {
                0 => cb.push(pull_fresh(ctx, Kind::Cria, &big).await?),
                1 => db.push(pull_fresh(ctx, Kind::Containerd, &big).await?),
                _ => sb.push(skopeo_tar(&big)?),
            }
        }
        gz.push(gunzip(&ctx.images.big_layers)?);
    }
    for i in 0..ctx.runs(10) {
        if i % 2 == 0 {
            cs.push(pull_fresh(ctx, Kind::Cria, &small).await?);
            ds.push(pull_fresh(ctx, Kind::Containerd, &small).await?);
        } else {
            ds.push(pull_fresh(ctx, Kind::Containerd, &small).await?);
            cs.push(pull_fresh(ctx, Kind::Cria, &small).await?);
        }
    }
    let cmp = ctx.images.big_compressed_bytes() as f64 / 1e6;
    let un = {
        let d = tempfile::tempdir()?;
        for (i, l) in ctx.images.big_layers.iter().enumerate() {
            let to = d.path().join(i.to_string());
            fs::create_dir_all(&to)?;
            run(Command::new("tar").arg("-xzf").arg(l).arg("-C").arg(&to))?;
        }
        unpacked_bytes(d.path()) as f64 / 1e6
    };
    ctx.report.figure(
        "3. pull",
        BIG,
        "s",
        vec![
            ("criad".into(), cb.clone()),
            ("containerd".into(), db),
            ("skopeo copy + tar -xzf".into(), sb),
            ("gzip -dc (1 core)".into(), gz),
        ],
    );
    ctx.report.figure(
        "3. pull",
        SMALL,
        "s",
        vec![("criad".into(), cs), ("containerd".into(), ds)],
    );
    let mbps = cb.summary().map(|s| cmp / s.median).unwrap_or(0.0);
    ctx.report.notes.push(format!(
        "Pull: big image = {} layers, {cmp:.1} MB compressed, {un:.1} MB unpacked (busybox-static plus \
         /usr/libexec, /usr/lib/python3.11, /usr/lib/python3, /usr/share/perl, /usr/share/i18n of this \
         machine); criad pulled it at {mbps:.1} MB/s (compressed). Each run starts a fresh criad / \
         containerd with an empty store (not timed) and times PullImage to its answer (both unpack \
         into snapshots before answering). Big image: {n_big} runs (slow); small: {} runs.",
        ctx.images.big_layers.len(),
        ctx.runs(10)
    ));
    let missed = [
        ctx.report.target_ratio(
            "pull+unpack ≤ 0.7× containerd (issue 8)",
            BIG,
            "containerd",
            0.7,
        ),
        ctx.report.target_ratio(
            "pull+unpack at least as fast as containerd (issue 2)",
            BIG,
            "containerd",
            1.0,
        ),
        ctx.report.target_ratio(
            "pull+unpack within 1.5× of single-core gunzip (issue 2)",
            BIG,
            "gzip -dc (1 core)",
            1.5,
        ),
    ]
    .contains(&Some(false));
    if missed && !ctx.quick {
        profile_pull(ctx, &big).await?;
    }
    Ok(())
}

/// One pull of `image` into a fresh criad under `strace -c -w -f`.
async fn profile_pull(ctx: &mut Ctx, image: &str) -> Result<()> {
    let sys = System::start(Kind::Cria, &ctx.images.registry.host(), &ctx.images.pause).await?;
    let mut c = sys.images().await?;
    let tracer = sys.daemon_pid().and_then(|p| ctx.begin_profile(p));
    let t = Instant::now();
    let res = pull(&mut c, image).await;
    let took = t.elapsed().as_secs_f64();
    ctx.end_profile(
        &format!(
            "criad pulling the big image (`strace -c -w -f -p <criad>`: wall time per syscall \
             summed over all threads; this traced pull took {took:.1} s)"
        ),
        tracer,
    );
    res.map(|_| ())
}
