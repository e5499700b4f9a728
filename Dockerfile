# syntax=docker/dockerfile:1
# Multi-stage build: compile with the Rust image, run on a slim Debian as a non-root user.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin foreman \
 && cp target/release/foreman /usr/local/bin/foreman

FROM debian:bookworm-slim
# ca-certificates tracks the distribution's trust store; pinning it would freeze stale roots.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin foreman \
 && mkdir -p /data && chown foreman:foreman /data
COPY --from=build /usr/local/bin/foreman /usr/local/bin/foreman
USER 10001:10001
WORKDIR /data
ENV FOREMAN_LISTEN=0.0.0.0:11435 \
    FOREMAN_DATA_DIR=/data \
    FOREMAN_LOG_FORMAT=json
VOLUME ["/data"]
EXPOSE 11435
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
  CMD ["foreman", "healthcheck"]
ENTRYPOINT ["foreman"]
CMD ["serve"]
