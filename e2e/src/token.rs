//! A token service for [`Registry::start_with_token_auth`]: the
//! distribution token protocol that Docker Hub, GHCR, Quay and Harbor
//! speak. The registry answers 401 with a `Bearer realm=…` challenge;
//! clients get a JWT here, with basic credentials (`GET`) or an OAuth2
//! refresh token (`POST grant_type=refresh_token`, an "identity token"),
//! and send it as a bearer token.
//!
//! One token is signed at start (RS256, with a throwaway key and
//! self-signed certificate made by the `openssl` command, which the
//! registry trusts) granting pull and push on the given repositories, and
//! handed to every authorised request.
//!
//! [`Registry::start_with_token_auth`]: crate::Registry::start_with_token_auth

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::json;

use crate::{Context, Result, err};

/// The user of a registry started with
/// [`Registry::start_with_auth`](crate::Registry::start_with_auth).
pub const REGISTRY_USER: &str = "crius-e2e";
/// Its password: distinctive, so tests can look for leaks of it.
pub const REGISTRY_PASSWORD: &str = "crius-e2e-Pa55word";

/// The refresh token ("identity token") the token service accepts.
pub const IDENTITY_TOKEN: &str = "crius-e2e-identity-token-7f3a";
/// The `service` the registry names in its challenge.
pub const SERVICE: &str = "crius-e2e-registry";
/// The token issuer the registry trusts.
pub const ISSUER: &str = "crius-e2e-token-service";

/// A running token service; stopped when dropped.
pub struct TokenServer {
    addr: String,
    token: String,
    cert: PathBuf,
    stop: Arc<AtomicBool>,
}

impl TokenServer {
    /// Makes a key and certificate in `dir`, signs a token for
    /// `repositories` and serves it on a free loopback port.
    pub fn start(dir: &Path, repositories: &[&str]) -> Result<TokenServer> {
        let key = dir.join("token-key.pem");
        let cert = dir.join("token-cert.pem");
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=crius-e2e-token-service",
            "-keyout",
            path(&key)?,
            "-out",
            path(&cert)?,
        ])?;
        let der = openssl(&["x509", "-in", path(&cert)?, "-outform", "DER"])?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| err(format!("clock: {e}")))?
            .as_secs();
        let header = json!({"typ": "JWT", "alg": "RS256", "x5c": [STANDARD.encode(&der)]});
        let claims = json!({
            "iss": ISSUER, "sub": REGISTRY_USER, "aud": SERVICE,
            "exp": now + 3600, "nbf": now - 60, "iat": now - 60, "jti": "crius-e2e-token",
            "access": repositories.iter().map(|r| json!({
                "type": "repository", "name": r, "actions": ["pull", "push"],
            })).collect::<Vec<_>>(),
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let input_file = dir.join("token-input");
        std::fs::write(&input_file, &signing_input)
            .context(|| format!("write {}", input_file.display()))?;
        let signature = openssl(&["dgst", "-sha256", "-sign", path(&key)?, path(&input_file)?])?;
        let token = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature));

        let listener = TcpListener::bind("127.0.0.1:0").context(|| "bind the token service")?;
        let addr = listener
            .local_addr()
            .context(|| "the token service's address")?
            .to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let (stop2, token2) = (stop.clone(), token.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop2.load(Ordering::Relaxed) {
                    return;
                }
                if let Ok(stream) = stream {
                    let _ = serve(stream, &token2);
                }
            }
        });
        Ok(TokenServer {
            addr,
            token,
            cert,
            stop,
        })
    }

    /// The realm URL the registry sends clients to.
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// The certificate the registry trusts for tokens.
    pub fn cert(&self) -> &Path {
        &self.cert
    }

    /// The signed token, as a client would send it (a "registry token").
    pub fn token(&self) -> &str {
        &self.token
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(&self.addr);
    }
}

fn path(p: &Path) -> Result<&str> {
    p.to_str()
        .ok_or_else(|| err(format!("{} is not UTF-8", p.display())))
}

fn openssl(args: &[&str]) -> Result<Vec<u8>> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .context(|| "run openssl (is package openssl installed?)")?;
    if !out.status.success() {
        return Err(err(format!(
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(out.stdout)
}

/// Answers one request: the token for `GET` with the test user's basic
/// credentials or `POST` with the identity token; 401 otherwise.
fn serve(mut stream: TcpStream, token: &str) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        data.extend_from_slice(&buf[..n]);
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if data.len() > 64 * 1024 {
            return Ok(());
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let mut lines = head.lines();
    let method = lines
        .next()
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or("")
        .to_string();
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    let length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = data[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&buf[..n]);
    }
    let body = String::from_utf8_lossy(&body).into_owned();
    let basic = format!(
        "Basic {}",
        STANDARD.encode(format!("{REGISTRY_USER}:{REGISTRY_PASSWORD}"))
    );
    let form = |key: &str| {
        body.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == key).then(|| v.to_string())
        })
    };
    let authorised = match method.as_str() {
        "GET" => header("authorization").as_deref() == Some(basic.as_str()),
        "POST" => {
            form("grant_type").as_deref() == Some("refresh_token")
                && form("refresh_token").as_deref() == Some(IDENTITY_TOKEN)
        }
        _ => false,
    };
    let (status, reply) = if authorised {
        (
            "200 OK",
            json!({"token": token, "access_token": token, "expires_in": 3600}).to_string(),
        )
    } else {
        (
            "401 Unauthorized",
            json!({"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]}).to_string(),
        )
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{reply}",
        reply.len()
    )?;
    stream.flush()
}
