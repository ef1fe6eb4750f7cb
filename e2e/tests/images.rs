//! Images in depth, through the CRI ImageService of a real daemon against
//! real registries (`docker-registry`): credentials (htpasswd basic auth,
//! and token auth with a password, a registry token or an identity token)
//! and a configured auth file, mirrors tried in order with fallback, layers with
//! whiteouts, opaque directories and every file type producing exactly the
//! expected tree (gzip and zstd), an index resolved to the node's platform,
//! corrupted and truncated blobs refused, RemoveImage freeing what
//! ImageFsInfo reports (which matches `du`), and pull metrics.
//!
//! Needs the `crius` binary (`cargo build --workspace --bins`); fails, never
//! skips, without it.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use crius_e2e::cri::{self, ImageClient, assert_code};
use crius_e2e::image::busybox_layers;
use crius_e2e::synth::{self, Compression, Flavour, LayerBlob};
use crius_e2e::{
    Crius, CriusOptions, REGISTRY_PASSWORD, REGISTRY_USER, Registry, TestImages, assert_no_leaks,
    free_port, http_get, sample,
};
use k8s_cri::v1::{
    AuthConfig, ImageFsInfoRequest, ImageSpec, ImageStatusRequest, ImageStatusResponse,
    PullImageRequest, RemoveContainerRequest, RemoveImageRequest,
};
use oci_client::secrets::RegistryAuth;
use tonic::Code;

const NONE: [String; 0] = [];

fn spec(image: &str) -> Option<ImageSpec> {
    Some(ImageSpec {
        image: image.to_string(),
        ..Default::default()
    })
}

async fn pull(
    img: &mut ImageClient,
    image: &str,
    auth: Option<AuthConfig>,
) -> Result<tonic::Response<k8s_cri::v1::PullImageResponse>, tonic::Status> {
    img.pull_image(PullImageRequest {
        image: spec(image),
        auth,
        sandbox_config: None,
    })
    .await
}

async fn status(img: &mut ImageClient, image: &str, verbose: bool) -> ImageStatusResponse {
    img.image_status(ImageStatusRequest {
        image: spec(image),
        verbose,
    })
    .await
    .unwrap()
    .into_inner()
}

async fn remove(img: &mut ImageClient, image: &str) {
    img.remove_image(RemoveImageRequest { image: spec(image) })
        .await
        .unwrap_or_else(|e| panic!("RemoveImage {image}: {e}"));
}

/// (bytes, inodes) ImageFsInfo reports for images.
async fn image_fs(img: &mut ImageClient) -> (u64, u64) {
    let info = img
        .image_fs_info(ImageFsInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    let fs = &info.image_filesystems[0];
    (
        fs.used_bytes.as_ref().unwrap().value,
        fs.inodes_used.as_ref().unwrap().value,
    )
}

/// (bytes, inodes) `du` counts for the image store under `root`.
fn du(root: &Path) -> (u64, u64) {
    let dirs = ["content", "layers", "images"].map(|d| root.join(d));
    let total = |extra: &[&str]| -> u64 {
        let out = Command::new("du")
            .args(["-s", "-c"])
            .args(extra)
            .args(&dirs)
            .output()
            .unwrap();
        assert!(out.status.success(), "du failed: {out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        let last = text.lines().last().unwrap();
        assert!(last.ends_with("total"), "{text}");
        last.split_whitespace().next().unwrap().parse().unwrap()
    };
    (total(&["-B1"]), total(&["--inodes"]))
}

/// The chain ids ImageStatus' verbose info lists, base first.
async fn chain_ids(img: &mut ImageClient, image: &str) -> Vec<String> {
    let info = status(img, image, true).await.info;
    let info: serde_json::Value = serde_json::from_str(&info["info"]).unwrap();
    let ids: Vec<String> = info["chainIDs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    // containerd's `chainID`: the top layer's.
    assert_eq!(info["chainID"].as_str(), ids.last().map(String::as_str));
    ids
}

/// Waits until what collections moved aside is deleted: no temp layer,
/// nothing in `content/ingest`; fails once a minute goes by in which none
/// of it was deleted.
fn settle(root: &Path) {
    // A bound on stalling, not on speed: the deletion may be slow on a
    // loaded machine, but it must keep going until nothing is left.
    const STALL: std::time::Duration = std::time::Duration::from_secs(60);
    let began = std::time::Instant::now();
    let mut last = (usize::MAX, began);
    loop {
        let left = garbage_entries(root);
        if left == 0 {
            return;
        }
        if left < last.0 {
            last = (left, std::time::Instant::now());
        }
        assert!(
            last.1.elapsed() < STALL,
            "image garbage stopped being deleted: {left} entries left after {:?}, none deleted \
             in the last {STALL:?}: {:?}",
            began.elapsed(),
            layer_dirs(root)
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

/// How many entries (at any depth) the image garbage still holds: layer
/// directories under temp names, and ingests.
fn garbage_entries(root: &Path) -> usize {
    fn count(path: &Path) -> usize {
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            return 0;
        };
        let below = if meta.is_dir() {
            std::fs::read_dir(path)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| count(&e.path()))
                .sum()
        } else {
            0
        };
        1 + below
    }
    let trash: usize = layer_dirs(root)
        .iter()
        .filter(|n| n.starts_with('.'))
        .map(|n| count(&root.join("layers").join(n)))
        .sum();
    let ingest = root.join("content/ingest");
    trash + count(&ingest).saturating_sub(1)
}

/// Layer directories crius keeps (chain id hex names), and temp entries.
fn layer_dirs(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root.join("layers"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn pull_with_credentials_and_refused_without() {
    let registry = Registry::start_with_auth().unwrap();
    let basic = RegistryAuth::Basic(REGISTRY_USER.into(), REGISTRY_PASSWORD.into());
    let layers: Vec<LayerBlob> = busybox_layers()
        .unwrap()
        .iter()
        .map(|tar| LayerBlob::new(tar, Compression::Gzip).unwrap())
        .collect();
    let pushed = synth::push(
        registry.addr(),
        "crius-e2e/private",
        "v1",
        &layers,
        Flavour::Oci,
        "private",
        &basic,
    )
    .await
    .unwrap();
    let secrets_dir = tempfile::tempdir().unwrap();
    let auth_file = secrets_dir.path().join("config.json");
    let mut crius = Crius::start(CriusOptions {
        // Everything crius and oci-client log, to look for leaks.
        log_level: "trace".into(),
        config: Some(format!(
            "[registry]\nauth_file = \"{}\"\n",
            auth_file.display()
        )),
        ..CriusOptions::without_cni()
    })
    .await
    .unwrap();
    let mut img = crius.image_client();
    let reference = pushed.reference.as_str();
    let b64 = base64::engine::general_purpose::STANDARD
        .encode(format!("{REGISTRY_USER}:{REGISTRY_PASSWORD}"));

    assert_code(
        pull(&mut img, reference, None).await,
        Code::FailedPrecondition,
        &format!("authentication required for {}", registry.addr()),
    );
    let wrong = AuthConfig {
        username: REGISTRY_USER.into(),
        password: "wrong-password".into(),
        ..Default::default()
    };
    let status = assert_code(
        pull(&mut img, reference, Some(wrong)).await,
        Code::FailedPrecondition,
        "credentials were rejected",
    );
    assert!(!status.message().contains("wrong-password"));
    // Credentials for another registry are not sent to this one.
    let elsewhere = AuthConfig {
        username: REGISTRY_USER.into(),
        password: REGISTRY_PASSWORD.into(),
        server_address: "https://other.registry.example".into(),
        ..Default::default()
    };
    assert_code(
        pull(&mut img, reference, Some(elsewhere)).await,
        Code::FailedPrecondition,
        "authentication required",
    );
    assert_eq!(cri::image_ids(&mut img).await.unwrap(), NONE);

    let forms = [
        AuthConfig {
            username: REGISTRY_USER.into(),
            password: REGISTRY_PASSWORD.into(),
            server_address: registry.addr().into(),
            ..Default::default()
        },
        AuthConfig {
            auth: b64.clone(),
            ..Default::default()
        },
    ];
    for auth in forms {
        let id = pull(&mut img, reference, Some(auth))
            .await
            .unwrap()
            .into_inner()
            .image_ref;
        assert_eq!(id, pushed.image_id);
        assert_eq!(cri::image_ids(&mut img).await.unwrap(), [id.as_str()]);
        remove(&mut img, reference).await;
        assert_eq!(cri::image_ids(&mut img).await.unwrap(), NONE);
    }

    // No credentials in the request: the auth file's (read at each pull).
    std::fs::write(
        &auth_file,
        format!(
            r#"{{"auths": {{"http://{}": {{"auth": "{b64}"}}}}}}"#,
            registry.addr()
        ),
    )
    .unwrap();
    let id = pull(&mut img, reference, None)
        .await
        .unwrap()
        .into_inner()
        .image_ref;
    assert_eq!(id, pushed.image_id);

    // Pull metrics: by result, bytes, duration.
    let metrics = http_get(crius.metrics_addr().unwrap(), "/metrics").unwrap();
    let count = |result: &str| {
        sample(
            &metrics,
            &format!("crius_image_pulls_total{{result=\"{result}\"}}"),
        )
    };
    assert_eq!(count("success"), Some(3.0), "{metrics}");
    assert_eq!(count("auth_failed"), Some(3.0), "{metrics}");
    assert_eq!(
        sample(&metrics, "crius_image_pull_duration_seconds_count"),
        Some(6.0)
    );
    let layer_bytes = synth::total_size(&layers) as f64;
    let fetched = sample(&metrics, "crius_image_pull_bytes_total").unwrap();
    assert!(fetched > 3.0 * layer_bytes, "{fetched} of {layer_bytes}");

    // The secret is nowhere: not in the log (at trace level), the metrics,
    // or any file crius keeps.
    crius.stop().await.unwrap();
    let log = std::fs::read(crius.dir().daemon_log()).unwrap();
    assert!(contains(&log, b"TRACE"), "the log is not at trace level");
    for secret in [REGISTRY_PASSWORD, b64.as_str()] {
        assert!(
            !contains(&log, secret.as_bytes()),
            "the daemon log holds {secret}"
        );
        assert!(!metrics.contains(secret));
        for file in files_under(crius.dir().path()) {
            let data = std::fs::read(&file).unwrap_or_default();
            assert!(
                !contains(&data, secret.as_bytes()),
                "{} holds {secret}",
                file.display()
            );
        }
    }
    assert_no_leaks(&crius);
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                out.push(e.path());
            }
        }
    }
    out
}

#[tokio::test]
async fn mirrors_are_tried_in_order_then_the_registry() {
    let upstream = Registry::start().unwrap();
    let mirror = Registry::start().unwrap();
    let empty_mirror = Registry::start().unwrap();
    let images = TestImages::push(mirror.addr()).await.unwrap();
    let layers = [LayerBlob::new(&busybox_layers().unwrap()[1], Compression::Gzip).unwrap()];
    let only_upstream = synth::push(
        upstream.addr(),
        "crius-e2e/only-upstream",
        "1",
        &layers,
        Flavour::Docker,
        "upstream",
        &RegistryAuth::Anonymous,
    )
    .await
    .unwrap();
    let closed = format!("127.0.0.1:{}", free_port().unwrap());
    let config = format!(
        "[registry.mirrors]\n\
         \"registry.invalid\" = [\"http://{closed}\", \"http://{}\"]\n\
         \"{}\" = [\"{}\"]\n",
        mirror.addr(),
        upstream.addr(),
        empty_mirror.addr()
    );
    let mut crius = Crius::start(CriusOptions {
        config: Some(config),
        ..CriusOptions::without_cni()
    })
    .await
    .unwrap();
    let mut img = crius.image_client();

    // registry.invalid does not exist: the second mirror serves it, after
    // the first refused the connection. Names stay the upstream's.
    let name = "registry.invalid/crius-e2e/busybox";
    let id = pull(&mut img, &format!("{name}:oci"), None)
        .await
        .unwrap()
        .into_inner()
        .image_ref;
    assert_eq!(id, images.oci.image_id);
    let image = status(&mut img, &format!("{name}:oci"), false)
        .await
        .image
        .unwrap();
    assert_eq!(image.repo_tags, [format!("{name}:oci")]);
    assert_eq!(
        image.repo_digests,
        [format!("{name}@{}", images.oci.manifest_digest)]
    );

    // An index through the mirror: the node's platform (the OCI image),
    // never the arm64 decoy listed first.
    let id = pull(&mut img, &format!("{name}:index"), None)
        .await
        .unwrap()
        .into_inner()
        .image_ref;
    assert_eq!(id, images.oci.image_id);
    let image = status(&mut img, &id, false).await.image.unwrap();
    assert!(
        image
            .repo_digests
            .contains(&format!("{name}@{}", images.index.manifest_digest))
    );

    // A mirror without the image: the registry itself.
    let id = pull(&mut img, &only_upstream.reference, None)
        .await
        .unwrap()
        .into_inner()
        .image_ref;
    assert_eq!(id, only_upstream.image_id);

    // Nobody has it: the registry's error, with what the mirrors said.
    let status = assert_code(
        pull(&mut img, &format!("{name}:nope"), None).await,
        Code::Unavailable,
        "registry.invalid",
    );
    assert!(
        status.message().contains(mirror.addr()) && status.message().contains(&closed),
        "{}",
        status.message()
    );

    crius.stop().await.unwrap();
    assert_no_leaks(&crius);
}

/// Builds a layer tar: entries with explicit metadata.
struct Layer {
    b: tar::Builder<Vec<u8>>,
    mtime: u64,
}

impl Layer {
    fn new(mtime: u64) -> Layer {
        Layer {
            b: tar::Builder::new(Vec::new()),
            mtime,
        }
    }

    fn header(&self, kind: tar::EntryType, mode: u32, owner: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(owner);
        h.set_gid(owner);
        h.set_mtime(self.mtime);
        h.set_size(0);
        h
    }

    fn dir(mut self, path: &str, mode: u32) -> Self {
        self.dir_owned(path, mode, 0);
        self
    }

    fn dir_owned(&mut self, path: &str, mode: u32, owner: u64) {
        let mut h = self.header(tar::EntryType::Directory, mode, owner);
        self.b.append_data(&mut h, path, std::io::empty()).unwrap();
    }

    fn owned_dir(mut self, path: &str, mode: u32, owner: u64) -> Self {
        self.dir_owned(path, mode, owner);
        self
    }

    fn file(mut self, path: &str, mode: u32, data: &str) -> Self {
        let mut h = self.header(tar::EntryType::Regular, mode, 0);
        h.set_size(data.len() as u64);
        self.b.append_data(&mut h, path, data.as_bytes()).unwrap();
        self
    }

    fn xattr_file(mut self, path: &str, key: &str, value: &str) -> Self {
        self.b
            .append_pax_extensions([(format!("SCHILY.xattr.{key}").as_str(), value.as_bytes())])
            .unwrap();
        self.file(path, 0o644, "x")
    }

    fn link(mut self, kind: tar::EntryType, path: &str, target: &str) -> Self {
        let mut h = self.header(kind, 0o777, 0);
        self.b.append_link(&mut h, path, target).unwrap();
        self
    }

    fn node(mut self, kind: tar::EntryType, path: &str, mode: u32, dev: (u32, u32)) -> Self {
        let mut h = self.header(kind, mode, 0);
        h.set_device_major(dev.0).unwrap();
        h.set_device_minor(dev.1).unwrap();
        self.b.append_data(&mut h, path, std::io::empty()).unwrap();
        self
    }

    fn tar(self) -> Vec<u8> {
        self.b.into_inner().unwrap()
    }
}

const T1: u64 = 1_600_000_000;
const T2: u64 = 1_650_000_000;
const T3: u64 = 1_700_000_000;

/// Three layers exercising every entry type, whiteouts of a file and a
/// directory, an opaque directory, a file replaced by a directory, a
/// setuid binary with a hard link, ownership, modes and mtimes.
fn rootfs_layers() -> [Vec<u8>; 3] {
    use tar::EntryType::*;
    let l1 = Layer::new(T1)
        .dir("bin/", 0o755)
        .file("bin/tool", 0o4755, "tool-v1")
        .link(Link, "bin/tool-link", "bin/tool")
        .link(Symlink, "bin/sh", "tool")
        .dir("dev/", 0o755)
        .node(Char, "dev/zero-copy", 0o666, (1, 5))
        .dir("etc/", 0o755)
        .file("etc/passwd", 0o644, "root:x:0:0::/root:/bin/sh\n")
        .file("etc/gone", 0o644, "gone")
        .dir("gonedir/", 0o755)
        .file("gonedir/x", 0o644, "x")
        .dir("home/", 0o755)
        .owned_dir("home/user/", 0o700, 1000)
        .dir("opt/", 0o755)
        .file("opt/a", 0o644, "a")
        .dir("opt/sub/", 0o755)
        .file("opt/sub/b", 0o644, "b")
        .file("replaced", 0o644, "file")
        .dir("run/", 0o755)
        .node(Fifo, "run/fifo", 0o600, (0, 0))
        .xattr_file("xattr", "user.crius", "v1")
        .tar();
    let l2 = Layer::new(T2)
        .dir("etc/", 0o755)
        .file("etc/.wh.gone", 0o644, "")
        .file("etc/added", 0o644, "added")
        .file(".wh.gonedir", 0o644, "")
        .dir("opt/", 0o750)
        .file("opt/.wh..wh..opq", 0o644, "")
        .file("opt/new", 0o600, "new")
        .tar();
    let l3 = Layer::new(T3)
        .dir("etc/", 0o755)
        .file(
            "etc/passwd",
            0o644,
            "root:x:0:0::/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n",
        )
        .dir("replaced/", 0o755)
        .file("replaced/inner", 0o644, "inner")
        .tar();
    [l1, l2, l3]
}

/// The merged tree the three layers must produce, one line per entry.
fn expected_rootfs() -> Vec<String> {
    let passwd = "root:x:0:0::/root:/bin/sh\\nuser:x:1000:1000::/home/user:/bin/sh\\n";
    [
        format!("/bin d 755 0:0 {T1}"),
        format!("/bin/sh l 777 0:0 {T1} -> tool"),
        format!("/bin/tool f 4755 0:0 {T1} links=2 \"tool-v1\""),
        format!("/bin/tool-link f 4755 0:0 {T1} links=2 \"tool-v1\""),
        format!("/dev d 755 0:0 {T1}"),
        format!("/dev/zero-copy c 666 0:0 {T1} dev=1:5"),
        format!("/etc d 755 0:0 {T3}"),
        format!("/etc/added f 644 0:0 {T2} links=1 \"added\""),
        format!("/etc/passwd f 644 0:0 {T3} links=1 \"{passwd}\""),
        format!("/home d 755 0:0 {T1}"),
        format!("/home/user d 700 1000:1000 {T1}"),
        format!("/opt d 750 0:0 {T2}"),
        format!("/opt/new f 600 0:0 {T2} links=1 \"new\""),
        format!("/replaced d 755 0:0 {T3}"),
        format!("/replaced/inner f 644 0:0 {T3} links=1 \"inner\""),
        format!("/run d 755 0:0 {T1}"),
        format!("/run/fifo p 600 0:0 {T1}"),
        format!("/xattr f 644 0:0 {T1} links=1 \"x\" user.crius=v1"),
    ]
    .to_vec()
}

fn xattr(path: &Path, key: &str) -> Option<String> {
    let (p, k) = (
        CString::new(path.as_os_str().as_bytes()).unwrap(),
        CString::new(key).unwrap(),
    );
    let mut buf = [0u8; 64];
    // SAFETY: NUL-terminated strings and a live buffer of the given length.
    let n = unsafe { libc::lgetxattr(p.as_ptr(), k.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (n >= 0).then(|| String::from_utf8_lossy(&buf[..n as usize]).into_owned())
}

/// Every entry under `root`, as [`expected_rootfs`] lists them.
fn walk(root: &Path) -> Vec<String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            let m = std::fs::symlink_metadata(&path).unwrap();
            let t = m.file_type();
            let rel = format!("/{}", path.strip_prefix(root).unwrap().display());
            let kind = if t.is_dir() {
                "d"
            } else if t.is_symlink() {
                "l"
            } else if t.is_char_device() {
                "c"
            } else if t.is_fifo() {
                "p"
            } else if t.is_file() {
                "f"
            } else {
                "?"
            };
            let mut line = format!(
                "{rel} {kind} {:o} {}:{} {}",
                m.mode() & 0o7777,
                m.uid(),
                m.gid(),
                m.mtime()
            );
            match kind {
                "d" => stack.push(path.clone()),
                "l" => line += &format!(" -> {}", std::fs::read_link(&path).unwrap().display()),
                "c" => {
                    let (major, minor) = (libc::major(m.rdev()), libc::minor(m.rdev()));
                    line += &format!(" dev={major}:{minor}");
                }
                "f" => {
                    let data = std::fs::read_to_string(&path).unwrap();
                    line += &format!(" links={} {:?}", m.nlink(), data);
                    if let Some(v) = xattr(&path, "user.crius") {
                        line += &format!(" user.crius={v}");
                    }
                }
                _ => {}
            }
            out.insert(rel, line);
        }
    }
    out.into_values().collect()
}

/// A read-only overlay of layer directories (top first), unmounted on
/// drop.
struct Overlay(PathBuf);

impl Overlay {
    fn mount(lower: &[PathBuf], at: PathBuf) -> Overlay {
        std::fs::create_dir_all(&at).unwrap();
        let lowerdir = lower
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":");
        nix::mount::mount(
            Some("overlay"),
            &at,
            Some("overlay"),
            nix::mount::MsFlags::MS_RDONLY,
            Some(format!("lowerdir={lowerdir}").as_str()),
        )
        .unwrap();
        Overlay(at)
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// The image's tree as a container sees it (its layers, overlaid).
async fn image_tree(crius: &Crius, img: &mut ImageClient, image: &str) -> Vec<String> {
    let layers: Vec<PathBuf> = chain_ids(img, image)
        .await
        .iter()
        .rev()
        .map(|c| {
            crius
                .dir()
                .root()
                .join("layers")
                .join(c.trim_start_matches("sha256:"))
                .join("fs")
        })
        .collect();
    let view = Overlay::mount(&layers, crius.dir().path().join("overlay-view"));
    let tree = walk(&view.0);
    drop(view);
    tree
}

#[tokio::test]
async fn layers_produce_exactly_the_expected_rootfs_from_gzip_and_zstd() {
    let registry = Registry::start().unwrap();
    let tars = rootfs_layers();
    let mut pushed = Vec::new();
    for (tag, compression) in [
        ("gzip", Compression::Gzip),
        ("zstd", Compression::Zstd),
        ("plain", Compression::None),
    ] {
        let layers: Vec<LayerBlob> = tars
            .iter()
            .map(|t| LayerBlob::new(t, compression).unwrap())
            .collect();
        let image = synth::push(
            registry.addr(),
            "crius-e2e/rootfs",
            tag,
            &layers,
            Flavour::Oci,
            "rootfs",
            &RegistryAuth::Anonymous,
        )
        .await
        .unwrap();
        pushed.push(image);
    }
    let mut crius = Crius::start(CriusOptions::without_cni()).await.unwrap();
    let mut img = crius.image_client();
    let root = crius.dir().root();
    for image in &pushed {
        // Same diff ids, so the same layers: each pull into an empty store
        // unpacks from its own compression.
        settle(&root);
        assert_eq!(layer_dirs(&root), NONE, "{}", image.reference);
        let id = pull(&mut img, &image.reference, None)
            .await
            .unwrap()
            .into_inner()
            .image_ref;
        assert_eq!(id, image.image_id);
        assert_eq!(layer_dirs(&root).len(), 3);
        assert_eq!(
            image_tree(&crius, &mut img, &id).await,
            expected_rootfs(),
            "{}",
            image.reference
        );
        remove(&mut img, &image.reference).await;
    }
    crius.stop().await.unwrap();
    assert_no_leaks(&crius);
}

#[tokio::test]
async fn corrupted_or_truncated_blobs_are_refused_and_leave_nothing() {
    let registry = Registry::start().unwrap();
    let layers: Vec<LayerBlob> = busybox_layers()
        .unwrap()
        .iter()
        .map(|tar| LayerBlob::new(tar, Compression::Gzip).unwrap())
        .collect();
    let image = synth::push(
        registry.addr(),
        "crius-e2e/corrupt",
        "1",
        &layers,
        Flavour::Oci,
        "corrupt",
        &RegistryAuth::Anonymous,
    )
    .await
    .unwrap();
    let mut crius = Crius::start(CriusOptions::without_cni()).await.unwrap();
    let mut img = crius.image_client();
    let root = crius.dir().root();

    // The first layer is the big one (busybox): corrupt a byte in its
    // middle, keeping its size.
    let blob = registry.blob_path(&layers[0].digest);
    let good = std::fs::read(&blob).unwrap();
    let mut bad = good.clone();
    let middle = bad.len() / 2;
    bad[middle] ^= 0x55;
    std::fs::write(&blob, &bad).unwrap();
    let status = assert_code(
        pull(&mut img, &image.reference, None).await,
        Code::Internal,
        &layers[0].digest,
    );
    assert!(
        status.message().contains(&image.reference),
        "{}",
        status.message()
    );
    check_nothing_half_made(&root, &layers[0]);

    // Truncated: the registry announces (and sends) fewer bytes.
    std::fs::write(&blob, &good[..good.len() - 100]).unwrap();
    let status = assert_code(
        pull(&mut img, &image.reference, None).await,
        Code::Internal,
        &layers[0].digest,
    );
    assert!(status.message().contains("bytes"), "{}", status.message());
    check_nothing_half_made(&root, &layers[0]);
    assert_eq!(cri::image_ids(&mut img).await.unwrap(), NONE);

    // Repaired, the same pull works.
    std::fs::write(&blob, &good).unwrap();
    let id = pull(&mut img, &image.reference, None)
        .await
        .unwrap()
        .into_inner()
        .image_ref;
    assert_eq!(id, image.image_id);
    crius.stop().await.unwrap();
    assert_no_leaks(&crius);
}

/// No image record, no temp layer or blob, no layer of the bad blob.
fn check_nothing_half_made(root: &Path, bad: &LayerBlob) {
    let records = std::fs::read_dir(root.join("images")).unwrap().count();
    assert_eq!(records, 0);
    assert_eq!(
        std::fs::read_dir(root.join("content/ingest"))
            .unwrap()
            .count(),
        0
    );
    let bad_layer = bad.diff_id.trim_start_matches("sha256:");
    for name in layer_dirs(root) {
        assert!(!name.starts_with('.'), "temp layer {name} left");
        assert_ne!(name, bad_layer, "the corrupted layer was kept");
    }
}

#[tokio::test]
async fn remove_image_frees_what_image_fs_info_reports() {
    let registry = Registry::start().unwrap();
    let images = TestImages::push(registry.addr()).await.unwrap();
    let mut crius = Crius::start(CriusOptions::default()).await.unwrap();
    let mut rt = crius.runtime_client();
    let mut img = crius.image_client();
    let root = crius.dir().root();

    let empty = image_fs(&mut img).await;
    assert_eq!(empty, du(&root), "ImageFsInfo of the empty store is du's");

    // Two images sharing their layers (OCI and Docker flavours).
    let oci = cri::pull_image(&mut img, &images.oci.reference)
        .await
        .unwrap();
    let docker = cri::pull_image(&mut img, &images.docker.reference)
        .await
        .unwrap();
    let full = image_fs(&mut img).await;
    assert_eq!(full, du(&root), "ImageFsInfo with two images is du's");
    let busybox = std::fs::metadata("/bin/busybox").unwrap().len();
    assert!(full.0 > empty.0 + busybox, "{full:?} vs {empty:?}");

    // A container uses the OCI image.
    let pod = cri::pod_config(crius.dir(), "rmi");
    let pod_id = cri::run_pod(&mut rt, &pod, "").await.unwrap();
    let config = cri::container_config("user", &images.oci.reference, &["sleep", "100"]);
    let ctr = cri::create_container(&mut rt, &pod_id, &pod, &config)
        .await
        .unwrap();

    // By tag: the image and all its names go; the shared layers stay for
    // the other image (and the container).
    remove(&mut img, &images.oci.reference).await;
    assert_eq!(cri::image_ids(&mut img).await.unwrap(), [docker.as_str()]);
    assert!(status(&mut img, &oci, false).await.image.is_none());
    assert!(
        status(&mut img, &images.oci.repo_digest(), false)
            .await
            .image
            .is_none()
    );
    // Again: not an error.
    remove(&mut img, &images.oci.reference).await;
    // By digest: the layers stay, the container still uses them.
    remove(&mut img, &images.docker.repo_digest()).await;
    assert_eq!(cri::image_ids(&mut img).await.unwrap(), NONE);
    assert_eq!(layer_dirs(&root).len(), 2);
    let used = image_fs(&mut img).await;
    settle(&root);
    assert_eq!(used, du(&root));
    assert!(used.0 > empty.0 + busybox);
    cri::start_container(&mut rt, &ctr).await.unwrap();

    // The container goes: its layers go, and the store is as empty as it
    // began.
    rt.remove_container(RemoveContainerRequest {
        container_id: ctr.clone(),
    })
    .await
    .unwrap();
    assert!(layer_dirs(&root).iter().all(|n| n.starts_with('.')));
    assert_eq!(image_fs(&mut img).await, empty);
    settle(&root);
    assert_eq!(layer_dirs(&root), NONE);
    assert_eq!(du(&root), empty);
    assert_eq!(
        std::fs::read_dir(root.join("content/blobs/sha256"))
            .unwrap()
            .count(),
        0
    );

    cri::stop_and_remove_pod(&mut rt, &pod_id).await.unwrap();
    crius.stop().await.unwrap();
    assert_no_leaks(&crius);
}

#[tokio::test]
async fn a_daemon_killed_mid_pull_restarts_clean() {
    let registry = Registry::start().unwrap();
    // A small layer that completes and a big one that stalls: the kill
    // finds a whole layer, a half-unpacked one and stored blobs.
    let layers = [
        LayerBlob::new(&busybox_layers().unwrap()[1], Compression::Gzip).unwrap(),
        synth::bulk_layer(7, "big", 4 << 20).unwrap(),
    ];
    let image = synth::push(
        registry.addr(),
        "crius-e2e/killed",
        "1",
        &layers,
        Flavour::Oci,
        "killed",
        &RegistryAuth::Anonymous,
    )
    .await
    .unwrap();
    let proxy = crius_e2e::StallingProxy::start(registry.addr(), 512 * 1024).unwrap();
    let mut crius = Crius::start(CriusOptions {
        config: Some("[registry]\nprogress_interval_secs = 1\n".into()),
        ..CriusOptions::without_cni()
    })
    .await
    .unwrap();
    let root = crius.dir().root();
    let mut img = crius.image_client();
    let via_proxy = image.reference.replace(registry.addr(), proxy.addr());
    let pulling = tokio::spawn(async move { pull(&mut img, &via_proxy, None).await });

    // Wait until the big layer is being unpacked, then kill -9.
    let small_layer = layers[0].diff_id.trim_start_matches("sha256:").to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let names = layer_dirs(&root);
        if names.iter().any(|n| n.starts_with(".tmp-")) && names.contains(&small_layer) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "pull never got under way: {names:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    crius.kill().unwrap();
    assert!(pulling.await.unwrap().is_err());
    assert!(
        std::fs::read_dir(root.join("content/blobs/sha256"))
            .unwrap()
            .count()
            > 0
    );

    // Start-up removes the half-unpacked layer and collects what no image
    // references (the whole small layer, manifest and config).
    crius.restart().await.unwrap();
    let mut img = crius.image_client();
    assert_eq!(cri::image_ids(&mut img).await.unwrap(), NONE);
    settle(&root);
    assert_eq!(layer_dirs(&root), NONE);
    assert_eq!(
        std::fs::read_dir(root.join("content/blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(
        std::fs::read_dir(root.join("content/ingest"))
            .unwrap()
            .count(),
        0
    );

    // And the pull works.
    let id = pull(&mut img, &image.reference, None)
        .await
        .unwrap()
        .into_inner()
        .image_ref;
    assert_eq!(id, image.image_id);
    crius.stop().await.unwrap();
    assert_no_leaks(&crius);
}

#[tokio::test]
async fn token_auth_with_a_password_a_registry_token_and_an_identity_token() {
    use crius_e2e::token::IDENTITY_TOKEN;
    let repository = "crius-e2e/tokened";
    let registry = Registry::start_with_token_auth(&[repository]).unwrap();
    let basic = RegistryAuth::Basic(REGISTRY_USER.into(), REGISTRY_PASSWORD.into());
    let layers = [LayerBlob::new(&busybox_layers().unwrap()[1], Compression::Gzip).unwrap()];
    // oci-client itself trades the basic credentials for a token to push.
    let pushed = synth::push(
        registry.addr(),
        repository,
        "v1",
        &layers,
        Flavour::Oci,
        "tokened",
        &basic,
    )
    .await
    .unwrap();
    let registry_token = registry.token().unwrap().to_string();
    let mut crius = Crius::start(CriusOptions {
        log_level: "trace".into(),
        ..CriusOptions::without_cni()
    })
    .await
    .unwrap();
    let mut img = crius.image_client();
    let reference = pushed.reference.as_str();

    assert_code(
        pull(&mut img, reference, None).await,
        Code::FailedPrecondition,
        "authentication required",
    );
    let refused = AuthConfig {
        identity_token: "not-the-identity-token".into(),
        ..Default::default()
    };
    assert_code(
        pull(&mut img, reference, Some(refused)).await,
        Code::FailedPrecondition,
        "identity token was refused",
    );
    assert_eq!(cri::image_ids(&mut img).await.unwrap(), NONE);

    let forms = [
        // Basic credentials, exchanged for a bearer token.
        AuthConfig {
            username: REGISTRY_USER.into(),
            password: REGISTRY_PASSWORD.into(),
            ..Default::default()
        },
        // A bearer token obtained elsewhere.
        AuthConfig {
            registry_token: registry_token.clone(),
            ..Default::default()
        },
        // An OAuth2 refresh token, as `docker login` stores for Azure
        // (with a placeholder user name).
        AuthConfig {
            username: "00000000-0000-0000-0000-000000000000".into(),
            identity_token: IDENTITY_TOKEN.into(),
            server_address: registry.addr().into(),
            ..Default::default()
        },
    ];
    for auth in forms {
        let id = pull(&mut img, reference, Some(auth.clone()))
            .await
            .unwrap_or_else(|e| panic!("{e} with {:?}", auth.username))
            .into_inner()
            .image_ref;
        assert_eq!(id, pushed.image_id);
        remove(&mut img, reference).await;
    }

    crius.stop().await.unwrap();
    let log = std::fs::read(crius.dir().daemon_log()).unwrap();
    for secret in [REGISTRY_PASSWORD, IDENTITY_TOKEN, registry_token.as_str()] {
        assert!(!contains(&log, secret.as_bytes()), "the log holds a secret");
        for file in files_under(crius.dir().path()) {
            let data = std::fs::read(&file).unwrap_or_default();
            assert!(
                !contains(&data, secret.as_bytes()),
                "{} holds a secret",
                file.display()
            );
        }
    }
    assert_no_leaks(&crius);
}

/// The daemon's peak and current resident memory (VmHWM, VmRSS), KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (field("VmHWM:"), field("VmRSS:"))
}

#[tokio::test]
async fn hostile_registries_meet_caps_and_timeouts_and_the_daemon_stays_small() {
    use crius_e2e::hostile::{Hostile, HostileRegistry, REPOSITORY};
    use std::time::Duration;
    let mut crius = Crius::start(CriusOptions {
        config: Some("[registry]\nrequest_timeout_secs = 3\nstall_timeout_secs = 2\n".into()),
        ..CriusOptions::without_cni()
    })
    .await
    .unwrap();
    let pid = crius.pid().unwrap();
    let root = crius.dir().root();
    let mut img = crius.image_client();
    let (hwm_before, _) = memory_kib(pid);

    let cases = [
        (
            Hostile::HugeManifest,
            Code::Internal,
            "4 MiB cap on manifests",
        ),
        (
            Hostile::EndlessManifest,
            Code::Internal,
            "4 MiB cap on manifests",
        ),
        (Hostile::TrickleManifest, Code::Unavailable, "within 3 s"),
        (Hostile::EndlessError, Code::Unavailable, "answered 500"),
        (Hostile::RedirectLoop, Code::Unavailable, "redirect"),
        (Hostile::EndlessToken, Code::Internal, "1 MiB cap on tokens"),
        (Hostile::TrickleToken, Code::Unavailable, "within 3 s"),
        (
            Hostile::EndlessConfig,
            Code::Internal,
            "bytes its descriptor announces",
        ),
        (Hostile::HugeConfig, Code::Internal, "4 MiB cap on configs"),
        (Hostile::TrickleConfig, Code::Unavailable, "within 3 s"),
        (
            Hostile::TrickleLayer,
            Code::Unavailable,
            "stall_min_bytes_per_sec",
        ),
    ];
    let mut spoiled = 0;
    for (mode, code, says) in cases {
        let registry = HostileRegistry::start(mode).await.unwrap();
        let reference = registry.reference();
        // Without a timeout of its own, a trickled pull would hold this
        // test for ever: a minute is ten times what any case needs.
        let r = tokio::time::timeout(Duration::from_secs(60), pull(&mut img, &reference, None))
            .await
            .unwrap_or_else(|_| panic!("{mode:?}: the pull was held for a minute"));
        let status = assert_code(r, code, says);
        let m = status.message();
        assert!(
            m.contains(registry.addr()) && m.contains(REPOSITORY),
            "{mode:?}: the message names neither registry nor image: {m}"
        );
        spoiled += registry.spoiled_bytes();
    }
    let (hwm, rss) = memory_kib(pid);
    eprintln!(
        "hostile registries sent {} MiB of spoiled bodies; daemon VmHWM {} -> {} MiB, VmRSS {} MiB",
        spoiled >> 20,
        hwm_before >> 10,
        hwm >> 10,
        rss >> 10
    );
    // More was sent than any cap lets in (the rest stayed in socket
    // buffers when the daemon hung up); the daemon held its caps' worth.
    assert!(
        spoiled > 8 << 20,
        "the hostile bodies were not sent: {spoiled}"
    );
    assert!(
        hwm < hwm_before + (64 << 10),
        "the daemon grew from {hwm_before} to {hwm} KiB"
    );
    assert_eq!(cri::image_ids(&mut img).await.unwrap(), NONE);
    assert_eq!(
        std::fs::read_dir(root.join("content/ingest"))
            .unwrap()
            .count(),
        0
    );
    for name in layer_dirs(&root) {
        assert!(!name.starts_with('.'), "temp layer {name} left");
    }
    crius.stop().await.unwrap();
    assert_no_leaks(&crius);

    // A pull whose client goes away ends there: with the default (minute
    // long) timeouts, a trickled layer is dropped by the daemon as soon as
    // the call is cancelled, its connections closed.
    let mut crius = Crius::start(CriusOptions::without_cni()).await.unwrap();
    let registry = HostileRegistry::start(Hostile::TrickleLayer).await.unwrap();
    let mut img = crius.image_client();
    let reference = registry.reference();
    let call = tokio::spawn(async move { pull(&mut img, &reference, None).await });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while registry.spoiled_bytes() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the layer never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    call.abort();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while registry.open_connections() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the cancelled pull still holds {} connections",
            registry.open_connections()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let layers = layer_dirs(&crius.dir().root());
    assert!(layers.iter().all(|n| !n.starts_with('.')), "{layers:?}");
    crius.stop().await.unwrap();
    assert_no_leaks(&crius);
}

/// A tmpfs mounted for one test, unmounted (lazily) when dropped, even
/// when the test fails.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        nix::mount::mount(
            Some("tmpfs"),
            at,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some(format!("size={size},mode=0711").as_str()),
        )
        .unwrap_or_else(|e| panic!("mount a tmpfs on {}: {e}", at.display()));
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Fills the filesystem of `dir` with `file` until a write fails with
/// ENOSPC.
fn fill(file: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(file).unwrap();
    let block = vec![0xa5u8; 64 << 10];
    loop {
        match f.write(&block) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("fill {}: {e}", file.display()),
        }
    }
}

/// Every blob under a digest name hashes to it; no blob is empty.
fn check_blobs_whole(root: &Path) -> usize {
    let dir = root.join("content/blobs/sha256");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        let data = std::fs::read(e.path()).unwrap();
        assert_eq!(
            crius_e2e::image::sha256_digest(&data),
            format!("sha256:{name}"),
            "blob {name} is not what its name says ({} bytes)",
            data.len()
        );
        n += 1;
    }
    n
}

#[tokio::test]
async fn a_full_disk_is_resource_exhausted_and_leaves_nothing_unverified() {
    let registry = Registry::start().unwrap();
    let layers: Vec<LayerBlob> = busybox_layers()
        .unwrap()
        .iter()
        .map(|tar| LayerBlob::new(tar, Compression::Gzip).unwrap())
        .collect();
    let image = synth::push(
        registry.addr(),
        "crius-e2e/full",
        "1",
        &layers,
        Flavour::Oci,
        "full",
        &RegistryAuth::Anonymous,
    )
    .await
    .unwrap();
    // The daemon's root on a small tmpfs of its own.
    let mut crius = Crius::start(CriusOptions::without_cni()).await.unwrap();
    crius.stop().await.unwrap();
    let root = crius.dir().root();
    let tmpfs = Tmpfs::mount(&root, "16m");
    crius.restart().await.unwrap();
    let mut img = crius.image_client();
    let filler = root.join("filler");

    // Full: the manifest cannot be stored.
    fill(&filler);
    let status = assert_code(
        pull(&mut img, &image.reference, None).await,
        Code::ResourceExhausted,
        "No space left on device",
    );
    let m = status.message();
    assert!(m.contains(&root.display().to_string()), "{m}");
    assert!(
        m.contains(&image.reference) && m.contains("manifest"),
        "{m}"
    );
    assert_eq!(check_blobs_whole(&root), 0);

    // Room for the manifest and config, not for the layers: the unpack
    // fails, its temp layer goes.
    let len = std::fs::metadata(&filler).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&filler)
        .unwrap()
        .set_len(len - (256 << 10))
        .unwrap();
    let status = assert_code(
        pull(&mut img, &image.reference, None).await,
        Code::ResourceExhausted,
        "No space left on device",
    );
    assert!(
        status.message().contains("unpack layer"),
        "{}",
        status.message()
    );
    check_blobs_whole(&root);
    for name in layer_dirs(&root) {
        assert!(!name.starts_with('.'), "temp layer {name} left");
    }
    assert_eq!(cri::image_ids(&mut img).await.unwrap(), NONE);
    // Space again: the pull works, and what it stored is whole.
    std::fs::remove_file(&filler).unwrap();
    let id = pull(&mut img, &image.reference, None)
        .await
        .unwrap()
        .into_inner()
        .image_ref;
    assert_eq!(id, image.image_id);
    assert_eq!(check_blobs_whole(&root), 2);
    crius.stop().await.unwrap();
    crius.restart().await.unwrap();
    let mut img = crius.image_client();
    assert_eq!(cri::image_ids(&mut img).await.unwrap(), [id.as_str()]);
    assert_eq!(check_blobs_whole(&root), 2);
    crius.stop().await.unwrap();
    drop(tmpfs);
    assert_no_leaks(&crius);
}

#[tokio::test]
async fn start_up_discards_damaged_blobs_and_layers() {
    let registry = Registry::start().unwrap();
    let images = TestImages::push(registry.addr()).await.unwrap();
    let mut crius = Crius::start(CriusOptions::without_cni()).await.unwrap();
    let mut img = crius.image_client();
    let root = crius.dir().root();
    let reference = images.oci.reference.as_str();
    let id = cri::pull_image(&mut img, reference).await.unwrap();
    let chains = chain_ids(&mut img, reference).await;
    crius.stop().await.unwrap();

    // What a crash or a full disk under an older crius could leave: an
    // empty config, a manifest of the right size with a byte off, a layer
    // without its record.
    let blob = |d: &str| {
        root.join("content/blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let config = blob(&id);
    std::fs::write(&config, b"").unwrap();
    let manifest = blob(&images.oci.manifest_digest);
    let mut bytes = std::fs::read(&manifest).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&manifest, &bytes).unwrap();
    let layer = root
        .join("layers")
        .join(chains[1].trim_start_matches("sha256:"));
    std::fs::remove_file(layer.join("layer.json")).unwrap();

    crius.restart().await.unwrap();
    let mut img = crius.image_client();
    assert!(
        !config.exists() && !manifest.exists(),
        "damaged blobs were kept"
    );
    assert!(!layer.exists(), "a layer without its record was kept");
    check_blobs_whole(&root);
    // Not served: the image is listed, its config is simply not there.
    let info = status(&mut img, reference, true).await.info;
    let info: serde_json::Value = serde_json::from_str(&info["info"]).unwrap();
    assert!(info["imageSpec"].is_null(), "{info}");
    // Pulled again, all is back and whole.
    assert_eq!(cri::pull_image(&mut img, reference).await.unwrap(), id);
    assert!(config.exists() && manifest.exists() && layer.join("layer.json").exists());
    check_blobs_whole(&root);
    let info = status(&mut img, reference, true).await.info;
    let info: serde_json::Value = serde_json::from_str(&info["info"]).unwrap();
    assert!(info["imageSpec"]["rootfs"].is_object(), "{info}");
    crius.stop().await.unwrap();
    assert_no_leaks(&crius);
}

/// A gzip layer of one file `name` of `size` bytes `byte` (a multiple of
/// 512), made of gzip members of 1 MiB each, so that it costs what its
/// compressed form costs. Its diff id is computed only when asked for
/// (hashing a bomb's gigabytes would take minutes); otherwise it is one
/// that nothing can match.
fn repeated_byte_layer(name: &str, size: u64, byte: u8, diff_id: bool) -> LayerBlob {
    use sha2::Digest as _;
    use std::io::Write;
    assert_eq!(size % 512, 0);
    let gz = |data: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    };
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_mtime(1_704_067_200);
    h.set_size(size);
    h.set_path(name).unwrap();
    h.set_cksum();
    let mut hasher = sha2::Sha256::new();
    let mut data = gz(h.as_bytes());
    hasher.update(h.as_bytes());
    let mib = vec![byte; 1 << 20];
    let member = gz(&mib);
    let mut left = size;
    while left > 0 {
        let n = left.min(1 << 20);
        if n == 1 << 20 {
            data.extend_from_slice(&member);
        } else {
            data.extend_from_slice(&gz(&mib[..n as usize]));
        }
        if diff_id {
            hasher.update(&mib[..n as usize]);
        }
        left -= n;
    }
    let end = [0u8; 1024];
    data.extend_from_slice(&gz(&end));
    hasher.update(end);
    let diff_id = if diff_id {
        format!("sha256:{}", hex::encode(hasher.finalize()))
    } else {
        format!("sha256:{}", "0".repeat(64))
    };
    LayerBlob {
        digest: crius_e2e::image::sha256_digest(&data),
        diff_id,
        data,
        compression: Compression::Gzip,
    }
}

#[tokio::test]
async fn a_decompression_bomb_stops_at_the_layer_cap_and_leaves_nothing() {
    let registry = Registry::start().unwrap();
    // 10 GiB of zeros in about 10 MiB of gzip.
    let bomb = repeated_byte_layer("bomb", 10 << 30, 0, false);
    assert!(bomb.data.len() < 12 << 20, "{}", bomb.data.len());
    let base = LayerBlob::new(&busybox_layers().unwrap()[1], Compression::Gzip).unwrap();
    let bombed = synth::push(
        registry.addr(),
        "crius-e2e/bomb",
        "1",
        &[base, bomb.clone()],
        Flavour::Oci,
        "bomb",
        &RegistryAuth::Anonymous,
    )
    .await
    .unwrap();
    // Two layers of 40 MiB: each under the layer cap, together over the
    // image's.
    let pair = [
        repeated_byte_layer("a", 40 << 20, b'a', true),
        repeated_byte_layer("b", 40 << 20, b'b', true),
    ];
    let big = synth::push(
        registry.addr(),
        "crius-e2e/big",
        "1",
        &pair,
        Flavour::Oci,
        "big",
        &RegistryAuth::Anonymous,
    )
    .await
    .unwrap();
    let mut crius = Crius::start(CriusOptions {
        config: Some(
            "[registry]\nmax_layer_unpacked_mib = 64\nmax_image_unpacked_mib = 64\n".into(),
        ),
        ..CriusOptions::without_cni()
    })
    .await
    .unwrap();
    let root = crius.dir().root();
    let mut img = crius.image_client();
    let free_before = nix::sys::statvfs::statvfs(&root).unwrap();

    let status = assert_code(
        pull(&mut img, &bombed.reference, None).await,
        Code::ResourceExhausted,
        "max_layer_unpacked_mib",
    );
    let m = status.message();
    assert!(
        m.contains(&bomb.digest) && m.contains("64 MiB") && m.contains(&bombed.reference),
        "{m}"
    );
    // Nothing of the bomb is left (its temp tree went), only the base
    // layer it sat on, which a collection takes.
    for name in layer_dirs(&root) {
        assert!(!name.starts_with('.'), "temp layer {name} left");
    }
    let free_after = nix::sys::statvfs::statvfs(&root).unwrap();
    let freed = |s: &nix::sys::statvfs::Statvfs| s.blocks_free() * s.fragment_size();
    assert!(
        freed(&free_after) + (256 << 20) > freed(&free_before),
        "the bomb took the disk: {} -> {} bytes free",
        freed(&free_before),
        freed(&free_after)
    );

    let status = assert_code(
        pull(&mut img, &big.reference, None).await,
        Code::ResourceExhausted,
        "max_image_unpacked_mib",
    );
    assert!(
        status.message().contains(&big.reference),
        "{}",
        status.message()
    );
    for name in layer_dirs(&root) {
        assert!(!name.starts_with('.'), "temp layer {name} left");
    }
    assert_eq!(cri::image_ids(&mut img).await.unwrap(), NONE);
    crius.stop().await.unwrap();
    assert_no_leaks(&crius);
}

/// A layer tar of `n` files of 8 bytes, a thousand to a directory.
fn many_files_tar(n: usize) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let header = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_mtime(1_704_067_200);
        h.set_size(size);
        h
    };
    for d in 0..n.div_ceil(1000) {
        let mut h = header(tar::EntryType::Directory, 0o755, 0);
        tar.append_data(&mut h, format!("many/d{d}/"), std::io::empty())
            .unwrap();
        for i in 0..1000.min(n - d * 1000) {
            let mut h = header(tar::EntryType::Regular, 0o644, 8);
            tar.append_data(&mut h, format!("many/d{d}/f{i}"), &b"12345678"[..])
                .unwrap();
        }
    }
    tar.into_inner().unwrap()
}

/// The temp entries (being deleted) in `layers/`.
fn trash(root: &Path) -> Vec<String> {
    layer_dirs(root)
        .into_iter()
        .filter(|n| n.starts_with('.'))
        .collect()
}

#[tokio::test]
async fn image_rpcs_and_restarts_do_not_wait_for_a_large_image_to_be_deleted() {
    let registry = Registry::start().unwrap();
    let layer = LayerBlob::new(&many_files_tar(60_000), Compression::Gzip).unwrap();
    let image = synth::push(
        registry.addr(),
        "crius-e2e/many",
        "1",
        &[layer],
        Flavour::Oci,
        "many",
        &RegistryAuth::Anonymous,
    )
    .await
    .unwrap();
    let mut crius = Crius::start(CriusOptions::without_cni()).await.unwrap();
    let root = crius.dir().root();
    let mut img = crius.image_client();
    let empty = image_fs(&mut img).await;
    let id = cri::pull_image(&mut img, &image.reference).await.unwrap();

    // RemoveImage answers once the image and its layer are out of sight;
    // deleting 60,000 files takes seconds more, and is still under way
    // when it has answered.
    remove(&mut img, &image.reference).await;
    assert!(
        !trash(&root).is_empty(),
        "RemoveImage waited for the deletion"
    );
    // Issued after RemoveImage, answered before the deletion is over: no
    // call waits for it (and ImageFsInfo does not walk what is going).
    assert_eq!(cri::image_ids(&mut img).await.unwrap(), NONE);
    assert!(status(&mut img, &id, false).await.image.is_none());
    assert_eq!(image_fs(&mut img).await, empty);
    assert!(
        !trash(&root).is_empty(),
        "the image calls waited for the deletion"
    );

    // A crash in the middle of it: start-up does not wait for it either;
    // the daemon serves while the rest is deleted.
    crius.kill().unwrap();
    let left = trash(&root);
    assert!(!left.is_empty());
    crius.restart().await.unwrap();
    let mut img = crius.image_client();
    assert_eq!(cri::image_ids(&mut img).await.unwrap(), NONE);
    assert!(
        !trash(&root).is_empty(),
        "start-up waited for the deletion of {left:?}"
    );
    settle(&root);
    assert_eq!(layer_dirs(&root), NONE);
    assert_eq!(image_fs(&mut img).await, empty);
    assert_eq!(du(&root), empty);
    crius.stop().await.unwrap();
    assert_no_leaks(&crius);
}
