//! Pulling an image: resolve → manifest (via an index) → config → layers,
//! each layer streamed into the unpacker while it downloads, then one
//! metadata transaction.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use oci_spec::image::ImageConfiguration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::digest::chain_ids;
use crate::error::ImageError;
use crate::image::{Image, LayerInfo};
use crate::reference::Reference;
use crate::registry::auth::Credentials;
use crate::registry::error_chain;
use crate::registry::manifest::{
    check_config_media_type, choose_platform, layer_compression, parse_manifest, Manifest,
    ManifestKind, Platform,
};
use crate::registry::FetchedManifest;
use crate::store::{ImageStore, Inner, Progress, ProgressFn};
use crate::unpack::{Chunk, TeeReader};

/// Image configs larger than this are refused.
const CONFIG_LIMIT: u64 = 64 * 1024 * 1024;
/// Chunks buffered between the download and the unpacker.
const CHUNK_QUEUE: usize = 16;
/// Progress is reported each time this many more bytes arrived (and at the end).
const PROGRESS_STEP: u64 = 256 * 1024;

/// Blobs a pull is using, kept from blob GC until the pull ends.
struct Pins {
    inner: Arc<Inner>,
    digests: Vec<String>,
}

impl Pins {
    fn pin(&mut self, digest: &str) {
        let mut pinned = self.inner.pinned.lock().unwrap_or_else(|p| p.into_inner());
        *pinned.entry(digest.to_string()).or_default() += 1;
        self.digests.push(digest.to_string());
    }
}

impl Drop for Pins {
    fn drop(&mut self) {
        let mut pinned = self.inner.pinned.lock().unwrap_or_else(|p| p.into_inner());
        for d in &self.digests {
            if let Some(n) = pinned.get_mut(d) {
                *n -= 1;
                if *n == 0 {
                    pinned.remove(d);
                }
            }
        }
    }
}

/// Everything one layer task needs.
struct LayerJob {
    reference: Reference,
    input: String,
    layer: LayerInfo,
    creds: Option<Credentials>,
    progress: Option<ProgressFn>,
    /// Becomes true when another layer of the same pull failed.
    cancel: watch::Receiver<bool>,
}

impl ImageStore {
    /// Pulls an image (idempotent: present blobs and snapshots are reused)
    /// and records it under its tag and digest reference. Returns the image.
    pub async fn pull(
        &self,
        reference: &str,
        creds: Option<&Credentials>,
        progress: Option<ProgressFn>,
    ) -> Result<Image, ImageError> {
        let r = Reference::parse(reference)?;
        let mut pins = Pins {
            inner: self.inner.clone(),
            digests: Vec::new(),
        };
        let result = self
            .pull_inner(&r, reference, creds, progress, &mut pins)
            .await;
        if let Err(e) = &result {
            tracing::warn!(reference, error = %e, "pull failed");
            // A failed pull keeps nothing: drop the blobs it brought that no
            // image uses and no other pull is using.
            self.inner.discard_unreferenced(&pins.digests);
        }
        self.inner.prune_locks();
        result
    }

    async fn pull_inner(
        &self,
        r: &Reference,
        input: &str,
        creds: Option<&Credentials>,
        progress: Option<ProgressFn>,
        pins: &mut Pins,
    ) -> Result<Image, ImageError> {
        let inner = &self.inner;
        let shown = r.to_string();
        let top = inner.registry.fetch_manifest(r, r.object(), creds).await?;
        pins.pin(&top.digest);
        let (manifest_doc, manifest) =
            match parse_manifest(top.content_type.as_deref(), &top.body, &shown)? {
                ManifestKind::Manifest(m) => (top.clone(), m),
                ManifestKind::Index(index) => {
                    let platform = inner
                        .registry
                        .config()
                        .platform
                        .clone()
                        .unwrap_or_else(Platform::host);
                    let chosen = choose_platform(&index, &platform, &shown)?;
                    let doc = inner
                        .registry
                        .fetch_manifest(r, &chosen.digest, creds)
                        .await?;
                    pins.pin(&doc.digest);
                    match parse_manifest(doc.content_type.as_deref(), &doc.body, &shown)? {
                        ManifestKind::Manifest(m) => (doc, m),
                        ManifestKind::Index(_) => {
                            return Err(ImageError::InvalidContent {
                                what: "index".into(),
                                reference: shown,
                                detail: format!(
                                    "platform entry {} is itself an index",
                                    chosen.digest
                                ),
                            })
                        }
                    }
                }
            };

        let (config, config_size) = self.fetch_config(r, &shown, &manifest, creds, pins).await?;
        let layers = layer_infos(&manifest, &config, &shown)?;
        for l in &layers {
            pins.pin(&l.digest);
        }

        let (cancel_tx, cancel) = watch::channel(false);
        let mut tasks = JoinSet::new();
        for layer in &layers {
            let job = LayerJob {
                reference: r.clone(),
                input: input.to_string(),
                layer: layer.clone(),
                creds: creds.cloned(),
                progress: progress.clone(),
                cancel: cancel.clone(),
            };
            tasks.spawn(inner.clone().ensure_layer(job));
        }
        let mut first_err = None;
        while let Some(joined) = tasks.join_next().await {
            let outcome = joined.unwrap_or_else(|e| {
                Err(ImageError::Registry {
                    registry: r.domain.clone(),
                    detail: format!("layer task failed: {e}"),
                })
            });
            if let Err(e) = outcome {
                if first_err.is_none() {
                    // Stop the other layers: their downloads end, their
                    // unpackers see an error and commit nothing. Waiting for
                    // them (rather than aborting) means no ingest file or
                    // unpack outlives the failed pull.
                    let _ = cancel_tx.send(true);
                    first_err = Some(e);
                }
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }

        // Manifests last: a blob in the store means its image was complete once.
        store_manifest(inner, &top)?;
        if manifest_doc.digest != top.digest {
            store_manifest(inner, &manifest_doc)?;
        }

        let size = layers.iter().map(|l| l.size).sum::<u64>() + config_size;
        let image = Image {
            id: manifest.config.digest.clone(),
            repo_tags: match (&r.digest, r.tagged_name()) {
                (None, Some(t)) => vec![t],
                _ => vec![],
            },
            repo_digests: vec![r.digest_name(&top.digest)],
            size,
            manifest_digest: manifest_doc.digest.clone(),
            chain_ids: layers.iter().map(|l| l.chain_id.clone()).collect(),
            layers,
            config,
            pulled_at: chrono::Utc::now(),
        };
        let meta_image = image.clone();
        let (stored, dropped) = {
            let inner = inner.clone();
            tokio::task::spawn_blocking(move || inner.meta.put_image(&meta_image))
                .await
                .map_err(|e| ImageError::Metadata(format!("metadata task failed: {e}")))??
        };
        if !dropped.is_empty() {
            // Images that lost their last name to this pull: collect their blobs.
            if let Err(e) = self.inner.collect_blobs() {
                tracing::warn!(error = %e, "blob collection after pull failed");
            }
        }
        tracing::info!(reference = input, id = %stored.id, "pulled image");
        Ok(stored)
    }

    /// Fetches (or reads) the config blob and parses it.
    async fn fetch_config(
        &self,
        r: &Reference,
        shown: &str,
        manifest: &Manifest,
        creds: Option<&Credentials>,
        pins: &mut Pins,
    ) -> Result<(ImageConfiguration, u64), ImageError> {
        let inner = &self.inner;
        let desc = &manifest.config;
        check_config_media_type(&desc.media_type, shown)?;
        if desc.size > CONFIG_LIMIT {
            return Err(ImageError::InvalidContent {
                what: "config".into(),
                reference: shown.into(),
                detail: format!("config of {} bytes is too large", desc.size),
            });
        }
        pins.pin(&desc.digest);
        let bytes = if inner.content.contains(&desc.digest) {
            Bytes::from(inner.content.read(&desc.digest)?)
        } else {
            let b = inner
                .registry
                .fetch_blob_bytes(r, &desc.digest, desc.size, creds)
                .await?;
            inner.content.write_blob(&desc.digest, &b)?;
            b
        };
        let config: ImageConfiguration =
            serde_json::from_slice(&bytes).map_err(|e| ImageError::InvalidContent {
                what: "image config".into(),
                reference: shown.into(),
                detail: e.to_string(),
            })?;
        Ok((config, desc.size))
    }
}

/// Layer descriptions: media types checked, diff IDs and chain IDs attached.
fn layer_infos(
    manifest: &Manifest,
    config: &ImageConfiguration,
    shown: &str,
) -> Result<Vec<LayerInfo>, ImageError> {
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != manifest.layers.len() {
        return Err(ImageError::InvalidContent {
            what: "image config".into(),
            reference: shown.into(),
            detail: format!(
                "{} diff_ids for {} layers",
                diff_ids.len(),
                manifest.layers.len()
            ),
        });
    }
    let chains = chain_ids(diff_ids);
    manifest
        .layers
        .iter()
        .zip(diff_ids.iter().zip(chains))
        .map(|(d, (diff_id, chain_id))| {
            Ok(LayerInfo {
                digest: d.digest.clone(),
                size: d.size,
                compression: layer_compression(&d.media_type, shown)?,
                media_type: d.media_type.clone(),
                diff_id: diff_id.clone(),
                chain_id,
            })
        })
        .collect()
}

fn store_manifest(inner: &Inner, m: &FetchedManifest) -> Result<(), ImageError> {
    if inner.content.contains(&m.digest) {
        return Ok(());
    }
    inner.content.write_blob(&m.digest, &m.body)
}

impl Inner {
    /// Makes one layer present: blob stored and snapshot unpacked, fetching
    /// and unpacking at once when neither is there.
    async fn ensure_layer(self: Arc<Self>, job: LayerJob) -> Result<(), ImageError> {
        let layer = &job.layer;
        // Lock order: blob, then chain ID, then a download permit, so a task
        // holding a permit never waits for a lock (no deadlock between pulls).
        let blob_lock = self.lock_for(&format!("blob:{}", layer.digest));
        let _blob = blob_lock.lock().await;
        let chain_lock = self.lock_for(&format!("chain:{}", layer.chain_id));
        let _chain = chain_lock.lock().await;
        let _permit = self
            .downloads
            .acquire()
            .await
            .map_err(|e| ImageError::Metadata(format!("download limiter closed: {e}")))?;
        if *job.cancel.borrow() {
            return Err(cancelled(&layer.digest));
        }

        let have_blob = self.content.contains(&layer.digest);
        let unpacked = {
            let unpacker = self.unpacker.clone();
            let chain_id = layer.chain_id.clone();
            tokio::task::spawn_blocking(move || unpacker.is_unpacked(&chain_id))
                .await
                .unwrap_or(false)
        };
        let report = |done: u64, finished: bool| {
            if let Some(p) = &job.progress {
                p(&Progress {
                    reference: job.input.clone(),
                    digest: layer.digest.clone(),
                    done,
                    total: layer.size,
                    finished,
                });
            }
        };
        match (have_blob, unpacked) {
            (true, true) => {
                tracing::debug!(digest = %layer.digest, "layer present and unpacked");
            }
            (true, false) => {
                let inner = self.clone();
                let l = layer.clone();
                tokio::task::spawn_blocking(move || {
                    let file = inner.content.open_blob(&l.digest)?;
                    let mut reader = std::io::BufReader::with_capacity(256 * 1024, file);
                    inner
                        .unpacker
                        .unpack(&l, &mut reader)
                        .map_err(|source| ImageError::Unpack {
                            digest: l.digest.clone(),
                            source,
                        })
                })
                .await
                .map_err(|e| join_error(&layer.digest, e))??;
            }
            (false, unpacked) => {
                self.download_layer(&job, !unpacked, &report).await?;
            }
        }
        report(layer.size, true);
        Ok(())
    }

    /// Streams a layer blob into the content store and (if `unpack`) the unpacker at once.
    async fn download_layer(
        &self,
        job: &LayerJob,
        unpack: bool,
        report: &impl Fn(u64, bool),
    ) -> Result<(), ImageError> {
        let layer = &job.layer;
        let resp = self
            .registry
            .fetch_blob(&job.reference, &layer.digest, job.creds.as_ref())
            .await?;
        let ingest = self.content.ingest(&layer.digest, Some(layer.size))?;
        let (tx, rx) = mpsc::channel::<Chunk>(CHUNK_QUEUE);
        let unpacker = self.unpacker.clone();
        let l = layer.clone();
        let consumer = tokio::task::spawn_blocking(move || {
            let mut reader = TeeReader::new(rx, ingest);
            let unpacked = if unpack {
                unpacker.unpack(&l, &mut reader)
            } else {
                Ok(())
            };
            match unpacked {
                Ok(()) => reader.finish(),
                // When the stream failed (digest mismatch, network), that is
                // the cause; the unpacker only saw its effect.
                Err(source) => Err(reader.take_error().unwrap_or(ImageError::Unpack {
                    digest: l.digest.clone(),
                    source,
                })),
            }
        });

        let mut stream = resp.bytes_stream();
        let mut done = 0u64;
        let mut reported = 0u64;
        let mut cancel = job.cancel.clone();
        loop {
            let next: Option<Chunk> = tokio::select! {
                c = stream.next() => c.map(|r| r.map_err(|e| ImageError::Registry {
                    registry: job.reference.domain.clone(),
                    detail: format!("downloading blob {}: {}", layer.digest, error_chain(&e)),
                })),
                _ = cancel.changed() => Some(Err(cancelled(&layer.digest))),
            };
            let Some(item) = next else { break };
            let failed = item.is_err();
            if let Ok(b) = &item {
                done += b.len() as u64;
            }
            if tx.send(item).await.is_err() || failed {
                // The consumer stopped (it failed) or the download did.
                break;
            }
            if done - reported >= PROGRESS_STEP {
                reported = done;
                report(done, false);
            }
        }
        drop(tx);
        consumer.await.map_err(|e| join_error(&layer.digest, e))?
    }

    /// Deletes the given blobs unless an image references them or a pull pins them.
    pub(crate) fn discard_unreferenced(&self, digests: &[String]) {
        let referenced = match self.meta.list() {
            Ok(images) => images
                .iter()
                .flat_map(Image::blob_digests)
                .collect::<std::collections::HashSet<_>>(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list images; keeping blobs of the failed pull");
                return;
            }
        };
        let pinned = self.pinned.lock().unwrap_or_else(|p| p.into_inner());
        for d in digests {
            // Our own pin counts once per time we pinned it.
            let ours = digests.iter().filter(|x| *x == d).count();
            let others = pinned.get(d).copied().unwrap_or(0).saturating_sub(ours);
            if referenced.contains(d) || others > 0 {
                continue;
            }
            if let Err(e) = self.content.delete(d) {
                tracing::warn!(digest = %d, error = %e, "cannot remove blob of failed pull");
            }
        }
    }
}

fn cancelled(digest: &str) -> ImageError {
    ImageError::Registry {
        registry: String::new(),
        detail: format!("download of {digest} cancelled: another layer failed"),
    }
}

fn join_error(digest: &str, e: tokio::task::JoinError) -> ImageError {
    ImageError::Unpack {
        digest: digest.to_string(),
        source: crate::error::UnpackError::new(format!("unpack task failed: {e}")),
    }
}
