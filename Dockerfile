# syntax=docker/dockerfile:1
# The oxcol container image: the release binary on a distroless base (glibc, CA certificates;
# no shell, no package manager), running as the distroless "nonroot" user (65532:65532).
# oxcol writes nothing to its root file system, so it runs with readOnlyRootFilesystem: true;
# a disk queue (file_storage, prometheusremotewrite wal) needs a volume of its own.
#
# Build it from the repository root (BuildKit, the default builder of Docker 23+):
#
#   docker build -t oxcol:0.1.0 .
#
# The Kubernetes manifests in deploy/ and the Helm chart in deploy/helm/oxcol name exactly
# this image, oxcol:0.1.0 (integration/tests/deploy.rs checks that they agree with this line
# and with the workspace version). Push it to your registry and point the manifests there
# (Helm: --set image.repository=registry.example.com/oxcol), or load it into a local
# cluster (kind load docker-image oxcol:0.1.0).

ARG RUST_VERSION=1.95
# Extra arguments of the cargo build, e.g. --build-arg OXCOL_CARGO_ARGS=--no-default-features
# for the lean sidecar build (docs/build-features.md). Empty: every component.
ARG OXCOL_CARGO_ARGS=

FROM rust:${RUST_VERSION}-bookworm AS build
ARG OXCOL_CARGO_ARGS
# librdkafka (kafka receiver/exporter) is built from source by rdkafka-sys and links the
# system OpenSSL and zlib.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl-dev zlib1g-dev pkg-config make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p oxcol ${OXCOL_CARGO_ARGS} \
 && cp target/release/oxcol /oxcol
# The shared libraries the binary needs beyond glibc and libgcc (OpenSSL and zlib, for
# librdkafka), taken from the same Debian release as the runtime base.
RUN mkdir -p /out/lib \
 && ldd /oxcol \
    | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' \
    | grep -Ev '/(libc|libm|libgcc_s|libpthread|libdl|librt|ld-linux[^/]*)\.so' \
    | xargs -r cp -L -t /out/lib/ \
 && ls -l /out/lib

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="oxcol" \
      org.opencontainers.image.description="OpenTelemetry Collector-compatible agent for Go services in containers" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/lib/ /usr/local/lib/oxcol/
ENV LD_LIBRARY_PATH=/usr/local/lib/oxcol
COPY --from=build /oxcol /usr/local/bin/oxcol
# The ready configs (sidecar, node agent, gateway), for `--config /usr/share/oxcol/configs/...`.
COPY configs/ /usr/share/oxcol/configs/
USER 65532:65532
# OTLP gRPC, OTLP HTTP, self-telemetry, health_check.
EXPOSE 4317 4318 8888 13133
ENTRYPOINT ["/usr/local/bin/oxcol"]
