//! A registry client for the OCI Distribution Spec, written on reqwest.
//!
//! Hand-written rather than built on oci-client because cria needs, all at
//! once: per-host CA and client certificates, mirrors with fallback to the
//! origin, variant-aware platform choice, and blob bodies streamed chunk by
//! chunk into the unpacker; oci-client does not offer all of these (its
//! `pull()` buffers layers, its platform resolver ignores variants).

pub mod auth;
pub mod hosts;
pub mod manifest;

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use bytes::Bytes;
use futures::StreamExt;
use reqwest::header::{HeaderMap, ACCEPT, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};

use crate::digest::sha256_digest;
use crate::error::ImageError;
use crate::reference::Reference;
use auth::{parse_challenge, Challenge, Credentials, DockerConfig, TokenCache, TokenResponse};
use hosts::{Endpoint, RegistryConfig};

/// Manifests larger than this are refused (containerd uses the same bound).
const MANIFEST_LIMIT: u64 = 4 * 1024 * 1024;
/// How much of an error body goes into an error message.
const BODY_SNIPPET: usize = 300;

/// A manifest (or index) as fetched from a registry.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// The raw bytes (what the digest covers).
    pub body: Bytes,
    /// `sha256:` digest of `body`.
    pub digest: String,
    /// The response's Content-Type.
    pub content_type: Option<String>,
}

/// The registry client: one HTTP client per host, cached tokens, mirrors.
pub struct RegistryClient {
    config: RegistryConfig,
    docker_config: DockerConfig,
    clients: Mutex<HashMap<String, reqwest::Client>>,
    /// The scheme that worked per host, so the HTTP fallback is probed once.
    schemes: Mutex<HashMap<String, &'static str>>,
    tokens: TokenCache,
    /// Hosts that answered with a Basic challenge.
    basic_hosts: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What a request is about, for error messages and auth scope.
struct Target<'a> {
    reference: &'a Reference,
    creds: Option<&'a Credentials>,
    what: String,
}

impl RegistryClient {
    /// A client with these settings (reads the auth file now).
    pub fn new(config: RegistryConfig) -> Result<RegistryClient, ImageError> {
        let docker_config = match &config.auth_file {
            Some(path) => DockerConfig::load(path)?,
            None => DockerConfig::default(),
        };
        Ok(RegistryClient {
            config,
            docker_config,
            clients: Mutex::new(HashMap::new()),
            schemes: Mutex::new(HashMap::new()),
            tokens: TokenCache::default(),
            basic_hosts: Mutex::new(HashSet::new()),
        })
    }

    /// The settings this client was built with.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// Fetches a manifest or index by tag or digest. A digest is verified
    /// against the body; a tag's body is checked against Docker-Content-Digest.
    pub async fn fetch_manifest(
        &self,
        reference: &Reference,
        object: &str,
        creds: Option<&Credentials>,
    ) -> Result<FetchedManifest, ImageError> {
        let target = Target {
            reference,
            creds,
            what: if object.starts_with("sha256:") {
                format!("manifest {object}")
            } else {
                format!("tag {object}")
            },
        };
        let path = format!("manifests/{object}");
        let mut last_err = None;
        for ep in self.config.endpoints(&reference.domain) {
            let result = async {
                let resp = self
                    .get(&ep, &target, &path, manifest::MANIFEST_ACCEPT)
                    .await?;
                let content_type = header_str(resp.headers(), CONTENT_TYPE.as_str());
                let header_digest = header_str(resp.headers(), "docker-content-digest");
                let body = read_limited(resp, MANIFEST_LIMIT, &ep.host, &target.what).await?;
                let digest = sha256_digest(&body);
                let expected = if object.starts_with("sha256:") {
                    Some(object.to_string())
                } else {
                    header_digest.filter(|d| d.starts_with("sha256:"))
                };
                if let Some(expected) = expected {
                    if expected != digest {
                        return Err(ImageError::DigestMismatch {
                            what: format!("manifest of {reference}"),
                            expected,
                            actual: digest,
                        });
                    }
                }
                Ok(FetchedManifest {
                    body,
                    digest,
                    content_type,
                })
            }
            .await;
            match result {
                Ok(m) => return Ok(m),
                Err(e) if ep.mirror => {
                    tracing::warn!(mirror = %ep.host, reference = %reference, error = %e, "mirror failed, trying next endpoint");
                    last_err = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| ImageError::Registry {
            registry: reference.domain.clone(),
            detail: "no endpoint".into(),
        }))
    }

    /// Starts fetching a blob; the body is read as a stream by the caller.
    /// Redirects (to blob storage) are followed.
    pub async fn fetch_blob(
        &self,
        reference: &Reference,
        digest: &str,
        creds: Option<&Credentials>,
    ) -> Result<reqwest::Response, ImageError> {
        let target = Target {
            reference,
            creds,
            what: format!("blob {digest}"),
        };
        let path = format!("blobs/{digest}");
        let mut last_err = None;
        for ep in self.config.endpoints(&reference.domain) {
            match self.get(&ep, &target, &path, "*/*").await {
                Ok(resp) => return Ok(resp),
                Err(e) if ep.mirror => {
                    tracing::warn!(mirror = %ep.host, digest, error = %e, "mirror failed, trying next endpoint");
                    last_err = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| ImageError::Registry {
            registry: reference.domain.clone(),
            detail: "no endpoint".into(),
        }))
    }

    /// Fetches a small blob whole (a config), verifying its digest and size.
    pub async fn fetch_blob_bytes(
        &self,
        reference: &Reference,
        digest: &str,
        size: u64,
        creds: Option<&Credentials>,
    ) -> Result<Bytes, ImageError> {
        let resp = self.fetch_blob(reference, digest, creds).await?;
        let what = format!("blob {digest}");
        let body = read_limited(resp, size, &reference.domain, &what).await?;
        let actual = sha256_digest(&body);
        if actual != digest || body.len() as u64 != size {
            return Err(ImageError::DigestMismatch {
                what,
                expected: digest.to_string(),
                actual,
            });
        }
        Ok(body)
    }

    fn client(&self, host: &str) -> Result<reqwest::Client, ImageError> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(host) {
            return Ok(c.clone());
        }
        let c = self.config.build_client(host)?;
        clients.insert(host.to_string(), c.clone());
        Ok(c)
    }

    /// Credentials for an endpoint: the caller's for the origin, else the auth file's.
    fn creds_for(&self, ep: &Endpoint, target: &Target<'_>) -> Option<Credentials> {
        if !ep.mirror {
            if let Some(c) = target.creds.filter(|c| !c.is_empty()) {
                return Some(c.clone());
            }
            return self.docker_config.lookup(&target.reference.domain).cloned();
        }
        self.docker_config.lookup(&ep.host).cloned()
    }

    /// GET with the challenge flow: anonymous (or cached token) first, then
    /// on 401 a token or basic auth, once. Maps error statuses to errors.
    async fn get(
        &self,
        ep: &Endpoint,
        target: &Target<'_>,
        path: &str,
        accept: &str,
    ) -> Result<reqwest::Response, ImageError> {
        let repo = &target.reference.repository;
        let scope = format!("repository:{repo}:pull");
        let creds = self.creds_for(ep, target);
        let user_pass = creds.as_ref().and_then(Credentials::user_password);
        let url_path = format!("{}/v2/{repo}/{path}", ep.prefix);
        let mut tried_auth = false;
        loop {
            let mut headers = HeaderMap::new();
            if let Ok(v) = accept.parse() {
                headers.insert(ACCEPT, v);
            }
            let fixed_token = creds
                .as_ref()
                .map(|c| c.registry_token.clone())
                .filter(|t| !t.is_empty());
            let token = fixed_token.or_else(|| self.tokens.get(&ep.host, &scope));
            let basic = self
                .basic_hosts
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&ep.host);
            let resp = self
                .send(ep, &url_path, headers, |req| {
                    match (&token, basic, &user_pass) {
                        (Some(t), _, _) => req.bearer_auth(t),
                        (None, true, Some((u, p))) => req.basic_auth(u, Some(p)),
                        _ => req,
                    }
                })
                .await?;
            let used_token = token.is_some();
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && !tried_auth {
                tried_auth = true;
                let challenges: Vec<Challenge> = resp
                    .headers()
                    .get_all(WWW_AUTHENTICATE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .filter_map(parse_challenge)
                    .collect();
                let bearer = challenges.iter().find_map(|c| match c {
                    Challenge::Bearer {
                        realm,
                        service,
                        scope: s,
                    } => Some((realm.clone(), service.clone(), s.clone())),
                    Challenge::Basic => None,
                });
                if let Some((realm, service, challenge_scope)) = bearer {
                    let want_scope = challenge_scope.unwrap_or_else(|| scope.clone());
                    let (tok, ttl) = self
                        .fetch_token(
                            ep,
                            target,
                            &realm,
                            service.as_deref(),
                            &want_scope,
                            creds.as_ref(),
                        )
                        .await?;
                    self.tokens.put(&ep.host, &scope, tok, ttl);
                    continue;
                }
                if challenges.contains(&Challenge::Basic) {
                    if user_pass.is_none() {
                        return Err(self.unauthorized(
                            ep,
                            target,
                            "registry requires credentials (basic auth) and none were given",
                        ));
                    }
                    self.basic_hosts
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(ep.host.clone());
                    continue;
                }
                return Err(self.unauthorized(
                    ep,
                    target,
                    "401 without a usable WWW-Authenticate challenge",
                ));
            }
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                if used_token {
                    self.tokens.forget(&ep.host, &scope);
                }
                let body = snippet(resp).await;
                return Err(self.unauthorized(ep, target, &format!("{status}: {body}")));
            }
            if status == StatusCode::NOT_FOUND {
                return Err(ImageError::NotFound {
                    registry: ep.host.clone(),
                    reference: target.reference.to_string(),
                    what: target.what.clone(),
                });
            }
            if !status.is_success() {
                let body = snippet(resp).await;
                return Err(ImageError::Registry {
                    registry: ep.host.clone(),
                    detail: format!("GET {url_path}: {status}: {body}"),
                });
            }
            return Ok(resp);
        }
    }

    /// Sends one request, trying the endpoint's schemes in order on transport
    /// errors (HTTPS first; HTTP only where allowed) and remembering the one that worked.
    async fn send(
        &self,
        ep: &Endpoint,
        url_path: &str,
        headers: HeaderMap,
        auth: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ImageError> {
        let client = self.client(&ep.host)?;
        let known = self
            .schemes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&ep.host)
            .copied();
        let schemes: Vec<&'static str> = match known {
            Some(s) => vec![s],
            None => ep.schemes.clone(),
        };
        let mut last = None;
        for scheme in schemes {
            let url = format!("{scheme}://{}{url_path}", ep.host);
            let req = auth(client.request(Method::GET, &url).headers(headers.clone()));
            match req.send().await {
                Ok(resp) => {
                    self.schemes
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(ep.host.clone(), scheme);
                    return Ok(resp);
                }
                Err(e) => {
                    tracing::debug!(url, error = %e, "request failed");
                    last = Some(format!("GET {url}: {}", error_chain(&e)));
                }
            }
        }
        Err(ImageError::Registry {
            registry: ep.host.clone(),
            detail: last.unwrap_or_else(|| "no scheme to try".into()),
        })
    }

    /// Gets a bearer token from the challenge's realm: with basic auth (or
    /// anonymously) by GET, or by POSTing a refresh token for identity tokens.
    async fn fetch_token(
        &self,
        ep: &Endpoint,
        target: &Target<'_>,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        creds: Option<&Credentials>,
    ) -> Result<(String, std::time::Duration), ImageError> {
        let client = self.client(&ep.host)?;
        let mut url = reqwest::Url::parse(realm).map_err(|e| ImageError::Registry {
            registry: ep.host.clone(),
            detail: format!("invalid token realm {realm:?}: {e}"),
        })?;
        let identity_token = creds
            .map(|c| c.identity_token.clone())
            .filter(|t| !t.is_empty());
        let req = if let Some(refresh) = identity_token {
            let mut pairs = vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh.as_str()),
                ("client_id", "cria"),
                ("scope", scope),
            ];
            if let Some(s) = service {
                pairs.push(("service", s));
            }
            client
                .request(Method::POST, url)
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(form_encode(&pairs))
        } else {
            {
                let mut q = url.query_pairs_mut();
                if let Some(s) = service {
                    q.append_pair("service", s);
                }
                q.append_pair("scope", scope);
                if let Some((u, _)) = creds.and_then(Credentials::user_password) {
                    q.append_pair("account", &u);
                }
            }
            let req = client.request(Method::GET, url);
            match creds.and_then(Credentials::user_password) {
                Some((u, p)) => req.basic_auth(u, Some(p)),
                None => req,
            }
        };
        let resp = req.send().await.map_err(|e| ImageError::Registry {
            registry: ep.host.clone(),
            detail: format!("token request to {realm}: {}", error_chain(&e)),
        })?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let body = snippet(resp).await;
            return Err(self.unauthorized(
                ep,
                target,
                &format!("token server {realm} refused: {status}: {body}"),
            ));
        }
        if !status.is_success() {
            let body = snippet(resp).await;
            return Err(ImageError::Registry {
                registry: ep.host.clone(),
                detail: format!("token server {realm}: {status}: {body}"),
            });
        }
        let body = read_limited(resp, 1024 * 1024, &ep.host, "token").await?;
        let parsed: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| ImageError::Registry {
                registry: ep.host.clone(),
                detail: format!("token server {realm}: invalid answer: {e}"),
            })?;
        parsed.into_token().ok_or_else(|| ImageError::Registry {
            registry: ep.host.clone(),
            detail: format!("token server {realm} returned no token"),
        })
    }

    fn unauthorized(&self, ep: &Endpoint, target: &Target<'_>, detail: &str) -> ImageError {
        ImageError::Unauthorized {
            registry: ep.host.clone(),
            reference: target.reference.to_string(),
            detail: detail.to_string(),
        }
    }
}

/// Reads a whole body, refusing more than `limit` bytes.
async fn read_limited(
    resp: reqwest::Response,
    limit: u64,
    registry: &str,
    what: &str,
) -> Result<Bytes, ImageError> {
    if resp.content_length().is_some_and(|l| l > limit) {
        return Err(ImageError::Registry {
            registry: registry.to_string(),
            detail: format!("{what} is larger than {limit} bytes"),
        });
    }
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ImageError::Registry {
            registry: registry.to_string(),
            detail: format!("reading {what}: {}", error_chain(&e)),
        })?;
        if out.len() as u64 + chunk.len() as u64 > limit {
            return Err(ImageError::DigestMismatch {
                what: format!("size of {what}"),
                expected: format!("at most {limit} bytes"),
                actual: "more".into(),
            });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(out))
}

/// The first few hundred characters of an error body.
async fn snippet(resp: reqwest::Response) -> String {
    let text = resp.text().await.unwrap_or_default();
    let t = text.trim();
    match t.char_indices().nth(BODY_SNIPPET) {
        Some((i, _)) => format!("{}…", &t[..i]),
        None => t.to_string(),
    }
}

fn header_str(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// An error with its sources (reqwest's own message hides the cause).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}

/// `application/x-www-form-urlencoded` body from pairs.
fn form_encode(pairs: &[(&str, &str)]) -> String {
    // reqwest's `form` feature is not enabled; the URL type's query
    // serializer performs exactly this encoding.
    let mut u = reqwest::Url::parse("http://form.invalid/").expect("static URL parses");
    u.query_pairs_mut().extend_pairs(pairs);
    u.query().unwrap_or("").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding() {
        assert_eq!(
            form_encode(&[("scope", "repository:a/b:pull"), ("x", "a b&c")]),
            "scope=repository%3Aa%2Fb%3Apull&x=a+b%26c"
        );
    }
}
