//! Self-tests of the harness: they need no daemon and prove that the parts
//! the daemon tests stand on work: registry, images, CRI client over a unix
//! socket, leak checker and cleanup.

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crius_e2e::image::{DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, registry_client, sha256_digest};
use crius_e2e::{
    CriusOptions, NodeDir, Registry, TestImages, connect_unix, cri, crius_binary, find_leaks,
};
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::image_service_server::{ImageService, ImageServiceServer};
use k8s_cri::v1::{
    Image, ImageFsInfoRequest, ImageFsInfoResponse, ImageStatusRequest, ImageStatusResponse,
    ListImagesRequest, ListImagesResponse, PullImageRequest, PullImageResponse, RemoveImageRequest,
    RemoveImageResponse,
};
use oci_client::manifest::OciManifest;
use oci_client::secrets::RegistryAuth;
use tonic::{Code, Request, Response, Status};

#[tokio::test]
async fn registry_serves_the_pushed_images() {
    let registry = Registry::start().unwrap();
    let images = TestImages::push(registry.addr()).await.unwrap();
    let client = registry_client();
    let auth = RegistryAuth::Anonymous;

    for (image, media_type, config_type, layer_type) in [
        (
            &images.oci,
            OCI_MANIFEST,
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar+gzip",
        ),
        (
            &images.docker,
            DOCKER_MANIFEST,
            "application/vnd.docker.container.image.v1+json",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
        ),
    ] {
        let reference = image.reference.parse().unwrap();
        let (manifest, digest) = client.pull_manifest(&reference, &auth).await.unwrap();
        assert_eq!(digest, image.manifest_digest);
        assert_eq!(image.manifest_media_type, media_type);
        let OciManifest::Image(manifest) = manifest else {
            panic!("{}: not an image manifest", image.reference)
        };
        assert_eq!(manifest.media_type.as_deref(), Some(media_type));
        assert_eq!(manifest.config.media_type, config_type);
        assert_eq!(manifest.config.digest, image.image_id);
        assert_eq!(manifest.layers.len(), 2);
        assert!(manifest.layers.iter().all(|l| l.media_type == layer_type));

        // The config's diff_ids are the digests of the uncompressed layers.
        let mut config = Vec::new();
        client
            .pull_blob(&reference, &manifest.config, &mut config)
            .await
            .unwrap();
        assert_eq!(sha256_digest(&config), image.image_id);
        let config: serde_json::Value = serde_json::from_slice(&config).unwrap();
        assert_eq!(config["architecture"], "amd64");
        assert_eq!(config["config"]["WorkingDir"], "/data");
        for (layer, diff_id) in manifest.layers.iter().zip(
            config["rootfs"]["diff_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_str().unwrap()),
        ) {
            let mut gzip = Vec::new();
            client
                .pull_blob(&reference, layer, &mut gzip)
                .await
                .unwrap();
            assert_eq!(sha256_digest(&gzip), layer.digest);
            let mut tar = Vec::new();
            flate2::read::GzDecoder::new(&gzip[..])
                .read_to_end(&mut tar)
                .unwrap();
            assert_eq!(sha256_digest(&tar), diff_id);
        }
    }
    assert_ne!(images.oci.image_id, images.docker.image_id);

    // The index lists the decoy first; resolving it for linux/amd64 lands on
    // the :oci manifest and config.
    let index_ref = images.index.reference.parse().unwrap();
    let (index, digest) = client.pull_manifest(&index_ref, &auth).await.unwrap();
    assert_eq!(digest, images.index.manifest_digest);
    let OciManifest::ImageIndex(index) = index else {
        panic!("{}: not an index", images.index.reference)
    };
    assert_eq!(index.media_type.as_deref(), Some(OCI_INDEX));
    let listed: Vec<(&str, String)> = index
        .manifests
        .iter()
        .map(|m| {
            let arch = m.platform.as_ref().unwrap().architecture.to_string();
            (m.digest.as_str(), arch)
        })
        .collect();
    assert_eq!(
        listed,
        [
            (images.foreign_manifest_digest.as_str(), "arm64".to_string()),
            (images.oci.manifest_digest.as_str(), "amd64".to_string()),
        ]
    );
    let (resolved, resolved_digest) = client.pull_image_manifest(&index_ref, &auth).await.unwrap();
    assert_eq!(resolved_digest, images.index.platform_manifest_digest);
    assert_eq!(resolved_digest, images.oci.manifest_digest);
    assert_eq!(resolved.config.digest, images.index.image_id);

    // Building is deterministic: pushing again yields the same digests.
    let again = TestImages::push(registry.addr()).await.unwrap();
    for (a, b) in images.all().into_iter().zip(again.all()) {
        assert_eq!(a.manifest_digest, b.manifest_digest);
        assert_eq!(a.image_id, b.image_id);
    }
}

/// An ImageService that knows one image and implements nothing else.
struct FakeImages;

#[tonic::async_trait]
impl ImageService for FakeImages {
    async fn list_images(
        &self,
        _: Request<ListImagesRequest>,
    ) -> Result<Response<ListImagesResponse>, Status> {
        Ok(Response::new(ListImagesResponse {
            images: vec![Image {
                id: "sha256:fake".into(),
                ..Default::default()
            }],
        }))
    }
    async fn image_status(
        &self,
        _: Request<ImageStatusRequest>,
    ) -> Result<Response<ImageStatusResponse>, Status> {
        Err(Status::unimplemented("ImageStatus"))
    }
    async fn pull_image(
        &self,
        _: Request<PullImageRequest>,
    ) -> Result<Response<PullImageResponse>, Status> {
        Err(Status::unimplemented("PullImage"))
    }
    async fn remove_image(
        &self,
        _: Request<RemoveImageRequest>,
    ) -> Result<Response<RemoveImageResponse>, Status> {
        Err(Status::unimplemented("RemoveImage"))
    }
    async fn image_fs_info(
        &self,
        _: Request<ImageFsInfoRequest>,
    ) -> Result<Response<ImageFsInfoResponse>, Status> {
        Err(Status::unimplemented("ImageFsInfo is not implemented"))
    }
}

#[tokio::test]
async fn cri_client_talks_over_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("fake.sock");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(ImageServiceServer::new(FakeImages))
            .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener)),
    );

    let mut client = ImageServiceClient::new(connect_unix(&socket).await.unwrap());
    assert_eq!(cri::image_ids(&mut client).await.unwrap(), ["sha256:fake"]);
    cri::assert_code(
        client.image_fs_info(ImageFsInfoRequest::default()).await,
        Code::Unimplemented,
        "ImageFsInfo",
    );
    server.abort();
}

#[tokio::test]
async fn a_daemon_that_dies_at_start_up_is_reported_and_cleaned_up() {
    let options = CriusOptions {
        binary: Some("/bin/false".into()),
        ..Default::default()
    };
    let error = crius_e2e::Crius::start(options)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("exited during start-up"), "{error}");
    // The message names the (already removed) node dir through its log.
    let start = error.find("/tmp/crius-e2e-").unwrap();
    let dir = Path::new(&error[start..start + "/tmp/crius-e2e-".len() + 6]);
    assert!(!dir.exists(), "{} was not removed", dir.display());
}

#[test]
fn the_crius_binary_is_found_or_explained() {
    match crius_binary() {
        Ok(bin) => {
            assert!(bin.ends_with("crius"));
            assert!(bin.with_file_name("crius-monitor").is_file());
        }
        Err(e) => assert!(
            e.to_string().contains("cargo build --workspace --bins"),
            "{e}"
        ),
    }
}

#[test]
fn node_dir_has_its_layout_and_cni_config() {
    let dir = NodeDir::create(true).unwrap();
    for sub in [dir.root(), dir.state(), dir.logs(), dir.cni_conf_dir()] {
        assert!(sub.is_dir(), "{}", sub.display());
    }
    assert!(dir.bridge().len() <= 15);
    let conf = std::fs::read_dir(dir.cni_conf_dir())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let conf: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(conf).unwrap()).unwrap();
    assert_eq!(conf["cniVersion"], "1.0.0");
    assert_eq!(conf["plugins"][0]["type"], "bridge");
    assert_eq!(conf["plugins"][0]["bridge"], dir.bridge().as_str());
    assert_eq!(
        conf["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
        dir.subnet().as_str()
    );
    assert_eq!(conf["plugins"][1]["type"], "portmap");
    let gateway = dir.subnet().replace(".0/24", ".1");
    assert!(dir.subnet_contains(&gateway));
    assert!(!dir.subnet_contains("10.202.0.1"));
    assert!(find_leaks(&dir).is_empty(), "{:?}", find_leaks(&dir));

    let empty = NodeDir::create(false).unwrap();
    assert_eq!(std::fs::read_dir(empty.cni_conf_dir()).unwrap().count(), 0);
    assert_ne!(empty.id(), dir.id());
}

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().unwrap();
    assert!(status.success(), "ip {args:?}");
}

#[test]
fn leak_checker_reports_planted_leaks_and_cleanup_removes_them() {
    let dir = NodeDir::create(true).unwrap();
    let path = dir.path().to_path_buf();
    let dir_bridge = dir.bridge();

    // A mount.
    let mnt = dir.state().join("planted-mount");
    std::fs::create_dir(&mnt).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &mnt,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    // A process working in the dir, and one only in the pod cgroup.
    let mut in_dir = Command::new("sleep")
        .arg("1000")
        .current_dir(dir.root())
        .spawn()
        .unwrap();
    let hierarchy = ["/sys/fs/cgroup/pids", "/sys/fs/cgroup/unified"]
        .into_iter()
        .find(|h| Path::new(h).is_dir())
        .unwrap_or("/sys/fs/cgroup");
    let cgroup = Path::new(hierarchy)
        .join(dir.cgroup_parent().trim_start_matches('/'))
        .join("planted");
    std::fs::create_dir_all(&cgroup).unwrap();
    let mut in_cgroup = Command::new("sleep")
        .arg("1001")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    std::fs::write(cgroup.join("cgroup.procs"), in_cgroup.id().to_string()).unwrap();
    // OCI runtime state, an IP reservation (host-local's bookkeeping is not
    // a leak), a port on the bridge.
    std::fs::create_dir_all(dir.runtime_roots()[0].join("planted-container")).unwrap();
    let network = dir.ipam_dir().join(dir.network_name());
    std::fs::create_dir_all(&network).unwrap();
    let reserved = dir.subnet().replace(".0/24", ".7");
    std::fs::write(network.join(&reserved), "planted").unwrap();
    std::fs::write(network.join("lock"), "").unwrap();
    std::fs::write(network.join("last_reserved_ip.0"), &reserved).unwrap();
    let port = format!("crid{}", dir.id());
    ip(&["link", "add", &dir.bridge(), "type", "bridge"]);
    ip(&[
        "link",
        "add",
        &port,
        "type",
        "veth",
        "peer",
        "name",
        &format!("{port}p"),
    ]);
    ip(&["link", "set", &port, "master", &dir.bridge()]);

    let leaks = find_leaks(&dir);
    let report = leaks.join("\n");
    let expected = [
        format!("mount {}", mnt.display()),
        format!("process {} (cwd)", in_dir.id()),
        format!("process {} (cgroup)", in_cgroup.id()),
        format!("cgroup {}", cgroup.display()),
        "planted-container".to_string(),
        format!("IP reservation {}", network.join(&reserved).display()),
        format!("interface {port} on bridge"),
    ];
    for needle in &expected {
        assert!(
            report.contains(needle.as_str()),
            "{needle:?} not in:\n{report}"
        );
    }
    assert_eq!(leaks.len(), expected.len(), "{report}");

    drop(dir);
    assert_eq!(in_dir.wait().unwrap().signal(), Some(libc::SIGKILL));
    assert_eq!(in_cgroup.wait().unwrap().signal(), Some(libc::SIGKILL));
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mountinfo.contains(path.to_str().unwrap()));
    assert!(!cgroup.exists() && !cgroup.parent().unwrap().exists());
    for link in [port, dir_bridge] {
        assert!(
            !Path::new("/sys/class/net").join(&link).exists(),
            "{link} left"
        );
    }
    assert!(!path.exists(), "{} left", path.display());
}

/// The test network works with the real bridge plugin, and what a pod
/// would leave on it (a netns pinned under the dir, a veth, an address) is
/// reported and then cleaned up.
#[test]
fn the_test_cni_network_hands_out_addresses_and_is_cleaned_up() {
    let dir = NodeDir::create(true).unwrap();
    let path = dir.path().to_path_buf();
    let bridge = dir.bridge();
    let conflist = std::fs::read_dir(dir.cni_conf_dir())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let conflist: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(conflist).unwrap()).unwrap();
    let mut plugin = conflist["plugins"][0].clone();
    plugin["cniVersion"] = conflist["cniVersion"].clone();
    plugin["name"] = conflist["name"].clone();

    let netns = dir.state().join("netns-planted");
    std::fs::write(&netns, "").unwrap();
    let pinned = Command::new("unshare")
        .arg(format!("--net={}", netns.display()))
        .arg("true")
        .status()
        .unwrap();
    assert!(pinned.success());
    let mut add = Command::new("/usr/lib/cni/bridge")
        .env("CNI_COMMAND", "ADD")
        .env("CNI_CONTAINERID", format!("selftest-{}", dir.id()))
        .env("CNI_NETNS", &netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/usr/lib/cni")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    serde_json::to_writer(add.stdin.take().unwrap(), &plugin).unwrap();
    let output = add.wait_with_output().unwrap();
    let result = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "bridge ADD failed: {result}");
    let result: serde_json::Value = serde_json::from_str(&result).unwrap();
    let address = result["ips"][0]["address"].as_str().unwrap();
    let ip = address.split('/').next().unwrap();
    assert!(dir.subnet_contains(ip), "{address} not in {}", dir.subnet());

    let report = find_leaks(&dir).join("\n");
    for needle in [
        format!("mount {}", netns.display()),
        format!(
            "IP reservation {}",
            dir.ipam_dir().join(dir.network_name()).join(ip).display()
        ),
        format!("on bridge {bridge}"),
    ] {
        assert!(report.contains(&needle), "{needle:?} not in:\n{report}");
    }

    drop(dir);
    assert!(!path.exists(), "{} left", path.display());
    assert!(
        !Path::new("/sys/class/net").join(&bridge).exists(),
        "{bridge} left"
    );
}

#[test]
fn iptables_rules_of_a_network_are_found_and_removed() {
    use crius_e2e::host::{iptables_rules_of, remove_iptables_rules_of};
    let network = format!("crius-e2e-self-{}", crius_e2e::random_hex(3));
    let other = format!("{network}x");
    let chain = format!("CNI-{}", crius_e2e::random_hex(8));
    let comment = |net: &str| format!("name: \"{net}\" id: \"abc\"");
    let ipt = |args: &[&str]| {
        let status = Command::new("iptables").args(args).status().unwrap();
        assert!(status.success(), "iptables {args:?}");
    };
    // As the bridge plugin makes them: a chain of the pod's, and a jump to
    // it from POSTROUTING, all commented with the network's name; and a
    // rule of another network whose name starts the same.
    ipt(&["-t", "nat", "-N", &chain]);
    for rule in [
        vec!["-A", &chain, "-d", "10.250.0.0/24", "-j", "ACCEPT"],
        vec!["-A", &chain, "!", "-d", "224.0.0.0/4", "-j", "MASQUERADE"],
    ] {
        let c = comment(&network);
        let mut args = vec!["-t", "nat"];
        args.extend(rule);
        args.extend(["-m", "comment", "--comment", &c]);
        ipt(&args);
    }
    let (c, o) = (comment(&network), comment(&other));
    ipt(&[
        "-t",
        "nat",
        "-A",
        "POSTROUTING",
        "-s",
        "10.250.0.7/32",
        "-m",
        "comment",
        "--comment",
        &c,
        "-j",
        &chain,
    ]);
    ipt(&[
        "-t",
        "nat",
        "-A",
        "POSTROUTING",
        "-s",
        "10.250.0.8/32",
        "-m",
        "comment",
        "--comment",
        &o,
        "-j",
        "ACCEPT",
    ]);
    assert_eq!(iptables_rules_of(&network).len(), 3);
    remove_iptables_rules_of(&network);
    let left = iptables_rules_of(&network);
    let others = iptables_rules_of(&other);
    // Clean up the other network's rule before asserting.
    remove_iptables_rules_of(&other);
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(others.len(), 1, "another network's rule was touched");
    let chains = Command::new("iptables-save")
        .args(["-t", "nat"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&chains.stdout).contains(&chain));
}
