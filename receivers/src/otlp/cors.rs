//! CORS for the OTLP/HTTP receiver (`protocols.http.cors`), so browser SDKs can post
//! telemetry from another origin. Same keys and answers as the Collector's `confighttp`,
//! which wraps its handler in `rs/cors` v1.11 with `AllowCredentials: true`:
//!
//! - a preflight (`OPTIONS` with `Access-Control-Request-Method`) is answered here with
//!   204, before authentication and routing (a browser never sends credentials on one);
//!   the allow headers are set only when the origin, the method (GET, POST, HEAD) and
//!   every requested header are allowed;
//! - any other request from an allowed origin gets `Access-Control-Allow-Origin` (and
//!   credentials, exposed headers) added to whatever the handler answers.
//!
//! CORS is off unless `allowed_origins` lists something, as in the Collector. This module
//! must never refuse a request itself: CORS is enforced by the browser, not the server.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde::Deserialize;

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    /// Origins allowed to post, e.g. `https://*.example.com`; `*` allows any. Empty (the
    /// default): CORS is off.
    pub allowed_origins: Vec<String>,
    /// Request headers a preflight may ask for (case-insensitive); `*` allows any.
    /// Default (empty): `Accept`, `Content-Type`, `X-Requested-With`.
    pub allowed_headers: Vec<String>,
    /// `Access-Control-Expose-Headers` of answers. Default: none.
    pub exposed_headers: Vec<String>,
    /// `Access-Control-Max-Age` of preflight answers, in seconds; 0 (default): not sent.
    pub max_age: i64,
}

impl CorsConfig {
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        for origin in &self.allowed_origins {
            if origin.matches('*').count() > 1 {
                errors.push(format!("protocols.http.cors.allowed_origins {origin:?}: use at most one * per origin (e.g. https://*.example.com)"));
            }
        }
        for name in self.allowed_headers.iter().chain(&self.exposed_headers) {
            if name != "*" && http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                errors.push(format!(
                    "protocols.http.cors: {name:?} is not a valid header name"
                ));
            }
        }
        errors
    }
}

/// The CORS policy of one HTTP server, built once from its config.
#[derive(Debug)]
pub(crate) struct Cors {
    any_origin: bool,
    /// Lower-cased exact origins.
    origins: Vec<String>,
    /// Lower-cased `prefix*suffix` origins.
    wildcard_origins: Vec<(String, String)>,
    any_header: bool,
    /// Lower-cased allowed request headers.
    headers: Vec<String>,
    exposed: Option<HeaderValue>,
    max_age: Option<HeaderValue>,
    /// The server's `response_headers`, which the Collector adds to every answer,
    /// preflights included.
    response_headers: HeaderMap,
}

const SIMPLE_METHODS: [Method; 3] = [Method::GET, Method::POST, Method::HEAD];

impl Cors {
    /// The policy, or `None` when CORS is off (no `allowed_origins`).
    pub(crate) fn new(config: &CorsConfig, response_headers: HeaderMap) -> Option<Cors> {
        if config.allowed_origins.is_empty() {
            if !config.allowed_headers.is_empty() {
                tracing::warn!(
                    "protocols.http.cors sets allowed_headers but no allowed_origins, so CORS stays off (as in the Collector)"
                );
            }
            return None;
        }
        let mut cors = Cors {
            any_origin: false,
            origins: Vec::new(),
            wildcard_origins: Vec::new(),
            any_header: config.allowed_headers.iter().any(|h| h == "*"),
            headers: if config.allowed_headers.is_empty() {
                vec![
                    "accept".into(),
                    "content-type".into(),
                    "x-requested-with".into(),
                ]
            } else {
                config
                    .allowed_headers
                    .iter()
                    .map(|h| h.to_ascii_lowercase())
                    .collect()
            },
            exposed: None,
            max_age: None,
            response_headers,
        };
        for origin in config
            .allowed_origins
            .iter()
            .map(|o| o.to_ascii_lowercase())
        {
            match origin.split_once('*') {
                _ if origin == "*" => cors.any_origin = true,
                Some((prefix, suffix)) => cors
                    .wildcard_origins
                    .push((prefix.to_string(), suffix.to_string())),
                None => cors.origins.push(origin),
            }
        }
        if !config.exposed_headers.is_empty() {
            cors.exposed = HeaderValue::from_str(&config.exposed_headers.join(", ")).ok();
        }
        cors.max_age = match config.max_age {
            0 => None,
            age if age < 0 => Some(HeaderValue::from_static("0")),
            age => Some(HeaderValue::from(age)),
        };
        Some(cors)
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        if self.any_origin {
            return true;
        }
        let origin = origin.to_ascii_lowercase();
        self.origins.contains(&origin)
            || self.wildcard_origins.iter().any(|(prefix, suffix)| {
                origin.len() >= prefix.len() + suffix.len()
                    && origin.starts_with(prefix.as_str())
                    && origin.ends_with(suffix.as_str())
            })
    }

    fn headers_allowed(&self, requested: &HeaderMap) -> bool {
        self.any_header
            || requested
                .get_all("access-control-request-headers")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(|name| name.trim().to_ascii_lowercase())
                .filter(|name| !name.is_empty())
                .all(|name| self.headers.contains(&name))
    }

    fn allow_origin(&self, origin: &HeaderValue) -> HeaderValue {
        if self.any_origin {
            HeaderValue::from_static("*")
        } else {
            origin.clone()
        }
    }

    /// The answer to a preflight request.
    pub(crate) fn preflight(&self, request: &HeaderMap) -> Response {
        let mut response = StatusCode::NO_CONTENT.into_response();
        let headers = response.headers_mut();
        headers.append(
            header::VARY,
            HeaderValue::from_static(
                "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
            ),
        );
        if let Some(origin) = request.get(header::ORIGIN).filter(|o| !o.is_empty())
            && origin.to_str().is_ok_and(|o| self.origin_allowed(o))
            && let Some(method) = request.get(header::ACCESS_CONTROL_REQUEST_METHOD)
            && Method::from_bytes(method.as_bytes())
                .is_ok_and(|m| m == Method::OPTIONS || SIMPLE_METHODS.contains(&m))
            && self.headers_allowed(request)
        {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                self.allow_origin(origin),
            );
            headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, method.clone());
            if let Some(asked) = request
                .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
                .filter(|v| !v.is_empty())
            {
                headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
            }
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
            if let Some(age) = &self.max_age {
                headers.insert(header::ACCESS_CONTROL_MAX_AGE, age.clone());
            }
        }
        headers.extend(self.response_headers.clone());
        response
    }

    /// Adds the CORS headers of an actual (non-preflight) request to its answer.
    pub(crate) fn decorate(
        &self,
        method: &Method,
        origin: Option<&HeaderValue>,
        answer: &mut HeaderMap,
    ) {
        answer.append(header::VARY, HeaderValue::from_static("Origin"));
        let Some(origin) = origin.filter(|o| !o.is_empty()) else {
            return;
        };
        if !origin.to_str().is_ok_and(|o| self.origin_allowed(o))
            || !(method == Method::OPTIONS || SIMPLE_METHODS.contains(method))
        {
            return;
        }
        answer.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            self.allow_origin(origin),
        );
        if let Some(exposed) = &self.exposed {
            answer.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, exposed.clone());
        }
        answer.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
}

/// Axum middleware: answers preflights, decorates everything else.
pub(crate) async fn layer(State(cors): State<Arc<Cors>>, request: Request, next: Next) -> Response {
    if request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        return cors.preflight(request.headers());
    }
    let method = request.method().clone();
    let origin = request.headers().get(header::ORIGIN).cloned();
    let mut response = next.run(request).await;
    cors.decorate(&method, origin.as_ref(), response.headers_mut());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(origins: &[&str], headers: &[&str], max_age: i64) -> Cors {
        let config = CorsConfig {
            allowed_origins: origins.iter().map(|s| s.to_string()).collect(),
            allowed_headers: headers.iter().map(|s| s.to_string()).collect(),
            exposed_headers: Vec::new(),
            max_age,
        };
        Cors::new(&config, HeaderMap::new()).expect("CORS on")
    }

    fn preflight(origin: &str, method: &str, headers: Option<&str>) -> HeaderMap {
        let mut request = HeaderMap::new();
        request.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        request.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_str(method).unwrap(),
        );
        if let Some(headers) = headers {
            request.insert(
                header::ACCESS_CONTROL_REQUEST_HEADERS,
                HeaderValue::from_str(headers).unwrap(),
            );
        }
        request
    }

    fn get<'a>(headers: &'a HeaderMap, name: header::HeaderName) -> Option<&'a str> {
        headers.get(name).and_then(|v| v.to_str().ok())
    }

    #[test]
    fn cors_is_off_without_allowed_origins() {
        let config = CorsConfig {
            allowed_headers: vec!["x-a".into()],
            ..CorsConfig::default()
        };
        assert!(Cors::new(&config, HeaderMap::new()).is_none());
    }

    #[test]
    fn wildcard_origins_match_a_prefix_and_a_suffix() {
        let cors = cors(&["https://*.example.com", "http://localhost:3000"], &[], 0);
        assert!(cors.origin_allowed("https://app.example.com"));
        assert!(
            cors.origin_allowed("HTTPS://App.Example.com"),
            "origins compare case-insensitively, as rs/cors does"
        );
        assert!(cors.origin_allowed("http://localhost:3000"));
        assert!(!cors.origin_allowed("https://example.org"));
        assert!(!cors.origin_allowed("http://app.example.com"));
    }

    #[test]
    fn a_preflight_from_an_allowed_origin_gets_the_allow_headers() {
        let cors = cors(
            &["https://*.example.com"],
            &["content-type", "x-tenant"],
            7200,
        );
        let answer = cors.preflight(&preflight(
            "https://app.example.com",
            "POST",
            Some("content-type,x-tenant"),
        ));
        assert_eq!(answer.status(), StatusCode::NO_CONTENT);
        let headers = answer.headers();
        assert_eq!(
            get(headers, header::ACCESS_CONTROL_ALLOW_ORIGIN),
            Some("https://app.example.com")
        );
        assert_eq!(
            get(headers, header::ACCESS_CONTROL_ALLOW_METHODS),
            Some("POST")
        );
        assert_eq!(
            get(headers, header::ACCESS_CONTROL_ALLOW_HEADERS),
            Some("content-type,x-tenant")
        );
        assert_eq!(
            get(headers, header::ACCESS_CONTROL_ALLOW_CREDENTIALS),
            Some("true")
        );
        assert_eq!(get(headers, header::ACCESS_CONTROL_MAX_AGE), Some("7200"));
        assert_eq!(
            get(headers, header::VARY),
            Some("Origin, Access-Control-Request-Method, Access-Control-Request-Headers")
        );
    }

    #[test]
    fn a_preflight_that_asks_too_much_gets_no_allow_headers() {
        let cors = cors(&["https://app.example.com"], &[], 0);
        for request in [
            preflight("https://evil.example.net", "POST", None),
            preflight("https://app.example.com", "DELETE", None),
            preflight(
                "https://app.example.com",
                "POST",
                Some("content-type, x-secret"),
            ),
        ] {
            let answer = cors.preflight(&request);
            assert_eq!(answer.status(), StatusCode::NO_CONTENT);
            assert!(
                answer
                    .headers()
                    .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
                    .is_none(),
                "{request:?}"
            );
        }
        // The default allowed headers cover what browser SDKs send.
        let answer = cors.preflight(&preflight(
            "https://app.example.com",
            "POST",
            Some("Content-Type"),
        ));
        assert!(
            answer
                .headers()
                .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
                .is_some()
        );
        assert!(
            answer
                .headers()
                .get(header::ACCESS_CONTROL_MAX_AGE)
                .is_none(),
            "max_age 0 sends none"
        );
    }

    #[test]
    fn star_allows_any_origin_and_any_header() {
        let cors = cors(&["*"], &["*"], 0);
        let answer = cors.preflight(&preflight(
            "https://anything.test",
            "POST",
            Some("x-whatever"),
        ));
        assert_eq!(
            get(answer.headers(), header::ACCESS_CONTROL_ALLOW_ORIGIN),
            Some("*")
        );
        let mut actual = HeaderMap::new();
        cors.decorate(
            &Method::POST,
            Some(&HeaderValue::from_static("https://a.test")),
            &mut actual,
        );
        assert_eq!(get(&actual, header::ACCESS_CONTROL_ALLOW_ORIGIN), Some("*"));
        assert_eq!(get(&actual, header::VARY), Some("Origin"));
    }

    #[test]
    fn actual_requests_from_other_origins_are_not_decorated() {
        let cors = cors(&["https://app.example.com"], &[], 0);
        let mut actual = HeaderMap::new();
        cors.decorate(
            &Method::POST,
            Some(&HeaderValue::from_static("https://other.test")),
            &mut actual,
        );
        assert!(actual.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
        cors.decorate(&Method::POST, None, &mut actual);
        assert!(actual.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
    }

    #[test]
    fn validation_names_bad_origins_and_headers() {
        let config = CorsConfig {
            allowed_origins: vec!["https://*.*.example.com".into()],
            allowed_headers: vec!["bad header".into()],
            ..CorsConfig::default()
        };
        let errors = config.validate();
        assert_eq!(errors.len(), 2, "{errors:?}");
    }

    /// Through axum as the HTTP server wires it: a route that only has POST still answers
    /// a preflight (not 405), and the POST answer carries the allow-origin header.
    #[tokio::test]
    async fn the_layer_answers_preflights_on_post_only_routes() {
        use tower::ServiceExt;
        let mut response_headers = HeaderMap::new();
        response_headers.insert("x-served-by", HeaderValue::from_static("oxcol"));
        let config = CorsConfig {
            allowed_origins: vec!["http://localhost:*".into()],
            max_age: 60,
            ..CorsConfig::default()
        };
        let cors = Arc::new(Cors::new(&config, response_headers).expect("CORS on"));
        let router = axum::Router::new()
            .route("/v1/traces", axum::routing::post(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(cors, layer));
        let preflight = http::Request::builder()
            .method(Method::OPTIONS)
            .uri("/v1/traces")
            .header(header::ORIGIN, "http://localhost:3000")
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "content-type")
            .body(axum::body::Body::empty())
            .unwrap();
        let answer = router.clone().oneshot(preflight).await.unwrap();
        assert_eq!(answer.status(), StatusCode::NO_CONTENT);
        let elsewhere = http::Request::builder()
            .method(Method::OPTIONS)
            .uri("/not/a/route")
            .header(header::ORIGIN, "http://localhost:3000")
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .body(axum::body::Body::empty())
            .unwrap();
        let other = router.clone().oneshot(elsewhere).await.unwrap();
        assert_eq!(
            other.status(),
            StatusCode::NO_CONTENT,
            "a preflight on any path is answered, as rs/cors wraps the whole server"
        );
        assert_eq!(
            get(answer.headers(), header::ACCESS_CONTROL_ALLOW_ORIGIN),
            Some("http://localhost:3000")
        );
        assert_eq!(
            get(answer.headers(), header::ACCESS_CONTROL_MAX_AGE),
            Some("60")
        );
        assert_eq!(
            get(answer.headers(), "x-served-by".parse().unwrap()),
            Some("oxcol")
        );
        let post = http::Request::builder()
            .method(Method::POST)
            .uri("/v1/traces")
            .header(header::ORIGIN, "http://localhost:3000")
            .body(axum::body::Body::empty())
            .unwrap();
        let answer = router.oneshot(post).await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
        assert_eq!(
            get(answer.headers(), header::ACCESS_CONTROL_ALLOW_ORIGIN),
            Some("http://localhost:3000")
        );
        assert_eq!(
            get(answer.headers(), header::ACCESS_CONTROL_ALLOW_CREDENTIALS),
            Some("true")
        );
    }
}
