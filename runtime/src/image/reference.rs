//! Image references: parsing, Docker-style normalisation (`busybox` →
//! `docker.io/library/busybox:latest`), the repo tag and repo digest
//! strings of image records, and which registries are spoken to in plain
//! HTTP.

use std::fmt;
use std::net::IpAddr;

use oci_client::Reference;

use crate::error::{Error, Result};

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    inner: Reference,
}

impl ImageRef {
    /// Parses and normalises a reference; `InvalidArgument` if it is not
    /// one.
    pub fn parse(s: &str) -> Result<ImageRef> {
        let invalid = |e: &dyn fmt::Display| {
            Error::InvalidArgument(format!("invalid image reference {s:?}: {e}"))
        };
        let inner: Reference = s.parse().map_err(|e| invalid(&e))?;
        // The parser takes "UPPER/x" for a registry host and a path; as a
        // Docker Hub name (no dot, colon or localhost) it must be lowercase.
        if inner.repository().bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(invalid(&"repository name must be lowercase"));
        }
        Ok(ImageRef { inner })
    }

    /// `registry/repository`, e.g. `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.inner.registry(), self.inner.repository())
    }

    /// The repository, e.g. `library/busybox`.
    pub fn repository(&self) -> &str {
        self.inner.repository()
    }

    /// The registry as named in the reference (`docker.io`, `localhost:5000`).
    pub fn registry(&self) -> &str {
        self.inner.registry()
    }

    /// The host actually contacted (`index.docker.io` for `docker.io`).
    pub fn registry_host(&self) -> &str {
        self.inner.resolve_registry()
    }

    /// The tag, if the reference names one.
    pub fn tag(&self) -> Option<&str> {
        self.inner.tag()
    }

    /// The digest, if the reference names one.
    pub fn digest(&self) -> Option<&str> {
        self.inner.digest()
    }

    /// The repo tag an image pulled by this reference gets:
    /// `name:tag`. None when the reference names a digest: as in
    /// containerd's CRI plugin, the digest wins over a tag given with it.
    pub fn repo_tag(&self) -> Option<String> {
        match (self.inner.tag(), self.inner.digest()) {
            (Some(tag), None) => Some(format!("{}:{tag}", self.name())),
            _ => None,
        }
    }

    /// The repo digest of the manifest (or index) `digest` in this
    /// repository: `name@digest`.
    pub fn repo_digest(&self, digest: &str) -> String {
        format!("{}@{digest}", self.name())
    }

    /// What is fetched from `/v2/<repository>/manifests/`: the digest when
    /// there is one (a tag given with it is ignored), else the tag
    /// (`latest` if none).
    pub fn manifest_reference(&self) -> &str {
        self.inner.digest().or(self.inner.tag()).unwrap_or("latest")
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `whole()` without a digest-and-tag duplicate: show what is pulled.
        match (self.inner.tag(), self.inner.digest()) {
            (_, Some(d)) => write!(f, "{}@{d}", self.name()),
            (Some(t), None) => write!(f, "{}:{t}", self.name()),
            (None, None) => f.write_str(&self.name()),
        }
    }
}

/// Whether `registry` (`host` or `host:port`) is reached over plain HTTP:
/// when listed in `insecure`, or, as Docker does, when it is a loopback
/// address (localhost, 127.0.0.0/8, ::1) on any port.
pub fn uses_plain_http(registry: &str, insecure: &[String]) -> bool {
    if insecure.iter().any(|r| r == registry) {
        return true;
    }
    let host = match registry.strip_prefix('[') {
        // "[::1]:5000" or "[::1]"
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => registry.rsplit_once(':').map_or(registry, |(h, _)| h),
    };
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn normalises_docker_hub_short_names() {
        let r = ImageRef::parse("busybox").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        assert_eq!(
            r.repo_tag().as_deref(),
            Some("docker.io/library/busybox:latest")
        );
        assert_eq!(r.registry(), "docker.io");
        assert_eq!(r.registry_host(), "index.docker.io");
        let r = ImageRef::parse("index.docker.io/foo/bar:1.2").unwrap();
        assert_eq!(r.repo_tag().as_deref(), Some("docker.io/foo/bar:1.2"));
        let r = ImageRef::parse("quay.io/x/y").unwrap();
        assert_eq!(r.repo_tag().as_deref(), Some("quay.io/x/y:latest"));
        let r = ImageRef::parse("localhost:5000/app:v1").unwrap();
        assert_eq!(r.name(), "localhost:5000/app");
        assert_eq!(r.registry_host(), "localhost:5000");
    }

    #[test]
    fn digests_and_tag_plus_digest() {
        let r = ImageRef::parse(&format!("busybox@{D}")).unwrap();
        assert_eq!(r.repo_tag(), None);
        assert_eq!(r.digest(), Some(D));
        assert_eq!(r.to_string(), format!("docker.io/library/busybox@{D}"));
        assert_eq!(r.repo_digest(D), format!("docker.io/library/busybox@{D}"));
        // The digest wins; the tag is neither fetched nor recorded.
        let r = ImageRef::parse(&format!("busybox:1.36@{D}")).unwrap();
        assert_eq!(r.repo_tag(), None);
        assert_eq!(r.manifest_reference(), D);
        assert_eq!(
            ImageRef::parse("busybox:1.36")
                .unwrap()
                .manifest_reference(),
            "1.36"
        );
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "UPPER/case", "a b", "busybox@sha256:123", "x:"] {
            match ImageRef::parse(bad) {
                Err(Error::InvalidArgument(m)) => assert!(m.contains("invalid image reference")),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn plain_http_for_insecure_and_loopback_registries() {
        let insecure = vec!["reg.lan:5000".to_string()];
        assert!(uses_plain_http("reg.lan:5000", &insecure));
        assert!(!uses_plain_http("reg.lan", &insecure));
        assert!(uses_plain_http("localhost", &[]));
        assert!(uses_plain_http("localhost:5000", &[]));
        assert!(uses_plain_http("127.0.0.1:5000", &[]));
        assert!(uses_plain_http("127.3.2.1", &[]));
        assert!(uses_plain_http("[::1]:5000", &[]));
        assert!(!uses_plain_http("docker.io", &[]));
        assert!(!uses_plain_http("10.0.0.1:5000", &[]));
        assert!(!uses_plain_http("localhost.example.com", &[]));
    }
}
