//! Where a pull goes: the registry's configured mirrors in order, then the
//! registry itself. Each endpoint is reached over HTTPS (trusting extra
//! CAs, or unverified, as configured) or plain HTTP, with the credentials
//! meant for it.
//!
//! Credentials from the pull request go to every endpoint unless their
//! `server_address` names one (as in containerd); an endpoint they do not
//! go to gets those of the configured `auth_file`, if any.

use std::fmt;
use std::time::Duration;

use oci_client::client::{Certificate, CertificateEncoding};
use oci_client::secrets::RegistryAuth;

use super::auth::{self, Credentials, Login};
use super::reference::{ImageRef, uses_plain_http};
use crate::config::RegistrySettings;
use crate::error::{Error, Result};

const USER_AGENT: &str = concat!("crius/", env!("CARGO_PKG_VERSION"));
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a kept client keeps an idle connection to a registry.
const POOL_IDLE: Duration = Duration::from_secs(30);

/// One place an image can be pulled from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]` contacted.
    pub host: String,
    /// Plain HTTP rather than HTTPS.
    pub plain_http: bool,
    /// A mirror (rather than the registry the reference names).
    pub mirror: bool,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.mirror {
            let scheme = if self.plain_http { "http" } else { "https" };
            write!(f, "mirror {scheme}://{}", self.host)
        } else {
            f.write_str(&self.host)
        }
    }
}

/// Parses a mirror: `http://host[:port]`, `https://host[:port]` or
/// `host[:port]` (HTTPS unless plain HTTP by the `insecure` rule).
fn parse_mirror(s: &str, insecure: &[String]) -> Result<Endpoint, String> {
    let (scheme, rest) = match s.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, s),
    };
    let host = rest.strip_suffix('/').unwrap_or(rest);
    if host.is_empty()
        || host.contains(['/', '@', '?', '#'])
        || host.chars().any(char::is_whitespace)
    {
        return Err(format!(
            "mirror {s:?} must be http://host[:port], https://host[:port] or host[:port] \
             (no path, user or query)"
        ));
    }
    let plain_http = match scheme {
        Some("http") => true,
        Some("https") => false,
        Some(other) => return Err(format!("mirror {s:?}: unsupported scheme {other:?}")),
        None => uses_plain_http(host, insecure),
    };
    Ok(Endpoint {
        host: host.to_string(),
        plain_http,
        mirror: true,
    })
}

/// Checks the `[registry]` settings: mirrors well formed, CA files
/// readable PEM, numbers in range. The message names the option.
pub fn validate(settings: &RegistrySettings) -> Result<()> {
    let bad = |m: String| Error::InvalidArgument(format!("[registry] {m}"));
    for (host, mirrors) in &settings.mirrors {
        for m in mirrors {
            parse_mirror(m, &settings.insecure)
                .map_err(|e| bad(format!("mirrors.{host:?}: {e}")))?;
        }
    }
    for (host, file) in &settings.ca_files {
        ca_certificates(file).map_err(|e| bad(format!("ca_files.{host:?}: {e}")))?;
    }
    if settings.stall_timeout_secs == 0 {
        return Err(bad("stall_timeout_secs must be at least 1".into()));
    }
    if settings.request_timeout_secs == 0 {
        return Err(bad("request_timeout_secs must be at least 1".into()));
    }
    for (name, mib) in [
        ("max_layer_unpacked_mib", settings.max_layer_unpacked_mib),
        ("max_image_unpacked_mib", settings.max_image_unpacked_mib),
    ] {
        if mib.checked_mul(1 << 20).is_none() {
            return Err(bad(format!("{name} = {mib} is too large")));
        }
    }
    if settings.progress_interval_secs == 0 {
        return Err(bad("progress_interval_secs must be at least 1".into()));
    }
    if settings.concurrent_layers == 0 {
        return Err(bad("concurrent_layers must be at least 1".into()));
    }
    Ok(())
}

fn ca_certificates(file: &std::path::Path) -> Result<Vec<Certificate>, String> {
    let data = std::fs::read(file).map_err(|e| format!("read {}: {e}", file.display()))?;
    if !String::from_utf8_lossy(&data).contains("-----BEGIN CERTIFICATE-----") {
        return Err(format!("{} holds no PEM certificate", file.display()));
    }
    Ok(vec![Certificate {
        encoding: CertificateEncoding::Pem,
        data,
    }])
}

/// Where `image` is pulled from, in order: its registry's mirrors, then
/// the registry.
pub fn endpoints(settings: &RegistrySettings, image: &ImageRef) -> Result<Vec<Endpoint>> {
    let mirrors = settings
        .mirrors
        .get(image.registry())
        .or_else(|| settings.mirrors.get(image.registry_host()));
    let mut out = Vec::new();
    for m in mirrors.into_iter().flatten() {
        let ep = parse_mirror(m, &settings.insecure).map_err(Error::InvalidArgument)?;
        // A mirror that is the registry itself is the registry.
        if ep.host != image.registry_host() && !out.contains(&ep) {
            out.push(ep);
        }
    }
    let host = image.registry_host().to_string();
    out.push(Endpoint {
        plain_http: uses_plain_http(image.registry(), &settings.insecure)
            || uses_plain_http(&host, &settings.insecure),
        host,
        mirror: false,
    });
    Ok(out)
}

/// Whether a per-host setting keyed by `key` is for the endpoint.
fn same_host(key: &str, ep: &Endpoint, image: &ImageRef) -> bool {
    key == ep.host || (!ep.mirror && key == image.registry())
}

/// The extra CA certificates and whether to skip verification, for `ep`.
fn tls(
    settings: &RegistrySettings,
    ep: &Endpoint,
    image: &ImageRef,
) -> Result<(Vec<Certificate>, bool)> {
    let mut extra_roots = Vec::new();
    for (key, file) in &settings.ca_files {
        if same_host(key, ep, image) {
            extra_roots.extend(ca_certificates(file).map_err(|e| {
                Error::FailedPrecondition(format!("[registry] ca_files.{key:?}: {e}"))
            })?);
        }
    }
    let skip_verify = settings.skip_verify.iter().any(|k| same_host(k, ep, image));
    Ok((extra_roots, skip_verify))
}

/// `http://host[:port]` or `https://host[:port]` of the endpoint.
pub fn base_url(ep: &Endpoint) -> String {
    let scheme = if ep.plain_http { "http" } else { "https" };
    format!("{scheme}://{}", ep.host)
}

/// The HTTP clients pulls use, one per TLS setting and read bound, kept
/// from pull to pull: building one loads and parses the system's CA
/// certificates (tens of milliseconds), and a kept client keeps its idle
/// connections to a registry for the next pull.
#[derive(Debug, Default)]
pub struct HttpClients {
    built: std::sync::Mutex<Vec<(ClientKey, reqwest::Client)>>,
}

/// What makes one client differ from another.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ClientKey {
    /// The extra CA certificates (PEM), as read for this pull.
    extra_roots: Vec<Vec<u8>>,
    skip_verify: bool,
    stall: Duration,
}

/// More distinct settings than this and the kept clients are dropped (the
/// settings come from the config file, so only a config with that many
/// per-host TLS settings gets there).
const MAX_KEPT_CLIENTS: usize = 32;

impl HttpClients {
    /// The HTTP client for one endpoint of a pull, with the endpoint's TLS
    /// settings (its CA files read now, so a changed file takes effect at
    /// the next pull). `stall` bounds how long any single read may wait
    /// (a backstop: the puller's own checks, as long, fire first with a
    /// clearer message).
    pub fn get(
        &self,
        settings: &RegistrySettings,
        ep: &Endpoint,
        image: &ImageRef,
        stall: Duration,
    ) -> Result<reqwest::Client> {
        let (extra_roots, skip_verify) = tls(settings, ep, image)?;
        let key = ClientKey {
            extra_roots: extra_roots.into_iter().map(|c| c.data).collect(),
            skip_verify,
            stall,
        };
        let mut built = self.built.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, client)) = built.iter().find(|(k, _)| *k == key) {
            return Ok(client.clone());
        }
        let client = build_client(&key, ep)?;
        if built.len() >= MAX_KEPT_CLIENTS {
            built.clear();
        }
        built.push((key, client.clone()));
        Ok(client)
    }
}

fn build_client(key: &ClientKey, ep: &Endpoint) -> Result<reqwest::Client> {
    let mut certs = Vec::new();
    for pem in &key.extra_roots {
        certs.push(
            reqwest::Certificate::from_pem(pem)
                .map_err(|e| Error::FailedPrecondition(format!("CA certificate for {ep}: {e}")))?,
        );
    }
    reqwest::Client::builder()
        .danger_accept_invalid_certs(key.skip_verify)
        .tls_certs_merge(certs)
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(key.stall + Duration::from_secs(5))
        .pool_idle_timeout(POOL_IDLE)
        .user_agent(USER_AGENT)
        .build()
        .map_err(|e| Error::Internal(format!("build HTTP client for {ep}: {e}")))
}

/// The registry a mirror is asked to mirror (told it with `?ns=`, as
/// containerd does); `None` for the registry itself.
pub fn upstream<'a>(image: &'a ImageRef, ep: &Endpoint) -> Option<&'a str> {
    ep.mirror.then(|| image.registry())
}

/// The credentials for `ep`: the request's when meant for it, else the
/// auth file's, else none. Returns them with whether any were given.
pub fn credentials(
    settings: &RegistrySettings,
    ep: &Endpoint,
    image: &ImageRef,
    request: Option<&Credentials>,
) -> Result<(Login, bool)> {
    if let Some(c) = request.filter(|c| !c.is_empty())
        && (c.applies_to(&ep.host) || (!ep.mirror && c.applies_to(image.registry())))
    {
        return Ok((c.login("the pull request's credentials")?, true));
    }
    let from_file = auth::from_auth_file(&settings.auth_file, &ep.host)?.or(if ep.mirror {
        None
    } else {
        auth::from_auth_file(&settings.auth_file, image.registry())?
    });
    match from_file {
        Some(c) if !c.is_empty() => {
            let what = format!("auth_file {}", settings.auth_file.display());
            Ok((c.login(&what)?, true))
        }
        _ => Ok((Login::Direct(RegistryAuth::Anonymous), false)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn settings(mirrors: &[(&str, &[&str])]) -> RegistrySettings {
        RegistrySettings {
            insecure: vec!["plain.lan:5000".into()],
            mirrors: mirrors
                .iter()
                .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
                .collect::<BTreeMap<_, _>>(),
            ..Default::default()
        }
    }

    fn ep(host: &str, plain_http: bool, mirror: bool) -> Endpoint {
        Endpoint {
            host: host.into(),
            plain_http,
            mirror,
        }
    }

    #[test]
    fn mirrors_first_then_the_registry() {
        let s = settings(&[
            (
                "registry.k8s.io",
                &[
                    "http://127.0.0.1:5000",
                    "https://m.lan/",
                    "plain.lan:5000",
                    "m2.lan",
                ],
            ),
            ("docker.io", &["127.0.0.1:5001"]),
        ]);
        let r = ImageRef::parse("registry.k8s.io/pause:3.10").unwrap();
        assert_eq!(
            endpoints(&s, &r).unwrap(),
            [
                ep("127.0.0.1:5000", true, true),
                ep("m.lan", false, true),
                ep("plain.lan:5000", true, true),
                ep("m2.lan", false, true),
                ep("registry.k8s.io", false, false),
            ]
        );
        let r = ImageRef::parse("busybox").unwrap();
        assert_eq!(
            endpoints(&s, &r).unwrap(),
            [
                ep("127.0.0.1:5001", true, true),
                ep("index.docker.io", false, false)
            ]
        );
        let r = ImageRef::parse("plain.lan:5000/x").unwrap();
        assert_eq!(
            endpoints(&s, &r).unwrap(),
            [ep("plain.lan:5000", true, false)]
        );
        let pause = ImageRef::parse("registry.k8s.io/pause:3.10").unwrap();
        let mirror = ep("127.0.0.1:5000", true, true);
        assert_eq!(upstream(&pause, &mirror), Some("registry.k8s.io"));
        assert_eq!(base_url(&mirror), "http://127.0.0.1:5000");
        assert_eq!(upstream(&pause, &ep("registry.k8s.io", false, false)), None);
    }

    #[test]
    fn bad_settings_are_named() {
        for bad in [
            "http://m.lan/v2/prefix",
            "ftp://m.lan",
            "https://user:pw@m.lan",
            "",
        ] {
            let s = settings(&[("quay.io", &[bad])]);
            let e = validate(&s).unwrap_err().to_string();
            assert!(e.contains("mirrors.\"quay.io\""), "{e}");
            assert!(!e.contains("pw@") || bad.contains("pw@"), "{e}");
        }
        let s = RegistrySettings {
            ca_files: BTreeMap::from([("reg.lan".into(), "/nonexistent.pem".into())]),
            ..Default::default()
        };
        let e = validate(&s).unwrap_err().to_string();
        assert!(
            e.contains("ca_files.\"reg.lan\"") && e.contains("/nonexistent.pem"),
            "{e}"
        );
        let s = RegistrySettings {
            stall_timeout_secs: 0,
            ..Default::default()
        };
        assert!(
            validate(&s)
                .unwrap_err()
                .to_string()
                .contains("stall_timeout_secs")
        );
        validate(&RegistrySettings::default()).unwrap();
    }

    #[test]
    fn request_credentials_go_where_their_server_address_says() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.json");
        std::fs::write(
            &file,
            r#"{"auths": {"127.0.0.1:5000": {"username": "m", "password": "mp"}}}"#,
        )
        .unwrap();
        let s = RegistrySettings {
            auth_file: file,
            ..Default::default()
        };
        let image = ImageRef::parse("registry.k8s.io/pause:3.10").unwrap();
        let mirror = ep("127.0.0.1:5000", true, true);
        let upstream = ep("registry.k8s.io", false, false);
        let basic = |u: &str, p: &str| Login::Direct(RegistryAuth::Basic(u.into(), p.into()));

        // No server address: the request's credentials go everywhere.
        let any = Credentials::basic("u", "p");
        assert_eq!(
            credentials(&s, &mirror, &image, Some(&any)).unwrap(),
            (basic("u", "p"), true)
        );
        // For the upstream only: the mirror gets the auth file's.
        let up = Credentials {
            server_address: "registry.k8s.io".into(),
            ..Credentials::basic("u", "p")
        };
        assert_eq!(
            credentials(&s, &mirror, &image, Some(&up)).unwrap(),
            (basic("m", "mp"), true)
        );
        assert_eq!(
            credentials(&s, &upstream, &image, Some(&up)).unwrap(),
            (basic("u", "p"), true)
        );
        // Nothing given, nothing in the file: anonymous.
        assert_eq!(
            credentials(&s, &upstream, &image, None).unwrap(),
            (Login::Direct(RegistryAuth::Anonymous), false)
        );
    }
}
