//! The CRI v1 gRPC services of crius: validate each request, translate
//! protobuf to runtime types and back, and map runtime errors to gRPC
//! codes. No Linux calls here.

pub mod convert;
pub mod error;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod image;
mod image_service;
pub mod listen;
pub mod request_errors;
mod runtime;
mod runtime_service;
pub mod streaming;

use std::sync::Arc;

use crius_runtime::Runtime;
use k8s_cri::v1::image_service_server::ImageServiceServer;
use k8s_cri::v1::runtime_service_server::RuntimeServiceServer;

use request_errors::ClientErrors;

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

/// The largest gRPC messages the services take and send, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageLimits {
    /// A request over this is refused (RESOURCE_EXHAUSTED) before it is
    /// read whole.
    pub max_request: usize,
    /// A response over this fails (OUT_OF_RANGE) instead of being sent.
    pub max_response: usize,
}

impl Default for MessageLimits {
    /// 16 MiB each way: what kubelet's CRI client takes and sends (its
    /// `maxMsgSize`), and containerd's server limits.
    fn default() -> Self {
        MessageLimits {
            max_request: 16 << 20,
            max_response: 16 << 20,
        }
    }
}

/// The implementation of both CRI services over one [`Runtime`].
#[derive(Debug, Clone)]
pub struct CriService {
    runtime: Arc<Runtime>,
    streaming: Option<streaming::StreamingServer>,
    limits: MessageLimits,
    /// The daemon's configuration in effect, for Status's verbose info.
    effective_config: Arc<serde_json::Value>,
}

impl CriService {
    /// The services over `runtime`.
    pub fn new(runtime: Arc<Runtime>) -> Self {
        CriService {
            runtime,
            streaming: None,
            limits: MessageLimits::default(),
            effective_config: Arc::new(serde_json::Value::Null),
        }
    }

    /// The services, showing `config` (the daemon's configuration in
    /// effect) in Status's verbose info, as `crictl info` prints it.
    pub fn with_effective_config(mut self, config: serde_json::Value) -> Self {
        self.effective_config = Arc::new(config);
        self
    }

    /// The services, with these message size limits.
    pub fn with_message_limits(mut self, limits: MessageLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The services, handing out URLs on `server` for Exec, Attach and
    /// PortForward.
    pub fn with_streaming(mut self, server: streaming::StreamingServer) -> Self {
        self.streaming = Some(server);
        self
    }

    /// The tonic RuntimeService server; a request that does not decode
    /// is the client's error ([`ClientErrors`]).
    pub fn runtime_server(&self) -> ClientErrors<RuntimeServiceServer<CriService>> {
        ClientErrors::new(
            RuntimeServiceServer::new(self.clone())
                .max_decoding_message_size(self.limits.max_request)
                .max_encoding_message_size(self.limits.max_response),
        )
    }

    /// The tonic ImageService server; a request that does not decode is
    /// the client's error ([`ClientErrors`]).
    pub fn image_server(&self) -> ClientErrors<ImageServiceServer<CriService>> {
        ClientErrors::new(
            ImageServiceServer::new(self.clone())
                .max_decoding_message_size(self.limits.max_request)
                .max_encoding_message_size(self.limits.max_response),
        )
    }
}
