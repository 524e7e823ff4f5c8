//! `cria images`: the runtime's images as a table, ids, JSON or YAML.

use clap::Args;
use cria_proto::v1::{Image, ListImagesRequest};
use serde::Serialize;

use crate::humanize;
use crate::output::{self, Format};
use crate::Ctx;

pub const EXAMPLES: &str = "Examples:
  cria images
  cria images --digests
  cria images -q                 # full image ids, one per line
  cria images -o json

CRI reports no creation time for images, so there is no AGE column.";

/// Arguments of `cria images`.
#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Print only image ids
    #[arg(short, long)]
    quiet: bool,
    /// Show the repository digest of each image
    #[arg(long)]
    digests: bool,
    /// Output format
    #[arg(short, long, value_enum, default_value_t)]
    output: Format,
}

/// An image as `-o json|yaml` shows it.
#[derive(Debug, Serialize)]
struct ImageView<'a> {
    id: &'a str,
    repo_tags: &'a [String],
    repo_digests: &'a [String],
    size: u64,
    pinned: bool,
}

/// Splits `host/repo:tag` into repository and tag (`<none>` when untagged).
pub fn split_tag(repo_tag: &str) -> (&str, &str) {
    let name_start = repo_tag.rfind('/').map_or(0, |i| i + 1);
    match repo_tag[name_start..].rfind(':') {
        Some(i) => (&repo_tag[..name_start + i], &repo_tag[name_start + i + 1..]),
        None => (repo_tag, "<none>"),
    }
}

/// The digest of the first repo digest whose repository matches `repo`.
fn digest_for<'a>(image: &'a Image, repo: &str) -> &'a str {
    image
        .repo_digests
        .iter()
        .filter_map(|d| d.split_once('@'))
        .find(|(r, _)| *r == repo)
        .or_else(|| image.repo_digests.iter().find_map(|d| d.split_once('@')))
        .map_or("<none>", |(_, d)| d)
}

/// Table rows, one per tag (an untagged image gets one `<none>` row).
fn rows(images: &[Image], digests: bool) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for img in images {
        let tags: Vec<(&str, &str)> = if img.repo_tags.is_empty() {
            let repo = img
                .repo_digests
                .first()
                .and_then(|d| d.split_once('@'))
                .map_or("<none>", |(r, _)| r);
            vec![(repo, "<none>")]
        } else {
            img.repo_tags.iter().map(|t| split_tag(t)).collect()
        };
        for (repo, tag) in tags {
            let mut row = vec![repo.to_string(), tag.to_string()];
            if digests {
                row.push(digest_for(img, repo).to_string());
            }
            row.push(humanize::short_id(&img.id).to_string());
            row.push(humanize::size(img.size));
            rows.push(row);
        }
    }
    rows.sort();
    rows
}

/// Runs `cria images`.
pub async fn run(ctx: &Ctx, args: ImagesArgs) -> anyhow::Result<u8> {
    let cri = ctx.connect().await?;
    let images = cri
        .call(
            "list images",
            cri.image().list_images(ListImagesRequest { filter: None }),
        )
        .await?
        .images;
    if args.quiet {
        for img in &images {
            output::print_line(&img.id)?;
        }
        return Ok(0);
    }
    match args.output {
        Format::Table => {
            let mut header = vec!["IMAGE", "TAG"];
            if args.digests {
                header.push("DIGEST");
            }
            header.extend(["IMAGE ID", "SIZE"]);
            output::print_table(&header, rows(&images, args.digests))?;
        }
        f => {
            let views: Vec<ImageView<'_>> = images
                .iter()
                .map(|i| ImageView {
                    id: &i.id,
                    repo_tags: &i.repo_tags,
                    repo_digests: &i.repo_digests,
                    size: i.size,
                    pinned: i.pinned,
                })
                .collect();
            output::print_structured(f, &views)?;
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_tags() {
        assert_eq!(
            split_tag("docker.io/library/busybox:1.36"),
            ("docker.io/library/busybox", "1.36")
        );
        assert_eq!(
            split_tag("localhost:5000/busybox"),
            ("localhost:5000/busybox", "<none>")
        );
        assert_eq!(
            split_tag("localhost:5000/busybox:latest"),
            ("localhost:5000/busybox", "latest")
        );
    }

    #[test]
    fn rows_per_tag_with_short_id_and_size() {
        let img = Image {
            id: "sha256:0123456789abcdef0123".into(),
            repo_tags: vec!["docker.io/library/busybox:latest".into()],
            repo_digests: vec!["docker.io/library/busybox@sha256:feed".into()],
            size: 4 * 1024 * 1024,
            ..Image::default()
        };
        assert_eq!(
            rows(std::slice::from_ref(&img), true),
            vec![vec![
                "docker.io/library/busybox".to_string(),
                "latest".into(),
                "sha256:feed".into(),
                "0123456789ab".into(),
                "4.0 MiB".into()
            ]]
        );
        let untagged = Image {
            repo_tags: vec![],
            ..img
        };
        assert_eq!(
            rows(&[untagged], false)[0][..2],
            ["docker.io/library/busybox", "<none>"]
        );
    }
}
