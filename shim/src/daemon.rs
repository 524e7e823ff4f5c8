//! The daemon's shared context: configuration and the stores every CRI
//! service works on. Built once at start-up and shared as `Arc<Daemon>`.
//!
//! The RuntimeService keeps its own state in a [`RuntimeContext`] held here;
//! this file gives it the real image and rootfs seams ([`StoreImages`],
//! [`OverlayRootfs`]) and asks it which snapshots its containers use, so that
//! removing an image never removes a snapshot a container is built on.

use std::collections::HashSet;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cria_image_store::{ImageStore, ImageStoreConfig, RegistryConfig as StoreRegistryConfig};
use cria_overlay::{Rootfs, SnapshotStore};
use tokio::sync::RwLock;
use tonic::Status;

use crate::config::Config;
use crate::error::ShimError;
use crate::layer_unpacker::SnapshotUnpacker;
use crate::progress_service::PullProgressHub;
use crate::runtime_service::backend::{ImageLookup, LayerUsage, ResolvedImage, RootfsProvider};
use crate::runtime_service::context::RuntimeServiceConfig;
use crate::runtime_service::RuntimeContext;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// A directory could not be created or given mode 0700.
    #[error("preparing directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The image store could not be opened.
    #[error("opening the image store in {path}: {source}")]
    ImageStore {
        /// Its root.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: cria_image_store::ImageError,
    },
    /// The snapshot store could not be opened.
    #[error("opening the snapshot store in {path}: {source}")]
    Snapshots {
        /// Its directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: cria_overlay::OverlayError,
    },
    /// The runtime service's stores could not be opened.
    #[error("opening the sandbox and container stores in {path}: {source}")]
    Runtime {
        /// criad's root.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Everything the CRI services share.
pub struct Daemon {
    /// The effective configuration (file + flags).
    pub config: Config,
    /// Images: pulls, records, blobs.
    pub images: ImageStore,
    /// Unpacked layers, one directory per chain ID.
    pub snapshots: SnapshotStore,
    /// Sandboxes, containers and the runtime (the RuntimeService's state).
    pub runtime: Arc<RuntimeContext>,
    /// Progress of running pulls, for `cria.v1alpha.PullProgress`.
    pub pulls: Arc<PullProgressHub>,
    /// Orders snapshot garbage collection against pulls, which unpack
    /// snapshots before their image record exists: a pull holds it shared
    /// for its whole duration, snapshot GC exclusively.
    pub snapshot_gate: RwLock<()>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Creates `path` and its missing parents with mode 0700, and makes `path`
/// itself 0700 even if it existed with another mode.
pub fn create_private_dir(path: &Path) -> Result<(), DaemonError> {
    let dir_err = |source| DaemonError::Dir {
        path: path.to_path_buf(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(dir_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(dir_err)
}

impl Daemon {
    /// Opens the stores under `config.root` and `config.state` (creating
    /// them, mode 0700). Touches nothing outside those two directories.
    /// Sandboxes and containers are not loaded yet: the RuntimeService's
    /// recovery does that before criad serves.
    pub fn open(config: Config) -> Result<Daemon, DaemonError> {
        create_private_dir(&config.root)?;
        create_private_dir(&config.state)?;

        let snapshots_dir = config.root.join("snapshots");
        let snapshots =
            SnapshotStore::open(&snapshots_dir).map_err(|source| DaemonError::Snapshots {
                path: snapshots_dir,
                source,
            })?;
        let unpacker = Arc::new(SnapshotUnpacker::new(snapshots.clone()));
        let images = ImageStore::open(image_store_config(&config), unpacker).map_err(|source| {
            DaemonError::ImageStore {
                path: config.root.clone(),
                source,
            }
        })?;
        let runtime = RuntimeContext::open(
            RuntimeServiceConfig {
                root: config.root.clone(),
                state: config.state.clone(),
                monitor_path: config.monitor_path(),
                cni_conf_dir: config.cni.conf_dir.clone(),
                cni_bin_dirs: config.cni.bin_dirs.clone(),
            },
            Arc::new(StoreImages(images.clone())),
            Arc::new(OverlayRootfs(snapshots.clone())),
        )
        .map_err(|source| DaemonError::Runtime {
            path: config.root.clone(),
            source,
        })?;
        Ok(Daemon {
            config,
            images,
            snapshots,
            runtime: Arc::new(runtime),
            pulls: Arc::new(PullProgressHub::new()),
            snapshot_gate: RwLock::new(()),
        })
    }

    /// Removes every snapshot that no image and no container references.
    /// Runs now if no pull holds the gate; otherwise it is deferred to a
    /// background task that runs once the pulls are done, so an image
    /// removal never waits for an unrelated pull. Returns the chain IDs
    /// removed now (empty when deferred).
    pub async fn collect_snapshots(self: &Arc<Self>) -> Result<Vec<String>, ShimError> {
        match self.snapshot_gate.try_write() {
            Ok(guard) => {
                let daemon = self.clone();
                let removed = tokio::task::spawn_blocking(move || daemon.collect_snapshots_now())
                    .await
                    .map_err(|e| ShimError::task("snapshot gc", e))?;
                drop(guard);
                removed
            }
            Err(_) => {
                let daemon = self.clone();
                tokio::spawn(async move {
                    let _guard = daemon.snapshot_gate.write().await;
                    let worker = daemon.clone();
                    match tokio::task::spawn_blocking(move || worker.collect_snapshots_now()).await
                    {
                        Ok(Ok(removed)) => {
                            tracing::debug!(count = removed.len(), "deferred snapshot gc done");
                        }
                        Ok(Err(e)) => tracing::warn!(error = %e, "deferred snapshot gc failed"),
                        Err(e) => tracing::warn!(error = %e, "deferred snapshot gc task failed"),
                    }
                });
                Ok(Vec::new())
            }
        }
    }

    /// Runs snapshot GC after every container removal, so the snapshots of
    /// an image removed while a container used it go with the container.
    /// Holds the daemon weakly (the daemon owns the runtime context).
    pub fn collect_snapshots_after_container_removal(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        self.runtime.on_container_removed(move || {
            let Some(daemon) = weak.upgrade() else {
                return;
            };
            tokio::spawn(async move {
                if let Err(e) = daemon.collect_snapshots().await {
                    tracing::warn!(error = %e, "snapshot gc after container removal failed");
                }
            });
        });
    }

    /// The GC itself; the caller holds `snapshot_gate` exclusively.
    fn collect_snapshots_now(&self) -> Result<Vec<String>, ShimError> {
        // Containers first: a container created meanwhile from a still
        // listed image is covered by the image's references.
        let mut keep: HashSet<String> = self.runtime.chain_ids_in_use();
        keep.extend(self.images.referenced_chain_ids()?);
        let mut removed = Vec::new();
        for chain_id in self.snapshots.list()? {
            if !keep.contains(&chain_id) && self.snapshots.remove(&chain_id)? {
                tracing::info!(%chain_id, "removed unreferenced snapshot");
                removed.push(chain_id);
            }
        }
        Ok(removed)
    }
}

/// The RuntimeService's view of the image store.
struct StoreImages(ImageStore);

impl ImageLookup for StoreImages {
    fn resolve(&self, name_or_id: &str) -> Result<Option<ResolvedImage>, Status> {
        let image = self.0.resolve(name_or_id).map_err(ShimError::from)?;
        Ok(image.map(|i| ResolvedImage {
            id: i.id,
            config: i.config,
            chain_ids: i.chain_ids,
        }))
    }
}

/// The RuntimeService's rootfs seam over overlay's snapshots.
struct OverlayRootfs(SnapshotStore);

impl RootfsProvider for OverlayRootfs {
    fn mount(
        &self,
        chain_ids: &[String],
        container_dir: &Path,
        target: &Path,
    ) -> Result<(), Status> {
        let rootfs = Rootfs::prepare(&self.0, chain_ids, container_dir).map_err(ShimError::from)?;
        rootfs.mount(target).map_err(ShimError::from)?;
        Ok(())
    }

    fn unmount(&self, target: &Path) -> Result<(), Status> {
        cria_overlay::unmount(target).map_err(ShimError::from)?;
        Ok(())
    }

    fn usage(&self, container_dir: &Path) -> Result<LayerUsage, Status> {
        // `upper/` is where overlay's Rootfs keeps the writable layer.
        let usage =
            cria_overlay::disk_usage(&container_dir.join("upper")).map_err(ShimError::from)?;
        Ok(LayerUsage {
            bytes: usage.bytes,
            inodes: usage.inodes,
        })
    }
}

/// The image store's settings from ours.
fn image_store_config(config: &Config) -> ImageStoreConfig {
    let r = &config.registry;
    let mut c = ImageStoreConfig::new(&config.root);
    c.max_concurrent_downloads = r.max_concurrent_downloads;
    c.registry = StoreRegistryConfig {
        certs_dir: Some(r.certs_dir.clone()),
        insecure_hosts: r.insecure.clone(),
        mirrors: r
            .mirrors
            .iter()
            .map(|(host, urls)| (host.clone(), urls.clone()))
            .collect(),
        auth_file: r.auth_file.clone(),
        platform: None,
    };
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn isolated_config(dir: &Path) -> Config {
        Config {
            root: dir.join("root"),
            state: dir.join("state"),
            ..Config::default()
        }
    }

    #[test]
    fn open_creates_private_dirs_only_under_root_and_state() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = Daemon::open(isolated_config(dir.path())).unwrap();
        for d in [&daemon.config.root, &daemon.config.state] {
            assert_eq!(std::fs::metadata(d).unwrap().mode() & 0o777, 0o700);
        }
        let mut top: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        top.sort();
        assert_eq!(top, vec!["root", "state"]);
    }

    #[test]
    fn create_private_dir_tightens_an_existing_dir() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("loose");
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        create_private_dir(&d).unwrap();
        assert_eq!(std::fs::metadata(&d).unwrap().mode() & 0o777, 0o700);
    }

    /// Commits an empty-ish snapshot from a one-file tar and returns its chain ID.
    fn commit_snapshot(store: &SnapshotStore, content: &str) -> String {
        use sha2::{Digest, Sha256};
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("f"), content).unwrap();
        let tar = std::process::Command::new("tar")
            .arg("-C")
            .arg(src.path())
            .args(["-cf", "-", "f"])
            .output()
            .unwrap()
            .stdout;
        let diff_id = format!("sha256:{}", hex::encode(Sha256::digest(&tar)));
        store
            .apply_layer(
                &diff_id,
                &mut tar.as_slice(),
                cria_overlay::Compression::None,
                &diff_id,
            )
            .unwrap();
        diff_id
    }

    #[tokio::test]
    async fn snapshot_gc_removes_what_nothing_references() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = Arc::new(Daemon::open(isolated_config(dir.path())).unwrap());
        let unused = commit_snapshot(&daemon.snapshots, "unused");
        assert_eq!(daemon.collect_snapshots().await.unwrap(), vec![unused]);
        assert!(daemon.snapshots.list().unwrap().is_empty());
    }

    #[tokio::test]
    async fn snapshot_gc_is_deferred_while_a_pull_holds_the_gate() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = Arc::new(Daemon::open(isolated_config(dir.path())).unwrap());
        let unused = commit_snapshot(&daemon.snapshots, "unused");
        let pull = daemon.snapshot_gate.read().await;
        assert!(daemon.collect_snapshots().await.unwrap().is_empty());
        assert_eq!(daemon.snapshots.list().unwrap(), vec![unused]);
        drop(pull);
        // The deferred GC runs once the gate is free (bounded wait).
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while !daemon.snapshots.list().unwrap().is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "deferred gc never ran"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}
