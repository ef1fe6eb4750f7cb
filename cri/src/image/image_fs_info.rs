//! ImageFsInfo: how much the image and container filesystems hold, for
//! kubelet's image garbage collection (and crictl's connection check).

use crius_runtime::Runtime;
use crius_runtime::fsutil::DiskUsage;
use k8s_cri::v1::{
    FilesystemIdentifier, FilesystemUsage, ImageFsInfoRequest, ImageFsInfoResponse, UInt64Value,
};
use tonic::Status;

use crate::error::to_status;

fn usage(mountpoint: &str, timestamp: i64, u: DiskUsage) -> FilesystemUsage {
    FilesystemUsage {
        timestamp,
        fs_id: Some(FilesystemIdentifier {
            mountpoint: mountpoint.to_string(),
        }),
        used_bytes: Some(UInt64Value { value: u.bytes }),
        inodes_used: Some(UInt64Value { value: u.inodes }),
    }
}

/// Handles ImageFsInfo. Both filesystems name crius's root, so kubelet
/// sees one filesystem (no split image filesystem).
pub async fn handle(rt: &Runtime, _req: ImageFsInfoRequest) -> Result<ImageFsInfoResponse, Status> {
    let fs = rt.filesystem_usage().await.map_err(to_status)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    let mountpoint = fs.mountpoint.display().to_string();
    Ok(ImageFsInfoResponse {
        image_filesystems: vec![usage(&mountpoint, now, fs.images)],
        container_filesystems: vec![usage(&mountpoint, now, fs.containers)],
    })
}
