//! What authenticating one request costs: bearer token, basic auth with a bcrypt entry
//! (htpasswd's default cost 10) for credentials seen before, and the bcrypt verification
//! that a first request, or a wrong password, pays.
//!
//! Run: `cargo bench -p oxcol-core --bench auth` (results: docs/benchmarks.md, "Auth").

use std::hint::black_box;
use std::time::Duration;

use base64::Engine;
use criterion::{Criterion, criterion_group, criterion_main};
use http::HeaderMap;
use oxcol_core::auth::ServerAuthenticator;

fn headers(value: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(http::header::AUTHORIZATION, value.parse().unwrap());
    headers
}

fn auth(c: &mut Criterion) {
    let mut group = c.benchmark_group("auth");
    group.measurement_time(Duration::from_secs(5));
    let bearer = ServerAuthenticator::bearer(
        "authorization",
        "Bearer",
        vec!["t0ken-3b1f9c2e".into()],
        None,
    )
    .unwrap();
    let good_token = headers("Bearer t0ken-3b1f9c2e");
    group.bench_function("bearer", |b| {
        b.iter(|| black_box(bearer.authenticate(black_box(&good_token))))
    });

    let hash = bcrypt::hash("pa55w0rd", 10).unwrap();
    let basic =
        ServerAuthenticator::basic_from_htpasswd("bench", &format!("alice:{hash}\n")).unwrap();
    let encode = |text: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(text)
        )
    };
    let good = headers(&encode("alice:pa55w0rd"));
    assert!(basic.authenticate(&good).is_ok());
    group.bench_function("basic_bcrypt10_seen_before", |b| {
        b.iter(|| black_box(basic.authenticate(black_box(&good))))
    });
    group.sample_size(10);
    let wrong = headers(&encode("alice:wrong"));
    group.bench_function("basic_bcrypt10_wrong_password", |b| {
        b.iter(|| black_box(basic.authenticate(black_box(&wrong))))
    });
    group.finish();
}

criterion_group!(benches, auth);
criterion_main!(benches);
