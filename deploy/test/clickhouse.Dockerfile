# A stand-in for the official clickhouse/clickhouse-server image, from Debian's clickhouse-server (18.16), for
# `make test-deploy` on machines without an image registry. The official image's contract: CLICKHOUSE_USER and
# CLICKHOUSE_PASSWORD make a user, data in /var/lib/clickhouse, HTTP on 8123, clickhouse-client inside.
ARG DEBIAN_SLIM_IMAGE=debian:bookworm-slim
FROM ${DEBIAN_SLIM_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends clickhouse-server clickhouse-client \
 && apt-get clean && rm -rf /var/lib/apt/lists/*
COPY deploy/test/clickhouse-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
VOLUME /var/lib/clickhouse
EXPOSE 8123 9000
ENTRYPOINT ["docker-entrypoint.sh"]
