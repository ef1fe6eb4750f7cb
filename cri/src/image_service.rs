//! The CRI ImageService: each RPC dispatches to its own file under
//! `image/`.

use k8s_cri::v1::image_service_server::ImageService;
use k8s_cri::v1::{
    ImageFsInfoRequest, ImageFsInfoResponse, ImageStatusRequest, ImageStatusResponse,
    ListImagesRequest, ListImagesResponse, PullImageRequest, PullImageResponse, RemoveImageRequest,
    RemoveImageResponse,
};
use tonic::{Request, Response, Status};

use crate::CriService;
use crate::image;

#[tonic::async_trait]
impl ImageService for CriService {
    async fn list_images(
        &self,
        req: Request<ListImagesRequest>,
    ) -> Result<Response<ListImagesResponse>, Status> {
        image::list_images::handle(&self.runtime, req.into_inner()).map(Response::new)
    }

    async fn image_status(
        &self,
        req: Request<ImageStatusRequest>,
    ) -> Result<Response<ImageStatusResponse>, Status> {
        image::image_status::handle(&self.runtime, req.into_inner()).map(Response::new)
    }

    async fn pull_image(
        &self,
        req: Request<PullImageRequest>,
    ) -> Result<Response<PullImageResponse>, Status> {
        image::pull_image::handle(&self.runtime, req.into_inner())
            .await
            .map(Response::new)
    }

    async fn remove_image(
        &self,
        req: Request<RemoveImageRequest>,
    ) -> Result<Response<RemoveImageResponse>, Status> {
        image::remove_image::handle(&self.runtime, req.into_inner())
            .await
            .map(Response::new)
    }

    async fn image_fs_info(
        &self,
        req: Request<ImageFsInfoRequest>,
    ) -> Result<Response<ImageFsInfoResponse>, Status> {
        image::image_fs_info::handle(&self.runtime, req.into_inner())
            .await
            .map(Response::new)
    }
}
