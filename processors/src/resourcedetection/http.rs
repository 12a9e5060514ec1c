//! The few HTTP requests detectors make (metadata services, the Docker socket, the
//! Kubernetes API), on hyper. Callers bound each request with a timeout; this module
//! never retries and never follows redirects.

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// A response: status and body.
pub struct Response {
    pub status: u16,
    pub body: Bytes,
}

impl Response {
    /// The body as text when the status is 2xx, else an error naming the status.
    pub fn ok_text(self, what: &str) -> Result<String, String> {
        if !(200..300).contains(&self.status) {
            return Err(format!("{what}: HTTP status {}", self.status));
        }
        String::from_utf8(self.body.to_vec())
            .map_err(|_| format!("{what}: the answer is not UTF-8"))
    }
}

fn build(
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
) -> Result<Request<Full<Bytes>>, String> {
    let mut builder = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder
        .body(Full::new(Bytes::new()))
        .map_err(|e| format!("bad request to {uri}: {e}"))
}

async fn collect(response: hyper::Response<hyper::body::Incoming>) -> Result<Response, String> {
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("reading the answer: {e}"))?
        .to_bytes();
    Ok(Response { status, body })
}

/// One plaintext (`http://`) or TLS (`https://`, with `tls`) request.
pub async fn request(
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    tls: Option<&oxcol_core::tls::TlsClientConfig>,
    connect_timeout: std::time::Duration,
) -> Result<Response, String> {
    let request = build(method, uri, headers)?;
    let response = if uri.starts_with("https://") {
        let connector = oxcol_core::tls::https_connector(tls, connect_timeout)?;
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
        client.request(request).await
    } else {
        // Plain HTTP (metadata services): no TLS material is read.
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
        client.request(request).await
    };
    collect(response.map_err(|e| format!("{uri}: {e}"))?).await
}

/// One `GET path` over a Unix socket (the Docker API).
pub async fn unix_get(socket: &str, path: &str) -> Result<Response, String> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| format!("cannot connect to {socket}: {e}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
            .await
            .map_err(|e| format!("{socket}: {e}"))?;
    let driver = tokio::spawn(connection);
    let request = build(
        Method::GET,
        // Origin form (`GET /info`), as the Docker daemon expects.
        path,
        &[("host", "localhost")],
    )?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("{socket}{path}: {e}"))?;
    let result = collect(response).await;
    driver.abort();
    result
}
