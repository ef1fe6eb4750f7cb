//! A registry that misbehaves on purpose: a small HTTP/1.1 server on a free
//! loopback port that serves one image (`hostile/image:1`: a manifest, a
//! config, one small layer) except for the one part its [`Hostile`] mode
//! spoils — answered with a body that never ends or announces gigabytes,
//! trickled a byte a second, or a token service doing the same.
//!
//! "Endless" bodies stop after [`ENDLESS_CAP`] bytes, so that a client
//! without caps (the bug this exists to catch) costs the test machine a
//! bounded amount of memory instead of all of it. Stopped, with its
//! connections, when dropped.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::image::sha256_digest;
use crate::{Context, Result, err};

/// How much an "endless" body sends at most: far more than any cap of the
/// client, little enough for the test machine if the client has none.
pub const ENDLESS_CAP: u64 = 1 << 30;
/// What a "huge" body announces as its `Content-Length`.
pub const HUGE_LENGTH: u64 = 10 << 30;
/// The repository served.
pub const REPOSITORY: &str = "hostile/image";

/// Which part of the image goes wrong, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hostile {
    /// The manifest announces [`HUGE_LENGTH`] bytes (and sends zeros).
    HugeManifest,
    /// The manifest is chunked and never ends.
    EndlessManifest,
    /// The manifest arrives one byte a second.
    TrickleManifest,
    /// The manifest is a 500 whose (chunked) body never ends.
    EndlessError,
    /// The manifest redirects to itself, for ever.
    RedirectLoop,
    /// `/v2/` asks for a token; the token service's answer never ends.
    EndlessToken,
    /// The token arrives one byte a second.
    TrickleToken,
    /// The config blob never ends (its descriptor says its true size).
    EndlessConfig,
    /// The config's descriptor announces [`HUGE_LENGTH`] bytes.
    HugeConfig,
    /// The config arrives one byte a second.
    TrickleConfig,
    /// The layer arrives one byte a second.
    TrickleLayer,
}

/// What is served.
struct Content {
    mode: Hostile,
    addr: String,
    manifest: Vec<u8>,
    config: Vec<u8>,
    config_digest: String,
    layer: Vec<u8>,
    layer_digest: String,
}

/// A running hostile registry.
pub struct HostileRegistry {
    addr: String,
    open: Arc<AtomicUsize>,
    served: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl HostileRegistry {
    /// Starts one on a free 127.0.0.1 port, in the current tokio runtime.
    pub async fn start(mode: Hostile) -> Result<HostileRegistry> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context(|| "bind a hostile registry")?;
        let addr = listener
            .local_addr()
            .context(|| "the hostile registry's address")?
            .to_string();
        let content = Arc::new(Content::new(mode, &addr)?);
        let open = Arc::new(AtomicUsize::new(0));
        let served = Arc::new(AtomicUsize::new(0));
        let (open2, served2) = (open.clone(), served.clone());
        let task = tokio::spawn(async move {
            // Dropped (aborting every connection) when the task is.
            let mut conns = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (content, open, served) = (content.clone(), open2.clone(), served2.clone());
                conns.spawn(async move {
                    open.fetch_add(1, Ordering::SeqCst);
                    let _ = serve(stream, &content, &served).await;
                    open.fetch_sub(1, Ordering::SeqCst);
                });
                while conns.try_join_next().is_some() {}
            }
        });
        Ok(HostileRegistry {
            addr,
            open,
            served,
            task,
        })
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The image reference to pull.
    pub fn reference(&self) -> String {
        format!("{}/{REPOSITORY}:1", self.addr)
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Bytes of spoiled bodies sent so far.
    pub fn spoiled_bytes(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }
}

impl Drop for HostileRegistry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Content {
    fn new(mode: Hostile, addr: &str) -> Result<Content> {
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(6);
        tar.append_data(&mut h, "hostile", &b"hello\n"[..])
            .context(|| "tar a layer")?;
        let tar = tar.into_inner().context(|| "finish a tar")?;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&tar).context(|| "gzip a layer")?;
        let layer = gz.finish().context(|| "gzip a layer")?;
        let layer_digest = sha256_digest(&layer);
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/hostile"]},
            "rootfs": {"type": "layers", "diff_ids": [sha256_digest(&tar)]},
        }))
        .context(|| "serialize a config")?;
        let config_digest = sha256_digest(&config);
        let config_size = match mode {
            Hostile::HugeConfig => HUGE_LENGTH,
            _ => config.len() as u64,
        };
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": config_size,
            },
            "layers": [{
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": layer_digest,
                "size": layer.len(),
            }],
        }))
        .context(|| "serialize a manifest")?;
        Ok(Content {
            mode,
            addr: addr.to_string(),
            manifest,
            config,
            config_digest,
            layer,
            layer_digest,
        })
    }
}

/// Serves one connection's requests until it closes (or a spoiled answer
/// ends it).
async fn serve(mut stream: TcpStream, c: &Content, served: &AtomicUsize) -> Result<()> {
    loop {
        let Some(path) = read_request(&mut stream).await? else {
            return Ok(());
        };
        let manifests = format!("/v2/{REPOSITORY}/manifests/");
        let blobs = format!("/v2/{REPOSITORY}/blobs/");
        let tokened = matches!(c.mode, Hostile::EndlessToken | Hostile::TrickleToken);
        let json = "application/json";
        if path == "/v2/" && tokened {
            let challenge = format!(
                "WWW-Authenticate: Bearer realm=\"http://{}/token\",service=\"hostile\"\r\n",
                c.addr
            );
            respond(&mut stream, "401 Unauthorized", &challenge, json, b"{}").await?;
        } else if path == "/v2/" {
            respond(&mut stream, "200 OK", "", json, b"{}").await?;
        } else if path.starts_with("/token") {
            match c.mode {
                Hostile::EndlessToken => return endless(&mut stream, "200 OK", served).await,
                Hostile::TrickleToken => {
                    return trickle(&mut stream, br#"{"token":"trickled"}"#, served).await;
                }
                _ => respond(&mut stream, "200 OK", "", json, br#"{"token":"t"}"#).await?,
            }
        } else if path.starts_with(&manifests) {
            let media = "application/vnd.oci.image.manifest.v1+json";
            match c.mode {
                Hostile::HugeManifest => return huge(&mut stream, served).await,
                Hostile::EndlessManifest => return endless(&mut stream, "200 OK", served).await,
                Hostile::TrickleManifest => return trickle(&mut stream, &c.manifest, served).await,
                Hostile::EndlessError => {
                    return endless(&mut stream, "500 Internal Server Error", served).await;
                }
                Hostile::RedirectLoop => {
                    let to = format!("Location: {path}\r\n");
                    respond(&mut stream, "302 Found", &to, json, b"").await?;
                }
                _ => respond(&mut stream, "200 OK", "", media, &c.manifest).await?,
            }
        } else if path.starts_with(&blobs) && path.contains(&c.config_digest) {
            match c.mode {
                Hostile::EndlessConfig => return endless(&mut stream, "200 OK", served).await,
                Hostile::TrickleConfig => return trickle(&mut stream, &c.config, served).await,
                _ => respond(&mut stream, "200 OK", "", json, &c.config).await?,
            }
        } else if path.starts_with(&blobs) && path.contains(&c.layer_digest) {
            match c.mode {
                Hostile::TrickleLayer => return trickle(&mut stream, &c.layer, served).await,
                _ => {
                    let gz = "application/octet-stream";
                    respond(&mut stream, "200 OK", "", gz, &c.layer).await?;
                }
            }
        } else {
            let body = br#"{"errors":[{"code":"NAME_UNKNOWN","message":"no such thing"}]}"#;
            respond(&mut stream, "404 Not Found", "", json, body).await?;
        }
    }
}

/// Reads one request head; its path, or `None` when the client closed.
async fn read_request(stream: &mut TcpStream) -> Result<Option<String>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 64 << 10 {
            return Err(err("request head too long"));
        }
        match stream.read(&mut byte).await {
            Ok(0) | Err(_) => return Ok(None),
            Ok(_) => head.push(byte[0]),
        }
    }
    let text = String::from_utf8_lossy(&head);
    let mut words = text.split_whitespace();
    let (_method, path) = (words.next(), words.next().unwrap_or(""));
    // POSTed bodies (token exchanges) are not expected here.
    Ok(Some(path.split('?').next().unwrap_or(path).to_string()))
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    extra: &str,
    media_type: &str,
    body: &[u8],
) -> Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {media_type}\r\nContent-Length: {}\r\n{extra}\r\n",
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .await
        .context(|| "write a head")?;
    stream.write_all(body).await.context(|| "write a body")
}

/// An answer announcing [`HUGE_LENGTH`] bytes, sending zeros.
async fn huge(stream: &mut TcpStream, served: &AtomicUsize) -> Result<()> {
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\n\
         Content-Length: {HUGE_LENGTH}\r\n\r\n"
    );
    stream
        .write_all(head.as_bytes())
        .await
        .context(|| "write a head")?;
    let zeros = vec![0u8; 64 << 10];
    let mut sent = 0u64;
    while sent < ENDLESS_CAP {
        if stream.write_all(&zeros).await.is_err() {
            return Ok(());
        }
        sent += zeros.len() as u64;
        served.fetch_add(zeros.len(), Ordering::SeqCst);
    }
    Ok(())
}

/// A chunked answer that does not end (before [`ENDLESS_CAP`]).
async fn endless(stream: &mut TcpStream, status: &str, served: &AtomicUsize) -> Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    stream
        .write_all(head.as_bytes())
        .await
        .context(|| "write a head")?;
    let piece = vec![b' '; 64 << 10];
    let mut chunk = format!("{:x}\r\n", piece.len()).into_bytes();
    chunk.extend_from_slice(&piece);
    chunk.extend_from_slice(b"\r\n");
    let mut sent = 0u64;
    while sent < ENDLESS_CAP {
        if stream.write_all(&chunk).await.is_err() {
            return Ok(());
        }
        sent += piece.len() as u64;
        served.fetch_add(piece.len(), Ordering::SeqCst);
    }
    Ok(())
}

/// `body`, announced whole, sent one byte a second.
async fn trickle(stream: &mut TcpStream, body: &[u8], served: &AtomicUsize) -> Result<()> {
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .await
        .context(|| "write a head")?;
    for b in body {
        if stream.write_all(&[*b]).await.is_err() || stream.flush().await.is_err() {
            return Ok(());
        }
        served.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(())
}
