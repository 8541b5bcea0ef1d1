# The spanmeter collector, for docker-compose.yaml: OTLP in on 4317 (gRPC) and 4318 (HTTP), ClickHouse out.
# Built and run nowhere in this repository's CI (no Docker engine on its machines); see grafana/README.md.
FROM python:3.11.7-slim-bookworm

WORKDIR /app
COPY pyproject.toml README.md pipelines.yaml ./
COPY collector ./collector
COPY clickhouse ./clickhouse
RUN pip install --no-cache-dir .

# Defaults: listen on every interface inside the container; ClickHouse settings come from docker-compose.yaml.
ENV SPANMETER_CONFIG=/app/pipelines.yaml \
    SPANMETER_GRPC_ENDPOINT=0.0.0.0:4317 \
    SPANMETER_HTTP_ENDPOINT=0.0.0.0:4318
EXPOSE 4317 4318
RUN mkdir -p /var/lib/spanmeter && chown nobody /var/lib/spanmeter
USER nobody
ENTRYPOINT ["spanmeter"]
CMD ["serve"]
