//! `basicauth` extension: HTTP Basic authentication, as the Collector's
//! `basicauthextension`: `htpasswd` (file and/or inline) checks server requests;
//! `client_auth` (username, password) is sent by exporters.
//!
//! Passwords and hashes are never logged or echoed; htpasswd errors give line numbers only.

use oxcol_core::auth::{ClientCredentials, ServerAuthenticator};
use serde::Deserialize;

pub const TYPE: &str = "basicauth";
pub const ALIASES: &[&str] = &["basicauth"];

#[derive(Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Htpasswd {
    /// Path of an htpasswd file (bcrypt `htpasswd -B` or SHA `htpasswd -s` entries).
    pub file: Option<String>,
    /// htpasswd lines inline. Redacted by `print-config`.
    pub inline: Option<String>,
}

#[derive(Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClientAuth {
    pub username: String,
    /// Redacted by `print-config`.
    pub password: String,
}

#[derive(Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Server side. Default none.
    pub htpasswd: Option<Htpasswd>,
    /// Client side. Default none.
    pub client_auth: Option<ClientAuth>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let file = self.htpasswd.as_ref().and_then(|h| h.file.clone());
        let user = self.client_auth.as_ref().map(|c| c.username.clone());
        write!(
            f,
            "basicauth::Config {{ htpasswd.file: {file:?}, client_auth.username: {user:?}, secrets: [REDACTED] }}"
        )
    }
}

impl Config {
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.htpasswd.is_none() && self.client_auth.is_none() {
            errors.push(
                "set htpasswd (to check requests) or client_auth (to send credentials)".to_string(),
            );
        }
        if let Some(h) = &self.htpasswd {
            if h.file.is_none() && h.inline.is_none() {
                errors.push("htpasswd: set file or inline".to_string());
            }
        }
        if let Some(c) = &self.client_auth {
            if c.username.is_empty() || c.username.contains(':') {
                errors
                    .push("client_auth.username must be set and must not contain ':'".to_string());
            }
        }
        errors
    }

    pub fn server_authenticator(&self) -> Result<ServerAuthenticator, String> {
        let htpasswd = self.htpasswd.as_ref().ok_or_else(|| {
            "has no htpasswd: it cannot check requests (set htpasswd.file or htpasswd.inline)"
                .to_string()
        })?;
        let mut text = String::new();
        let mut origin = "htpasswd.inline".to_string();
        if let Some(path) = &htpasswd.file {
            text = std::fs::read_to_string(path)
                .map_err(|e| format!("htpasswd.file {path:?}: cannot read: {e}"))?;
            origin = format!("htpasswd.file {path:?}");
        }
        if let Some(inline) = &htpasswd.inline {
            if !text.is_empty() {
                origin = format!("{origin} + htpasswd.inline");
            }
            text.push('\n');
            text.push_str(inline);
        }
        ServerAuthenticator::basic_from_htpasswd(&origin, &text)
    }

    pub fn client_credentials(&self) -> Result<ClientCredentials, String> {
        let client = self.client_auth.as_ref().ok_or_else(|| "has no client_auth: it cannot authenticate an exporter (set client_auth.username and password)".to_string())?;
        ClientCredentials::basic(&client.username, &client.password)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_and_client_sides() {
        let config = Config {
            htpasswd: Some(Htpasswd {
                file: None,
                inline: Some("ann:{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=".into()),
            }),
            client_auth: Some(ClientAuth {
                username: "ann".into(),
                password: "test".into(),
            }),
        };
        assert!(config.validate().is_empty());
        let credentials = config.client_credentials().unwrap();
        let mut headers = http::HeaderMap::new();
        headers.insert(credentials.header.clone(), credentials.value());
        assert!(
            config
                .server_authenticator()
                .unwrap()
                .authenticate(&headers)
                .is_ok()
        );
        assert!(!format!("{config:?}").contains("test") && !format!("{config:?}").contains("qUqP"));
        assert!(!Config::default().validate().is_empty());
        assert!(
            Config {
                client_auth: config.client_auth.clone(),
                htpasswd: None
            }
            .server_authenticator()
            .is_err()
        );
    }
}
