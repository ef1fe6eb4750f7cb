//! Requests that do not decode are the client's error.
//!
//! The generated servers (k8s-cri, through tonic-prost) answer a request
//! body that is not a valid protobuf message — a string field that is not
//! UTF-8, a truncated field — with INTERNAL, and one over the size limit
//! with OUT_OF_RANGE. Both are the client's doing: kubelet and crictl must
//! see INVALID_ARGUMENT (and RESOURCE_EXHAUSTED for a message too large,
//! as grpc-go servers such as containerd answer), with prost's account of
//! which message and field were wrong. [`ClientErrors`] wraps each service
//! and rewrites just those answers, so every RPC of both services gets it
//! in one place, before any handler runs.

use std::task::{Context, Poll};

use http::{HeaderMap, Request, Response};
use tonic::codegen::{BoxFuture, Service};
use tonic::server::NamedService;
use tonic::{Code, Status};

/// What tonic-prost puts before prost's decode error (its
/// `from_decode_error`: `Status::internal(DecodeError::to_string())`).
const DECODE_ERROR: &str = "failed to decode Protobuf message: ";
/// What tonic's decoder says of a message over the size limit.
const TOO_LARGE: &str = "Error, decoded message length too large: ";

/// A gRPC service whose answers to undecodable requests name the client's
/// error. See the module docs.
#[derive(Debug, Clone)]
pub struct ClientErrors<S> {
    inner: S,
}

impl<S> ClientErrors<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        ClientErrors { inner }
    }
}

impl<S: NamedService> NamedService for ClientErrors<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B, ResB> Service<Request<B>> for ClientErrors<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    S::Future: Send + 'static,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let method = req
            .uri()
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let answer = self.inner.call(req);
        Box::pin(async move {
            let mut response = answer.await?;
            // Decoding happens before the handler: its failure is a
            // trailers-only answer, the status in the headers.
            if let Some(status) = client_error(&method, response.headers()) {
                let headers = response.headers_mut();
                headers.remove("grpc-status");
                headers.remove("grpc-message");
                headers.remove("grpc-status-details-bin");
                if status.add_header(headers).is_err() {
                    tracing::warn!(%method, "cannot write the status of a malformed request");
                }
            }
            Ok(response)
        })
    }
}

/// The status an answer should carry instead, when it reports a request
/// that did not decode.
fn client_error(method: &str, headers: &HeaderMap) -> Option<Status> {
    let status = Status::from_header_map(headers)?;
    let message = status.message();
    match status.code() {
        Code::Internal => {
            let why = message.strip_prefix(DECODE_ERROR)?;
            Some(Status::invalid_argument(format!(
                "malformed {method} request: {why}"
            )))
        }
        Code::OutOfRange => {
            let why = message.strip_prefix(TOO_LARGE)?;
            Some(Status::resource_exhausted(format!(
                "{method} request too large: {why}"
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, Bytes, BytesMut};
    use http_body_util::{BodyExt, Full};
    use k8s_cri::v1::image_service_server::{ImageService, ImageServiceServer};
    use k8s_cri::v1::*;
    use tonic::Response as Reply;

    /// An image service that answers every call, so that only decoding can
    /// fail.
    struct NoImages;

    #[tonic::async_trait]
    impl ImageService for NoImages {
        async fn list_images(
            &self,
            _: tonic::Request<ListImagesRequest>,
        ) -> Result<Reply<ListImagesResponse>, Status> {
            Ok(Reply::new(ListImagesResponse::default()))
        }
        async fn image_status(
            &self,
            _: tonic::Request<ImageStatusRequest>,
        ) -> Result<Reply<ImageStatusResponse>, Status> {
            Err(Status::internal("the handler's own INTERNAL stays"))
        }
        async fn pull_image(
            &self,
            _: tonic::Request<PullImageRequest>,
        ) -> Result<Reply<PullImageResponse>, Status> {
            Ok(Reply::new(PullImageResponse::default()))
        }
        async fn remove_image(
            &self,
            _: tonic::Request<RemoveImageRequest>,
        ) -> Result<Reply<RemoveImageResponse>, Status> {
            Ok(Reply::new(RemoveImageResponse::default()))
        }
        async fn image_fs_info(
            &self,
            _: tonic::Request<ImageFsInfoRequest>,
        ) -> Result<Reply<ImageFsInfoResponse>, Status> {
            Ok(Reply::new(ImageFsInfoResponse::default()))
        }
    }

    /// A gRPC frame (uncompressed) holding `message`.
    fn frame(message: &[u8]) -> Bytes {
        let mut b = BytesMut::new();
        b.put_u8(0);
        b.put_u32(message.len() as u32);
        b.put_slice(message);
        b.freeze()
    }

    /// Calls `method` with the raw `message`; the status of the answer
    /// (headers, else trailers).
    async fn call(max_decode: Option<usize>, method: &str, message: &[u8]) -> Status {
        let mut server = ImageServiceServer::new(NoImages);
        if let Some(max) = max_decode {
            server = server.max_decoding_message_size(max);
        }
        let mut svc = ClientErrors::new(server);
        let req = Request::builder()
            .method("POST")
            .uri(format!("/runtime.v1.ImageService/{method}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Full::new(frame(message)))
            .unwrap();
        let response = svc.call(req).await.unwrap();
        if let Some(s) = Status::from_header_map(response.headers()) {
            return s;
        }
        let trailers = response
            .into_body()
            .collect()
            .await
            .unwrap()
            .trailers()
            .cloned()
            .unwrap_or_default();
        Status::from_header_map(&trailers).unwrap()
    }

    /// ImageStatusRequest { image: ImageSpec { image: <bytes> } }.
    fn image_status_with(image: &[u8]) -> Vec<u8> {
        let mut spec = vec![0x0a, image.len() as u8];
        spec.extend_from_slice(image);
        let mut req = vec![0x0a, spec.len() as u8];
        req.extend_from_slice(&spec);
        req
    }

    #[tokio::test]
    async fn invalid_utf8_is_invalid_argument_naming_the_field() {
        let s = call(None, "ImageStatus", &image_status_with(b"busy\xffbox")).await;
        assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
        assert!(
            s.message().starts_with("malformed ImageStatus request: "),
            "{s:?}"
        );
        assert!(s.message().contains("ImageSpec.image"), "{s:?}");
        assert!(s.message().contains("UTF-8"), "{s:?}");
    }

    #[tokio::test]
    async fn truncated_messages_are_invalid_argument() {
        // A length-delimited field claiming more bytes than follow.
        let s = call(None, "ListImages", &[0x0a, 0x20, 0x0a]).await;
        assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
        assert!(s.message().contains("ListImages"), "{s:?}");
    }

    #[tokio::test]
    async fn oversize_messages_are_resource_exhausted() {
        let big = image_status_with(&[b'x'; 100]);
        let s = call(Some(64), "ImageStatus", &big).await;
        assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
        assert!(
            s.message().contains("ImageStatus request too large"),
            "{s:?}"
        );
    }

    #[tokio::test]
    async fn other_answers_are_left_alone() {
        let s = call(None, "ImageStatus", &image_status_with(b"busybox")).await;
        assert_eq!(s.code(), Code::Internal);
        assert_eq!(s.message(), "the handler's own INTERNAL stays");
        let s = call(None, "ImageFsInfo", &[]).await;
        assert_eq!(s.code(), Code::Ok);
    }
}
