//! Manifest formats: media types, parsing, and platform choice in an index.

use std::fmt;

use serde::Deserialize;

use crate::error::ImageError;
use crate::image::Compression;

/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// The Accept header for manifest requests: every format we can use.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// A content descriptor in a manifest or index.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    #[serde(default)]
    pub media_type: String,
    /// Digest of the referenced content.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// Platform (index entries only).
    #[serde(default)]
    pub platform: Option<Platform>,
}

/// An image manifest (OCI or Docker schema 2: the same shape).
#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    /// The config blob.
    pub config: Descriptor,
    /// Layers, base first.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// An image index or Docker manifest list.
#[derive(Debug, Clone, Deserialize)]
pub struct Index {
    /// One entry per platform (and possibly attestations).
    pub manifests: Vec<Descriptor>,
}

/// A manifest document as fetched, sorted by kind.
#[derive(Debug, Clone)]
pub enum ManifestKind {
    /// An index or manifest list.
    Index(Index),
    /// A single-platform manifest.
    Manifest(Manifest),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    #[serde(default)]
    schema_version: Option<u64>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
    #[serde(default)]
    config: Option<serde_json::Value>,
}

/// Parses a manifest body, using the response's content type, else the
/// body's own `mediaType`, else its shape. Schema 1 and unknown types are refused.
pub fn parse_manifest(
    content_type: Option<&str>,
    body: &[u8],
    reference: &str,
) -> Result<ManifestKind, ImageError> {
    let invalid = |detail: String| ImageError::InvalidContent {
        what: "manifest".into(),
        reference: reference.into(),
        detail,
    };
    let probe: Probe = serde_json::from_slice(body).map_err(|e| invalid(e.to_string()))?;
    // Registries sometimes answer with a generic type; then the body decides.
    let header = content_type
        .map(|c| c.split(';').next().unwrap_or(c).trim().to_string())
        .filter(|c| !c.is_empty() && c != "application/json" && c != "text/plain");
    let media_type = header.or(probe.media_type.clone()).unwrap_or_else(|| {
        if probe.schema_version == Some(1) {
            DOCKER_SCHEMA1.to_string()
        } else if probe.manifests.is_some() {
            OCI_INDEX.to_string()
        } else if probe.config.is_some() {
            OCI_MANIFEST.to_string()
        } else {
            String::new()
        }
    });
    match media_type.as_str() {
        OCI_INDEX | DOCKER_LIST => Ok(ManifestKind::Index(
            serde_json::from_slice(body).map_err(|e| invalid(e.to_string()))?,
        )),
        OCI_MANIFEST | DOCKER_MANIFEST => Ok(ManifestKind::Manifest(
            serde_json::from_slice(body).map_err(|e| invalid(e.to_string()))?,
        )),
        DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED => Err(ImageError::UnsupportedMediaType {
            media_type,
            reference: reference.into(),
            detail: "Docker image manifest schema 1 is deprecated and not supported; \
                     re-push the image with schema 2 or OCI"
                .into(),
        }),
        _ => Err(ImageError::UnsupportedMediaType {
            media_type,
            reference: reference.into(),
            detail: "not an image manifest or index".into(),
        }),
    }
}

/// Compression of a layer, from its media type; unknown types are refused.
pub fn layer_compression(media_type: &str, reference: &str) -> Result<Compression, ImageError> {
    match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar" => Ok(Compression::None),
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Ok(Compression::Gzip),
        "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => Ok(Compression::Zstd),
        other => Err(ImageError::UnsupportedMediaType {
            media_type: other.to_string(),
            reference: reference.into(),
            detail: "not a layer type cria can unpack".into(),
        }),
    }
}

/// Checks that a config descriptor is an image config.
pub fn check_config_media_type(media_type: &str, reference: &str) -> Result<(), ImageError> {
    match media_type {
        OCI_CONFIG | DOCKER_CONFIG => Ok(()),
        other => Err(ImageError::UnsupportedMediaType {
            media_type: other.to_string(),
            reference: reference.into(),
            detail: "the manifest's config is not an image config (an artifact?)".into(),
        }),
    }
}

/// An OS/architecture/variant triple, as in an index entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Platform {
    /// e.g. `linux`.
    #[serde(default)]
    pub os: String,
    /// e.g. `amd64`, `arm64`, `arm`.
    #[serde(default)]
    pub architecture: String,
    /// e.g. `v8` (arm64), `v7` (arm).
    #[serde(default)]
    pub variant: Option<String>,
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        match &self.variant {
            Some(v) if !v.is_empty() => write!(f, "/{v}"),
            _ => Ok(()),
        }
    }
}

impl Platform {
    /// A platform from its parts.
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: os.to_string(),
            architecture: architecture.to_string(),
            variant: variant.map(str::to_string),
        }
    }

    /// The platform this binary runs on, with the default variant of its architecture.
    pub fn host() -> Platform {
        Platform::new("linux", std::env::consts::ARCH, None).normalised()
    }

    /// Canonical names: `aarch64` → `arm64`/`v8`, `x86_64` → `amd64`, arm → `v7` by default.
    pub fn normalised(&self) -> Platform {
        let os = self.os.to_ascii_lowercase();
        let variant = self.variant.clone().filter(|v| !v.is_empty());
        let (arch, variant) = match self.architecture.to_ascii_lowercase().as_str() {
            "x86_64" | "x86-64" | "amd64" => ("amd64", variant.filter(|v| v != "v1")),
            "aarch64" | "arm64" => ("arm64", Some(variant.unwrap_or_else(|| "v8".into()))),
            "armhf" => ("arm", Some("v7".into())),
            "armel" => ("arm", Some("v6".into())),
            "arm" => ("arm", Some(variant.unwrap_or_else(|| "v7".into()))),
            "i386" | "i686" | "x86" => ("386", variant),
            other => {
                return Platform {
                    os,
                    architecture: other.to_string(),
                    variant,
                }
            }
        };
        Platform {
            os,
            architecture: arch.to_string(),
            variant,
        }
    }
}

/// The numeric level of a `vN` variant (`None` for no variant → level 1 on amd64).
fn variant_level(v: &Option<String>) -> Option<u32> {
    match v {
        None => Some(1),
        Some(v) => v.strip_prefix('v')?.parse().ok(),
    }
}

/// Chooses the index entry for `wanted`: an exact variant match, else the
/// newest variant the wanted one can run (`arm/v7` runs `v6`, `v5`; an
/// `amd64/v3` node runs `v2`); no match → an error listing what is offered.
pub fn choose_platform<'a>(
    index: &'a Index,
    wanted: &Platform,
    reference: &str,
) -> Result<&'a Descriptor, ImageError> {
    let wanted = wanted.normalised();
    let mut best: Option<(&Descriptor, u32)> = None;
    for d in &index.manifests {
        let Some(p) = d.platform.as_ref().map(Platform::normalised) else {
            continue;
        };
        if p.os != wanted.os || p.architecture != wanted.architecture {
            continue;
        }
        if p.variant == wanted.variant {
            return Ok(d);
        }
        let (Some(have), Some(want)) = (variant_level(&p.variant), variant_level(&wanted.variant))
        else {
            continue;
        };
        if have <= want && best.is_none_or(|(_, level)| have > level) {
            best = Some((d, have));
        }
    }
    if let Some((d, _)) = best {
        return Ok(d);
    }
    let offered: Vec<String> = index
        .manifests
        .iter()
        .filter_map(|d| d.platform.as_ref().map(|p| p.to_string()))
        .collect();
    Err(ImageError::NoMatchingPlatform {
        reference: reference.into(),
        wanted: wanted.to_string(),
        offered: if offered.is_empty() {
            "none".into()
        } else {
            offered.join(", ")
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(platforms: &[(&str, &str, Option<&str>)]) -> Index {
        Index {
            manifests: platforms
                .iter()
                .enumerate()
                .map(|(i, (os, arch, var))| Descriptor {
                    media_type: OCI_MANIFEST.into(),
                    digest: format!("sha256:{i:064}"),
                    size: 1,
                    platform: Some(Platform::new(os, arch, *var)),
                })
                .collect(),
        }
    }

    fn pick(idx: &Index, wanted: Platform) -> Result<usize, ImageError> {
        let d = choose_platform(idx, &wanted, "r")?;
        Ok(idx
            .manifests
            .iter()
            .position(|m| m.digest == d.digest)
            .unwrap())
    }

    #[test]
    fn chooses_platform_with_variants() {
        let multi = index(&[
            ("linux", "amd64", None),
            ("linux", "arm", Some("v6")),
            ("linux", "arm", Some("v7")),
            ("linux", "arm64", Some("v8")),
            ("windows", "amd64", None),
            ("unknown", "unknown", None),
        ]);
        let cases = [
            (Platform::new("linux", "amd64", None), 0),
            (Platform::new("linux", "x86_64", None), 0),
            (Platform::new("linux", "arm64", None), 3),
            (Platform::new("linux", "aarch64", Some("v8")), 3),
            (Platform::new("linux", "arm", None), 2),
            (Platform::new("linux", "arm", Some("v7")), 2),
            (Platform::new("linux", "arm", Some("v6")), 1),
            (Platform::new("windows", "amd64", None), 4),
        ];
        for (wanted, want) in cases {
            assert_eq!(pick(&multi, wanted.clone()).unwrap(), want, "{wanted}");
        }
        // arm64 without a variant in the index is v8.
        let plain = index(&[("linux", "arm64", None), ("linux", "amd64", Some("v1"))]);
        assert_eq!(
            pick(&plain, Platform::new("linux", "arm64", Some("v8"))).unwrap(),
            0
        );
        assert_eq!(
            pick(&plain, Platform::new("linux", "amd64", None)).unwrap(),
            1
        );
        // arm/v7 falls back to the newest compatible older variant.
        let old = index(&[("linux", "arm", Some("v5")), ("linux", "arm", Some("v6"))]);
        assert_eq!(
            pick(&old, Platform::new("linux", "arm", Some("v7"))).unwrap(),
            1
        );
        // A newer variant than the node's is not compatible.
        let newer = index(&[("linux", "amd64", Some("v3"))]);
        assert!(pick(&newer, Platform::new("linux", "amd64", None)).is_err());
        assert_eq!(
            pick(&newer, Platform::new("linux", "amd64", Some("v4"))).unwrap(),
            0
        );
    }

    #[test]
    fn no_match_lists_offered_platforms() {
        let idx = index(&[("linux", "arm64", Some("v8")), ("linux", "s390x", None)]);
        let err = choose_platform(&idx, &Platform::new("linux", "amd64", None), "x").unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ImageError::NoMatchingPlatform { .. }));
        assert!(msg.contains("linux/amd64"), "{msg}");
        assert!(msg.contains("linux/arm64/v8, linux/s390x"), "{msg}");
    }

    #[test]
    fn host_platform_is_normalised() {
        let h = Platform::host();
        assert_eq!(h.os, "linux");
        if cfg!(target_arch = "x86_64") {
            assert_eq!(h, Platform::new("linux", "amd64", None));
        }
    }

    #[test]
    fn parses_and_refuses_manifest_types() {
        let m = br#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:aa","size":2},"layers":[]}"#;
        assert!(matches!(
            parse_manifest(Some(OCI_MANIFEST), m, "r"),
            Ok(ManifestKind::Manifest(_))
        ));
        assert!(matches!(
            parse_manifest(None, m, "r"),
            Ok(ManifestKind::Manifest(_))
        ));
        let i = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(
            parse_manifest(Some(DOCKER_LIST), i, "r"),
            Ok(ManifestKind::Index(_))
        ));
        assert!(matches!(
            parse_manifest(Some("application/json"), i, "r"),
            Ok(ManifestKind::Index(_))
        ));
        let s1 = br#"{"schemaVersion":1,"name":"x","fsLayers":[]}"#;
        for ct in [Some(DOCKER_SCHEMA1_SIGNED), Some(DOCKER_SCHEMA1), None] {
            let err = parse_manifest(ct, s1, "r").unwrap_err();
            assert!(matches!(err, ImageError::UnsupportedMediaType { .. }));
            assert!(err
                .to_string()
                .contains("application/vnd.docker.distribution.manifest.v1"));
        }
        let err = parse_manifest(Some("application/vnd.cncf.helm.chart"), m, "r").unwrap_err();
        assert!(err.to_string().contains("application/vnd.cncf.helm.chart"));
        assert!(matches!(
            parse_manifest(None, b"not json", "r"),
            Err(ImageError::InvalidContent { .. })
        ));
    }

    #[test]
    fn layer_media_types() {
        let cases = [
            ("application/vnd.oci.image.layer.v1.tar", Compression::None),
            (
                "application/vnd.oci.image.layer.v1.tar+gzip",
                Compression::Gzip,
            ),
            (
                "application/vnd.oci.image.layer.v1.tar+zstd",
                Compression::Zstd,
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                Compression::Gzip,
            ),
            (
                "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                Compression::Gzip,
            ),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
                Compression::Zstd,
            ),
        ];
        for (mt, want) in cases {
            assert_eq!(layer_compression(mt, "r").unwrap(), want, "{mt}");
        }
        let err = layer_compression("application/x-bzip2", "r").unwrap_err();
        assert!(err.to_string().contains("application/x-bzip2"));
        assert!(check_config_media_type(DOCKER_CONFIG, "r").is_ok());
        assert!(check_config_media_type("application/vnd.unknown", "r").is_err());
    }
}
