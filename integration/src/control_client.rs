//! A client for the sink's control server, for tests and scripts written in Rust.
//!
//! Every call has a timeout, so a test waiting on a dead sink fails instead of hanging.

use crate::sink::SinkStats;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;
use std::time::Duration;

const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Talks to one sink's control address.
#[derive(Clone)]
pub struct ControlClient {
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl ControlClient {
    pub fn new(control_addr: SocketAddr) -> ControlClient {
        ControlClient {
            base: format!("http://{control_addr}"),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// `GET /stats`.
    pub async fn stats(&self) -> Result<SinkStats, String> {
        let body = self.call(http::Method::GET, "/stats", Bytes::new()).await?;
        serde_json::from_slice(&body)
            .map_err(|error| format!("sink /stats is not the expected JSON: {error}"))
    }

    /// `POST /reset`.
    pub async fn reset(&self) -> Result<(), String> {
        self.call(http::Method::POST, "/reset", Bytes::new())
            .await
            .map(drop)
    }

    /// `POST /mode` with a JSON body such as `{"fail_next": 3}`; returns the new mode as JSON.
    pub async fn set_mode(&self, mode: serde_json::Value) -> Result<serde_json::Value, String> {
        let body = self
            .call(http::Method::POST, "/mode", Bytes::from(mode.to_string()))
            .await?;
        serde_json::from_slice(&body)
            .map_err(|error| format!("sink /mode answer is not JSON: {error}"))
    }

    async fn call(&self, method: http::Method, path: &str, body: Bytes) -> Result<Bytes, String> {
        let url = format!("{}{path}", self.base);
        let request = http::Request::builder()
            .method(method)
            .uri(&url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|error| format!("cannot build request to {url}: {error}"))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|error| format!("{url}: {error}"))?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|error| format!("{url}: {error}"))?
                .to_bytes();
            if !status.is_success() {
                return Err(format!(
                    "{url} answered {status}: {}",
                    String::from_utf8_lossy(&body)
                ));
            }
            Ok(body)
        };
        tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .map_err(|_| format!("{url} did not answer within {CALL_TIMEOUT:?}"))?
    }
}
