"""docker-compose.yaml cannot run here (no Docker engine): what can be checked is that it parses, that every
path it mounts or builds from exists, and that its names and environment variables agree with the Grafana
provisioning, the ClickHouse user file and pipelines.yaml."""

from __future__ import annotations

import ipaddress
import re
import xml.etree.ElementTree as ET
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from spanmeter.config import ConfigError, load_config

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


def mounted_config() -> Path:
    """The pipelines file the collector container runs: the one compose mounts over the image's."""
    (source,) = [source for source, target in mounts("collector") if target == "/app/pipelines.yaml"]
    return source


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
    pipelines = (mounted_config()).read_text()
    read = set(re.findall(r"\$\{env:(\w+)", pipelines))
    environment = collector["environment"]
    assert set(environment) <= read, set(environment) - read
    assert environment["SPANMETER_CLICKHOUSE_URL"] == "http://clickhouse:8123"
    assert environment["CLICKHOUSE_USER"] == SERVICES["clickhouse"]["environment"]["CLICKHOUSE_USER"]
    assert environment["CLICKHOUSE_PASSWORD"] == SERVICES["clickhouse"]["environment"]["CLICKHOUSE_PASSWORD"]
    ports = {port.split(":")[-1] for port in collector["ports"]}
    assert {environment[v].rsplit(":", 1)[1] for v in ("SPANMETER_GRPC_ENDPOINT", "SPANMETER_HTTP_ENDPOINT")} == ports
    assert collector["depends_on"]["clickhouse"]["condition"] == "service_healthy"


# --- deployment defaults (issue 11, item 8) ----------------------------------------------------

REQUIRED = re.compile(r"\$\{(\w+):\?[^}]+\}")  # compose: `${NAME:?message}`, no default, refused when unset
COMPOSE_REFERENCE = re.compile(r"\$\{(\w+)(?::([-?])([^}]*))?\}")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY$")
# Defaulted on purpose: the read-only user it belongs to logs in only from the compose network (tested below).
DEFAULTED_SECRETS = {"GRAFANA_CLICKHOUSE_PASSWORD"}
DOCKERFILE = (REPO / "Dockerfile").read_text()
ADMIN_KEY = "k" * 40


def required_variable(value: object) -> str | None:
    match = REQUIRED.fullmatch(str(value))
    return match.group(1) if match else None


def container_environment(service: str, given: dict[str, str]) -> dict[str, str]:
    """The service's environment as the container sees it: compose's `${X:-default}` and `${X:?...}` resolved,
    the required ones from `given` (a variable not given is left out, as compose would refuse to start)."""
    out = {}
    for name, value in SERVICES[service]["environment"].items():

        def resolve(match: re.Match[str]) -> str:
            variable, kind, rest = match.groups()
            if variable in given:
                return given[variable]
            if kind == "-":
                return rest
            raise KeyError(variable)

        try:
            out[name] = COMPOSE_REFERENCE.sub(resolve, str(value))
        except KeyError:
            continue
    return out


def image_environment() -> dict[str, str]:
    """The Dockerfile's ENV."""
    return dict(re.findall(r"\b(SPANMETER_\w+)=(\S+)", DOCKERFILE))


def test_no_secret_has_a_default() -> None:
    """Every password and key is asked of whoever starts the stack; none is a well-known default."""
    assert required_variable(SERVICES["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"]) == "GF_ADMIN_PASSWORD"
    assert required_variable(SERVICES["collector"]["environment"]["SPANMETER_ADMIN_KEY"]) == "SPANMETER_ADMIN_KEY"
    for service, body in SERVICES.items():
        for name, value in body.get("environment", {}).items():
            if SECRET_NAME.search(name) and name not in DEFAULTED_SECRETS:
                assert required_variable(value), f"{service}: {name} has a default ({value})"


@pytest.mark.parametrize("where", ["compose", "image"])
def test_the_collectors_published_ports_require_keys(where: str) -> None:
    """The collector listens on every interface of its container, so both receivers name the key authenticator,
    whose bootstrap admin key is SPANMETER_ADMIN_KEY; without it the config does not load."""
    if where == "compose":
        config_file = mounted_config()
        environment = container_environment("collector", {"SPANMETER_ADMIN_KEY": ADMIN_KEY, "CLICKHOUSE_PASSWORD": "p"})
        assert environment["SPANMETER_ADMIN_KEY"] == ADMIN_KEY
    else:
        (copied,) = re.findall(r"^COPY (\S+) /app/pipelines.yaml$", DOCKERFILE, flags=re.M)
        config_file = REPO / copied
        environment = {**image_environment(), "SPANMETER_ADMIN_KEY": ADMIN_KEY}
        assert environment["SPANMETER_CONFIG"] == "/app/pipelines.yaml"
    config = load_config(config_file, env=environment)
    listeners = [p for r in config.receivers.values() for p in (r.protocols.grpc, r.protocols.http) if p is not None]
    assert len(listeners) == 2
    for listener in listeners:
        assert listener.endpoint.startswith("0.0.0.0:")
        assert listener.auth is not None and listener.auth.authenticator in config.service.extensions
        assert not listener.insecure
    (authenticator,) = [config.extensions[name] for name in config.service.extensions]
    assert authenticator.bootstrap_key == ADMIN_KEY
    without = {name: value for name, value in environment.items() if name != "SPANMETER_ADMIN_KEY"}
    with pytest.raises(ConfigError, match="SPANMETER_ADMIN_KEY is not set"):
        load_config(config_file, env=without)


def test_the_read_only_clickhouse_user_logs_in_only_from_the_compose_network() -> None:
    user = ET.parse(REPO / "clickhouse" / "users.d" / "grafana_reader.xml").getroot().find("users/grafana")
    networks = user.find("networks")
    assert [element.tag for element in networks] == ["ip"], "no host or host_regexp: addresses only"
    allowed = [ipaddress.ip_network(element.text) for element in networks]
    subnets = [ipaddress.ip_network(c["subnet"]) for c in COMPOSE["networks"]["spanmeter"]["ipam"]["config"]]
    assert allowed == subnets and all(subnet.is_private for subnet in subnets)
    for service, body in SERVICES.items():  # on that network only: no default network beside it
        assert body.get("networks") == ["spanmeter"], service
    # What Grafana connects to is inside it, on the native port compose does not publish.
    assert not any(port.endswith(":9000") for port in SERVICES["clickhouse"]["ports"])


def test_the_collector_runs_as_a_user_of_its_own_with_writable_data_directories() -> None:
    users = re.findall(r"^USER (\S+)$", DOCKERFILE, flags=re.M)
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) not in (0, 65534), "not root, not the shared nobody"
    assert "user" not in SERVICES["collector"], "compose keeps the image's user"
    owned = [PurePosixPath(path) for path in re.findall(rf"chown -R {uid}:{uid} (\S+)", DOCKERFILE)]
    created = re.findall(r"mkdir -p ([^&\n]+)", DOCKERFILE)[0].split()
    environment = image_environment()
    compose_environment = SERVICES["collector"]["environment"]
    volume_targets = [
        PurePosixPath(v.split(":")[1]) for v in SERVICES["collector"]["volumes"] if v.startswith("collector-")
    ]
    for variable in ("SPANMETER_WAL", "SPANMETER_DATA"):
        path = PurePosixPath(environment[variable])
        assert str(path) in created and any(path.is_relative_to(root) for root in owned), variable
        in_compose = PurePosixPath(compose_environment.get(variable, environment[variable]))
        assert any(in_compose.is_relative_to(root) for root in owned), f"compose's {variable} is not writable"
        assert any(in_compose.is_relative_to(target) for target in volume_targets), f"{variable} is not in a volume"
