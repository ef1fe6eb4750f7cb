//! Protobuf ⇄ runtime types. Pure functions; validation of what the
//! runtime cannot represent happens here.

mod container;
mod image;
mod maps;
mod pod;
#[cfg(test)]
mod tests;

pub use container::{
    container_config, container_item, container_metadata, container_state,
    container_state_from_cri, container_status, resources,
};
pub use image::image;
pub use pod::{
    pod_config, pod_metadata, sandbox_info, sandbox_item, sandbox_state, sandbox_state_from_cri,
    sandbox_status,
};
