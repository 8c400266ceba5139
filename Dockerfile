# syntax=docker/dockerfile:1
# The Affine Reasoning API gateway: a release build on the Rust image, run from a distroless
# image (glibc, CA certificates, no shell) as a non-root user. Build from the repository root:
#
#   docker build -t affine-gateway .
#
# The image also carries `chutes-sim`, the simulated upstream deploy/compose.yaml runs.
# docs/DEPLOY.md explains the choices; scripts/check-deploy.sh lints this file (hadolint).

ARG RUST_VERSION=1.95

# --- build ---------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src

# Dependencies first, on stub sources: this layer is rebuilt only when a manifest or
# Cargo.lock changes, not on every source edit.
COPY Cargo.toml Cargo.lock ./
COPY loadtests/chutes-sim/Cargo.toml loadtests/chutes-sim/
COPY loadtests/chain-sim/Cargo.toml loadtests/chain-sim/
COPY loadtests/loadgen/Cargo.toml loadtests/loadgen/
RUN set -eux; \
    for crate in . loadtests/chutes-sim loadtests/chain-sim loadtests/loadgen; do \
      mkdir -p "$crate/src"; \
      echo 'fn main() {}' > "$crate/src/main.rs"; \
      : > "$crate/src/lib.rs"; \
    done; \
    cargo build --release --locked -p affine-gateway -p chutes-sim --bin affine-gateway --bin chutes-sim; \
    rm -rf src loadtests

# The sources. Their timestamps may be older than the stubs' build: touch every crate root
# so cargo rebuilds the workspace's own crates instead of keeping the stubs.
COPY . .
RUN set -eux; \
    find src loadtests/chutes-sim/src loadtests/chain-sim/src loadtests/loadgen/src \
      -name '*.rs' -exec touch {} +; \
    cargo build --release --locked -p affine-gateway -p chutes-sim --bin affine-gateway --bin chutes-sim; \
    mkdir -p /out/journal; \
    cp target/release/affine-gateway target/release/chutes-sim /out/

# --- runtime -------------------------------------------------------------------------------
# distroless/cc: glibc and libgcc (what the binary links), CA certificates, a `nonroot` user
# (65532), no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=build /out/affine-gateway /out/chutes-sim /usr/local/bin/
# The settlement journal: its default file name follows the listen address
# (affine-gateway-0.0.0.0-8080.journal), in the working directory, which is the volume.
COPY --from=build --chown=65532:65532 /out/journal /var/lib/affine-gateway
WORKDIR /var/lib/affine-gateway
VOLUME ["/var/lib/affine-gateway"]
USER 65532:65532
ENV GATEWAY_LISTEN=0.0.0.0:8080 \
    GATEWAY_LOG_FORMAT=json
EXPOSE 8080
# The binary probes its own /healthz (the image has no curl): exit 0 on 200.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/usr/local/bin/affine-gateway", "healthcheck", "--timeout-secs", "3"]
ENTRYPOINT ["/usr/local/bin/affine-gateway"]
CMD ["serve"]
