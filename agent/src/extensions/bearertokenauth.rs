//! `bearertokenauth` extension: a bearer token checked on server requests
//! (`auth: {authenticator: bearertokenauth/NAME}` on a receiver) and sent by clients (the
//! same on an exporter), as the Collector's `bearertokenauthextension`.
//!
//! The token is never logged, never part of an error, and compared in constant time
//! (`oxcol_core::auth`).

use oxcol_core::auth::{ClientCredentials, ServerAuthenticator};
use serde::Deserialize;

pub const TYPE: &str = "bearertokenauth";
pub const ALIASES: &[&str] = &["bearertokenauth"];

#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Header carrying the token. Default `Authorization`.
    pub header: String,
    /// Scheme before the token (`<scheme> <token>`). Default `Bearer`; empty = token alone.
    pub scheme: String,
    /// The token. Redacted by `print-config`. One of token, tokens, filename is required.
    pub token: Option<String>,
    /// Several accepted tokens (servers); a client sends the first.
    pub tokens: Vec<String>,
    /// File holding the token (read at start; surrounding whitespace trimmed).
    pub filename: Option<String>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "bearertokenauth::Config {{ header: {:?}, scheme: {:?}, filename: {:?}, token: [REDACTED] }}",
            self.header, self.scheme, self.filename
        )
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            header: "Authorization".to_string(),
            scheme: "Bearer".to_string(),
            token: None,
            tokens: Vec::new(),
            filename: None,
        }
    }
}

impl Config {
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        let sources = usize::from(self.token.is_some())
            + usize::from(!self.tokens.is_empty())
            + usize::from(self.filename.is_some());
        if sources != 1 {
            errors.push("set exactly one of token, tokens and filename".to_string());
        }
        if http::HeaderName::from_bytes(self.header.to_ascii_lowercase().as_bytes()).is_err() {
            errors.push(format!(
                "header {:?} is not a valid header name",
                self.header
            ));
        }
        errors
    }

    /// The inline tokens (`token`, `tokens`); `filename` is read by the authenticator.
    fn inline_tokens(&self) -> Vec<String> {
        self.token
            .iter()
            .cloned()
            .chain(self.tokens.iter().cloned())
            .collect()
    }

    /// Checks requests against the tokens, or the token in `filename`: re-read when the
    /// file changed (Kubernetes rotates projected service account tokens).
    pub fn server_authenticator(&self) -> Result<ServerAuthenticator, String> {
        ServerAuthenticator::bearer(
            &self.header,
            &self.scheme,
            self.inline_tokens(),
            self.filename.as_deref(),
        )
    }

    /// Sends `token` (the first of `tokens`), or the token in `filename`, re-read when
    /// the file changed.
    pub fn client_credentials(&self) -> Result<ClientCredentials, String> {
        let token = self.inline_tokens().into_iter().next().unwrap_or_default();
        ClientCredentials::bearer(&self.header, &self.scheme, &token, self.filename.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_source_and_the_token_never_shows() {
        assert!(!Config::default().validate().is_empty());
        let config = Config {
            token: Some("t0ps3cret".into()),
            ..Config::default()
        };
        assert!(config.validate().is_empty());
        assert!(!format!("{config:?}").contains("t0ps3cret"));
        let credentials = config.client_credentials().unwrap();
        assert_eq!(credentials.value().to_str().unwrap(), "Bearer t0ps3cret");
        let mut headers = http::HeaderMap::new();
        headers.insert(credentials.header.clone(), credentials.value());
        assert!(
            config
                .server_authenticator()
                .unwrap()
                .authenticate(&headers)
                .is_ok()
        );
        let missing = Config {
            filename: Some("/nonexistent/token".into()),
            ..Config::default()
        };
        assert!(
            missing
                .server_authenticator()
                .unwrap_err()
                .contains("/nonexistent/token")
        );
    }

    /// A rotated token file (as Kubernetes rotates projected service account tokens) is
    /// picked up by both sides within TOKEN_FILE_CHECK, without a restart; an emptied
    /// file keeps the previous token.
    #[test]
    fn a_rotated_token_file_is_followed_by_server_and_client() {
        let dir = std::env::temp_dir().join(format!("oxcol-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "first-token\n").unwrap();
        let config = Config {
            filename: Some(path.to_string_lossy().into_owned()),
            ..Config::default()
        };
        let server = config.server_authenticator().unwrap();
        let client = config.client_credentials().unwrap();
        let presenting = |value: &str| {
            let mut headers = http::HeaderMap::new();
            headers.insert(http::header::AUTHORIZATION, value.parse().unwrap());
            server.authenticate(&headers)
        };
        assert_eq!(client.value().to_str().unwrap(), "Bearer first-token");
        assert!(presenting("Bearer first-token").is_ok());
        // File times tick with the kernel's coarse clock (a few ms): let one pass.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&path, "second-token\n").unwrap();
        std::thread::sleep(
            oxcol_core::auth::TOKEN_FILE_CHECK + std::time::Duration::from_millis(100),
        );
        assert_eq!(client.value().to_str().unwrap(), "Bearer second-token");
        assert!(presenting("Bearer second-token").is_ok());
        assert!(
            presenting("Bearer first-token").is_err(),
            "the old token is no longer accepted"
        );
        std::fs::write(&path, "").unwrap();
        std::thread::sleep(
            oxcol_core::auth::TOKEN_FILE_CHECK + std::time::Duration::from_millis(100),
        );
        assert_eq!(
            client.value().to_str().unwrap(),
            "Bearer second-token",
            "an empty file keeps the token"
        );
        assert!(presenting("Bearer second-token").is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
