//! The HTTP client's proxy (`proxy_url` of the Collector's `confighttp` client settings):
//! every connection goes through an HTTP CONNECT tunnel to the proxy (hyper-util's
//! [`Tunnel`]), then TLS to the target for `https://` URLs. [`ProxyConnector`] is the
//! inner connector of [`crate::tls::HttpsConnector`]; without a proxy it connects
//! directly.

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::{HeaderValue, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower::Service;

type BoxError = Box<dyn StdError + Send + Sync>;

/// A parsed `proxy_url`: where the proxy listens, and its `Proxy-Authorization`.
#[derive(Clone, Debug)]
pub struct ProxyUrl {
    /// `http://host:port` of the proxy (no user info, no path).
    pub uri: Uri,
    auth: Option<HeaderValue>,
}

impl ProxyUrl {
    /// Parses `http://[user[:password]@]host[:port][/]`. Other schemes (`https://` proxies,
    /// `socks5://`) are refused with a message that says what to write.
    pub fn parse(text: &str) -> Result<ProxyUrl, String> {
        let uri: Uri = text.parse().map_err(|e| {
            format!("proxy_url {text:?} is not a URL ({e}): write http://host:port")
        })?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => {
                return Err(format!(
                    "proxy_url {text:?}: oxcol supports http:// proxies (HTTP CONNECT) only, not {other}://"
                ));
            }
            None => {
                return Err(format!(
                    "proxy_url {text:?} needs a scheme: write http://host:port"
                ));
            }
        }
        let Some(authority) = uri.authority() else {
            return Err(format!(
                "proxy_url {text:?} names no host: write http://host:port"
            ));
        };
        if authority.host().is_empty() {
            return Err(format!(
                "proxy_url {text:?} names no host: write http://host:port"
            ));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(format!(
                "proxy_url {text:?}: a proxy URL has no path or query: write http://host:port"
            ));
        }
        let (user_info, host_port) = match authority.as_str().rsplit_once('@') {
            Some((user_info, host_port)) => (Some(user_info), host_port),
            None => (None, authority.as_str()),
        };
        let auth = match user_info {
            Some(user_info) => {
                let credentials = BASE64.encode(user_info.as_bytes());
                let mut value =
                    HeaderValue::from_str(&format!("Basic {credentials}")).map_err(|_| {
                        format!("proxy_url {text:?}: the user name or password is not valid")
                    })?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let uri = Uri::builder()
            .scheme("http")
            .authority(host_port)
            .path_and_query("/")
            .build()
            .map_err(|e| format!("proxy_url {text:?}: {e}"))?;
        Ok(ProxyUrl { uri, auth })
    }

    /// The `proxy_url` setting of an HTTP client: None when empty (connect directly).
    pub fn from_setting(text: &str) -> Result<Option<ProxyUrl>, String> {
        if text.is_empty() {
            return Ok(None);
        }
        ProxyUrl::parse(text).map(Some)
    }

    /// Whether the URL carried a user name (sent as `Proxy-Authorization: Basic`).
    pub fn has_auth(&self) -> bool {
        self.auth.is_some()
    }
}

/// Connects directly, or through an HTTP CONNECT tunnel when a proxy is set.
#[derive(Clone, Debug)]
pub struct ProxyConnector {
    http: HttpConnector,
    proxy: Option<Arc<ProxyUrl>>,
}

impl ProxyConnector {
    pub fn new(http: HttpConnector, proxy: Option<ProxyUrl>) -> ProxyConnector {
        ProxyConnector {
            http,
            proxy: proxy.map(Arc::new),
        }
    }
}

/// `dst` with its port written out (80 for `http`, 443 otherwise), since the CONNECT
/// request must name one and hyper-util's tunnel assumes 443.
fn with_port(dst: Uri) -> Uri {
    if dst.port().is_some() {
        return dst;
    }
    let Some(host) = dst.host() else {
        return dst;
    };
    let port = if dst.scheme_str() == Some("http") {
        80
    } else {
        443
    };
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let mut parts = dst.clone().into_parts();
    match format!("{host}:{port}").parse() {
        Ok(authority) => {
            parts.authority = Some(authority);
            Uri::from_parts(parts).unwrap_or(dst)
        }
        Err(_) => dst,
    }
}

impl Service<Uri> for ProxyConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        match &self.proxy {
            None => {
                let connecting = self.http.call(dst);
                Box::pin(async move { connecting.await.map_err(Into::into) })
            }
            Some(proxy) => {
                let mut tunnel = Tunnel::new(proxy.uri.clone(), self.http.clone());
                if let Some(auth) = &proxy.auth {
                    tunnel = tunnel.with_auth(auth.clone());
                }
                let proxy_uri = proxy.uri.clone();
                let connecting = tunnel.call(with_port(dst));
                Box::pin(async move {
                    connecting
                        .await
                        .map_err(|e| format!("proxy {proxy_uri}: {e}").into())
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_http_proxies_and_refuses_the_rest() {
        let plain = ProxyUrl::parse("http://proxy.internal:3128").expect("valid");
        assert_eq!(plain.uri.to_string(), "http://proxy.internal:3128/");
        assert!(!plain.has_auth());
        assert!(ProxyUrl::from_setting("").expect("empty is fine").is_none());
        assert!(ProxyUrl::from_setting("ftp://x").is_err());
        let with_auth = ProxyUrl::parse("http://user:secret@10.0.0.1:8080/").expect("valid");
        assert_eq!(with_auth.uri.to_string(), "http://10.0.0.1:8080/");
        assert_eq!(
            with_auth
                .auth
                .as_ref()
                .map(|v| v.to_str().unwrap_or_default().to_string()),
            Some(format!("Basic {}", BASE64.encode("user:secret")))
        );
        for (bad, says) in [
            ("socks5://proxy:1080", "not socks5://"),
            ("https://proxy:443", "not https://"),
            ("proxy:3128", "http://"),
            ("http://proxy:3128/path", "no path"),
            ("not a url", "not a URL"),
        ] {
            let error = ProxyUrl::parse(bad).expect_err(bad);
            assert!(error.contains(says), "{bad}: {error}");
        }
    }

    #[test]
    fn connect_targets_always_name_a_port() {
        let cases = [
            ("http://example.com/v1/metrics", "example.com:80"),
            ("https://example.com/v1/metrics", "example.com:443"),
            ("https://example.com:8443/x", "example.com:8443"),
            ("http://[::1]/x", "[::1]:80"),
        ];
        for (dst, authority) in cases {
            let uri = with_port(dst.parse().expect("uri"));
            assert_eq!(
                uri.authority().map(|a| a.as_str()),
                Some(authority),
                "{dst}"
            );
        }
    }
}
