//! Test images built here from Debian's static busybox and pushed to a
//! [`Registry`](crate::Registry) under OCI, Docker schema 2 and image-index
//! manifests.
//!
//! Two layers, so that unpacking is exercised:
//! - layer 1: `/bin/busybox` and applet symlinks, `/etc/passwd`,
//!   `/etc/group`, `/tmp`, `/root`, `/data/keep`, `/data/gone`,
//!   `/data/opaque/{a,b}`;
//! - layer 2: a whiteout of `/data/gone`, an opaque `/data/opaque/` holding
//!   only `new`, and `/data/layer2`.
//!
//! Everything is deterministic (fixed mtimes, numeric owners), so digests
//! are stable for a given busybox binary.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use oci_client::client::{ClientConfig, ClientProtocol, linux_amd64_resolver};
use oci_client::{Client, Reference};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::{Context, Result};

/// The repository (without registry) every test image is pushed to.
pub const REPOSITORY: &str = "crius-e2e/busybox";
/// The busybox binary the images are built from (package busybox-static).
pub const BUSYBOX: &str = "/bin/busybox";
/// Busybox applets linked in `/bin`.
pub const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "ls", "sleep", "hostname", "env", "id", "pwd", "true", "false", "test",
    "[", "grep", "wc", "ip", "ifconfig", "ps", "kill", "mkdir", "rm", "touch", "head", "tail",
    "sed", "cut", "tr", "uname", "date", "nc", "wget", "stat", "readlink", "mount", "httpd",
];
/// The image's entrypoint: it sets [`ENTRYPOINT_MARKER`] and runs the
/// command's arguments, so a test can tell the entrypoint was kept.
pub const ENTRYPOINT: &[&str] = &["/bin/env", "E2E_ENTRYPOINT=kept"];
/// What the entrypoint puts in the environment.
pub const ENTRYPOINT_MARKER: (&str, &str) = ("E2E_ENTRYPOINT", "kept");
/// The image's default arguments.
pub const CMD: &[&str] = &["sh", "-c", "echo default-cmd"];
/// Environment set by the image config.
pub const IMAGE_ENV: (&str, &str) = ("E2E_IMAGE_ENV", "1");
/// The image's working directory.
pub const WORKING_DIR: &str = "/data";
/// Content of `/data/layer2` (from layer 2), without its newline.
pub const LAYER2_CONTENT: &str = "layer2-content";
/// `ls /data` in a container: `gone` is whited out by layer 2.
pub const DATA_LISTING: &[&str] = &["keep", "layer2", "opaque"];
/// `ls /data/opaque`: layer 2 made the directory opaque.
pub const OPAQUE_LISTING: &[&str] = &["new"];
/// Label key carrying the manifest flavour ("oci" or "docker") in each
/// image config, so the images have distinct ids.
pub const FLAVOUR_LABEL: &str = "org.crius.e2e.flavour";

/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker schema 2 manifest media type.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// One pushed tag and what a runtime should make of it.
#[derive(Debug, Clone)]
pub struct PushedImage {
    /// `<registry>/crius-e2e/busybox:<tag>`, what a test pulls.
    pub reference: String,
    /// `<registry>/crius-e2e/busybox`.
    pub repository: String,
    /// Digest of what the tag points at (for `:index`, the index).
    pub manifest_digest: String,
    /// Media type of what the tag points at.
    pub manifest_media_type: &'static str,
    /// Digest of the linux/amd64 image manifest a runtime ends up using.
    pub platform_manifest_digest: String,
    /// The config digest: the image id a runtime must report.
    pub image_id: String,
}

impl PushedImage {
    /// `<repository>@<manifest digest>`, the repo digest a runtime records.
    pub fn repo_digest(&self) -> String {
        format!("{}@{}", self.repository, self.manifest_digest)
    }
}

/// The images of one registry.
#[derive(Debug, Clone)]
pub struct TestImages {
    /// `:oci`: OCI manifest, config and layer media types.
    pub oci: PushedImage,
    /// `:docker`: Docker schema 2 media types (its config differs in the
    /// flavour label only, so its id differs from `:oci`'s).
    pub docker: PushedImage,
    /// `:index`: an OCI index listing a bogus linux/arm64 manifest first and
    /// the `:oci` manifest as linux/amd64; resolves to `:oci`'s image.
    pub index: PushedImage,
    /// Digest of the linux/arm64 manifest listed in `:index`, which must
    /// never be chosen on amd64.
    pub foreign_manifest_digest: String,
}

impl TestImages {
    /// Builds the images and pushes them to the registry at `registry`
    /// (`host:port`, plain HTTP).
    pub async fn push(registry: &str) -> Result<TestImages> {
        let client = registry_client();
        let repository = format!("{registry}/{REPOSITORY}");
        let busybox = std::fs::read(BUSYBOX)
            .context(|| format!("read {BUSYBOX} (is package busybox-static installed?)"))?;
        let layers = [Layer::new(layer1(&busybox)?)?, Layer::new(layer2()?)?];
        let pusher = Pusher {
            client: &client,
            repository: &repository,
        };

        let oci = pusher.image("oci", &layers, Flavour::Oci, "amd64").await?;
        let docker = pusher
            .image("docker", &layers, Flavour::Docker, "amd64")
            .await?;
        let foreign_layer = Layer::new(foreign_layer()?)?;
        let foreign = pusher
            .image("", &[foreign_layer], Flavour::Oci, "arm64")
            .await?;

        let index = json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                // arm64 first: picking the first entry is wrong on amd64.
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": foreign.manifest_digest,
                    "size": foreign.manifest_size,
                    "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"},
                },
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": oci.manifest_digest,
                    "size": oci.manifest_size,
                    "platform": {"architecture": "amd64", "os": "linux"},
                },
            ],
        });
        let index_digest = pusher.manifest("index", OCI_INDEX, &index).await?;

        let pushed = |tag: &str, digest: &str, media_type, image: &Pushed| PushedImage {
            reference: format!("{repository}:{tag}"),
            repository: repository.clone(),
            manifest_digest: digest.to_string(),
            manifest_media_type: media_type,
            platform_manifest_digest: image.manifest_digest.clone(),
            image_id: image.config_digest.clone(),
        };
        Ok(TestImages {
            oci: pushed("oci", &oci.manifest_digest, OCI_MANIFEST, &oci),
            docker: pushed("docker", &docker.manifest_digest, DOCKER_MANIFEST, &docker),
            index: pushed("index", &index_digest, OCI_INDEX, &oci),
            foreign_manifest_digest: foreign.manifest_digest,
        })
    }

    /// The three pushed tags.
    pub fn all(&self) -> [&PushedImage; 3] {
        [&self.oci, &self.docker, &self.index]
    }
}

/// The tag of the pause image [`push_pause`] pushes.
pub const PAUSE_TAG: &str = "pause";

/// Pushes `<registry>/crius-e2e/busybox:pause`: layer 1 of the test images
/// with an entrypoint that sleeps for ever, the infra ("pause") image a
/// runtime that keeps one per pod needs (containerd's `sandbox_image`).
/// Returns its reference.
pub async fn push_pause(registry: &str) -> Result<String> {
    let client = registry_client();
    let repository = format!("{registry}/{REPOSITORY}");
    let busybox = std::fs::read(BUSYBOX)
        .context(|| format!("read {BUSYBOX} (is package busybox-static installed?)"))?;
    let layer = Layer::new(layer1(&busybox)?)?;
    let config = json!({
        "created": "2024-01-01T00:00:00Z",
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": ["/bin/sleep", "2147483647"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
    });
    let config = serde_json::to_vec(&config).context(|| "serialize the pause config")?;
    let config_digest = sha256_digest(&config);
    let pusher = Pusher {
        client: &client,
        repository: &repository,
    };
    let blob_ref = pusher.reference("blobs")?;
    client
        .push_blob(&blob_ref, layer.gzip.clone(), &layer.digest)
        .await
        .context(|| format!("push the pause layer to {repository}"))?;
    client
        .push_blob(&blob_ref, config.clone(), &config_digest)
        .await
        .context(|| format!("push the pause config to {repository}"))?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": OCI_LAYER, "digest": layer.digest, "size": layer.gzip.len()}],
    });
    pusher.manifest(PAUSE_TAG, OCI_MANIFEST, &manifest).await?;
    Ok(format!("{repository}:{PAUSE_TAG}"))
}

/// An oci-client for plain-HTTP registries that resolves image indexes to
/// linux/amd64 (the platform the tests run on).
pub fn registry_client() -> Client {
    // oci-client is built without a default TLS provider; install ring once
    // per process. An error only means another caller installed one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        platform_resolver: Some(Box::new(linux_amd64_resolver)),
        ..Default::default()
    })
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

#[derive(Clone, Copy)]
enum Flavour {
    Oci,
    Docker,
}

/// A layer: its gzipped tar and the digests of both forms.
struct Layer {
    gzip: Vec<u8>,
    digest: String,
    diff_id: String,
}

impl Layer {
    fn new(tar: Vec<u8>) -> Result<Layer> {
        let mut gz = GzEncoder::new(Vec::new(), Compression::default());
        gz.write_all(&tar).context(|| "gzip a layer")?;
        let gzip = gz.finish().context(|| "gzip a layer")?;
        Ok(Layer {
            digest: sha256_digest(&gzip),
            diff_id: sha256_digest(&tar),
            gzip,
        })
    }
}

/// What pushing one image manifest produced.
struct Pushed {
    manifest_digest: String,
    manifest_size: usize,
    config_digest: String,
}

struct Pusher<'a> {
    client: &'a Client,
    repository: &'a str,
}

impl Pusher<'_> {
    fn reference(&self, tag_or_digest: &str) -> Result<Reference> {
        let sep = if tag_or_digest.starts_with("sha256:") {
            "@"
        } else {
            ":"
        };
        let text = format!("{}{sep}{tag_or_digest}", self.repository);
        text.parse().context(|| format!("parse reference {text}"))
    }

    /// Pushes layers, config and manifest; tags it `tag`, or pushes it by
    /// digest only if `tag` is empty.
    async fn image(
        &self,
        tag: &str,
        layers: &[Layer],
        flavour: Flavour,
        arch: &str,
    ) -> Result<Pushed> {
        let (manifest_type, config_type, layer_type, name) = match flavour {
            Flavour::Oci => (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER, "oci"),
            Flavour::Docker => (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER, "docker"),
        };
        let config = serde_json::to_vec(&image_config(layers, name, arch))
            .context(|| "serialize an image config")?;
        let config_digest = sha256_digest(&config);
        // Blobs belong to the repository; the tag of this reference is unused.
        let blob_ref = self.reference("blobs")?;
        for layer in layers {
            self.client
                .push_blob(&blob_ref, layer.gzip.clone(), &layer.digest)
                .await
                .context(|| format!("push layer {} to {}", layer.digest, self.repository))?;
        }
        self.client
            .push_blob(&blob_ref, config.clone(), &config_digest)
            .await
            .context(|| format!("push config {config_digest} to {}", self.repository))?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": {"mediaType": config_type, "digest": config_digest, "size": config.len()},
            "layers": layers.iter().map(|l| json!({
                "mediaType": layer_type, "digest": l.digest, "size": l.gzip.len(),
            })).collect::<Vec<_>>(),
        });
        let body = serde_json::to_vec(&manifest).context(|| "serialize a manifest")?;
        let manifest_digest = sha256_digest(&body);
        let target = if tag.is_empty() {
            &manifest_digest
        } else {
            tag
        };
        self.push_raw(target, manifest_type, body.clone()).await?;
        Ok(Pushed {
            manifest_digest,
            manifest_size: body.len(),
            config_digest,
        })
    }

    /// Pushes a manifest (or index) under `tag`; returns its digest.
    async fn manifest(&self, tag: &str, media_type: &str, manifest: &Value) -> Result<String> {
        let body = serde_json::to_vec(manifest).context(|| "serialize a manifest")?;
        let digest = sha256_digest(&body);
        self.push_raw(tag, media_type, body).await?;
        Ok(digest)
    }

    async fn push_raw(&self, target: &str, media_type: &str, body: Vec<u8>) -> Result<()> {
        let reference = self.reference(target)?;
        self.client
            .push_manifest_raw(
                &reference,
                body,
                media_type
                    .parse()
                    .context(|| format!("media type {media_type}"))?,
            )
            .await
            .context(|| format!("push manifest {reference}"))?;
        Ok(())
    }
}

fn image_config(layers: &[Layer], flavour: &str, arch: &str) -> Value {
    json!({
        "created": "2024-01-01T00:00:00Z",
        "architecture": arch,
        "os": "linux",
        "config": {
            "Entrypoint": ENTRYPOINT,
            "Cmd": CMD,
            "Env": ["PATH=/bin", format!("{}={}", IMAGE_ENV.0, IMAGE_ENV.1)],
            "WorkingDir": WORKING_DIR,
            "Labels": {FLAVOUR_LABEL: flavour, "org.crius.e2e.image": "busybox"},
        },
        "rootfs": {
            "type": "layers",
            "diff_ids": layers.iter().map(|l| l.diff_id.as_str()).collect::<Vec<_>>(),
        },
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "crius-e2e"}],
    })
}

/// Builds a deterministic tar: fixed mtime, owner 0:0, no user names.
struct TarBuilder(tar::Builder<Vec<u8>>);

impl TarBuilder {
    const MTIME: u64 = 1_704_067_200; // 2024-01-01T00:00:00Z

    fn new() -> Self {
        TarBuilder(tar::Builder::new(Vec::new()))
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(size);
        header.set_mtime(Self::MTIME);
        header.set_uid(0);
        header.set_gid(0);
        header
    }

    fn dir(&mut self, path: &str, mode: u32) -> Result<&mut Self> {
        let mut header = Self::header(tar::EntryType::Directory, mode, 0);
        self.0
            .append_data(&mut header, path, std::io::empty())
            .context(|| format!("tar dir {path}"))?;
        Ok(self)
    }

    fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> Result<&mut Self> {
        let mut header = Self::header(tar::EntryType::Regular, mode, data.len() as u64);
        self.0
            .append_data(&mut header, path, data)
            .context(|| format!("tar file {path}"))?;
        Ok(self)
    }

    fn symlink(&mut self, path: &str, target: &str) -> Result<&mut Self> {
        let mut header = Self::header(tar::EntryType::Symlink, 0o777, 0);
        self.0
            .append_link(&mut header, path, target)
            .context(|| format!("tar symlink {path}"))?;
        Ok(self)
    }

    fn finish(self) -> Result<Vec<u8>> {
        self.0.into_inner().context(|| "finish a tar")
    }
}

/// The two layer tars of the busybox test images (see the module docs),
/// uncompressed, for images built by [`crate::synth`].
pub fn busybox_layers() -> Result<[Vec<u8>; 2]> {
    let busybox = std::fs::read(BUSYBOX)
        .context(|| format!("read {BUSYBOX} (is package busybox-static installed?)"))?;
    Ok([layer1(&busybox)?, layer2()?])
}

fn layer1(busybox: &[u8]) -> Result<Vec<u8>> {
    let mut tar = TarBuilder::new();
    tar.dir("bin/", 0o755)?
        .file("bin/busybox", 0o755, busybox)?;
    for applet in APPLETS {
        tar.symlink(&format!("bin/{applet}"), "busybox")?;
    }
    tar.dir("etc/", 0o755)?
        .file(
            "etc/passwd",
            0o644,
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        )?
        .file("etc/group", 0o644, b"root:x:0:\nnogroup:x:65534:\n")?
        .dir("root/", 0o700)?
        .dir("tmp/", 0o1777)?
        .dir("data/", 0o755)?
        .file("data/keep", 0o644, b"keep\n")?
        .file("data/gone", 0o644, b"gone\n")?
        .dir("data/opaque/", 0o755)?
        .file("data/opaque/a", 0o644, b"a\n")?
        .file("data/opaque/b", 0o644, b"b\n")?;
    tar.finish()
}

fn layer2() -> Result<Vec<u8>> {
    let mut tar = TarBuilder::new();
    tar.dir("data/", 0o755)?
        .file("data/.wh.gone", 0o644, b"")?
        .file(
            "data/layer2",
            0o644,
            format!("{LAYER2_CONTENT}\n").as_bytes(),
        )?
        .dir("data/opaque/", 0o755)?
        .file("data/opaque/.wh..wh..opq", 0o644, b"")?
        .file("data/opaque/new", 0o644, b"new\n")?;
    tar.finish()
}

/// The only layer of the linux/arm64 decoy: no busybox, so a container
/// started from it fails visibly.
fn foreign_layer() -> Result<Vec<u8>> {
    let mut tar = TarBuilder::new();
    tar.file("wrong-platform", 0o644, b"linux/arm64 picked on amd64\n")?;
    tar.finish()
}
