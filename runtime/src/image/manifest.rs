//! What registries serve, parsed: image manifests (OCI and Docker v2
//! schema 2), image indexes / manifest lists with platform selection, and
//! image configs.

use std::collections::BTreeMap;

use oci_client::manifest::{
    IMAGE_DOCKER_CONFIG_MEDIA_TYPE, IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE,
    ImageIndexEntry, OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE, OciImageIndex,
    OciImageManifest,
};
use serde::Deserialize;

use super::ImageConfig;

/// The media types asked for when fetching a manifest.
pub const ACCEPTED_MANIFESTS: &[&str] = &[
    OCI_IMAGE_INDEX_MEDIA_TYPE,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE,
];

/// The OCI image config media type.
pub const OCI_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";

/// A fetched manifest: one image, or an index of per-platform images.
#[derive(Debug)]
pub enum Manifest {
    /// An image manifest (OCI or Docker v2 schema 2).
    Image(Box<OciImageManifest>),
    /// An image index or Docker manifest list.
    Index(OciImageIndex),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    schema_version: Option<i64>,
    media_type: Option<String>,
    manifests: Option<serde_json::Value>,
}

impl Manifest {
    /// Parses a manifest body; its kind comes from its `mediaType`, or
    /// from its shape when it has none.
    pub fn parse(body: &[u8]) -> Result<Manifest, String> {
        let probe: Probe =
            serde_json::from_slice(body).map_err(|e| format!("manifest is not JSON: {e}"))?;
        if probe.schema_version != Some(2) {
            return Err(format!(
                "unsupported manifest schema version {:?} (only schema 2 is supported)",
                probe.schema_version
            ));
        }
        let is_index = match probe.media_type.as_deref() {
            Some(OCI_IMAGE_INDEX_MEDIA_TYPE | IMAGE_MANIFEST_LIST_MEDIA_TYPE) => true,
            Some(OCI_IMAGE_MEDIA_TYPE | IMAGE_MANIFEST_MEDIA_TYPE) => false,
            Some(other) => return Err(format!("unsupported manifest media type {other:?}")),
            // OCI allows omitting mediaType; an index is the one with
            // "manifests".
            None => probe.manifests.is_some(),
        };
        if is_index {
            serde_json::from_slice(body)
                .map(Manifest::Index)
                .map_err(|e| format!("malformed image index: {e}"))
        } else {
            serde_json::from_slice(body)
                .map(|m| Manifest::Image(Box::new(m)))
                .map_err(|e| format!("malformed image manifest: {e}"))
        }
    }
}

/// An OS / architecture / variant triple.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// GOARCH spelling: `amd64`, `arm64`, …
    pub architecture: String,
    /// `v8` for arm64, `v7` for arm, empty otherwise.
    pub variant: String,
}

impl Platform {
    /// The platform of this node.
    pub fn host() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", ""),
            "aarch64" => ("arm64", "v8"),
            "arm" => ("arm", "v7"),
            "x86" => ("386", ""),
            "powerpc64" => ("ppc64le", ""),
            "loongarch64" => ("loong64", ""),
            other => (other, ""),
        };
        Platform {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: variant.into(),
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
    }
}

/// Picks the index entry for `platform`: same OS and architecture, and a
/// variant that is the platform's own or none (an arm64 entry without a
/// variant is v8). An exact variant match is preferred. On no match the
/// error lists what the index offers.
pub fn select_platform<'a>(
    entries: &'a [ImageIndexEntry],
    platform: &Platform,
) -> Result<&'a ImageIndexEntry, String> {
    let candidates = entries.iter().filter_map(|e| {
        let p = e.platform.as_ref()?;
        let matches =
            p.os.to_string() == platform.os && p.architecture.to_string() == platform.architecture;
        let variant = p.variant.as_deref().unwrap_or("");
        (matches && (variant.is_empty() || variant == platform.variant)).then_some((e, variant))
    });
    let mut best = None;
    for (entry, variant) in candidates {
        if variant == platform.variant {
            return Ok(entry);
        }
        best.get_or_insert(entry);
    }
    best.ok_or_else(|| {
        let offered: Vec<String> = entries
            .iter()
            .filter_map(|e| e.platform.as_ref())
            .map(|p| {
                let mut s = format!("{}/{}", p.os, p.architecture);
                if let Some(v) = p.variant.as_deref().filter(|v| !v.is_empty()) {
                    s.push('/');
                    s.push_str(v);
                }
                s
            })
            .collect();
        format!(
            "no manifest for platform {platform} in the image index (it has: {})",
            if offered.is_empty() {
                "none".to_string()
            } else {
                offered.join(", ")
            }
        )
    })
}

/// Whether a config media type is that of a container image (and not, say,
/// a Helm chart or a WASM module).
pub fn is_image_config(media_type: &str) -> bool {
    media_type == OCI_CONFIG_MEDIA_TYPE || media_type == IMAGE_DOCKER_CONFIG_MEDIA_TYPE
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

impl Compression {
    /// From a layer media type; `None` when the type does not say (the
    /// caller then looks at the bytes), `Err` when it is not a layer.
    pub fn from_media_type(media_type: &str) -> Result<Option<Compression>, String> {
        const LAYER_TYPES: &[&str] = &[
            "application/vnd.oci.image.layer.v1.tar",
            "application/vnd.oci.image.layer.nondistributable.v1.tar",
            "application/vnd.docker.image.rootfs.diff.tar",
            "application/vnd.docker.image.rootfs.foreign.diff.tar",
        ];
        let (base, suffix) = match media_type.rsplit_once('+') {
            Some((b, s)) => (b, Some(s)),
            None => (media_type, None),
        };
        if media_type == "application/vnd.docker.image.rootfs.diff.tar.gzip"
            || media_type == "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
        {
            return Ok(Some(Compression::Gzip));
        }
        if LAYER_TYPES.contains(&base) {
            return match suffix {
                None => Ok(Some(Compression::None)),
                Some("gzip") => Ok(Some(Compression::Gzip)),
                Some("zstd") => Ok(Some(Compression::Zstd)),
                Some(other) => Err(format!("unsupported layer compression {other:?}")),
            };
        }
        if media_type.is_empty() || media_type == "application/octet-stream" {
            return Ok(None);
        }
        Err(format!("unsupported layer media type {media_type:?}"))
    }

    /// From the first bytes of a blob.
    pub fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// An image config as found in the wild: every field optional, `null`
/// tolerated (Docker writes `"Entrypoint": null`).
#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    config: Option<ContainerConfig>,
    #[serde(default)]
    rootfs: Option<RootFs>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerConfig {
    user: Option<String>,
    exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    env: Option<Vec<String>>,
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    volumes: Option<BTreeMap<String, serde_json::Value>>,
    working_dir: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    stop_signal: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RootFs {
    #[serde(rename = "type")]
    kind: Option<String>,
    diff_ids: Option<Vec<String>>,
}

/// Parses an image config: the container defaults and the layers'
/// uncompressed digests (`rootfs.diff_ids`), base first.
pub fn parse_config(data: &[u8]) -> Result<(ImageConfig, Vec<String>), String> {
    let file: ConfigFile =
        serde_json::from_slice(data).map_err(|e| format!("malformed image config: {e}"))?;
    let rootfs = file.rootfs.unwrap_or_default();
    if let Some(kind) = rootfs.kind.as_deref()
        && kind != "layers"
    {
        return Err(format!("unsupported rootfs type {kind:?} in image config"));
    }
    let c = file.config.unwrap_or_default();
    let config = ImageConfig {
        entrypoint: c.entrypoint.unwrap_or_default(),
        cmd: c.cmd.unwrap_or_default(),
        env: c.env.unwrap_or_default(),
        working_dir: c.working_dir.unwrap_or_default(),
        user: c.user.unwrap_or_default(),
        labels: c.labels.unwrap_or_default(),
        stop_signal: c.stop_signal.unwrap_or_default(),
        volumes: c.volumes.unwrap_or_default().into_keys().collect(),
        exposed_ports: c.exposed_ports.unwrap_or_default().into_keys().collect(),
    };
    Ok((config, rootfs.diff_ids.unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(os: &str, arch: &str, variant: Option<&str>, digest: &str) -> ImageIndexEntry {
        serde_json::from_value(serde_json::json!({
            "mediaType": OCI_IMAGE_MEDIA_TYPE, "digest": digest, "size": 1,
            "platform": {"os": os, "architecture": arch, "variant": variant},
        }))
        .unwrap()
    }

    #[test]
    fn platform_selection() {
        let amd = Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: "".into(),
        };
        let arm = Platform {
            os: "linux".into(),
            architecture: "arm64".into(),
            variant: "v8".into(),
        };
        let entries = vec![
            entry("unknown", "unknown", None, "att"),
            entry("linux", "amd64", Some("v3"), "amd64v3"),
            entry("linux", "amd64", None, "amd64"),
            entry("linux", "arm64", None, "arm64"),
            entry("linux", "arm64", Some("v8"), "arm64v8"),
            entry("windows", "amd64", None, "win"),
        ];
        assert_eq!(select_platform(&entries, &amd).unwrap().digest, "amd64");
        assert_eq!(select_platform(&entries, &arm).unwrap().digest, "arm64v8");
        assert_eq!(
            select_platform(&entries[..4], &arm).unwrap().digest,
            "arm64"
        );
        let e = select_platform(&entries[3..], &amd).unwrap_err();
        assert!(
            e.contains("linux/amd64") && e.contains("linux/arm64/v8, windows/amd64"),
            "{e}"
        );
    }

    #[test]
    fn compression_by_media_type_and_magic() {
        use Compression::*;
        let mt = Compression::from_media_type;
        assert_eq!(
            mt("application/vnd.oci.image.layer.v1.tar+gzip"),
            Ok(Some(Gzip))
        );
        assert_eq!(mt("application/vnd.oci.image.layer.v1.tar"), Ok(Some(None)));
        assert_eq!(
            mt("application/vnd.oci.image.layer.v1.tar+zstd"),
            Ok(Some(Zstd))
        );
        assert_eq!(
            mt("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            Ok(Some(Gzip))
        );
        assert_eq!(mt("application/octet-stream"), Ok(Option::None));
        assert!(mt("application/vnd.wasm.content.layer.v1+wasm").is_err());
        assert_eq!(Compression::sniff(&[0x1f, 0x8b, 8, 0]), Gzip);
        assert_eq!(Compression::sniff(&[0x28, 0xb5, 0x2f, 0xfd]), Zstd);
        assert_eq!(Compression::sniff(b"etc/\0\0\0"), None);
    }

    #[test]
    fn manifest_kinds() {
        let index = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(Manifest::parse(index), Ok(Manifest::Index(_))));
        let docker = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
            "config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:00","size":1},"layers":[]}"#;
        assert!(matches!(Manifest::parse(docker), Ok(Manifest::Image(_))));
        let v1 = br#"{"schemaVersion":1,"name":"x"}"#;
        assert!(Manifest::parse(v1).unwrap_err().contains("schema version"));
    }

    #[test]
    fn config_tolerates_nulls_and_maps_fields() {
        let (c, diff_ids) = parse_config(
            br#"{"architecture":"amd64","os":"linux",
            "config":{"Entrypoint":null,"Cmd":["sh"],"Env":["A=1"],"WorkingDir":"/w","User":"1:2",
              "Labels":{"k":"v"},"StopSignal":"SIGQUIT","Volumes":{"/v":{}},"ExposedPorts":{"80/tcp":{}}},
            "rootfs":{"type":"layers","diff_ids":["sha256:aa"]}}"#,
        )
        .unwrap();
        assert!(c.entrypoint.is_empty());
        assert_eq!(c.cmd, ["sh"]);
        assert_eq!(c.volumes, ["/v"]);
        assert_eq!(c.exposed_ports, ["80/tcp"]);
        assert_eq!(c.labels["k"], "v");
        assert_eq!(diff_ids, ["sha256:aa"]);
        let (c, d) = parse_config(br#"{"config":null}"#).unwrap();
        assert_eq!(c, ImageConfig::default());
        assert!(d.is_empty());
    }
}
