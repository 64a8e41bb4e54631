# Multi-stage build: the same `cargo build --release --locked` binary the
# tests build, in a small Debian runtime image.
FROM rust:1.95-bookworm AS build
WORKDIR /src
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY migrations migrations
COPY benches benches
RUN cargo build --release --locked --bin custodian

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates zlib1g \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 custodian
COPY --from=build /src/target/release/custodian /usr/local/bin/custodian
USER custodian
ENV CUSTODIAN_HTTP__BIND=0.0.0.0:8080
EXPOSE 8080
# /ready answers 200 only with a Kafka assignment and PostgreSQL and Redis reachable.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /ready HTTP/1.0\\r\\n\\r\\n' >&3 && head -1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["custodian"]
CMD ["run"]
