//! Registry authentication: credentials (from CRI or a docker `config.json`),
//! `WWW-Authenticate` challenges and cached bearer tokens.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::Deserialize;

use crate::error::ImageError;

/// Credentials for one registry, as CRI's `AuthConfig` carries them.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// User name for basic auth or a token request.
    pub username: String,
    /// Password for basic auth or a token request.
    pub password: String,
    /// base64 of `user:password` (used when username/password are empty).
    pub auth: String,
    /// A refresh token exchanged for access tokens (OAuth2 `refresh_token` grant).
    pub identity_token: String,
    /// A bearer token sent to the registry as is.
    pub registry_token: String,
    /// The registry these credentials are for (informational).
    pub server_address: String,
}

impl fmt::Debug for Credentials {
    // Secrets never reach logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |s: &str| if s.is_empty() { "" } else { "<redacted>" };
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &set(&self.password))
            .field("auth", &set(&self.auth))
            .field("identity_token", &set(&self.identity_token))
            .field("registry_token", &set(&self.registry_token))
            .field("server_address", &self.server_address)
            .finish()
    }
}

impl Credentials {
    /// The user name and password, from the fields or decoded from `auth`.
    pub fn user_password(&self) -> Option<(String, String)> {
        if !self.username.is_empty() || !self.password.is_empty() {
            return Some((self.username.clone(), self.password.clone()));
        }
        if self.auth.is_empty() {
            return None;
        }
        let raw = base64::engine::general_purpose::STANDARD
            .decode(self.auth.trim())
            .ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (u, p) = text.split_once(':')?;
        Some((u.to_string(), p.to_string()))
    }

    /// Whether no credential at all is set.
    pub fn is_empty(&self) -> bool {
        self.user_password().is_none()
            && self.identity_token.is_empty()
            && self.registry_token.is_empty()
    }
}

/// Credentials read from a docker-style `config.json` (`auths` only;
/// credential helpers are not run).
#[derive(Debug, Default, Clone)]
pub struct DockerConfig {
    auths: HashMap<String, Credentials>,
}

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    auths: HashMap<String, RawAuth>,
}

#[derive(Deserialize, Default)]
struct RawAuth {
    #[serde(default)]
    auth: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    identitytoken: String,
    #[serde(default)]
    registrytoken: String,
}

impl DockerConfig {
    /// Parses the text of a `config.json`.
    pub fn parse(text: &str) -> Result<DockerConfig, String> {
        let raw: RawConfig = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let auths = raw
            .auths
            .into_iter()
            .map(|(key, a)| {
                let host = normalise_auth_key(&key);
                let creds = Credentials {
                    username: a.username,
                    password: a.password,
                    auth: a.auth,
                    identity_token: a.identitytoken,
                    registry_token: a.registrytoken,
                    server_address: key,
                };
                (host, creds)
            })
            .collect();
        Ok(DockerConfig { auths })
    }

    /// Loads a `config.json`; a missing file means no credentials.
    pub fn load(path: &Path) -> Result<DockerConfig, ImageError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(ImageError::io("reading auth file", path, e)),
        };
        Self::parse(&text).map_err(|detail| ImageError::Config {
            host: path.display().to_string(),
            detail: format!("invalid docker config.json: {detail}"),
        })
    }

    /// Credentials for a registry host (as in a reference, e.g. `docker.io`).
    pub fn lookup(&self, host: &str) -> Option<&Credentials> {
        self.auths.get(&normalise_auth_key(host))
    }
}

/// `https://index.docker.io/v1/` → `docker.io`; `http://h:5000/v2/` → `h:5000`.
fn normalise_auth_key(key: &str) -> String {
    let no_scheme = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = no_scheme.split('/').next().unwrap_or(no_scheme);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_string()
        }
        h => h.to_string(),
    }
}

/// An authentication challenge from a 401 answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// Get a token from `realm` for `service`/`scope`, then send it as Bearer.
    Bearer {
        /// The token endpoint URL.
        realm: String,
        /// The service name to ask a token for.
        service: Option<String>,
        /// The scope the registry wants (else the client's own).
        scope: Option<String>,
    },
    /// Send user and password as Basic.
    Basic,
}

/// Parses one `WWW-Authenticate` header value; `None` for schemes we do not speak.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let params = parse_params(rest);
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" => Some(Challenge::Bearer {
            realm: params.get("realm")?.clone(),
            service: params.get("service").cloned(),
            scope: params.get("scope").cloned(),
        }),
        "basic" => Some(Challenge::Basic),
        _ => None,
    }
}

/// `k="v", k2=v2` → map; quoted values may hold commas and `\"`.
fn parse_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            return out;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek() {
                if *c == ',' {
                    break;
                }
                value.push(*c);
                chars.next();
            }
        }
        out.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
}

/// A token endpoint's answer (docker token spec and OAuth2 field names).
#[derive(Debug, Deserialize)]
pub(crate) struct TokenResponse {
    #[serde(default)]
    pub token: String,
    #[serde(default)]
    pub access_token: String,
    #[serde(default)]
    pub expires_in: Option<u64>,
}

impl TokenResponse {
    /// The token, whichever field carried it.
    pub(crate) fn into_token(self) -> Option<(String, Duration)> {
        let token = if self.token.is_empty() {
            self.access_token
        } else {
            self.token
        };
        if token.is_empty() {
            return None;
        }
        // The token spec's default lifetime is 60 s; renew a little early.
        let secs = self.expires_in.unwrap_or(60).max(10);
        Some((token, Duration::from_secs(secs - 5)))
    }
}

/// Bearer tokens per (registry host, scope), kept until they expire.
#[derive(Debug, Default)]
pub(crate) struct TokenCache {
    tokens: Mutex<HashMap<(String, String), (String, Instant)>>,
}

impl TokenCache {
    /// A cached, unexpired token.
    pub(crate) fn get(&self, host: &str, scope: &str) -> Option<String> {
        let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens
            .get(&(host.to_string(), scope.to_string()))
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(t, _)| t.clone())
    }

    /// Remembers a token for its lifetime.
    pub(crate) fn put(&self, host: &str, scope: &str, token: String, ttl: Duration) {
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens.insert(
            (host.to_string(), scope.to_string()),
            (token, Instant::now() + ttl),
        );
    }

    /// Forgets a token the registry refused.
    pub(crate) fn forget(&self, host: &str, scope: &str) {
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens.remove(&(host.to_string(), scope.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_and_basic_challenges() {
        let cases = [
            (
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
                Some(Challenge::Bearer {
                    realm: "https://auth.docker.io/token".into(),
                    service: Some("registry.docker.io".into()),
                    scope: Some("repository:library/busybox:pull".into()),
                }),
            ),
            (
                r#"bearer realm="http://127.0.0.1:9/t", scope="repository:a/b:pull,push""#,
                Some(Challenge::Bearer {
                    realm: "http://127.0.0.1:9/t".into(),
                    service: None,
                    scope: Some("repository:a/b:pull,push".into()),
                }),
            ),
            (
                r#"Bearer service=reg,realm="http://x/\"q\"""#,
                Some(Challenge::Bearer {
                    realm: "http://x/\"q\"".into(),
                    service: Some("reg".into()),
                    scope: None,
                }),
            ),
            (r#"Basic realm="Registry Realm""#, Some(Challenge::Basic)),
            ("Basic", Some(Challenge::Basic)),
            (r#"Bearer service="no realm""#, None),
            (r#"Negotiate abc"#, None),
        ];
        for (header, want) in cases {
            assert_eq!(parse_challenge(header), want, "{header}");
        }
    }

    #[test]
    fn parses_docker_config_json() {
        let text = r#"{
          "auths": {
            "https://index.docker.io/v1/": {"auth": "dXNlcjpwYXNz"},
            "127.0.0.1:5000": {"username": "u2", "password": "p2"},
            "http://reg.example:8443/v2/": {"identitytoken": "refresh"},
            "ghcr.io": {"registrytoken": "bearer-token"}
          },
          "credsStore": "desktop"
        }"#;
        let cfg = DockerConfig::parse(text).unwrap();
        let hub = cfg.lookup("docker.io").unwrap();
        assert_eq!(hub.user_password(), Some(("user".into(), "pass".into())));
        assert_eq!(hub.server_address, "https://index.docker.io/v1/");
        assert_eq!(
            cfg.lookup("127.0.0.1:5000").unwrap().user_password(),
            Some(("u2".into(), "p2".into()))
        );
        assert_eq!(
            cfg.lookup("reg.example:8443").unwrap().identity_token,
            "refresh"
        );
        assert_eq!(
            cfg.lookup("ghcr.io").unwrap().registry_token,
            "bearer-token"
        );
        assert!(cfg.lookup("quay.io").is_none());
        assert!(DockerConfig::parse("{not json").is_err());
        assert!(DockerConfig::parse("{}")
            .unwrap()
            .lookup("docker.io")
            .is_none());
    }

    #[test]
    fn credentials_decode_auth_and_redact_debug() {
        let c = Credentials {
            auth: "YWxpY2U6czNjcjN0Om9r".into(), // alice:s3cr3t:ok
            ..Default::default()
        };
        assert_eq!(
            c.user_password(),
            Some(("alice".into(), "s3cr3t:ok".into()))
        );
        assert!(!c.is_empty());
        assert!(!format!("{c:?}").contains("YWxp"));
        let bad = Credentials {
            auth: "!!!".into(),
            ..Default::default()
        };
        assert!(bad.is_empty());
    }

    #[test]
    fn token_cache_expires() {
        let cache = TokenCache::default();
        cache.put("h", "s", "t".into(), Duration::from_secs(60));
        assert_eq!(cache.get("h", "s").as_deref(), Some("t"));
        assert!(cache.get("h", "other").is_none());
        cache.put("h", "s", "t".into(), Duration::ZERO);
        assert!(cache.get("h", "s").is_none());
        let r: TokenResponse =
            serde_json::from_str(r#"{"access_token":"a","expires_in":300}"#).unwrap();
        assert_eq!(r.into_token(), Some(("a".into(), Duration::from_secs(295))));
        let r: TokenResponse = serde_json::from_str(r#"{}"#).unwrap();
        assert_eq!(r.into_token(), None);
    }
}
