"""deploy/kubernetes/spanmeter.yaml agrees with the collector: its pipelines.yaml loads, the probes ask the paths
the collector serves on the port it listens on, and the WAL directory is the pod's own claimed volume. (No
Kubernetes here: the manifest is read, not applied.)"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from aiohttp import web

from spanmeter.config import ClickHouseExporterConfig, Config, GrpcProtocolConfig, HttpProtocolConfig, load_config
from spanmeter.health import add_health_routes

MANIFEST = Path(__file__).parents[2] / "deploy" / "kubernetes" / "spanmeter.yaml"


def documents() -> dict[tuple[str, str], dict[str, Any]]:
    docs = [doc for doc in yaml.safe_load_all(MANIFEST.read_text()) if doc]
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in docs}


@pytest.fixture
def manifest() -> dict[tuple[str, str], dict[str, Any]]:
    return documents()


@pytest.fixture
def container(manifest: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    (only,) = manifest["StatefulSet", "spanmeter"]["spec"]["template"]["spec"]["containers"]
    return dict(only)


@pytest.fixture
def config(manifest: dict[tuple[str, str], dict[str, Any]], tmp_path: Path) -> Config:
    path = tmp_path / "pipelines.yaml"
    path.write_text(manifest["ConfigMap", "spanmeter"]["data"]["pipelines.yaml"])
    return load_config(path, env={"SPANMETER_ADMIN_KEY": "k" * 32, "CLICKHOUSE_PASSWORD": "secret"})


def port(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


def served_paths() -> set[str]:
    app = web.Application()
    add_health_routes(app, None, 60.0)  # type: ignore[arg-type]  # handlers only read it when called
    return {resource.canonical for resource in app.router.resources()}


def test_probes_ask_the_collectors_health_paths_on_its_http_port(container: dict[str, Any], config: Config) -> None:
    http = config.receivers["otlp"].protocols.http
    assert http is not None
    assert port(http.endpoint) == port(HttpProtocolConfig().endpoint) == 4318  # the default port, on every interface
    readiness, liveness = container["readinessProbe"]["httpGet"], container["livenessProbe"]["httpGet"]
    assert (readiness["path"], liveness["path"]) == ("/readyz", "/livez")
    assert {"/readyz", "/livez"} <= served_paths()
    assert readiness["port"] == liveness["port"] == port(http.endpoint)


def test_container_and_services_expose_the_receivers_ports(
    manifest: dict[tuple[str, str], dict[str, Any]], container: dict[str, Any], config: Config
) -> None:
    protocols = config.receivers["otlp"].protocols
    assert protocols.grpc is not None and protocols.http is not None
    ports = {entry["name"]: entry["containerPort"] for entry in container["ports"]}
    assert ports == {"otlp-grpc": port(protocols.grpc.endpoint), "otlp-http": port(protocols.http.endpoint)}
    assert port(GrpcProtocolConfig().endpoint) == ports["otlp-grpc"]
    labels = manifest["StatefulSet", "spanmeter"]["spec"]["template"]["metadata"]["labels"]
    for name in ("spanmeter", "spanmeter-pods"):
        service = manifest["Service", name]["spec"]
        assert service["selector"].items() <= labels.items()
        assert all(entry["targetPort"] in ports for entry in service["ports"])
    assert manifest["StatefulSet", "spanmeter"]["spec"]["serviceName"] == "spanmeter-pods"
    assert manifest["Service", "spanmeter-pods"]["spec"]["clusterIP"] == "None"


def test_the_wal_is_the_pods_own_claimed_volume(
    manifest: dict[tuple[str, str], dict[str, Any]], container: dict[str, Any], config: Config
) -> None:
    spec = manifest["StatefulSet", "spanmeter"]["spec"]
    store: ClickHouseExporterConfig = config.exporters["clickhouse"]
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    claims = {claim["metadata"]["name"]: claim["spec"] for claim in spec["volumeClaimTemplates"]}
    assert set(claims) == {"wal"}
    assert PurePosixPath(store.queue.directory) == PurePosixPath(mounts["wal"])
    assert claims["wal"]["accessModes"] == ["ReadWriteOnce"]  # one collector per WAL directory
    size = claims["wal"]["resources"]["requests"]["storage"]
    assert size.endswith("Gi") and int(size[:-2]) * 2**30 > int(store.queue.max_bytes)
    security = spec["template"]["spec"]["securityContext"]
    assert security["fsGroup"] == security["runAsUser"] == 10001  # the image's user can write the volume


def test_config_is_the_mounted_file_for_a_cluster(container: dict[str, Any], config: Config) -> None:
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    assert container["args"] == ["serve", "--config", f"{mounts['config']}/pipelines.yaml"]
    store = config.exporters["clickhouse"]
    assert store.cluster == "spanmeter" and store.endpoint.startswith("http://")


def test_stopping_has_time_to_store_what_the_wal_holds(
    manifest: dict[tuple[str, str], dict[str, Any]], container: dict[str, Any], config: Config
) -> None:
    grace = manifest["StatefulSet", "spanmeter"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert grace > pre_stop + config.exporters["clickhouse"].shutdown_timeout + 5  # and the receivers' drain
