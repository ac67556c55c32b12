# kruise-manager and kruise-daemon in one image: `docker build .` or `buildah bud`.
#
# One static release executable (glibc, +crt-static) holds both programs; /kruise-daemon is a
# link to /kruise-manager and the executable runs as the name it is called by. The final stage
# holds nothing else but the system's CA certificates, which kube's TLS client loads when a
# kubeconfig names no CA of its own (in-cluster, the service account's CA is used): no shell, no
# libc. `scripts/image` builds the same image on a machine without a container engine.

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
RUN target="$(rustc -vV | sed -n 's/^host: //p')" \
 && RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --locked --target "$target" -p kruise --bin kruise \
 && mkdir /out \
 && cp "target/$target/release/kruise" /out/kruise-manager \
 && ln -s kruise-manager /out/kruise-daemon

FROM scratch
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="kruise" \
      org.opencontainers.image.description="kruise-manager and kruise-daemon: image pre-warming for Kubernetes (OpenKruise ImagePullJob, in Rust)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://github.com/openkruise-rs/kruise" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/ /
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
# Non-root by default; the daemon's pod runs as root to open the runtime's socket.
USER 65532:65532
ENTRYPOINT ["/kruise-manager"]
