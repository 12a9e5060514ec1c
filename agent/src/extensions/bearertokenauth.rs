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

    /// The tokens, read from `filename` if set. Errors name the file, never the content.
    fn tokens(&self) -> Result<Vec<String>, String> {
        if let Some(path) = &self.filename {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("filename {path:?}: cannot read: {e}"))?;
            return Ok(vec![text.trim().to_string()]);
        }
        Ok(self
            .token
            .iter()
            .cloned()
            .chain(self.tokens.iter().cloned())
            .collect())
    }

    pub fn server_authenticator(&self) -> Result<ServerAuthenticator, String> {
        ServerAuthenticator::bearer(&self.header, &self.scheme, self.tokens()?)
    }

    pub fn client_credentials(&self) -> Result<ClientCredentials, String> {
        let tokens = self.tokens()?;
        let token = tokens
            .first()
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| "no token configured".to_string())?;
        ClientCredentials::bearer(&self.header, &self.scheme, token)
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
        assert_eq!(credentials.value.to_str().unwrap(), "Bearer t0ps3cret");
        let mut headers = http::HeaderMap::new();
        headers.insert(credentials.header, credentials.value);
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
}
