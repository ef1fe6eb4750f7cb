//! Pulls through `ImageStore` from a real registry (Debian's
//! `docker-registry`, CNCF distribution) on a loopback port: OCI and
//! Docker v2 schema 2 manifests, a multi-platform index, whiteouts, the
//! image record, `get`, no re-download, concurrent pulls sharing one
//! download, a registry that stalls mid-blob, and the error mapping.
//!
//! Needs root (layers hold files owned by other users, whiteout devices
//! and trusted.* xattrs); fails without it.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use crius_runtime::Error;
use crius_runtime::config::RegistrySettings;
use crius_runtime::image::{Credentials, Image, ImageStore};
use crius_runtime::metrics::PullMetrics;
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::{self, ImageIndexEntry, OciImageIndex, OciImageManifest, Platform};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use sha2::{Digest, Sha256};

/// A `docker-registry` on a free loopback port, killed on drop.
struct Registry {
    child: Child,
    addr: String,
    dir: tempfile::TempDir,
}

impl Registry {
    /// `htpasswd`: a line `user:bcrypt-hash` to require basic auth.
    fn start(htpasswd: Option<&str>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let config = dir.path().join("config.yml");
        let storage = dir.path().join("storage");
        let mut yml = format!(
            "version: 0.1\nlog: {{level: error}}\nstorage: {{filesystem: {{rootdirectory: {}}}}}\nhttp: {{addr: {addr}}}\n",
            storage.display()
        );
        if let Some(line) = htpasswd {
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, line).unwrap();
            yml += &format!(
                "auth: {{htpasswd: {{realm: test, path: {}}}}}\n",
                file.display()
            );
        }
        std::fs::write(&config, yml).unwrap();
        let log = std::fs::File::create(dir.path().join("log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry (apt install docker-registry)");
        let mut reg = Registry { child, addr, dir };
        for _ in 0..400 {
            if let Ok(mut s) = TcpStream::connect(&reg.addr) {
                let _ = s.write_all(b"GET /v2/ HTTP/1.0\r\n\r\n");
                let mut answer = String::new();
                let _ = s.read_to_string(&mut answer);
                // 200, or 401 with auth: either way it serves.
                if answer.starts_with("HTTP/1.0 ") || answer.starts_with("HTTP/1.1 ") {
                    return reg;
                }
            }
            assert!(
                reg.child.try_wait().unwrap().is_none(),
                "docker-registry exited"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("docker-registry did not answer on {}", reg.addr);
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn open_store(root: &Path, settings: RegistrySettings) -> ImageStore {
    let metrics = PullMetrics::register(&prometheus::Registry::new()).unwrap();
    ImageStore::open(root, settings, metrics).unwrap()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// These tests need root (a registry, device nodes, trusted.* xattrs);
/// without it they fail, never skip.
fn require_root() {
    assert!(nix::unistd::geteuid().is_root(), "needs root");
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

fn header(kind: tar::EntryType, mode: u32, uid: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(uid);
    h.set_gid(uid);
    h.set_mtime(1_700_000_000);
    h.set_size(0);
    h
}

/// Layer 1: a few files and dirs, a symlink, a hardlink.
fn layer1() -> Vec<u8> {
    use tar::EntryType::*;
    let mut b = tar::Builder::new(Vec::new());
    for dir in ["etc/", "data/", "cache/"] {
        b.append_data(&mut header(Directory, 0o755, 0), dir, std::io::empty())
            .unwrap();
    }
    for (path, mode, uid, data) in [
        ("etc/hello", 0o644, 0, &b"hello\n"[..]),
        ("data/a", 0o600, 1000, b"A"),
        ("cache/old", 0o644, 0, b"old"),
    ] {
        let mut h = header(Regular, mode, uid);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, path, data).unwrap();
    }
    b.append_link(&mut header(Symlink, 0o777, 0), "etc/link", "hello")
        .unwrap();
    b.append_link(&mut header(Link, 0o600, 1000), "data/b", "data/a")
        .unwrap();
    b.into_inner().unwrap()
}

/// Layer 2: a whiteout for etc/hello and an opaque cache/.
fn layer2() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for path in ["etc/.wh.hello", "cache/.wh..wh..opq"] {
        let mut h = header(tar::EntryType::Regular, 0o644, 0);
        b.append_data(&mut h, path, std::io::empty()).unwrap();
    }
    let mut h = header(tar::EntryType::Regular, 0o644, 0);
    h.set_size(3);
    b.append_data(&mut h, "cache/new", &b"new"[..]).unwrap();
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// What was pushed, to compare with what is pulled.
struct Pushed {
    config: Vec<u8>,
    compressed_size: u64,
    manifest_digest: String,
}

/// Pushes the two-layer image with a config marked `flavour` and `arch`,
/// as an OCI or a Docker v2 schema 2 manifest.
async fn push_image(
    client: &Client,
    reference: &str,
    flavour: &str,
    arch: &str,
    docker: bool,
) -> Pushed {
    push_image_as(
        client,
        reference,
        flavour,
        arch,
        docker,
        &RegistryAuth::Anonymous,
    )
    .await
}

async fn push_image_as(
    client: &Client,
    reference: &str,
    flavour: &str,
    arch: &str,
    docker: bool,
    auth: &RegistryAuth,
) -> Pushed {
    let (l1, l2) = (layer1(), layer2());
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": arch, "os": "linux",
        "config": {"Entrypoint": ["/bin/tool"], "Cmd": ["run"], "Env": ["PATH=/bin"],
                   "WorkingDir": "/data", "User": "1000:1000", "Labels": {"flavour": flavour},
                   "StopSignal": "SIGINT", "Volumes": {"/vol": {}}, "ExposedPorts": {"80/tcp": {}}},
        "rootfs": {"type": "layers", "diff_ids": [sha256(&l1), sha256(&l2)]},
    }))
    .unwrap();
    let (gz_type, tar_type, config_type, manifest_type) = if docker {
        (
            manifest::IMAGE_DOCKER_LAYER_GZIP_MEDIA_TYPE,
            manifest::IMAGE_DOCKER_LAYER_TAR_MEDIA_TYPE,
            manifest::IMAGE_DOCKER_CONFIG_MEDIA_TYPE,
            manifest::IMAGE_MANIFEST_MEDIA_TYPE,
        )
    } else {
        (
            manifest::IMAGE_LAYER_GZIP_MEDIA_TYPE,
            manifest::IMAGE_LAYER_MEDIA_TYPE,
            manifest::IMAGE_CONFIG_MEDIA_TYPE,
            manifest::OCI_IMAGE_MEDIA_TYPE,
        )
    };
    let layers = [
        ImageLayer::new(gzip(&l1), gz_type.into(), None),
        ImageLayer::new(l2, tar_type.into(), None),
    ];
    let compressed_size = layers.iter().map(|l| l.data.len() as u64).sum();
    let cfg = Config::new(config.clone(), config_type.into(), None);
    let mut m = OciImageManifest::build(&layers, &cfg, None);
    m.media_type = Some(manifest_type.into());
    let r: Reference = reference.parse().unwrap();
    client.push(&r, &layers, cfg, auth, Some(m)).await.unwrap();
    let manifest_digest = client.fetch_manifest_digest(&r, auth).await.unwrap();
    Pushed {
        config,
        compressed_size,
        manifest_digest,
    }
}

fn push_client() -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::try_from(ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    })
    .unwrap()
}

fn xattr(path: &Path, key: &str) -> Option<Vec<u8>> {
    let (p, k) = (
        CString::new(path.as_os_str().as_bytes()).unwrap(),
        CString::new(key).unwrap(),
    );
    let mut buf = [0u8; 64];
    // SAFETY: NUL-terminated strings and a live buffer of the given length.
    let n = unsafe { libc::lgetxattr(p.as_ptr(), k.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (n >= 0).then(|| buf[..n as usize].to_vec())
}

/// Modification times of every blob and layer directory entry.
fn mtimes(root: &Path) -> BTreeMap<PathBuf, i64> {
    let mut out = BTreeMap::new();
    for dir in [root.join("content/blobs/sha256"), root.join("layers")] {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            out.insert(
                e.path(),
                e.metadata().unwrap().mtime_nsec() + e.metadata().unwrap().mtime() * 1_000_000_000,
            );
        }
    }
    out
}

fn check_layers(store: &ImageStore, image: &Image) {
    let paths = store.layer_paths(image).unwrap();
    assert_eq!(paths.len(), 2);
    let (l1, l2) = (&paths[0], &paths[1]);
    assert_eq!(std::fs::read(l1.join("etc/hello")).unwrap(), b"hello\n");
    let a = std::fs::metadata(l1.join("data/a")).unwrap();
    assert_eq!(
        (a.mode() & 0o7777, a.uid(), a.gid(), a.nlink()),
        (0o600, 1000, 1000, 2)
    );
    assert_eq!(a.mtime(), 1_700_000_000);
    assert_eq!(
        std::fs::read_link(l1.join("etc/link")).unwrap(),
        Path::new("hello")
    );
    let wh = std::fs::symlink_metadata(l2.join("etc/hello")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
    assert!(!l2.join("etc/.wh.hello").exists());
    assert_eq!(
        xattr(&l2.join("cache"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(std::fs::read(l2.join("cache/new")).unwrap(), b"new");
    assert!(!l2.join("cache/.wh..wh..opq").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn pulls_oci_docker_and_index_images() {
    require_root();
    let reg = Registry::start(None);
    let root = tempfile::tempdir().unwrap();
    let store = open_store(root.path(), RegistrySettings::default());
    let client = push_client();
    let host = &reg.addr;

    // OCI manifest.
    let oci_ref = format!("{host}/test/oci:v1");
    let pushed = push_image(&client, &oci_ref, "oci", "amd64", false).await;
    let image = store.pull(&oci_ref, None).await.unwrap();
    assert_eq!(image.id, sha256(&pushed.config));
    assert_eq!(image.repo_tags, [oci_ref.as_str()]);
    let repo_digest = format!("{host}/test/oci@{}", pushed.manifest_digest);
    assert_eq!(image.repo_digests, [repo_digest.as_str()]);
    assert_eq!(
        image.size,
        pushed.config.len() as u64 + pushed.compressed_size
    );
    assert_eq!(image.config.entrypoint, ["/bin/tool"]);
    assert_eq!(image.config.user, "1000:1000");
    assert_eq!(image.config.labels["flavour"], "oci");
    assert_eq!(image.config.exposed_ports, ["80/tcp"]);
    check_layers(&store, &image);
    let hex = image.id.trim_start_matches("sha256:");
    for q in [oci_ref.as_str(), &image.id, hex, &hex[..12], &repo_digest] {
        assert_eq!(store.get(q).unwrap().as_ref(), Some(&image), "get({q})");
    }

    // Again: nothing is downloaded or unpacked again.
    let before = mtimes(root.path());
    assert_eq!(store.pull(&oci_ref, None).await.unwrap(), image);
    assert_eq!(mtimes(root.path()), before);

    // Docker v2 schema 2, pulled twice at once.
    let docker_ref = format!("{host}/test/docker:v1");
    let pushed = push_image(&client, &docker_ref, "docker", "amd64", true).await;
    let (a, b) = tokio::join!(store.pull(&docker_ref, None), store.pull(&docker_ref, None));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.id, sha256(&pushed.config));
    assert_eq!(a.id, b.id);
    assert_eq!(a.config.labels["flavour"], "docker");
    assert_eq!(a.layers, image.layers, "same layers, shared");
    check_layers(&store, &a);

    // An index: the node's platform is picked; the repo digest is the index's.
    let (mine, other) = if cfg!(target_arch = "aarch64") {
        ("arm64", "amd64")
    } else {
        ("amd64", "arm64")
    };
    let mut entries = Vec::new();
    let mut want_config = Vec::new();
    for arch in [other, mine] {
        let r = format!("{host}/test/multi:{arch}");
        let p = push_image(&client, &r, arch, arch, false).await;
        let (body, _) = client
            .pull_manifest_raw(
                &r.parse().unwrap(),
                &RegistryAuth::Anonymous,
                &[manifest::OCI_IMAGE_MEDIA_TYPE],
            )
            .await
            .unwrap();
        entries.push(ImageIndexEntry {
            media_type: manifest::OCI_IMAGE_MEDIA_TYPE.into(),
            digest: p.manifest_digest,
            size: body.len() as i64,
            platform: Some(Platform {
                architecture: arch.into(),
                os: oci_spec::image::Os::Linux,
                os_version: None,
                os_features: None,
                variant: None,
                features: None,
            }),
            annotations: None,
            artifact_type: None,
        });
        want_config = p.config;
    }
    let index = OciImageIndex {
        schema_version: 2,
        media_type: Some(manifest::OCI_IMAGE_INDEX_MEDIA_TYPE.into()),
        manifests: entries,
        artifact_type: None,
        annotations: None,
    };
    let multi: Reference = format!("{host}/test/multi:latest").parse().unwrap();
    client
        .push_manifest_list(&multi, &RegistryAuth::Anonymous, index)
        .await
        .unwrap();
    let index_digest = client
        .fetch_manifest_digest(&multi, &RegistryAuth::Anonymous)
        .await
        .unwrap();
    let m = store.pull(&multi.whole(), None).await.unwrap();
    assert_eq!(m.id, sha256(&want_config));
    assert_eq!(m.config.labels["flavour"], mine);
    assert_eq!(
        m.repo_digests,
        [format!("{host}/test/multi@{index_digest}")]
    );
    check_layers(&store, &m);
    // By digest: no tag, same image.
    let by_digest = store
        .pull(&format!("{host}/test/multi@{index_digest}"), None)
        .await
        .unwrap();
    assert_eq!(by_digest.id, m.id);

    // A tag pushed anew moves; the old image keeps its digest.
    let pushed = push_image(&client, &oci_ref, "oci2", "amd64", false).await;
    let moved = store.pull(&oci_ref, None).await.unwrap();
    assert_eq!(moved.id, sha256(&pushed.config));
    let old = store.get(&image.id).unwrap().unwrap();
    assert!(old.repo_tags.is_empty());
    assert_eq!(old.repo_digests, [repo_digest]);
    assert_eq!(store.get(&oci_ref).unwrap().unwrap().id, moved.id);

    // Records survive a restart; nothing half-made is around.
    let reopened = open_store(root.path(), RegistrySettings::default());
    assert_eq!(reopened.list(), store.list());
    assert_eq!(
        std::fs::read_dir(root.path().join("content/ingest"))
            .unwrap()
            .count(),
        0
    );
    for e in std::fs::read_dir(root.path().join("layers")).unwrap() {
        assert!(!e.unwrap().file_name().to_string_lossy().starts_with('.'));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_errors_name_what_failed() {
    require_root();
    let reg = Registry::start(None);
    let root = tempfile::tempdir().unwrap();
    let store = open_store(root.path(), RegistrySettings::default());
    push_image(
        &push_client(),
        &format!("{}/test/e:v1", reg.addr),
        "e",
        "amd64",
        false,
    )
    .await;

    let closed = format!("127.0.0.1:{}", free_port());
    match store.pull(&format!("{closed}/x:1"), None).await {
        Err(Error::Unavailable(m)) => assert!(m.contains(&closed), "{m}"),
        other => panic!("{other:?}"),
    }
    for missing in [
        format!("{}/test/e:nope", reg.addr),
        format!("{}/test/none:v1", reg.addr),
    ] {
        match store.pull(&missing, None).await {
            Err(Error::NotFound { kind: "image", id }) => assert_eq!(id, missing),
            other => panic!("{missing}: {other:?}"),
        }
    }
    assert!(matches!(
        store.pull("Not A Ref", None).await,
        Err(Error::InvalidArgument(_))
    ));

    // The registry serves a corrupted layer (same size, one byte off).
    let bad = sha256(&layer2());
    let hex = &bad["sha256:".len()..];
    let data = reg
        .dir
        .path()
        .join("storage/docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data");
    let mut bytes = std::fs::read(&data).unwrap();
    *bytes.last_mut().unwrap() ^= 1;
    std::fs::write(&data, bytes).unwrap();
    let reference = format!("{}/test/e:v1", reg.addr);
    match store.pull(&reference, None).await {
        Err(e @ Error::External { .. }) => {
            let m = e.to_string();
            assert!(
                m.contains(&bad) && m.contains(&reference) && m.contains("mismatch"),
                "{m}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(!root.path().join("content/blobs/sha256").join(hex).exists());

    // Nothing half-made anywhere.
    assert!(store.list().is_empty());
    assert!(
        std::fs::read_dir(root.path().join("images"))
            .unwrap()
            .next()
            .is_none()
    );
    for e in std::fs::read_dir(root.path().join("layers")).unwrap() {
        assert!(!e.unwrap().file_name().to_string_lossy().starts_with('.'));
    }
    assert_eq!(
        std::fs::read_dir(root.path().join("content/ingest"))
            .unwrap()
            .count(),
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_with_credentials() {
    require_root();
    // bcrypt("secret")
    let reg = Registry::start(Some(
        "user:$2b$04$GNSp4C.pzFiRkaSpY0w3l.VHe6e5etaSeSxvIJP7cMzsd0tY6An9m",
    ));
    let root = tempfile::tempdir().unwrap();
    let store = open_store(root.path(), RegistrySettings::default());
    let reference = format!("{}/test/private:v1", reg.addr);
    let basic = |p: &str| RegistryAuth::Basic("user".into(), p.into());
    push_image_as(
        &push_client(),
        &reference,
        "p",
        "amd64",
        false,
        &basic("secret"),
    )
    .await;

    let creds = |p: &str| Credentials::basic("user", p);
    for (given, says) in [
        (None, "authentication required for"),
        (Some(creds("wrong")), "rejected"),
    ] {
        match store.pull(&reference, given.as_ref()).await {
            Err(Error::FailedPrecondition(m)) => {
                assert!(m.contains(says) && m.contains(&reg.addr), "{m}")
            }
            other => panic!("{other:?}"),
        }
    }
    let image = store
        .pull(&reference, Some(&creds("secret")))
        .await
        .unwrap();
    assert_eq!(image.repo_tags, [reference]);
    check_layers(&store, &image);
}

/// Pushes a one-layer image (gzip) of a file `big` holding `size` pseudo
/// random bytes seeded by `seed`; returns the layer blob's size.
async fn push_big_image(client: &Client, reference: &str, seed: u8, size: usize) -> u64 {
    let mut data = vec![0u8; size];
    let mut x = u64::from(seed).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let mut b = tar::Builder::new(Vec::new());
    let mut h = header(tar::EntryType::Regular, 0o644, 0);
    h.set_size(size as u64);
    b.append_data(&mut h, "big", &data[..]).unwrap();
    let tar = b.into_inner().unwrap();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [sha256(&tar)]},
    }))
    .unwrap();
    let layers = [ImageLayer::new(
        gzip(&tar),
        manifest::IMAGE_LAYER_GZIP_MEDIA_TYPE.into(),
        None,
    )];
    let cfg = Config::new(config, manifest::IMAGE_CONFIG_MEDIA_TYPE.into(), None);
    let m = OciImageManifest::build(&layers, &cfg, None);
    let r: Reference = reference.parse().unwrap();
    client
        .push(&r, &layers, cfg, &RegistryAuth::Anonymous, Some(m))
        .await
        .unwrap();
    layers[0].data.len() as u64
}

/// A TCP proxy to `upstream` that forwards the first `limit` bytes each
/// registry connection sends back, then holds the connection open without
/// sending more: a registry that stalls mid-blob. Runs until the test's
/// runtime ends.
async fn stalling_proxy(upstream: String, limit: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let server = tokio::net::TcpStream::connect(&upstream).await.unwrap();
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut cr, &mut sw).await;
                });
                let mut sent = 0;
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    let n = match sr.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    let n = n.min(limit - sent);
                    if cw.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                    sent += n;
                    if sent == limit {
                        // Stall: keep the connection, send nothing more.
                        std::future::pending::<()>().await;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_download_is_cancelled_and_leaves_nothing() {
    require_root();
    let reg = Registry::start(None);
    let client = push_client();
    push_big_image(&client, &format!("{}/test/big:v1", reg.addr), 1, 2 << 20).await;
    let proxy = stalling_proxy(reg.addr.clone(), 256 * 1024).await;
    let root = tempfile::tempdir().unwrap();
    let store = open_store(
        root.path(),
        RegistrySettings {
            stall_timeout_secs: 1,
            ..Default::default()
        },
    );
    let reference = format!("{proxy}/test/big:v1");
    match store.pull(&reference, None).await {
        Err(Error::Unavailable(m)) => {
            assert!(
                m.contains("stalled") && m.contains("no data for 1 s") && m.contains(&reference),
                "{m}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(store.list().is_empty());
    let left: Vec<_> = std::fs::read_dir(root.path().join("layers"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "layers left: {left:?}");
    // Straight from the registry it works.
    store
        .pull(&format!("{}/test/big:v1", reg.addr), None)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_pulls_share_one_download_and_present_layers_are_not_fetched() {
    require_root();
    let reg = Registry::start(None);
    let client = push_client();
    let reference = format!("{}/test/shared:v1", reg.addr);
    let layer = push_big_image(&client, &reference, 2, 1 << 20).await;
    let root = tempfile::tempdir().unwrap();
    let metrics = PullMetrics::register(&prometheus::Registry::new()).unwrap();
    let store =
        ImageStore::open(root.path(), RegistrySettings::default(), metrics.clone()).unwrap();

    let pulls: Vec<_> = (0..4).map(|_| store.pull(&reference, None)).collect();
    let images = futures_util::future::join_all(pulls).await;
    let id = images[0].as_ref().unwrap().id.clone();
    for image in &images {
        assert_eq!(image.as_ref().unwrap().id, id);
    }
    // Each pull fetched the manifest; the config and the layer came once.
    let fetched = metrics.bytes.get();
    assert!(
        fetched >= layer && fetched < layer + 4 * 4096,
        "fetched {fetched} bytes for a {layer}-byte layer"
    );
    assert_eq!(metrics.pulls.with_label_values(&["success"]).get(), 4);

    // Again, with the layer present: only manifest and config.
    let before = metrics.bytes.get();
    store.pull(&reference, None).await.unwrap();
    assert!(metrics.bytes.get() - before < 4096);
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_layers_are_not_fetched_and_non_distributable_ones_are() {
    require_root();
    let reg = Registry::start(None);
    let client = push_client();
    let empty_tar = vec![0u8; 1024];
    let l1 = layer1();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [sha256(&l1), sha256(&empty_tar), sha256(&l1)]},
    }))
    .unwrap();
    let layers = [
        ImageLayer::new(
            gzip(&l1),
            manifest::IMAGE_LAYER_GZIP_MEDIA_TYPE.into(),
            None,
        ),
        ImageLayer::new(empty_tar, manifest::IMAGE_LAYER_MEDIA_TYPE.into(), None),
        ImageLayer::new(
            gzip(&l1),
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip".into(),
            None,
        ),
    ];
    let config_len = config.len() as u64;
    let cfg = Config::new(config, manifest::IMAGE_CONFIG_MEDIA_TYPE.into(), None);
    let m = OciImageManifest::build(&layers, &cfg, None);
    let reference = format!("{}/test/empty:v1", reg.addr);
    let r: Reference = reference.parse().unwrap();
    client
        .push(&r, &layers, cfg, &RegistryAuth::Anonymous, Some(m))
        .await
        .unwrap();

    let root = tempfile::tempdir().unwrap();
    let metrics = PullMetrics::register(&prometheus::Registry::new()).unwrap();
    let store =
        ImageStore::open(root.path(), RegistrySettings::default(), metrics.clone()).unwrap();
    let image = store.pull(&reference, None).await.unwrap();
    let paths = store.layer_paths(&image).unwrap();
    assert_eq!(paths.len(), 3);
    assert_eq!(std::fs::read_dir(&paths[1]).unwrap().count(), 0);
    assert_eq!(
        std::fs::read(paths[2].join("etc/hello")).unwrap(),
        b"hello\n"
    );
    // Manifest, config, layer 1 twice (the same blob, two chain ids); the
    // empty layer never.
    let (body, _) = client
        .pull_manifest_raw(
            &r,
            &RegistryAuth::Anonymous,
            &[manifest::OCI_IMAGE_MEDIA_TYPE],
        )
        .await
        .unwrap();
    let gz = layers[0].data.len() as u64;
    assert_eq!(metrics.bytes.get(), body.len() as u64 + config_len + 2 * gz);
}
