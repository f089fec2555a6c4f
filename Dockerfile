# eventlog's image: built on Debian 12, run on Debian 12 slim with only the runtime libraries, as a non-root user.
#   docker build --build-arg VERSION=0.1.0 --build-arg COMMIT=$(git rev-parse --short=12 HEAD) -t eventlog .
# The base images are Debian's (docker.io/library/debian); with no registry, `make test-deploy` makes them with
# debootstrap and imports them under these names (docs/deploy.md).
ARG DEBIAN_IMAGE=debian:bookworm
ARG DEBIAN_SLIM_IMAGE=debian:bookworm-slim

FROM ${DEBIAN_IMAGE} AS build
# The libraries the code links (scripts/install-deps.sh names why each is needed); no test or lint tools.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        build-essential cmake ninja-build pkg-config ca-certificates \
        libpq-dev libcurl4-openssl-dev libssl-dev libsimdjson-dev libfmt-dev libcli11-dev libboost1.74-dev zlib1g-dev \
 && apt-get clean && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY CMakeLists.txt ./
COPY cmake cmake
COPY include include
COPY src src
COPY migrations migrations
ARG COMMIT=unknown
RUN cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DEVENTLOG_BUILD_TESTS=OFF \
        -DEVENTLOG_BUILD_MICRO_BENCH=OFF -DEVENTLOG_COMMIT="${COMMIT}" \
 && cmake --build build --target eventlog \
 && strip build/eventlog

FROM ${DEBIAN_SLIM_IMAGE}
ARG VERSION=0.1.0
ARG COMMIT=unknown
LABEL org.opencontainers.image.title="eventlog" \
      org.opencontainers.image.description="Transactional outbox relay from PostgreSQL to ClickHouse, and its HTTP API" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}" \
      org.opencontainers.image.source="https://github.com/eventlog/eventlog"
# Runtime libraries only; curl for the HEALTHCHECK.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        libpq5 libcurl4 libssl3 libsimdjson14 libfmt9 zlib1g ca-certificates curl \
 && apt-get clean && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin eventlog
COPY --from=build /src/build/eventlog /usr/local/bin/eventlog
USER 10001:10001
WORKDIR /tmp
# No .env inside the image: configuration comes from the environment (compose's env_file, systemd's
# EnvironmentFile). EVENTLOG_ENV_FILE=/dev/null makes that explicit.
ENV EVENTLOG_ENV_FILE=/dev/null \
    HTTP_LISTEN=0.0.0.0:8000 \
    METRICS_LISTEN=0.0.0.0:9464 \
    HEALTH_PORT=8000
EXPOSE 8000 9464
# /healthz of `serve` (HEALTH_PORT=8000, the default) or of a relay's operations listener (HEALTH_PORT=9464).
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD curl -fsS -H "Host: 127.0.0.1" "http://127.0.0.1:${HEALTH_PORT}/healthz" >/dev/null || exit 1
ENTRYPOINT ["eventlog"]
CMD ["--help"]
