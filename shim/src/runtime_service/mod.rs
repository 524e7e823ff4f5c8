//! criad's CRI RuntimeService: pod sandboxes and containers.
//!
//! [`RuntimeServiceImpl`] implements the tonic trait and delegates every RPC
//! to one file per RPC group (`sandbox/`, `container/`, `events.rs`,
//! `runtime_info.rs`). State lives in [`context::RuntimeContext`]: the
//! sandbox and container stores, the name indexes, the event channel and the
//! seams to the runtime, the image store and the snapshot store.

pub mod backend;
pub(crate) mod container;
pub mod context;
pub(crate) mod events;
mod filter;
pub(crate) mod recovery;
mod rollback;
pub(crate) mod runtime_info;
pub(crate) mod sandbox;
pub(crate) mod spec;
pub(crate) mod store;

pub use context::{RuntimeContext, RuntimeServiceConfig};

use cria_proto::v1 as cri;
use cria_proto::RuntimeService;
use futures::Stream;
use std::pin::Pin;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// A server-streaming response.
type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// A stream that yields `item` once, for the `Stream*` variants of the list
/// RPCs: one snapshot of the list, then the end.
fn once<T: Send + 'static>(item: T) -> ResponseStream<T> {
    Box::pin(futures::stream::once(async move { Ok(item) }))
}

/// The CRI RuntimeService served by criad.
#[derive(Clone)]
pub struct RuntimeServiceImpl {
    ctx: Arc<RuntimeContext>,
}

impl RuntimeServiceImpl {
    /// A service over `ctx` (see [`RuntimeContext::open`]); call
    /// [`RuntimeServiceImpl::recover`] before serving.
    pub fn new(ctx: Arc<RuntimeContext>) -> Self {
        RuntimeServiceImpl { ctx }
    }

    /// Reloads sandboxes and containers from their checkpoints and the
    /// runtime's state, and re-arms exit watchers (after a criad restart).
    pub async fn recover(&self) {
        recovery::recover(&self.ctx).await;
    }

    /// The shared context (for the daemon's GC hook).
    pub fn context(&self) -> &Arc<RuntimeContext> {
        &self.ctx
    }
}

#[tonic::async_trait]
impl RuntimeService for RuntimeServiceImpl {
    async fn version(
        &self,
        request: Request<cri::VersionRequest>,
    ) -> Result<Response<cri::VersionResponse>, Status> {
        Ok(Response::new(runtime_info::version(request.get_ref())))
    }

    async fn run_pod_sandbox(
        &self,
        request: Request<cri::RunPodSandboxRequest>,
    ) -> Result<Response<cri::RunPodSandboxResponse>, Status> {
        sandbox::run::run(&self.ctx, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn stop_pod_sandbox(
        &self,
        request: Request<cri::StopPodSandboxRequest>,
    ) -> Result<Response<cri::StopPodSandboxResponse>, Status> {
        sandbox::stop::stop(&self.ctx, &request.get_ref().pod_sandbox_id).await?;
        Ok(Response::new(cri::StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(
        &self,
        request: Request<cri::RemovePodSandboxRequest>,
    ) -> Result<Response<cri::RemovePodSandboxResponse>, Status> {
        sandbox::remove::remove(&self.ctx, &request.get_ref().pod_sandbox_id).await?;
        Ok(Response::new(cri::RemovePodSandboxResponse {}))
    }

    async fn pod_sandbox_status(
        &self,
        request: Request<cri::PodSandboxStatusRequest>,
    ) -> Result<Response<cri::PodSandboxStatusResponse>, Status> {
        sandbox::status::status(&self.ctx, request.get_ref()).map(Response::new)
    }

    async fn list_pod_sandbox(
        &self,
        request: Request<cri::ListPodSandboxRequest>,
    ) -> Result<Response<cri::ListPodSandboxResponse>, Status> {
        let items = sandbox::list::list(&self.ctx, request.get_ref().filter.as_ref());
        Ok(Response::new(cri::ListPodSandboxResponse { items }))
    }

    type StreamPodSandboxesStream = ResponseStream<cri::StreamPodSandboxesResponse>;

    async fn stream_pod_sandboxes(
        &self,
        request: Request<cri::StreamPodSandboxesRequest>,
    ) -> Result<Response<Self::StreamPodSandboxesStream>, Status> {
        let pod_sandboxes = sandbox::list::list(&self.ctx, request.get_ref().filter.as_ref());
        Ok(Response::new(once(cri::StreamPodSandboxesResponse {
            pod_sandboxes,
        })))
    }

    async fn create_container(
        &self,
        request: Request<cri::CreateContainerRequest>,
    ) -> Result<Response<cri::CreateContainerResponse>, Status> {
        container::create::create(&self.ctx, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn start_container(
        &self,
        request: Request<cri::StartContainerRequest>,
    ) -> Result<Response<cri::StartContainerResponse>, Status> {
        container::start::start(&self.ctx, &request.get_ref().container_id).await?;
        Ok(Response::new(cri::StartContainerResponse {}))
    }

    async fn stop_container(
        &self,
        request: Request<cri::StopContainerRequest>,
    ) -> Result<Response<cri::StopContainerResponse>, Status> {
        let req = request.get_ref();
        container::stop::stop(&self.ctx, &req.container_id, req.timeout).await?;
        Ok(Response::new(cri::StopContainerResponse {}))
    }

    async fn remove_container(
        &self,
        request: Request<cri::RemoveContainerRequest>,
    ) -> Result<Response<cri::RemoveContainerResponse>, Status> {
        container::remove::remove(&self.ctx, &request.get_ref().container_id).await?;
        Ok(Response::new(cri::RemoveContainerResponse {}))
    }

    async fn list_containers(
        &self,
        request: Request<cri::ListContainersRequest>,
    ) -> Result<Response<cri::ListContainersResponse>, Status> {
        let containers = container::list::list(&self.ctx, request.get_ref().filter.as_ref());
        Ok(Response::new(cri::ListContainersResponse { containers }))
    }

    type StreamContainersStream = ResponseStream<cri::StreamContainersResponse>;

    async fn stream_containers(
        &self,
        request: Request<cri::StreamContainersRequest>,
    ) -> Result<Response<Self::StreamContainersStream>, Status> {
        let containers = container::list::list(&self.ctx, request.get_ref().filter.as_ref());
        Ok(Response::new(once(cri::StreamContainersResponse {
            containers,
        })))
    }

    async fn container_status(
        &self,
        request: Request<cri::ContainerStatusRequest>,
    ) -> Result<Response<cri::ContainerStatusResponse>, Status> {
        container::status::status(&self.ctx, request.get_ref()).map(Response::new)
    }

    async fn update_container_resources(
        &self,
        request: Request<cri::UpdateContainerResourcesRequest>,
    ) -> Result<Response<cri::UpdateContainerResourcesResponse>, Status> {
        container::update::update(&self.ctx, request.into_inner()).await?;
        Ok(Response::new(cri::UpdateContainerResourcesResponse {}))
    }

    async fn reopen_container_log(
        &self,
        request: Request<cri::ReopenContainerLogRequest>,
    ) -> Result<Response<cri::ReopenContainerLogResponse>, Status> {
        container::reopen_log::reopen_log(&self.ctx, &request.get_ref().container_id).await?;
        Ok(Response::new(cri::ReopenContainerLogResponse {}))
    }

    async fn exec_sync(
        &self,
        request: Request<cri::ExecSyncRequest>,
    ) -> Result<Response<cri::ExecSyncResponse>, Status> {
        container::exec_sync::exec_sync(&self.ctx, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn exec(
        &self,
        request: Request<cri::ExecRequest>,
    ) -> Result<Response<cri::ExecResponse>, Status> {
        crate::streaming_backend::exec(&self.ctx, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn attach(
        &self,
        request: Request<cri::AttachRequest>,
    ) -> Result<Response<cri::AttachResponse>, Status> {
        crate::streaming_backend::attach(&self.ctx, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn port_forward(
        &self,
        request: Request<cri::PortForwardRequest>,
    ) -> Result<Response<cri::PortForwardResponse>, Status> {
        crate::streaming_backend::port_forward(&self.ctx, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn container_stats(
        &self,
        request: Request<cri::ContainerStatsRequest>,
    ) -> Result<Response<cri::ContainerStatsResponse>, Status> {
        let stats = container::stats::stats(&self.ctx, &request.get_ref().container_id).await?;
        Ok(Response::new(cri::ContainerStatsResponse {
            stats: Some(stats),
        }))
    }

    async fn list_container_stats(
        &self,
        request: Request<cri::ListContainerStatsRequest>,
    ) -> Result<Response<cri::ListContainerStatsResponse>, Status> {
        let stats = container::stats::list(&self.ctx, request.get_ref().filter.as_ref()).await;
        Ok(Response::new(cri::ListContainerStatsResponse { stats }))
    }

    type StreamContainerStatsStream = ResponseStream<cri::StreamContainerStatsResponse>;

    async fn stream_container_stats(
        &self,
        request: Request<cri::StreamContainerStatsRequest>,
    ) -> Result<Response<Self::StreamContainerStatsStream>, Status> {
        let container_stats =
            container::stats::list(&self.ctx, request.get_ref().filter.as_ref()).await;
        Ok(Response::new(once(cri::StreamContainerStatsResponse {
            container_stats,
        })))
    }

    async fn pod_sandbox_stats(
        &self,
        request: Request<cri::PodSandboxStatsRequest>,
    ) -> Result<Response<cri::PodSandboxStatsResponse>, Status> {
        let stats = sandbox::stats::stats(&self.ctx, &request.get_ref().pod_sandbox_id).await?;
        Ok(Response::new(cri::PodSandboxStatsResponse {
            stats: Some(stats),
        }))
    }

    async fn list_pod_sandbox_stats(
        &self,
        request: Request<cri::ListPodSandboxStatsRequest>,
    ) -> Result<Response<cri::ListPodSandboxStatsResponse>, Status> {
        let stats = sandbox::stats::list(&self.ctx, request.get_ref().filter.as_ref()).await;
        Ok(Response::new(cri::ListPodSandboxStatsResponse { stats }))
    }

    type StreamPodSandboxStatsStream = ResponseStream<cri::StreamPodSandboxStatsResponse>;

    async fn stream_pod_sandbox_stats(
        &self,
        request: Request<cri::StreamPodSandboxStatsRequest>,
    ) -> Result<Response<Self::StreamPodSandboxStatsStream>, Status> {
        let pod_sandbox_stats =
            sandbox::stats::list(&self.ctx, request.get_ref().filter.as_ref()).await;
        Ok(Response::new(once(cri::StreamPodSandboxStatsResponse {
            pod_sandbox_stats,
        })))
    }

    async fn update_runtime_config(
        &self,
        request: Request<cri::UpdateRuntimeConfigRequest>,
    ) -> Result<Response<cri::UpdateRuntimeConfigResponse>, Status> {
        runtime_info::update_runtime_config(&self.ctx, request.get_ref());
        Ok(Response::new(cri::UpdateRuntimeConfigResponse {}))
    }

    async fn status(
        &self,
        request: Request<cri::StatusRequest>,
    ) -> Result<Response<cri::StatusResponse>, Status> {
        Ok(Response::new(runtime_info::status(
            &self.ctx,
            request.get_ref(),
        )))
    }

    async fn checkpoint_container(
        &self,
        _request: Request<cri::CheckpointContainerRequest>,
    ) -> Result<Response<cri::CheckpointContainerResponse>, Status> {
        Err(Status::unimplemented(
            "CheckpointContainer is not supported by cria (no CRIU integration)",
        ))
    }

    async fn checkpoint_pod(
        &self,
        _request: Request<cri::CheckpointPodRequest>,
    ) -> Result<Response<cri::CheckpointPodResponse>, Status> {
        Err(Status::unimplemented(
            "CheckpointPod is not supported by cria (no CRIU integration)",
        ))
    }

    async fn restore_pod(
        &self,
        _request: Request<cri::RestorePodRequest>,
    ) -> Result<Response<cri::RestorePodResponse>, Status> {
        Err(Status::unimplemented(
            "RestorePod is not supported by cria (no CRIU integration)",
        ))
    }

    type GetContainerEventsStream = ResponseStream<cri::ContainerEventResponse>;

    async fn get_container_events(
        &self,
        _request: Request<cri::GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
        Ok(Response::new(self.ctx.events.stream()))
    }

    async fn list_metric_descriptors(
        &self,
        _request: Request<cri::ListMetricDescriptorsRequest>,
    ) -> Result<Response<cri::ListMetricDescriptorsResponse>, Status> {
        Err(Status::unimplemented(
            "ListMetricDescriptors is not implemented (use ListContainerStats)",
        ))
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _request: Request<cri::ListPodSandboxMetricsRequest>,
    ) -> Result<Response<cri::ListPodSandboxMetricsResponse>, Status> {
        Err(Status::unimplemented(
            "ListPodSandboxMetrics is not implemented (use ListPodSandboxStats)",
        ))
    }

    type StreamPodSandboxMetricsStream = ResponseStream<cri::StreamPodSandboxMetricsResponse>;

    async fn stream_pod_sandbox_metrics(
        &self,
        _request: Request<cri::StreamPodSandboxMetricsRequest>,
    ) -> Result<Response<Self::StreamPodSandboxMetricsStream>, Status> {
        Err(Status::unimplemented(
            "StreamPodSandboxMetrics is not implemented (use ListPodSandboxStats)",
        ))
    }

    async fn runtime_config(
        &self,
        _request: Request<cri::RuntimeConfigRequest>,
    ) -> Result<Response<cri::RuntimeConfigResponse>, Status> {
        Ok(Response::new(runtime_info::runtime_config()))
    }

    async fn update_pod_sandbox_resources(
        &self,
        _request: Request<cri::UpdatePodSandboxResourcesRequest>,
    ) -> Result<Response<cri::UpdatePodSandboxResourcesResponse>, Status> {
        Err(Status::unimplemented(
            "UpdatePodSandboxResources is not implemented yet",
        ))
    }
}
