//! Authentication of requests (servers) and credentials on requests (clients), as the
//! Collector's `auth:` key does with the `bearertokenauth` and `basicauth` extensions.
//!
//! The extensions (agent) read their config and build a [`ServerAuthenticator`] or a
//! [`ClientCredentials`]; receivers check every request's headers (HTTP headers or gRPC
//! metadata, the same HeaderMap) before reading its body; exporters add the header.
//!
//! Must never: log, echo or put into an error a token, password or hash; compare a secret
//! in time that depends on where it differs.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::reload::Reloading;

/// How often a token file is checked for a change (at the next request after it):
/// Kubernetes projected service account tokens are replaced well before they expire.
pub const TOKEN_FILE_CHECK: Duration = Duration::from_secs(1);

use std::sync::Arc;
use std::time::Duration;

/// Reads a token file: trimmed, non-empty. Errors name the file, never the content.
fn read_token(path: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("filename {path:?}: cannot read: {e}"))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!("filename {path:?}: the file is empty"));
    }
    Ok(token.to_string())
}

/// Fixed material, or material re-read from `path` when it changed.
fn source<T: Send + Sync + 'static>(
    path: Option<&str>,
    fixed: impl FnOnce() -> Result<T, String>,
    from_file: impl Fn(String) -> Result<T, String> + Send + Sync + 'static,
) -> Result<Arc<Reloading<T>>, String> {
    let reloading = match path {
        None => {
            let value = Arc::new(fixed()?);
            Reloading::new("token".into(), None, move || Ok(Arc::clone(&value)))?
        }
        Some(path) => {
            let file = path.to_string();
            Reloading::new(
                format!("token file {path:?}"),
                Some(TOKEN_FILE_CHECK),
                move || from_file(read_token(&file)?).map(Arc::new),
            )?
            .when_changed(Some(path.into()))
        }
    };
    Ok(Arc::new(reloading))
}

/// `auth:` of a receiver or exporter: `{authenticator: bearertokenauth/NAME}`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// Id of a `bearertokenauth` or `basicauth` extension listed in `service.extensions`.
    pub authenticator: String,
}

/// Why a request was refused. The text never contains the credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthFailure(pub &'static str);

impl std::fmt::Display for AuthFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// One htpasswd line's password hash.
#[derive(Clone)]
pub enum PasswordHash {
    /// `$2y$`, `$2a$`, `$2b$` (htpasswd -B).
    Bcrypt(String),
    /// `{SHA}` + base64(SHA-1) (htpasswd -s).
    Sha1([u8; 20]),
}

/// A server-side authenticator.
#[derive(Clone)]
pub enum ServerAuthenticator {
    /// `Authorization: <scheme> <token>` (or `header: <scheme> <token>`), any of `tokens`.
    Bearer {
        header: HeaderName,
        scheme: String,
        tokens: Arc<Reloading<Vec<Vec<u8>>>>,
    },
    /// `Authorization: Basic base64(user:password)` checked against htpasswd entries.
    Basic {
        users: Vec<(String, PasswordHash)>,
        verified: Arc<Verified>,
    },
}

impl std::fmt::Debug for ServerAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerAuthenticator::Bearer {
                header,
                scheme,
                tokens,
            } => write!(
                f,
                "Bearer {{ header: {header}, scheme: {scheme:?}, tokens: {} [REDACTED] }}",
                tokens.get().len()
            ),
            ServerAuthenticator::Basic { users, .. } => {
                write!(f, "Basic {{ users: {} [REDACTED] }}", users.len())
            }
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // Length is not secret-dependent in a useful way for tokens; the content comparison is.
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

impl ServerAuthenticator {
    /// Accepts any of `tokens`, or the token in `filename` (re-read when the file changed,
    /// checked at most every [`TOKEN_FILE_CHECK`]; a failed re-read keeps the old token).
    pub fn bearer(
        header: &str,
        scheme: &str,
        tokens: Vec<String>,
        filename: Option<&str>,
    ) -> Result<ServerAuthenticator, String> {
        let header = HeaderName::from_bytes(header.to_ascii_lowercase().as_bytes())
            .map_err(|_| format!("header {header:?} is not a valid header name"))?;
        let fixed = || {
            let tokens: Vec<Vec<u8>> = tokens
                .into_iter()
                .map(|t| t.trim().as_bytes().to_vec())
                .filter(|t| !t.is_empty())
                .collect();
            if tokens.is_empty() {
                return Err("no token configured (set token, tokens or filename)".to_string());
            }
            Ok(tokens)
        };
        let tokens = source(filename, fixed, |token| Ok(vec![token.into_bytes()]))?;
        Ok(ServerAuthenticator::Bearer {
            header,
            scheme: scheme.to_string(),
            tokens,
        })
    }

    /// Parses htpasswd text (`user:hash` lines). `origin` names the source in errors;
    /// errors give line numbers, never content.
    pub fn basic_from_htpasswd(origin: &str, text: &str) -> Result<ServerAuthenticator, String> {
        let mut users = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                return Err(format!("{origin} line {}: expected user:hash", number + 1));
            };
            let hash = if hash.starts_with("$2y$")
                || hash.starts_with("$2a$")
                || hash.starts_with("$2b$")
            {
                PasswordHash::Bcrypt(hash.to_string())
            } else if let Some(b64) = hash.strip_prefix("{SHA}") {
                let digest = BASE64
                    .decode(b64)
                    .ok()
                    .and_then(|d| <[u8; 20]>::try_from(d).ok());
                PasswordHash::Sha1(digest.ok_or_else(|| {
                    format!(
                        "{origin} line {}: {{SHA}} hash is not base64 of 20 bytes",
                        number + 1
                    )
                })?)
            } else {
                return Err(format!(
                    "{origin} line {}: unsupported hash format; create entries with `htpasswd -B` (bcrypt) or `htpasswd -s` (SHA)",
                    number + 1
                ));
            };
            users.push((user.to_string(), hash));
        }
        if users.is_empty() {
            return Err(format!("{origin}: no user entries"));
        }
        Ok(ServerAuthenticator::Basic {
            users,
            verified: Arc::new(Verified::new()?),
        })
    }

    /// Checks a request's headers.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<(), AuthFailure> {
        match self {
            ServerAuthenticator::Bearer {
                header,
                scheme,
                tokens,
            } => {
                let value = headers
                    .get(header)
                    .ok_or(AuthFailure("missing credentials"))?
                    .as_bytes();
                let presented = if scheme.is_empty() {
                    value
                } else {
                    let prefix = scheme.len();
                    if value.len() <= prefix
                        || !value[..prefix].eq_ignore_ascii_case(scheme.as_bytes())
                        || value[prefix] != b' '
                    {
                        return Err(AuthFailure("wrong authorization scheme"));
                    }
                    &value[prefix + 1..]
                };
                // Every token is compared (no early exit) so timing says nothing about which.
                let mut matched = false;
                for token in tokens.get().iter() {
                    matched |= constant_time_eq(presented, token);
                }
                if matched {
                    Ok(())
                } else {
                    Err(AuthFailure("invalid token"))
                }
            }
            ServerAuthenticator::Basic { users, verified } => {
                let value = headers
                    .get(http::header::AUTHORIZATION)
                    .ok_or(AuthFailure("missing credentials"))?
                    .as_bytes();
                if value.len() < 6 || !value[..6].eq_ignore_ascii_case(b"basic ") {
                    return Err(AuthFailure("wrong authorization scheme"));
                }
                let decoded = BASE64
                    .decode(value[6..].trim_ascii())
                    .map_err(|_| AuthFailure("malformed basic credentials"))?;
                let text = String::from_utf8(decoded)
                    .map_err(|_| AuthFailure("malformed basic credentials"))?;
                let (user, password) = text
                    .split_once(':')
                    .ok_or(AuthFailure("malformed basic credentials"))?;
                let Some((_, hash)) = users
                    .iter()
                    .find(|(name, _)| constant_time_eq(name.as_bytes(), user.as_bytes()))
                else {
                    return Err(AuthFailure("invalid username or password"));
                };
                let ok = match hash {
                    PasswordHash::Bcrypt(h) => verified.check(user, password, || {
                        bcrypt::verify(password, h).unwrap_or(false)
                    }),
                    PasswordHash::Sha1(digest) => {
                        use sha1::Digest;
                        constant_time_eq(&sha1::Sha1::digest(password.as_bytes()), digest)
                    }
                };
                if ok {
                    Ok(())
                } else {
                    Err(AuthFailure("invalid username or password"))
                }
            }
        }
    }
}

/// Basic-auth credentials that passed a bcrypt check, so a client sending the same
/// credentials with every request pays one bcrypt verification (tens of milliseconds of
/// CPU at the usual cost 10), not one per request. Kept as HMAC-SHA256 tags under a key
/// drawn at start: neither passwords nor an offline-attackable hash are held. Only
/// successes are kept (wrong guesses always pay bcrypt); at most
/// [`Verified::CAPACITY`] entries, forgotten all at once when full.
pub struct Verified {
    key: ring::hmac::Key,
    tags: std::sync::Mutex<std::collections::HashSet<[u8; 32]>>,
    bcrypt_checks: std::sync::atomic::AtomicU64,
}

impl Verified {
    pub const CAPACITY: usize = 4096;

    fn new() -> Result<Verified, String> {
        let random = ring::rand::SystemRandom::new();
        let key = ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &random)
            .map_err(|_| "basicauth: no randomness for the credential cache key".to_string())?;
        Ok(Verified {
            key,
            tags: std::sync::Mutex::new(std::collections::HashSet::new()),
            bcrypt_checks: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Whether `user`/`password` is right: known-good credentials at once, else `bcrypt`.
    fn check(&self, user: &str, password: &str, bcrypt: impl FnOnce() -> bool) -> bool {
        let mut context = ring::hmac::Context::with_key(&self.key);
        context.update(user.as_bytes());
        context.update(&[0]);
        context.update(password.as_bytes());
        let mut tag = [0u8; 32];
        tag.copy_from_slice(context.sign().as_ref());
        let lock = || self.tags.lock().unwrap_or_else(|p| p.into_inner());
        if lock().contains(&tag) {
            return true;
        }
        self.bcrypt_checks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if !bcrypt() {
            return false;
        }
        let mut tags = lock();
        if tags.len() >= Self::CAPACITY {
            tags.clear();
        }
        tags.insert(tag);
        true
    }

    /// bcrypt verifications done so far.
    pub fn bcrypt_checks(&self) -> u64 {
        self.bcrypt_checks
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Credentials a client adds to every request: one header, marked sensitive; with a
/// token file, its value follows the file (see [`ClientCredentials::value`]).
#[derive(Clone)]
pub struct ClientCredentials {
    pub header: HeaderName,
    value: Arc<Reloading<HeaderValue>>,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ClientCredentials {{ header: {}, value: [REDACTED] }}",
            self.header
        )
    }
}

/// `<scheme> <token>` (or the token alone without a scheme), marked sensitive.
fn bearer_value(scheme: &str, token: &str) -> Result<HeaderValue, String> {
    if scheme.is_empty() {
        sensitive(token.trim())
    } else {
        sensitive(&format!("{scheme} {}", token.trim()))
    }
}

fn sensitive(text: &str) -> Result<HeaderValue, String> {
    let mut value = HeaderValue::from_str(text)
        .map_err(|_| "the credentials contain characters not allowed in a header".to_string())?;
    value.set_sensitive(true);
    Ok(value)
}

impl ClientCredentials {
    /// `header: <scheme> <token>`; the token from `filename` when set (re-read when the
    /// file changed, checked at most every [`TOKEN_FILE_CHECK`]), else `token`.
    pub fn bearer(
        header: &str,
        scheme: &str,
        token: &str,
        filename: Option<&str>,
    ) -> Result<ClientCredentials, String> {
        let header = HeaderName::from_bytes(header.to_ascii_lowercase().as_bytes())
            .map_err(|_| format!("header {header:?} is not a valid header name"))?;
        let fixed = || {
            if token.trim().is_empty() {
                return Err("no token configured".to_string());
            }
            bearer_value(scheme, token)
        };
        let scheme = scheme.to_string();
        let value = source(filename, fixed, move |token| bearer_value(&scheme, &token))?;
        Ok(ClientCredentials { header, value })
    }

    /// The header value to send now.
    pub fn value(&self) -> HeaderValue {
        HeaderValue::clone(&self.value.get())
    }

    pub fn basic(username: &str, password: &str) -> Result<ClientCredentials, String> {
        let value = sensitive(&format!(
            "Basic {}",
            BASE64.encode(format!("{username}:{password}"))
        ))
        .map_err(|_| "invalid basic credentials".to_string())?;
        Ok(ClientCredentials {
            header: http::header::AUTHORIZATION,
            value: source(None, || Ok(value), |_| Err(String::new()))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: &str, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
        headers
    }

    #[test]
    fn bearer_accepts_only_the_right_token_and_scheme() {
        let auth = ServerAuthenticator::bearer(
            "Authorization",
            "Bearer",
            vec!["s3cret".into(), "other".into()],
            None,
        )
        .unwrap();
        assert_eq!(
            auth.authenticate(&with("authorization", "Bearer s3cret")),
            Ok(())
        );
        assert_eq!(
            auth.authenticate(&with("authorization", "bearer other")),
            Ok(())
        );
        assert_eq!(
            auth.authenticate(&with("authorization", "Bearer s3cre")),
            Err(AuthFailure("invalid token"))
        );
        assert_eq!(
            auth.authenticate(&with("authorization", "Basic s3cret")),
            Err(AuthFailure("wrong authorization scheme"))
        );
        assert_eq!(
            auth.authenticate(&HeaderMap::new()),
            Err(AuthFailure("missing credentials"))
        );
        let client =
            ClientCredentials::bearer("Authorization", "Bearer", "s3cret\n", None).unwrap();
        assert_eq!(
            auth.authenticate(&with(
                client.header.as_str(),
                client.value().to_str().unwrap()
            )),
            Ok(())
        );
        assert!(!format!("{auth:?} {client:?}").contains("s3cret"));
        assert!(
            ServerAuthenticator::bearer("Authorization", "Bearer", vec![" ".into()], None).is_err()
        );
    }

    #[test]
    fn basic_checks_bcrypt_and_sha_entries() {
        let bcrypt_hash = bcrypt::hash("pa55", 4).unwrap();
        // `htpasswd -nbs bob pa55w0rd`
        let text = format!(
            "# users\nalice:{bcrypt_hash}\nbob:{{SHA}}{}\n",
            BASE64.encode(<sha1::Sha1 as sha1::Digest>::digest(b"pa55w0rd"))
        );
        let auth = ServerAuthenticator::basic_from_htpasswd("htpasswd.inline", &text).unwrap();
        let good = ClientCredentials::basic("alice", "pa55").unwrap();
        assert_eq!(
            auth.authenticate(&with("authorization", good.value().to_str().unwrap())),
            Ok(())
        );
        let bob = ClientCredentials::basic("bob", "pa55w0rd").unwrap();
        assert_eq!(
            auth.authenticate(&with("authorization", bob.value().to_str().unwrap())),
            Ok(())
        );
        let wrong = ClientCredentials::basic("alice", "nope").unwrap();
        assert!(
            auth.authenticate(&with("authorization", wrong.value().to_str().unwrap()))
                .is_err()
        );
        let nobody = ClientCredentials::basic("carol", "pa55").unwrap();
        assert!(
            auth.authenticate(&with("authorization", nobody.value().to_str().unwrap()))
                .is_err()
        );
        assert!(
            auth.authenticate(&with("authorization", "Basic !!!"))
                .is_err()
        );
        let error = ServerAuthenticator::basic_from_htpasswd("f", "ok:$apr1$xyz\n").unwrap_err();
        assert!(
            error.contains("line 1") && !error.contains("xyz"),
            "{error}"
        );
    }

    /// Known-good basic credentials skip bcrypt; wrong passwords never do, and a right
    /// password for one user does not open another.
    #[test]
    fn basic_credentials_that_passed_bcrypt_are_not_checked_again() {
        let text = format!(
            "alice:{}\nbob:{}\n",
            bcrypt::hash("pa55", 4).unwrap(),
            bcrypt::hash("other", 4).unwrap()
        );
        let auth = ServerAuthenticator::basic_from_htpasswd("htpasswd.inline", &text).unwrap();
        let ServerAuthenticator::Basic { verified, .. } = &auth else {
            panic!("basic")
        };
        let header = |user: &str, password: &str| {
            with(
                "authorization",
                ClientCredentials::basic(user, password)
                    .unwrap()
                    .value()
                    .to_str()
                    .unwrap(),
            )
        };
        for _ in 0..10 {
            assert_eq!(auth.authenticate(&header("alice", "pa55")), Ok(()));
        }
        assert_eq!(
            verified.bcrypt_checks(),
            1,
            "one bcrypt check for ten requests"
        );
        for _ in 0..3 {
            assert!(auth.authenticate(&header("alice", "wrong")).is_err());
        }
        assert_eq!(
            verified.bcrypt_checks(),
            4,
            "every wrong password pays bcrypt"
        );
        assert!(
            auth.authenticate(&header("bob", "pa55")).is_err(),
            "alice's password does not open bob"
        );
        assert_eq!(auth.clone().authenticate(&header("alice", "pa55")), Ok(()));
        assert_eq!(
            verified.bcrypt_checks(),
            5,
            "clones share what was verified"
        );
    }

    #[test]
    fn random_headers_never_panic() {
        let bearer =
            ServerAuthenticator::bearer("authorization", "Bearer", vec!["t".into()], None).unwrap();
        let basic =
            ServerAuthenticator::basic_from_htpasswd("x", "u:{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=")
                .unwrap();
        let mut state = 7_u64;
        for len in 0..200 {
            let mut bytes = Vec::new();
            for _ in 0..len {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                bytes.push(b' ' + ((state >> 33) as u8 % 94));
            }
            let mut value = b"Basic ".to_vec();
            value.extend_from_slice(&bytes);
            if let Ok(v) = HeaderValue::from_bytes(&value) {
                let mut headers = HeaderMap::new();
                headers.insert(http::header::AUTHORIZATION, v);
                let _ = bearer.authenticate(&headers);
                let _ = basic.authenticate(&headers);
            }
        }
    }
}
