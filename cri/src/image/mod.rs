//! The ImageService RPCs, one file each.

pub mod image_fs_info;
pub mod image_status;
pub mod list_images;
pub mod pull_image;
pub mod remove_image;
