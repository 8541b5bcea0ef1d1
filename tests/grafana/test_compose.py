"""docker-compose.yaml cannot run here (no Docker engine): what can be checked is that it parses, that every
path it mounts or builds from exists, and that its names and environment variables agree with the Grafana
provisioning, the ClickHouse user file and pipelines.yaml."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import GRAFANA, PROVISIONING, REPO, provisioning

COMPOSE = yaml.safe_load((REPO / "docker-compose.yaml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
ENV_REFERENCE = re.compile(r"\$\{(\w+)\}")


def mounts(service: str) -> list[tuple[Path, str]]:
    out = []
    for volume in SERVICES[service].get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            out.append((REPO / source, target))
        else:
            assert source in COMPOSE["volumes"], f"{service}: named volume {source} is not declared"
    return out


def test_images_are_pinned() -> None:
    clickhouse, grafana = SERVICES["clickhouse"]["image"], SERVICES["grafana"]["image"]
    assert re.fullmatch(r"clickhouse/clickhouse-server:\d+\.\d+(\.\d+)*", clickhouse)
    assert re.fullmatch(r"grafana/grafana:12\.\d+\.\d+", grafana)
    assert SERVICES["grafana"]["environment"]["GF_PLUGINS_PREINSTALL_SYNC"].startswith(
        "grafana-clickhouse-datasource@4.20."
    )


@pytest.mark.parametrize("service", ["clickhouse", "collector", "grafana"])
def test_mounted_paths_exist(service: str) -> None:
    for source, _ in mounts(service):
        assert source.exists(), f"{service} mounts {source}, which does not exist"


def test_both_stores_keep_their_data_in_volumes() -> None:
    targets = {service: [v.split(":")[1] for v in SERVICES[service]["volumes"]] for service in SERVICES}
    assert "/var/lib/clickhouse" in targets["clickhouse"]
    assert "/var/lib/grafana" in targets["grafana"]


def test_grafana_mounts_the_provisioning_and_the_dashboards_where_the_provider_reads() -> None:
    targets = {source.resolve(): target for source, target in mounts("grafana")}
    assert targets[PROVISIONING.resolve()] == "/etc/grafana/provisioning"
    (provider,) = provisioning("dashboards")["providers"]
    assert targets[(GRAFANA / "dashboards").resolve()] == provider["options"]["path"]
    home = SERVICES["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (GRAFANA / "dashboards" / Path(home).name).exists()


def test_every_variable_the_provisioning_reads_is_set_for_grafana() -> None:
    environment = SERVICES["grafana"]["environment"]
    referenced = {name for path in PROVISIONING.rglob("*.yaml") for name in ENV_REFERENCE.findall(path.read_text())}
    assert referenced, "the provisioning reads its secrets and endpoints from the environment"
    assert referenced <= set(environment), referenced - set(environment)


def test_datasource_reaches_the_compose_clickhouse_as_the_read_only_user() -> None:
    (datasource,) = provisioning("datasources")["datasources"]
    environment = SERVICES["grafana"]["environment"]
    resolve = lambda value: ENV_REFERENCE.sub(lambda m: str(environment[m.group(1)]), value)  # noqa: E731
    assert resolve(datasource["jsonData"]["host"]) in SERVICES
    assert datasource["jsonData"]["defaultDatabase"] == SERVICES["collector"]["environment"]["SPANMETER_DATABASE"]
    assert datasource["jsonData"]["protocol"] == "native" and datasource["jsonData"]["port"] == 9000
    users = ET.parse(REPO / "clickhouse" / "users.d" / "grafana_reader.xml").getroot()
    user = users.find(f"users/{resolve(datasource['jsonData']['username'])}")
    assert user is not None, "the datasource's user is not defined in clickhouse/users.d"
    password_variable = user.find("password").get("from_env")
    assert ENV_REFERENCE.findall(datasource["secureJsonData"]["password"]) == [password_variable]
    assert password_variable in SERVICES["clickhouse"]["environment"], "the server must see the user's password"
    profile = users.find(f"profiles/{user.findtext('profile')}")
    assert profile.findtext("readonly") == "2"
    assert user.findtext("grants/query") == f"GRANT SELECT ON {datasource['jsonData']['defaultDatabase']}.*"


def test_collector_is_built_here_and_configured_with_the_variables_pipelines_yaml_reads() -> None:
    collector = SERVICES["collector"]
    assert collector["build"] == "."
    dockerfile = (REPO / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (.+) \S+$", dockerfile, flags=re.M):
        for name in source.split():
            assert (REPO / name).exists(), f"Dockerfile copies {name}, which does not exist"
    pipelines = (REPO / "pipelines.yaml").read_text()
    read = set(re.findall(r"\$\{env:(\w+)", pipelines))
    environment = collector["environment"]
    assert set(environment) <= read, set(environment) - read
    assert environment["SPANMETER_CLICKHOUSE_URL"] == "http://clickhouse:8123"
    assert environment["CLICKHOUSE_USER"] == SERVICES["clickhouse"]["environment"]["CLICKHOUSE_USER"]
    assert environment["CLICKHOUSE_PASSWORD"] == SERVICES["clickhouse"]["environment"]["CLICKHOUSE_PASSWORD"]
    ports = {port.split(":")[-1] for port in collector["ports"]}
    assert {environment[v].rsplit(":", 1)[1] for v in ("SPANMETER_GRPC_ENDPOINT", "SPANMETER_HTTP_ENDPOINT")} == ports
    assert collector["depends_on"]["clickhouse"]["condition"] == "service_healthy"
