//! The state shared by every RuntimeService RPC, and small helpers.

use super::backend::{ImageLookup, RootfsProvider};
use super::events::Events;
use super::spec::{HostView, RealHost};
use super::store::container::ContainerRecord;
use super::store::names::NameIndex;
use super::store::sandbox::SandboxRecord;
use super::store::Store;
use cria_runtime::{Runtime, RuntimeConfig, RuntimeError};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tonic::Status;

/// Where the RuntimeService keeps its state, and what it runs.
#[derive(Debug, Clone)]
pub struct RuntimeServiceConfig {
    /// criad's root (`/var/lib/cria`): `pods/`, `containers/` live here.
    pub root: PathBuf,
    /// criad's state dir (`/run/cria`): netns, monitor state.
    pub state: PathBuf,
    /// The `cria-monitor` binary.
    pub monitor_path: PathBuf,
    /// The CNI conf dir (network config; NetworkReady).
    pub cni_conf_dir: PathBuf,
    /// Where CNI plugins are looked for, in order.
    pub cni_bin_dirs: Vec<PathBuf>,
}

/// Stores, name indexes, events and the seams to the runtime, the images
/// and the snapshots.
pub struct RuntimeContext {
    pub(crate) config: RuntimeServiceConfig,
    pub(crate) runtime: Runtime,
    pub(crate) sandboxes: Store<SandboxRecord>,
    pub(crate) containers: Store<ContainerRecord>,
    pub(crate) sandbox_names: NameIndex,
    pub(crate) container_names: NameIndex,
    pub(crate) events: Events,
    pub(crate) images: Arc<dyn ImageLookup>,
    pub(crate) rootfs: Arc<dyn RootfsProvider>,
    pub(crate) host: Arc<dyn HostView>,
    /// Pod CIDR from UpdateRuntimeConfig, offered to CNI plugins.
    pub(crate) pod_cidr: Mutex<String>,
    /// The CNI client (pod networks; its result cache is `<root>/cni-cache`).
    pub(crate) cni: cria_cni::Cni,
    /// The streaming server (exec/attach/port-forward), once started.
    pub(crate) streaming: std::sync::OnceLock<cria_streaming::StreamingServer>,
    /// Called after a container is removed: its snapshots may now be
    /// unreferenced (its image may be gone already), so GC gets a chance.
    pub(crate) container_removed: std::sync::OnceLock<ContainerRemovedHook>,
}

/// See [`RuntimeContext::on_container_removed`].
pub(crate) type ContainerRemovedHook = Box<dyn Fn() + Send + Sync>;

impl RuntimeContext {
    /// Opens (creating if needed) `<root>/pods` and `<root>/containers`.
    /// Nothing is loaded until [`super::RuntimeServiceImpl::recover`].
    pub fn open(
        config: RuntimeServiceConfig,
        images: Arc<dyn ImageLookup>,
        rootfs: Arc<dyn RootfsProvider>,
    ) -> std::io::Result<Self> {
        let to_io = |e: super::store::StoreError| std::io::Error::other(e.to_string());
        let runtime = Runtime::new(RuntimeConfig {
            monitor_path: config.monitor_path.clone(),
            state_root: config.state.clone(),
        });
        let mut cni_options = cria_cni::CniOptions::new(config.root.join("cni-cache"));
        cni_options.conf_dir = config.cni_conf_dir.clone();
        if !config.cni_bin_dirs.is_empty() {
            cni_options.bin_dirs = config.cni_bin_dirs.clone();
        }
        Ok(RuntimeContext {
            cni: cria_cni::Cni::new(cni_options),
            sandboxes: Store::open(config.root.join("pods")).map_err(to_io)?,
            containers: Store::open(config.root.join("containers")).map_err(to_io)?,
            config,
            runtime,
            sandbox_names: NameIndex::default(),
            container_names: NameIndex::default(),
            events: Events::default(),
            images,
            rootfs,
            host: Arc::new(RealHost),
            pod_cidr: Mutex::new(String::new()),
            streaming: std::sync::OnceLock::new(),
            container_removed: std::sync::OnceLock::new(),
        })
    }

    /// Snapshot chain ids used by existing containers: image GC must keep
    /// them even after the image itself is removed.
    pub fn chain_ids_in_use(&self) -> HashSet<String> {
        self.containers
            .list()
            .into_iter()
            .flat_map(|c| c.chain_ids)
            .collect()
    }

    /// Sets the hook run after each container removal (the daemon's
    /// snapshot GC); only the first call takes effect.
    pub fn on_container_removed(&self, hook: impl Fn() + Send + Sync + 'static) {
        let _ = self.container_removed.set(Box::new(hook));
    }

    /// The pod CIDR kubelet last set (empty until UpdateRuntimeConfig).
    pub fn pod_cidr(&self) -> String {
        self.pod_cidr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Now, in ns since the epoch (CRI timestamps).
pub(crate) fn now_ns() -> i64 {
    system_time_ns(std::time::SystemTime::now())
}

/// A time in ns since the epoch (0 for times before it).
pub(crate) fn system_time_ns(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A new 64-hex id.
pub(crate) fn new_id() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// Runs blocking work (fork+exec, waits, file system walks) off the async
/// threads. The work finishes even if the RPC is cancelled, so a setup is
/// never abandoned half-way.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("blocking task failed: {e}")))
}

/// The gRPC status for a runtime error (the mapping lives in
/// `crate::error`, the one place where crate errors become statuses).
pub(crate) fn runtime_status(err: RuntimeError) -> Status {
    Status::from(crate::error::ShimError::from(err))
}
