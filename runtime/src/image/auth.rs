//! Registry credentials: what a pull request carries (the fields of the
//! CRI `AuthConfig`), what a Docker `config.json` holds, and which of them
//! a registry host gets.
//!
//! Secrets never leave this module in a printable form: `Debug` redacts
//! them and no error message quotes them.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use base64::Engine as _;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;

use crate::error::{Error, Result};

/// How to authenticate to one endpoint.
#[derive(Clone, PartialEq, Eq)]
pub enum Login {
    /// What oci-client does itself: anonymous, basic (exchanged for a
    /// bearer token when the registry asks for one), or a bearer token.
    Direct(RegistryAuth),
    /// An identity token, to exchange for a bearer token first (see
    /// `oauth`).
    IdentityToken(String),
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Login::Direct(a) => write!(f, "Direct({a:?})"),
            Login::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
        }
    }
}

/// Registry credentials for one pull (the CRI `AuthConfig`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password.
    pub password: String,
    /// `base64(username:password)`, as in a Docker config.json; used when
    /// `username` is empty.
    pub auth: String,
    /// The registry these are for (`host[:port]`, optionally as a URL);
    /// empty means whichever registry the pull contacts, mirrors included.
    pub server_address: String,
    /// An OAuth2 refresh token for the registry's token service.
    pub identity_token: String,
    /// A bearer token sent to the registry as is.
    pub registry_token: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |s: &str| if s.is_empty() { "" } else { "<redacted>" };
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &set(&self.password))
            .field("auth", &set(&self.auth))
            .field("server_address", &self.server_address)
            .field("identity_token", &set(&self.identity_token))
            .field("registry_token", &set(&self.registry_token))
            .finish()
    }
}

impl Credentials {
    /// A user name and password.
    pub fn basic(username: &str, password: &str) -> Credentials {
        Credentials {
            username: username.into(),
            password: password.into(),
            ..Default::default()
        }
    }

    /// Whether nothing is set (an anonymous pull).
    pub fn is_empty(&self) -> bool {
        self.username.is_empty()
            && self.password.is_empty()
            && self.auth.is_empty()
            && self.identity_token.is_empty()
            && self.registry_token.is_empty()
    }

    /// Whether these credentials are for `host` (as contacted, `host[:port]`).
    pub fn applies_to(&self, host: &str) -> bool {
        self.server_address.is_empty()
            || normalise_host(&self.server_address) == normalise_host(host)
    }

    /// How to log in with these: a registry token as a bearer token, an
    /// identity token through its exchange, else basic credentials
    /// (exchanged for a bearer token when the registry asks for one).
    /// `what` names the source in errors ("the pull request's
    /// credentials", "auth_file …").
    pub fn login(&self, what: &str) -> Result<Login> {
        if !self.registry_token.is_empty() {
            return Ok(Login::Direct(RegistryAuth::Bearer(
                self.registry_token.clone(),
            )));
        }
        // Docker prefers an identity token over a user name and password.
        if !self.identity_token.is_empty() {
            return Ok(Login::IdentityToken(self.identity_token.clone()));
        }
        if !self.username.is_empty() {
            return Ok(Login::Direct(RegistryAuth::Basic(
                self.username.clone(),
                self.password.clone(),
            )));
        }
        if !self.auth.is_empty() {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(self.auth.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "{what}: auth is not base64 of \"user:password\""
                    ))
                })?;
            let (user, password) = decoded.split_once(':').ok_or_else(|| {
                Error::InvalidArgument(format!("{what}: auth is not base64 of \"user:password\""))
            })?;
            if !user.is_empty() || !password.is_empty() {
                return Ok(Login::Direct(RegistryAuth::Basic(
                    user.into(),
                    password.into(),
                )));
            }
        }
        Ok(Login::Direct(RegistryAuth::Anonymous))
    }
}

/// A registry host as credentials name it, compared the way Docker does:
/// scheme and path dropped (`https://index.docker.io/v1/` is
/// `index.docker.io`), Docker Hub's names folded into `docker.io`.
pub fn normalise_host(s: &str) -> String {
    let s = s
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = s.split('/').next().unwrap_or(s).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".into(),
        _ => host,
    }
}

/// A Docker `config.json` (only `auths` is read; credential helpers are
/// not run).
#[derive(Default, Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: HashMap<String, DockerAuth>,
}

#[derive(Default, Deserialize)]
struct DockerAuth {
    #[serde(default)]
    auth: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    identitytoken: String,
    #[serde(default)]
    registrytoken: String,
}

/// The credentials `file` (a Docker config.json) holds for `host`, if
/// any. A missing file holds none; a malformed one is an error that
/// names the file and the place, never its content.
pub fn from_auth_file(file: &Path, host: &str) -> Result<Option<Credentials>> {
    if file.as_os_str().is_empty() {
        return Ok(None);
    }
    let data = match std::fs::read(file) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("read auth_file {}", file.display()), e)),
    };
    let config: DockerConfig = serde_json::from_slice(&data).map_err(|e| {
        Error::FailedPrecondition(format!(
            "auth_file {}: malformed at line {} column {}",
            file.display(),
            e.line(),
            e.column()
        ))
    })?;
    let want = normalise_host(host);
    Ok(config
        .auths
        .into_iter()
        .find(|(key, _)| normalise_host(key) == want)
        .map(|(_, a)| Credentials {
            username: a.username,
            password: a.password,
            auth: a.auth,
            server_address: want,
            identity_token: a.identitytoken,
            registry_token: a.registrytoken,
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_secrets() {
        let c = Credentials {
            username: "u".into(),
            password: "hunter2".into(),
            auth: "c2VjcmV0".into(),
            server_address: "reg".into(),
            identity_token: "idtok".into(),
            registry_token: "regtok".into(),
        };
        let s = format!("{c:?}");
        for secret in ["hunter2", "c2VjcmV0", "idtok", "regtok"] {
            assert!(!s.contains(secret), "{s}");
        }
        assert!(s.contains("\"u\""));
    }

    #[test]
    fn login_forms() {
        let basic = |u: &str, p: &str| Login::Direct(RegistryAuth::Basic(u.into(), p.into()));
        assert_eq!(
            Credentials::basic("u", "p").login("x").unwrap(),
            basic("u", "p")
        );
        let c = Credentials {
            auth: base64::engine::general_purpose::STANDARD.encode("me:pa:ss"),
            ..Default::default()
        };
        assert_eq!(c.login("x").unwrap(), basic("me", "pa:ss"));
        let c = Credentials {
            registry_token: "tok".into(),
            username: "ignored".into(),
            ..Default::default()
        };
        assert_eq!(
            c.login("x").unwrap(),
            Login::Direct(RegistryAuth::Bearer("tok".into()))
        );
        // ACR style: a placeholder user and an identity token.
        let c = Credentials {
            username: "00000000-0000-0000-0000-000000000000".into(),
            identity_token: "refresh".into(),
            ..Default::default()
        };
        assert_eq!(
            c.login("x").unwrap(),
            Login::IdentityToken("refresh".into())
        );
        assert!(!format!("{:?}", c.login("x").unwrap()).contains("refresh"));
        let c = Credentials {
            auth: "not base64!".into(),
            ..Default::default()
        };
        let e = c.login("the pull request").unwrap_err().to_string();
        assert!(
            e.contains("the pull request") && !e.contains("not base64!"),
            "{e}"
        );
        assert_eq!(
            Credentials::default().login("x").unwrap(),
            Login::Direct(RegistryAuth::Anonymous)
        );
        assert!(Credentials::default().is_empty());
    }

    #[test]
    fn hosts_compare_like_docker() {
        assert_eq!(normalise_host("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(normalise_host("registry-1.docker.io"), "docker.io");
        assert_eq!(normalise_host("http://127.0.0.1:5000"), "127.0.0.1:5000");
        let c = Credentials {
            server_address: "https://reg.lan:5000".into(),
            ..Credentials::basic("u", "p")
        };
        assert!(c.applies_to("reg.lan:5000"));
        assert!(!c.applies_to("mirror.lan"));
        assert!(Credentials::basic("u", "p").applies_to("anything"));
    }

    #[test]
    fn docker_config_json() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.json");
        std::fs::write(
            &file,
            r#"{"auths": {
                "https://index.docker.io/v1/": {"auth": "aHViOnNlY3JldA=="},
                "reg.lan:5000": {"username": "u", "password": "p"}
            }, "credsStore": "desktop"}"#,
        )
        .unwrap();
        let hub = from_auth_file(&file, "index.docker.io").unwrap().unwrap();
        assert_eq!(
            hub.login("x").unwrap(),
            Login::Direct(RegistryAuth::Basic("hub".into(), "secret".into()))
        );
        let lan = from_auth_file(&file, "reg.lan:5000").unwrap().unwrap();
        assert_eq!(lan.username, "u");
        assert!(from_auth_file(&file, "quay.io").unwrap().is_none());
        assert!(
            from_auth_file(&dir.path().join("none"), "quay.io")
                .unwrap()
                .is_none()
        );
        assert!(from_auth_file(Path::new(""), "quay.io").unwrap().is_none());
        std::fs::write(
            &file,
            r#"{"auths": {"x": {"auth": 5, "password": "hunter2"}}}"#,
        )
        .unwrap();
        let e = from_auth_file(&file, "x").unwrap_err().to_string();
        assert!(e.contains("line 1") && !e.contains("hunter2"), "{e}");
    }
}
