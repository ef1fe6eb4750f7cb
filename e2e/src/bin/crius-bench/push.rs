//! `push`: the test images into a registry that is already running.

use crius_e2e::{Result, TestImages, err};

use crate::args::Args;

/// Pushes the test images to a registry that is already running.
pub async fn run(args: &Args) -> Result<()> {
    let registry = args
        .registry
        .as_deref()
        .ok_or_else(|| err("push needs --registry HOST:PORT"))?;
    let images = TestImages::push(registry).await?;
    for image in images.all() {
        println!("{}  (image id {})", image.reference, image.image_id);
    }
    Ok(())
}
