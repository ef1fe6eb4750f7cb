//! Synthetic images: layers from tars built by the caller or generated in
//! bulk (for benchmarks), compressed with gzip or zstd or not at all, and
//! pushed under OCI or Docker schema 2 manifests, with credentials if the
//! registry wants them.
//!
//! Bulk layers hold files whose content compresses about as well as a
//! typical image's (part random, part repetitive text), generated from a
//! seed, so that two runs produce the same digests.

use std::io::Write;

use oci_client::Reference;
use oci_client::secrets::RegistryAuth;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::image::{DOCKER_MANIFEST, OCI_MANIFEST, PushedImage, registry_client, sha256_digest};
use crate::{Context, Result};

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip (level 6, as Docker).
    Gzip,
    /// zstd (level 3, as containerd and BuildKit).
    Zstd,
}

/// The manifest flavour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// OCI manifest, config and layer media types.
    Oci,
    /// Docker schema 2 media types (no zstd there).
    Docker,
}

/// A layer blob as pushed.
#[derive(Debug, Clone)]
pub struct LayerBlob {
    /// The (compressed) blob.
    pub data: Vec<u8>,
    /// Its digest.
    pub digest: String,
    /// The digest of the uncompressed tar.
    pub diff_id: String,
    /// How it is compressed.
    pub compression: Compression,
}

impl LayerBlob {
    /// Compresses `tar` as asked.
    pub fn new(tar: &[u8], compression: Compression) -> Result<LayerBlob> {
        let data = match compression {
            Compression::None => tar.to_vec(),
            Compression::Gzip => {
                let mut gz =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                gz.write_all(tar).context(|| "gzip a layer")?;
                gz.finish().context(|| "gzip a layer")?
            }
            Compression::Zstd => zstd::encode_all(tar, 3).context(|| "zstd a layer")?,
        };
        Ok(LayerBlob {
            digest: sha256_digest(&data),
            diff_id: sha256_digest(tar),
            data,
            compression,
        })
    }

    fn media_type(&self, flavour: Flavour) -> &'static str {
        match (flavour, self.compression) {
            (Flavour::Oci, Compression::None) => "application/vnd.oci.image.layer.v1.tar",
            (Flavour::Oci, Compression::Gzip) => "application/vnd.oci.image.layer.v1.tar+gzip",
            (Flavour::Oci, Compression::Zstd) => "application/vnd.oci.image.layer.v1.tar+zstd",
            (Flavour::Docker, Compression::None) => "application/vnd.docker.image.rootfs.diff.tar",
            (Flavour::Docker, _) => "application/vnd.docker.image.rootfs.diff.tar.gzip",
        }
    }
}

/// xorshift64*: fast, seedable, good enough for filler bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

const WORDS: &[&str] = &[
    "static ",
    "const ",
    "return ",
    "if (",
    "else ",
    "for (",
    "while ",
    "int ",
    "char *",
    "void ",
    "struct ",
    "0x0000",
    "NULL",
    ");\n",
    "{\n",
    "}\n",
    "    ",
    "error",
    "config",
    "/usr/lib/",
    "x86_64-linux-gnu",
    ".so.1",
    "GLIBC_2.34",
    "\0\0\0\0",
];

/// A file's content: `random_percent` % random bytes, the rest text-like
/// filler (about 3× compressible), mixed in 4 KiB blocks.
fn file_content(rng: &mut Rng, size: usize, random_percent: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(size);
    let mut block = [0u8; 4096];
    while out.len() < size {
        let n = block.len().min(size - out.len());
        if rng.next() % 100 < random_percent {
            rng.fill(&mut block[..n]);
            out.extend_from_slice(&block[..n]);
        } else {
            let end = out.len() + n;
            while out.len() < end {
                let w = WORDS[(rng.next() % WORDS.len() as u64) as usize].as_bytes();
                let take = w.len().min(end - out.len());
                out.extend_from_slice(&w[..take]);
            }
        }
    }
    out
}

/// Writes to a compressor and hashes what it is given (the diff id).
struct TarSink<W: Write> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for TarSink<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A gzip layer of files (1 MiB each, in `dir/`) generated from `seed`
/// until the compressed blob reaches `compressed_bytes`.
pub fn bulk_layer(seed: u64, dir: &str, compressed_bytes: usize) -> Result<LayerBlob> {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(TarSink {
        inner: gz,
        hasher: Sha256::new(),
    });
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_mode(0o755);
    header.set_mtime(1_704_067_200);
    header.set_uid(0);
    header.set_gid(0);
    header.set_size(0);
    tar.append_data(&mut header, format!("{dir}/"), std::io::empty())
        .context(|| "tar a directory")?;
    let mut i = 0;
    while tar.get_ref().inner.get_ref().len() < compressed_bytes {
        let size = 1 << 20;
        let content = file_content(&mut rng, size, 60);
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header.set_mtime(1_704_067_200);
        header.set_uid(0);
        header.set_gid(0);
        header.set_size(size as u64);
        tar.append_data(&mut header, format!("{dir}/file-{i:05}"), &content[..])
            .context(|| "tar a file")?;
        i += 1;
    }
    let sink = tar.into_inner().context(|| "finish a tar")?;
    let diff_id = format!("sha256:{}", hex::encode(sink.hasher.finalize()));
    let data = sink.inner.finish().context(|| "gzip a layer")?;
    Ok(LayerBlob {
        digest: sha256_digest(&data),
        diff_id,
        data,
        compression: Compression::Gzip,
    })
}

/// The directory in which each layer of [`stacked_layers`] above the base
/// adds a file.
pub const STACK_DIR: &str = "layers";

/// The layer whose file the top layer of [`stacked_layers`] whites out.
pub const STACK_WHITED_OUT: usize = 1;

/// The name of the file layer `i` of [`stacked_layers`] adds in
/// [`STACK_DIR`] (it holds `i` and a newline).
pub fn stack_file(i: usize) -> String {
    format!("{i:03}")
}

/// A stack of `count` gzip layers (base first, `count` ≥ 3), an image as
/// deep as a runtime's layer limits: the base layer of the busybox test
/// images (`/bin/busybox`, `/data/keep` …), then layers `1..count`, each
/// adding `/layers/<i:03>` ([`stack_file`]); the top layer also whites out
/// the file of layer [`STACK_WHITED_OUT`], so that a whiteout must be seen
/// through the whole stack.
pub fn stacked_layers(count: usize) -> Result<Vec<LayerBlob>> {
    if count < 3 {
        return Err(crate::err(format!(
            "a stack of {count} layers: at least 3 are needed"
        )));
    }
    let [base, _] = crate::image::busybox_layers()?;
    let mut layers = vec![LayerBlob::new(&base, Compression::Gzip)?];
    for i in 1..count {
        let mut tar = tar::Builder::new(Vec::new());
        let mut entry = |kind: tar::EntryType, path: String, data: &[u8]| {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(kind);
            header.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
            header.set_mtime(1_704_067_200);
            header.set_uid(0);
            header.set_gid(0);
            header.set_size(data.len() as u64);
            tar.append_data(&mut header, &path, data)
                .context(|| format!("tar {path}"))
        };
        entry(tar::EntryType::Directory, format!("{STACK_DIR}/"), b"")?;
        let content = format!("{i}\n");
        entry(
            tar::EntryType::Regular,
            format!("{STACK_DIR}/{}", stack_file(i)),
            content.as_bytes(),
        )?;
        if i == count - 1 {
            let whiteout = format!("{STACK_DIR}/.wh.{}", stack_file(STACK_WHITED_OUT));
            entry(tar::EntryType::Regular, whiteout, b"")?;
        }
        let tar = tar.into_inner().context(|| "finish a tar")?;
        layers.push(LayerBlob::new(&tar, Compression::Gzip)?);
    }
    Ok(layers)
}

/// Pushes an image of `layers` (base first) as `<registry>/<repository>:<tag>`
/// with a config labelled `label`; returns what a runtime should make of it.
pub async fn push(
    registry: &str,
    repository: &str,
    tag: &str,
    layers: &[LayerBlob],
    flavour: Flavour,
    label: &str,
    auth: &RegistryAuth,
) -> Result<PushedImage> {
    let client = registry_client();
    let repository = format!("{registry}/{repository}");
    let reference = |t: &str| -> Result<Reference> {
        let text = format!("{repository}:{t}");
        text.parse().context(|| format!("parse reference {text}"))
    };
    let (manifest_type, config_type) = match flavour {
        Flavour::Oci => (OCI_MANIFEST, "application/vnd.oci.image.config.v1+json"),
        Flavour::Docker => (
            DOCKER_MANIFEST,
            "application/vnd.docker.container.image.v1+json",
        ),
    };
    let config = serde_json::to_vec(&json!({
        "created": "2024-01-01T00:00:00Z",
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"], "Labels": {"org.crius.e2e.synth": label}},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.as_str()).collect::<Vec<_>>()},
    }))
    .context(|| "serialize an image config")?;
    let config_digest = sha256_digest(&config);
    let blob_ref = reference("blobs")?;
    client
        .auth(&blob_ref, auth, oci_client::RegistryOperation::Push)
        .await
        .context(|| format!("log in to {registry}"))?;
    for layer in layers {
        if !client
            .blob_exists(&blob_ref, &layer.digest)
            .await
            .unwrap_or(false)
        {
            client
                .push_blob(&blob_ref, layer.data.clone(), &layer.digest)
                .await
                .context(|| format!("push layer {} to {repository}", layer.digest))?;
        }
    }
    client
        .push_blob(&blob_ref, config.clone(), &config_digest)
        .await
        .context(|| format!("push config {config_digest} to {repository}"))?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": {"mediaType": config_type, "digest": config_digest, "size": config.len()},
        "layers": layers.iter().map(|l| json!({
            "mediaType": l.media_type(flavour), "digest": l.digest, "size": l.data.len(),
        })).collect::<Vec<_>>(),
    });
    let body = serde_json::to_vec(&manifest).context(|| "serialize a manifest")?;
    let manifest_digest = sha256_digest(&body);
    let target = reference(tag)?;
    client
        .push_manifest_raw(
            &target,
            body,
            manifest_type
                .parse()
                .context(|| format!("media type {manifest_type}"))?,
        )
        .await
        .context(|| format!("push manifest {target}"))?;
    Ok(PushedImage {
        reference: format!("{repository}:{tag}"),
        repository,
        manifest_digest: manifest_digest.clone(),
        manifest_media_type: manifest_type,
        platform_manifest_digest: manifest_digest,
        image_id: config_digest,
    })
}

/// The sum of the blob sizes, bytes.
pub fn total_size(layers: &[LayerBlob]) -> u64 {
    layers.iter().map(|l| l.data.len() as u64).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn stacked_layers_add_a_file_each_and_the_top_whites_one_out() {
        let layers = stacked_layers(4).unwrap();
        assert_eq!(layers.len(), 4);
        assert_eq!(stacked_layers(4).unwrap()[3].digest, layers[3].digest);
        let names = |blob: &LayerBlob| -> Vec<String> {
            let mut tar = Vec::new();
            flate2::read::GzDecoder::new(&blob.data[..])
                .read_to_end(&mut tar)
                .unwrap();
            tar::Archive::new(&tar[..])
                .entries()
                .unwrap()
                .map(|e| e.unwrap().path().unwrap().display().to_string())
                .collect()
        };
        assert!(names(&layers[0]).contains(&"bin/busybox".to_string()));
        assert_eq!(names(&layers[1]), ["layers/", "layers/001"]);
        assert_eq!(
            names(&layers[3]),
            ["layers/", "layers/003", "layers/.wh.001"]
        );
        assert!(stacked_layers(2).is_err());
    }

    #[test]
    fn bulk_layers_are_deterministic_and_sized() {
        let a = bulk_layer(1, "a", 3 << 20).unwrap();
        let b = bulk_layer(1, "a", 3 << 20).unwrap();
        assert_eq!(a.digest, b.digest);
        assert!(a.data.len() >= 3 << 20 && a.data.len() < 5 << 20);
        assert_ne!(bulk_layer(2, "a", 1 << 20).unwrap().digest, a.digest);
        // Compressible, but not very.
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(&a.data[..])
            .read_to_end(&mut tar)
            .unwrap();
        assert_eq!(sha256_digest(&tar), a.diff_id);
        let ratio = a.data.len() as f64 / tar.len() as f64;
        assert!((0.5..0.85).contains(&ratio), "{ratio}");
    }
}
