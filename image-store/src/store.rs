//! `ImageStore`: the crate's front door, tying together the registry
//! client, the content store, the metadata and the caller's unpacker.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

use crate::content::ContentStore;
use crate::error::ImageError;
use crate::image::Image;
use crate::metadata::Metadata;
use crate::reference::Reference;
use crate::registry::hosts::RegistryConfig;
use crate::registry::RegistryClient;
use crate::unpack::LayerUnpacker;

/// Default bound on parallel layer downloads.
pub const DEFAULT_MAX_CONCURRENT_DOWNLOADS: usize = 3;
/// Shortest image-ID prefix accepted in lookups.
const MIN_ID_PREFIX: usize = 12;

/// Settings for an [`ImageStore`].
#[derive(Debug, Clone)]
pub struct ImageStoreConfig {
    /// Root directory; content goes to `<root>/content`, metadata to `<root>/meta`.
    pub root: PathBuf,
    /// Registry client settings.
    pub registry: RegistryConfig,
    /// How many layers download at once (over all pulls); at least 1.
    pub max_concurrent_downloads: usize,
}

impl ImageStoreConfig {
    /// Defaults for a root directory.
    pub fn new(root: impl Into<PathBuf>) -> ImageStoreConfig {
        ImageStoreConfig {
            root: root.into(),
            registry: RegistryConfig::default(),
            max_concurrent_downloads: DEFAULT_MAX_CONCURRENT_DOWNLOADS,
        }
    }
}

/// Progress of one layer (or config) of a pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// The reference being pulled, as the caller gave it.
    pub reference: String,
    /// Digest of the blob.
    pub digest: String,
    /// Bytes downloaded so far (equal to `total` when it was already present).
    pub done: u64,
    /// Size of the blob.
    pub total: u64,
    /// Whether the layer is stored and unpacked.
    pub finished: bool,
}

/// Callback receiving pull progress; called from the pull's tasks.
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// Bytes and inodes used on disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FsUsage {
    /// Bytes allocated on disk.
    pub bytes: u64,
    /// Files and directories.
    pub inodes: u64,
}

/// Pulls, stores, lists and removes images.
#[derive(Clone)]
pub struct ImageStore {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for ImageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageStore")
            .field("root", &self.inner.root)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub(crate) root: PathBuf,
    pub(crate) content: ContentStore,
    pub(crate) meta: Metadata,
    pub(crate) registry: RegistryClient,
    pub(crate) unpacker: Arc<dyn LayerUnpacker>,
    pub(crate) downloads: Semaphore,
    /// One async mutex per blob digest / chain ID being worked on, so two
    /// pulls never fetch or unpack the same thing at once.
    pub(crate) locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Blobs in use by pulls in progress (digest → number of pulls); blob
    /// GC leaves them alone. Taking this lock also orders GC against pulls.
    pub(crate) pinned: Mutex<HashMap<String, usize>>,
}

impl ImageStore {
    /// Opens (creating) the store under `config.root`; removes stale ingest files.
    pub fn open(
        config: ImageStoreConfig,
        unpacker: Arc<dyn LayerUnpacker>,
    ) -> Result<ImageStore, ImageError> {
        let content = ContentStore::open(&config.root.join("content"))?;
        let meta = Metadata::open(&config.root.join("meta"))?;
        let registry = RegistryClient::new(config.registry)?;
        Ok(ImageStore {
            inner: Arc::new(Inner {
                root: config.root,
                content,
                meta,
                registry,
                unpacker,
                downloads: Semaphore::new(config.max_concurrent_downloads.max(1)),
                locks: Mutex::new(HashMap::new()),
                pinned: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The content store (blobs by digest).
    pub fn content(&self) -> &ContentStore {
        &self.inner.content
    }

    /// Every image.
    pub fn list(&self) -> Result<Vec<Image>, ImageError> {
        self.inner.meta.list()
    }

    /// Finds an image by ID (`sha256:<hex>`, or a unique prefix of at least
    /// 12 hex digits), tag reference or digest reference, normalised docker-style.
    pub fn resolve(&self, name_or_id: &str) -> Result<Option<Image>, ImageError> {
        match self.resolve_id(name_or_id)? {
            Some(id) => self.inner.meta.get(&id),
            None => Ok(None),
        }
    }

    /// The image a name or ID refers to, and what removing it by that name means.
    pub(crate) fn resolve_target(
        &self,
        name_or_id: &str,
    ) -> Result<Option<(String, RemoveBy)>, ImageError> {
        if let Some(id) = self.lookup_id_prefix(name_or_id)? {
            return Ok(Some((id, RemoveBy::Image)));
        }
        let r = Reference::parse(name_or_id)?;
        let (name, by) = match (&r.digest, r.tagged_name()) {
            (Some(d), _) => (r.digest_name(d), RemoveBy::Image),
            (None, Some(tagged)) => (tagged.clone(), RemoveBy::Tag(tagged)),
            // parse() gives every digest-less reference a tag.
            (None, None) => return Ok(None),
        };
        Ok(self.inner.meta.id_for_name(&name)?.map(|id| (id, by)))
    }

    fn resolve_id(&self, name_or_id: &str) -> Result<Option<String>, ImageError> {
        Ok(self.resolve_target(name_or_id)?.map(|(id, _)| id))
    }

    /// `sha256:<hex…>` or bare hex of at least 12 digits → the unique matching ID.
    fn lookup_id_prefix(&self, s: &str) -> Result<Option<String>, ImageError> {
        let hex = s.strip_prefix("sha256:").unwrap_or(s);
        let is_hex = hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !is_hex || hex.len() < MIN_ID_PREFIX || hex.len() > 64 {
            return Ok(None);
        }
        let ids = self.inner.meta.ids_with_prefix(&format!("sha256:{hex}"))?;
        match ids.len() {
            0 => Ok(None),
            1 => Ok(ids.into_iter().next()),
            n => Err(ImageError::InvalidReference {
                input: s.to_string(),
                reason: format!("ambiguous image ID prefix: {n} images match"),
            }),
        }
    }
}

/// What removing an image by a given name means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RemoveBy {
    /// Named by ID or digest reference: the whole image goes.
    Image,
    /// Named by tag: only that tag goes (and the image with its last name).
    Tag(String),
}

impl Inner {
    /// The async mutex for one key (a blob digest or a chain ID).
    pub(crate) fn lock_for(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(key.to_string()).or_default().clone()
    }

    /// Drops lock entries nobody holds or waits for.
    pub(crate) fn prune_locks(&self) {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.retain(|_, l| Arc::strong_count(l) > 1);
    }
}
