//! Docker-style image references: `busybox` → `docker.io/library/busybox:latest`.
//!
//! The grammar follows the distribution project's reference grammar: an
//! optional domain (a first component holding `.` or `:`, or `localhost`),
//! lower-case path components separated by `/`, an optional `:tag` and an
//! optional `@sha256:<64 hex>` digest.

use std::fmt;

use crate::error::ImageError;

/// Registry that references without a domain point at.
pub const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
const DEFAULT_TAG: &str = "latest";
const NAME_TOTAL_MAX: usize = 255;
const TAG_MAX: usize = 128;

/// A fully normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host (with port), e.g. `docker.io`, `127.0.0.1:5000`.
    pub domain: String,
    /// Repository path inside the registry, e.g. `library/busybox`.
    pub repository: String,
    /// Tag; `latest` is filled in when neither tag nor digest is given.
    pub tag: Option<String>,
    /// `sha256:<hex>` digest, when the reference pins one.
    pub digest: Option<String>,
}

impl Reference {
    /// Parses and normalises a docker-style reference.
    pub fn parse(input: &str) -> Result<Reference, ImageError> {
        let bad = |reason: &str| ImageError::InvalidReference {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        if input.is_empty() {
            return Err(bad("empty reference"));
        }
        if input.contains("://") {
            return Err(bad("a reference has no URL scheme"));
        }

        let (rest, digest) = match input.split_once('@') {
            Some((r, d)) => (r, Some(parse_digest(d).map_err(|e| bad(&e))?)),
            None => (input, None),
        };
        // A tag is after the last ':' that comes after the last '/', so a
        // port in the domain is not mistaken for one.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                (&rest[..at], Some(rest[at + 1..].to_string()))
            }
            None => (rest, None),
        };
        if let Some(t) = &tag {
            validate_tag(t).map_err(|e| bad(&e))?;
        }
        if name.is_empty() {
            return Err(bad("empty repository name"));
        }

        let (domain, path) = split_domain(name);
        validate_domain(&domain).map_err(|e| bad(&e))?;
        for component in path.split('/') {
            validate_component(component).map_err(|e| bad(&e))?;
        }
        let repository = if domain == DEFAULT_DOMAIN && !path.contains('/') {
            format!("{OFFICIAL_REPO_PREFIX}{path}")
        } else {
            path.to_string()
        };
        if domain.len() + 1 + repository.len() > NAME_TOTAL_MAX {
            return Err(bad("repository name longer than 255 characters"));
        }
        let tag = match (tag, &digest) {
            (None, None) => Some(DEFAULT_TAG.to_string()),
            (t, _) => t,
        };
        Ok(Reference {
            domain,
            repository,
            tag,
            digest,
        })
    }

    /// `domain/repository`, e.g. `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.repository)
    }

    /// What to ask the registry for: the digest if pinned, else the tag.
    pub fn object(&self) -> &str {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d,
            (None, Some(t)) => t,
            // parse() always fills in a tag when there is no digest.
            (None, None) => DEFAULT_TAG,
        }
    }

    /// The tag reference `domain/repo:tag`, if the reference has a tag.
    pub fn tagged_name(&self) -> Option<String> {
        self.tag.as_ref().map(|t| format!("{}:{t}", self.name()))
    }

    /// The digest reference `domain/repo@digest` for the given digest.
    pub fn digest_name(&self, digest: &str) -> String {
        format!("{}@{digest}", self.name())
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Splits `name` into (domain, path), applying docker's defaults.
fn split_domain(name: &str) -> (String, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            let domain = if first == LEGACY_DEFAULT_DOMAIN {
                DEFAULT_DOMAIN
            } else {
                first
            };
            (domain.to_string(), rest)
        }
        _ => (DEFAULT_DOMAIN.to_string(), name),
    }
}

/// Checks a `sha256:<64 lower-case hex>` digest; returns it unchanged.
pub fn parse_digest(d: &str) -> Result<String, String> {
    let Some((alg, hex)) = d.split_once(':') else {
        return Err(format!("digest {d:?} has no algorithm"));
    };
    if alg != "sha256" {
        return Err(format!(
            "digest algorithm {alg:?} is not supported (only sha256)"
        ));
    }
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(format!("digest {d:?} is not 64 lower-case hex characters"));
    }
    Ok(d.to_string())
}

fn validate_tag(t: &str) -> Result<(), String> {
    let ok_first = t
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    let ok_rest = t
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    if !ok_first || !ok_rest || t.len() > TAG_MAX {
        return Err(format!(
            "tag {t:?} must be 1-128 of [A-Za-z0-9_.-], not starting with '.' or '-'"
        ));
    }
    Ok(())
}

fn validate_domain(d: &str) -> Result<(), String> {
    let (host, port) = match d.rsplit_once(':') {
        // An IPv6 literal in brackets keeps its colons inside the brackets.
        Some((h, p)) if !p.contains(']') => (h, Some(p)),
        _ => (d, None),
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("port {p:?} in domain {d:?} is not a number"));
        }
    }
    if host.starts_with('[') && host.ends_with(']') {
        let inner = &host[1..host.len() - 1];
        if inner.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("domain {d:?} is not a valid IPv6 literal"));
        }
        return Ok(());
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if host.is_empty() || !host.split('.').all(label_ok) {
        return Err(format!("domain {d:?} is not a valid host name"));
    }
    Ok(())
}

/// A path component: lower-case alphanumerics joined by `.`, `_`, `__` or runs of `-`.
fn validate_component(c: &str) -> Result<(), String> {
    if c.is_empty() {
        return Err("repository path has an empty component".to_string());
    }
    if c.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!("repository name component {c:?} must be lowercase"));
    }
    let bytes = c.as_bytes();
    let is_alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let invalid = || format!("repository name component {c:?} has invalid characters");
    if !is_alnum(bytes[0]) || !is_alnum(bytes[bytes.len() - 1]) {
        return Err(invalid());
    }
    let mut i = 0;
    while i < bytes.len() {
        if is_alnum(bytes[i]) {
            i += 1;
            continue;
        }
        // A separator run: '.', '_', '__' or one or more '-'.
        let start = i;
        while i < bytes.len() && !is_alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|b| b == b'-');
        if !ok {
            return Err(invalid());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn normalises_valid_references() {
        let d = D;
        // (input, domain, repository, tag, digest)
        type Case<'a> = (String, &'a str, &'a str, Option<&'a str>, Option<&'a str>);
        let cases: Vec<Case> = vec![
            (
                "busybox".into(),
                "docker.io",
                "library/busybox",
                Some("latest"),
                None,
            ),
            (
                "busybox:1.36".into(),
                "docker.io",
                "library/busybox",
                Some("1.36"),
                None,
            ),
            (
                "user/app".into(),
                "docker.io",
                "user/app",
                Some("latest"),
                None,
            ),
            (
                "docker.io/busybox".into(),
                "docker.io",
                "library/busybox",
                Some("latest"),
                None,
            ),
            (
                "index.docker.io/user/app:v1".into(),
                "docker.io",
                "user/app",
                Some("v1"),
                None,
            ),
            ("localhost/x".into(), "localhost", "x", Some("latest"), None),
            (
                "localhost:5000/x".into(),
                "localhost:5000",
                "x",
                Some("latest"),
                None,
            ),
            (
                "127.0.0.1:5000/x:tag".into(),
                "127.0.0.1:5000",
                "x",
                Some("tag"),
                None,
            ),
            (
                "127.0.0.1:5000/a/b/c:t-1.2_3".into(),
                "127.0.0.1:5000",
                "a/b/c",
                Some("t-1.2_3"),
                None,
            ),
            (
                "registry.k8s.io/pause:3.9".into(),
                "registry.k8s.io",
                "pause",
                Some("3.9"),
                None,
            ),
            (
                "[::1]:5000/x".into(),
                "[::1]:5000",
                "x",
                Some("latest"),
                None,
            ),
            (
                "a.b/x__y/z--w".into(),
                "a.b",
                "x__y/z--w",
                Some("latest"),
                None,
            ),
            (format!("x@{d}"), "docker.io", "library/x", None, Some(d)),
            (
                format!("x:tag@{d}"),
                "docker.io",
                "library/x",
                Some("tag"),
                Some(d),
            ),
            (format!("q.io/o/x:1@{d}"), "q.io", "o/x", Some("1"), Some(d)),
            (
                "my--repo/a.b_c".into(),
                "docker.io",
                "my--repo/a.b_c",
                Some("latest"),
                None,
            ),
        ];
        for (input, domain, repo, tag, digest) in cases {
            let r = Reference::parse(&input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.domain, domain, "{input}");
            assert_eq!(r.repository, repo, "{input}");
            assert_eq!(r.tag.as_deref(), tag, "{input}");
            assert_eq!(r.digest.as_deref(), digest, "{input}");
        }
    }

    #[test]
    fn rejects_invalid_references_naming_the_input() {
        let cases = [
            "",
            "Busybox",
            "docker.io/User/app",
            "busybox:",
            "busybox:-tag",
            "busybox:a/b",
            "busybox@sha256:abc",
            "busybox@md5:0123",
            &format!("busybox@{}", D.to_uppercase().replace("SHA256", "sha256")),
            "busybox@",
            "https://docker.io/busybox",
            "a//b",
            "/busybox",
            "busybox/",
            "a..b/c",
            "_x",
            "x_",
            "a___b",
            "a.-b",
            "host:port/x",
            "-host.io/x",
            &"a".repeat(300),
            &format!("x:{}", "t".repeat(129)),
        ];
        for input in cases {
            match Reference::parse(input) {
                Err(ImageError::InvalidReference { input: i, reason }) => {
                    assert_eq!(i, input);
                    assert!(!reason.is_empty());
                    let msg = ImageError::InvalidReference { input: i, reason }.to_string();
                    assert!(msg.contains(&format!("{input:?}")), "{msg}");
                }
                other => panic!("{input:?} should be invalid, got {other:?}"),
            }
        }
    }

    #[test]
    fn renders_names_and_object() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        assert_eq!(r.object(), "latest");
        assert_eq!(r.tagged_name().unwrap(), "docker.io/library/busybox:latest");
        let r = Reference::parse(&format!("127.0.0.1:5000/x:t@{D}")).unwrap();
        assert_eq!(r.object(), D);
        assert_eq!(r.digest_name(D), format!("127.0.0.1:5000/x@{D}"));
        assert_eq!(r.to_string(), format!("127.0.0.1:5000/x:t@{D}"));
    }
}
