//! The CRI v1 gRPC services of crius: validate each request, translate
//! protobuf to runtime types and back, and map runtime errors to gRPC
//! codes. No Linux calls here.

pub mod convert;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
mod image;
mod image_service;
mod runtime;
mod runtime_service;
pub mod streaming;

use std::sync::Arc;

use crius_runtime::Runtime;
use k8s_cri::v1::image_service_server::ImageServiceServer;
use k8s_cri::v1::runtime_service_server::RuntimeServiceServer;

pub use runtime::attach::RuntimeAttach;
pub use runtime::exec::RuntimeExec;
pub use runtime::port_forward::RuntimePortForward;
pub use runtime::version::CRI_API_VERSION;

/// What the streaming server serves for `runtime`: Exec, Attach and
/// PortForward.
pub fn streaming_backends(runtime: Arc<Runtime>) -> streaming::Backends {
    streaming::Backends {
        exec: Some(Arc::new(RuntimeExec(runtime.clone()))),
        attach: Some(Arc::new(RuntimeAttach(runtime.clone()))),
        port_forward: Some(Arc::new(RuntimePortForward(runtime))),
    }
}

/// The implementation of both CRI services over one [`Runtime`].
#[derive(Debug, Clone)]
pub struct CriService {
    runtime: Arc<Runtime>,
    streaming: Option<streaming::StreamingServer>,
}

impl CriService {
    /// The services over `runtime`.
    pub fn new(runtime: Arc<Runtime>) -> Self {
        CriService {
            runtime,
            streaming: None,
        }
    }

    /// The services, handing out URLs on `server` for Exec, Attach and
    /// PortForward.
    pub fn with_streaming(mut self, server: streaming::StreamingServer) -> Self {
        self.streaming = Some(server);
        self
    }

    /// The tonic RuntimeService server.
    pub fn runtime_server(&self) -> RuntimeServiceServer<CriService> {
        RuntimeServiceServer::new(self.clone())
    }

    /// The tonic ImageService server.
    pub fn image_server(&self) -> ImageServiceServer<CriService> {
        ImageServiceServer::new(self.clone())
    }
}
