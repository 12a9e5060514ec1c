//! The sink's control server: `GET /stats`, `POST /reset`, `GET|POST /mode`.
//!
//! Plain JSON over HTTP/1 so a shell (`curl`) can drive it as easily as a test.

use super::{ModeUpdate, SinkState};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{StatusCode, header};
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

pub(super) async fn serve(
    listener: TcpListener,
    state: Arc<SinkState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let router = axum::Router::new()
        .route("/stats", axum::routing::get(stats))
        .route("/reset", axum::routing::post(reset))
        .route("/mode", axum::routing::get(get_mode).post(set_mode))
        .with_state(state);
    if let Err(error) = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
    {
        eprintln!("oxcol-bench sink: control server stopped: {error}");
    }
}

fn json(value: &impl serde::Serialize) -> Response {
    match serde_json::to_string(value) {
        Ok(text) => ([(header::CONTENT_TYPE, "application/json")], text).into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}

async fn stats(State(state): State<Arc<SinkState>>) -> Response {
    json(&state.stats())
}

async fn reset(State(state): State<Arc<SinkState>>) -> Response {
    state.reset();
    json(&state.stats())
}

async fn get_mode(State(state): State<Arc<SinkState>>) -> Response {
    json(&state.mode())
}

async fn set_mode(State(state): State<Arc<SinkState>>, body: Bytes) -> Response {
    let update: ModeUpdate = match serde_json::from_slice(&body) {
        Ok(update) => update,
        Err(error) => {
            let message = format!(
                "invalid /mode body: {error}; expected JSON with any of fail_next, grpc_code, http_status, \
                 retry_after_secs, retry_info_secs, delay_ms, down, partial_reject\n"
            );
            return (StatusCode::BAD_REQUEST, message).into_response();
        }
    };
    match state.update_mode(update) {
        Ok(mode) => json(&mode),
        Err(message) => (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response(),
    }
}
