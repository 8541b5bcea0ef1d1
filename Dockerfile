# The spanmeter collector, for docker-compose.yaml: OTLP in on 4317 (gRPC) and 4318 (HTTP), ClickHouse out.
# Built and run nowhere in this repository's CI (no Docker engine on its machines); see grafana/README.md.
# Runs as an unprivileged user of its own; needs SPANMETER_ADMIN_KEY (docker/pipelines.yaml: keys are required).
FROM python:3.11.7-slim-bookworm

WORKDIR /app
COPY pyproject.toml README.md ./
COPY collector ./collector
COPY clickhouse ./clickhouse
# A C compiler for the install only: it builds the engine's OTLP flattener (collector/engine/_flatten.c).
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && pip install --no-cache-dir . \
    && apt-get purge -y gcc libc6-dev && apt-get autoremove -y && rm -rf /var/lib/apt/lists/*
# The container's config: every interface, keys required on both receivers.
COPY docker/pipelines.yaml /app/pipelines.yaml

# A fixed numeric uid (not root, not the shared `nobody`), so volume ownership and runAsNonRoot checks hold.
# Everything it writes is under /var/lib/spanmeter: the write-ahead log and, without a ClickHouse server, the
# embedded store. A named volume mounted there starts with this ownership.
RUN groupadd --system --gid 10001 spanmeter \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/spanmeter --no-create-home \
       --shell /usr/sbin/nologin spanmeter \
    && mkdir -p /var/lib/spanmeter/wal /var/lib/spanmeter/data \
    && chown -R 10001:10001 /var/lib/spanmeter \
    && chmod 0750 /var/lib/spanmeter
ENV SPANMETER_CONFIG=/app/pipelines.yaml \
    SPANMETER_GRPC_ENDPOINT=0.0.0.0:4317 \
    SPANMETER_HTTP_ENDPOINT=0.0.0.0:4318 \
    SPANMETER_WAL=/var/lib/spanmeter/wal \
    SPANMETER_DATA=/var/lib/spanmeter/data
VOLUME /var/lib/spanmeter
EXPOSE 4317 4318
USER 10001:10001
WORKDIR /var/lib/spanmeter
ENTRYPOINT ["spanmeter"]
CMD ["serve"]
