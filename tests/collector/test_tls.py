"""TLS and mTLS on both receivers (issue 11, item 4): certificates made here with `cryptography`, a real collector
on loopback, the real OTel SDK exporters (gRPC and HTTP), real chDB.

Each refusal is checked three ways: the exporter reports FAILURE, the collector counted no request (the
connection never got past the handshake), and no row is stored.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import ssl
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from spanmeter.api import api_base_url
from spanmeter.cli.common import get_json
from spanmeter.config import Config, ConfigError
from spanmeter.service import Collector

from .budget_helpers import wait_until
from .conftest import rows, wait_for_rows

EXPORT_TIMEOUT = 3.0  # seconds an exporter keeps retrying a refused connection


# --- certificates ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


class CertificateAuthority:
    """A CA of the test's own, writing PEM files into `directory`."""

    def __init__(self, directory: Path, name: str) -> None:
        self.directory = directory
        self.name = name
        self._key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"spanmeter test CA {name}")])
        self._certificate = (
            _builder(subject, subject, self._key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self._key, hashes.SHA256())
        )
        self.cert = directory / f"ca-{name}.pem"
        self.cert.write_bytes(self._certificate.public_bytes(serialization.Encoding.PEM))

    def issue(self, common_name: str, *, server: bool) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        builder = _builder(subject, self._certificate.subject, key.public_key()).add_extension(
            x509.BasicConstraints(ca=False, path_length=None), critical=True
        )
        if server:
            names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
            usage = ExtendedKeyUsageOID.SERVER_AUTH
        else:
            usage = ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        certificate = builder.sign(self._key, hashes.SHA256())
        issued = Issued(
            self.directory / f"{common_name}-{self.name}.pem", self.directory / f"{common_name}-{self.name}.key"
        )
        issued.cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        issued.key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        return issued


def _builder(subject: x509.Name, issuer: x509.Name, public_key: Any) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )


@pytest.fixture(autouse=True)
def _no_ca_bundle_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE win over a session's `verify`, which is where the SDK's
    HTTP exporter puts `certificate_file`: with them set, the exporter would trust the system CAs, not the test's."""
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority(tmp_path, "one")


@pytest.fixture
def other_ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority(tmp_path, "other")


@pytest.fixture(scope="module")
def module_ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority(tmp_path_factory.mktemp("module-ca"), "one")


@pytest.fixture(scope="module")
def tls_collector(start_module_collector: Callable[..., Collector], module_ca: CertificateAuthority) -> Collector:
    """TLS on both receivers with a certificate from `module_ca`, shared by the tests that only connect to it (each
    start costs seconds: the schema's migrations); they find their own rows by span id."""
    return start_module_collector(tls_overrides(server_tls(module_ca.issue("server", server=True))))


# --- collector and clients ---------------------------------------------------------------------


def tls_overrides(tls: dict[str, Any]) -> dict[str, Any]:
    """The same TLS settings on both receivers; short batches so rows are stored at once."""
    return {
        "receivers": {"otlp": {"protocols": {"grpc": {"tls": tls}, "http": {"tls": tls}}}},
        "exporters": {"clickhouse": {"batch": {"max_age": "100ms"}}},
    }


def server_tls(server: Issued, **more: Any) -> dict[str, Any]:
    return {"cert_file": str(server.cert), "key_file": str(server.key), **more}


def span_ids(spans: list[ReadableSpan]) -> list[str]:
    return sorted(format(span.get_span_context().span_id, "016x") for span in spans)


def rows_of(collector: Collector, store: Any, spans: list[ReadableSpan]) -> list[dict[str, Any]]:
    """The rows stored for these spans in the collector's database."""
    database = collector.store_config.database
    return rows(store, database, "span_id IN {ids:Array(String)}", ids=span_ids(spans))


def genai_spans(count: int, transport: str) -> list[ReadableSpan]:
    """Finished GenAI spans from the real SDK, to hand to an exporter directly (so its result can be checked)."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": f"tls-{transport}"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("spanmeter.tests.tls")
    for index in range(count):
        attributes = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 100 + index,
            "gen_ai.usage.output_tokens": 10,
        }
        tracer.start_span("chat gpt-4o", attributes=attributes).end()
    return list(memory.get_finished_spans())


def grpc_exporter(
    collector: Collector,
    trust: Path | None,
    client: Issued | None = None,
    host: str = "127.0.0.1",
    headers: dict[str, str] | None = None,
) -> SpanExporter:
    """The SDK's OTLP/gRPC exporter; `trust` None: plaintext."""
    endpoint = f"{host}:{collector.grpc_port}"
    if trust is None:
        return GrpcSpanExporter(endpoint=endpoint, insecure=True, timeout=EXPORT_TIMEOUT)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=trust.read_bytes(),
        private_key=client.key.read_bytes() if client else None,
        certificate_chain=client.cert.read_bytes() if client else None,
    )
    return GrpcSpanExporter(endpoint=endpoint, credentials=credentials, headers=headers, timeout=EXPORT_TIMEOUT)


def http_exporter(
    collector: Collector, trust: Path | None, client: Issued | None = None, headers: dict[str, str] | None = None
) -> SpanExporter:
    """The SDK's OTLP/HTTP exporter; `trust` None: plaintext http://."""
    if trust is None:
        return HttpSpanExporter(endpoint=f"http://127.0.0.1:{collector.http_port}/v1/traces", timeout=EXPORT_TIMEOUT)
    return HttpSpanExporter(
        endpoint=f"https://127.0.0.1:{collector.http_port}/v1/traces",
        certificate_file=str(trust),
        client_certificate_file=str(client.cert) if client else None,
        client_key_file=str(client.key) if client else None,
        headers=headers,
        timeout=EXPORT_TIMEOUT,
    )


EXPORTERS: dict[str, Callable[..., SpanExporter]] = {"grpc": grpc_exporter, "http": http_exporter}


def export(exporter: SpanExporter, spans: list[ReadableSpan]) -> SpanExportResult:
    try:
        return exporter.export(spans)
    finally:
        exporter.shutdown()


def requests_received(collector: Collector, transport: str) -> float:
    value = collector.metrics.registry.get_sample_value(
        "spanmeter_otlp_requests_total", {"signal": "traces", "transport": transport}
    )
    return value or 0.0


def assert_refused(collector: Collector, transport: str, exporter: SpanExporter, store: Any) -> None:
    before = requests_received(collector, transport)
    spans = genai_spans(2, transport)
    assert export(exporter, spans) == SpanExportResult.FAILURE
    assert requests_received(collector, transport) == before, "the request got past the handshake"
    time.sleep(0.3)  # two batch ages: anything accepted would be stored by now
    assert rows_of(collector, store, spans) == []


def https_get(collector: Collector, path: str, trust: Path, client: Issued | None = None) -> tuple[int, Any]:
    context = ssl.create_default_context(cafile=str(trust))
    if client is not None:
        context.load_cert_chain(str(client.cert), str(client.key))
    url = f"https://127.0.0.1:{collector.http_port}{path}"
    with urllib.request.urlopen(url, timeout=10, context=context) as response:
        return response.status, json.load(response)


# --- TLS ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_sdk_exporters_trusting_the_ca_deliver_over_tls(
    transport: str, tls_collector: Collector, module_ca: CertificateAuthority, store: Any
) -> None:
    collector, before, spans = tls_collector, tls_collector.exporter.stored_rows, genai_spans(3, transport)
    assert export(EXPORTERS[transport](collector, module_ca.cert), spans) == SpanExportResult.SUCCESS
    wait_for_rows(collector, before + 3)
    stored = rows_of(collector, store, spans)
    assert [row["service_name"] for row in stored] == [f"tls-{transport}"] * 3
    assert sorted(row["input_tokens"] for row in stored) == [100, 101, 102]


def test_grpc_verifies_the_server_by_name_as_well(
    tls_collector: Collector, module_ca: CertificateAuthority, store: Any
) -> None:
    """The certificate's DNS name (localhost) verifies too, not only its IP address."""
    collector, before, spans = tls_collector, tls_collector.exporter.stored_rows, genai_spans(1, "grpc")
    exporter = grpc_exporter(collector, module_ca.cert, host="localhost")
    assert export(exporter, spans) == SpanExportResult.SUCCESS
    wait_for_rows(collector, before + 1)
    assert len(rows_of(collector, store, spans)) == 1


def test_the_api_on_the_http_port_is_https_too(tls_collector: Collector, module_ca: CertificateAuthority) -> None:
    collector = tls_collector
    status, health = https_get(collector, "/healthz", module_ca.cert)
    assert status == 200 and health["status"] == "ok"
    with pytest.raises(OSError):  # plaintext to the same port: no answer
        urllib.request.urlopen(f"http://127.0.0.1:{collector.http_port}/healthz", timeout=5)


def test_the_cli_asks_the_https_api_trusting_ssl_cert_file(
    tls_collector: Collector, module_ca: CertificateAuthority, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`report` and `budget status` find the API through api_base_url and read it with get_json."""
    collector = tls_collector
    url = api_base_url(collector.config, collector.http_port)
    assert url == f"https://127.0.0.1:{collector.http_port}"
    monkeypatch.setenv("SSL_CERT_FILE", str(module_ca.cert))
    assert get_json(f"{url}/healthz")["status"] == "ok"


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_a_plaintext_client_is_refused(transport: str, tls_collector: Collector, store: Any) -> None:
    assert_refused(tls_collector, transport, EXPORTERS[transport](tls_collector, None), store)


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_a_client_trusting_another_ca_is_refused(
    transport: str, tls_collector: Collector, other_ca: CertificateAuthority, store: Any
) -> None:
    assert_refused(tls_collector, transport, EXPORTERS[transport](tls_collector, other_ca.cert), store)


def test_min_version_1_3_refuses_a_tls_1_2_client_on_http(
    start_collector: Callable[..., Collector], ca: CertificateAuthority
) -> None:
    server = ca.issue("server", server=True)
    collector = start_collector(
        {"receivers": {"otlp": {"protocols": {"http": {"tls": server_tls(server, min_version="1.3")}}}}}
    )
    old = ssl.create_default_context(cafile=str(ca.cert))
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(OSError):
        urllib.request.urlopen(f"https://127.0.0.1:{collector.http_port}/healthz", timeout=5, context=old)
    status, _ = https_get(collector, "/healthz", ca.cert)  # a TLS 1.3 client is served
    assert status == 200


# --- mTLS --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mtls_collector(start_module_collector: Callable[..., Collector], module_ca: CertificateAuthority) -> Collector:
    """Clients must present a certificate from `module_ca` (the CA that signs the server's here, as is common);
    shared like `tls_collector`."""
    server = module_ca.issue("mtls-server", server=True)
    return start_module_collector(tls_overrides(server_tls(server, client_ca_file=str(module_ca.cert))))


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_mtls_a_client_certificate_from_the_client_ca_delivers(
    transport: str, mtls_collector: Collector, module_ca: CertificateAuthority, store: Any
) -> None:
    client, before, spans = (
        module_ca.issue("app", server=False),
        mtls_collector.exporter.stored_rows,
        genai_spans(2, transport),
    )
    exporter = EXPORTERS[transport](mtls_collector, module_ca.cert, client)
    assert export(exporter, spans) == SpanExportResult.SUCCESS
    wait_for_rows(mtls_collector, before + 2)
    assert len(rows_of(mtls_collector, store, spans)) == 2
    status, _ = https_get(mtls_collector, "/healthz", module_ca.cert, client)
    assert status == 200


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_mtls_a_client_without_a_certificate_is_refused(
    transport: str, mtls_collector: Collector, module_ca: CertificateAuthority, store: Any
) -> None:
    assert_refused(mtls_collector, transport, EXPORTERS[transport](mtls_collector, module_ca.cert), store)
    with pytest.raises(OSError):
        https_get(mtls_collector, "/healthz", module_ca.cert)


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_mtls_a_client_certificate_from_another_ca_is_refused(
    transport: str,
    mtls_collector: Collector,
    module_ca: CertificateAuthority,
    other_ca: CertificateAuthority,
    store: Any,
) -> None:
    stranger = other_ca.issue("app", server=False)
    exporter = EXPORTERS[transport](mtls_collector, module_ca.cert, stranger)
    assert_refused(mtls_collector, transport, exporter, store)


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_keys_are_checked_inside_mtls(
    transport: str, start_collector: Callable[..., Collector], ca: CertificateAuthority, store: Any, database: str
) -> None:
    """TLS and project keys stack: a client certificate gets a sender through the handshake, a key into a project."""
    key = "tls-test-bootstrap-admin-key-0123456789"
    server, client = ca.issue("server", server=True), ca.issue("app", server=False)
    guarded = {"auth": {"authenticator": "spanmeter_keys"}, "tls": server_tls(server, client_ca_file=str(ca.cert))}
    collector = start_collector(
        {
            "extensions": {"spanmeter_keys": {"bootstrap_key": key}},
            "service": {"extensions": ["spanmeter_keys"]},
            "receivers": {"otlp": {"protocols": {"grpc": guarded, "http": guarded}}},
            "exporters": {"clickhouse": {"batch": {"max_age": "100ms"}}},
        }
    )
    with_key = EXPORTERS[transport](collector, ca.cert, client, headers={"authorization": f"Bearer {key}"})
    assert export(with_key, genai_spans(2, transport)) == SpanExportResult.SUCCESS
    wait_for_rows(collector, 2)
    assert export(EXPORTERS[transport](collector, ca.cert, client), genai_spans(1, transport)) == (
        SpanExportResult.FAILURE
    )
    # Past the handshake, refused for want of a key (once: a missing key is not retried).
    refused = collector.metrics.registry.get_sample_value("spanmeter_auth_failures_total", {"reason": "missing"})
    assert refused == 1
    time.sleep(0.3)
    assert len(rows(store, database)) == 2


# --- reload ------------------------------------------------------------------------------------


def replace(source: Path, target: Path) -> None:
    """As renewal tools do: write beside, then rename over the file in use."""
    temporary = target.with_suffix(".new")
    temporary.write_bytes(source.read_bytes())
    os.replace(temporary, target)


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_renewed_certificates_are_picked_up_after_reload_interval(
    transport: str,
    start_collector: Callable[..., Collector],
    ca: CertificateAuthority,
    other_ca: CertificateAuthority,
    tmp_path: Path,
    store: Any,
    database: str,
) -> None:
    live = Issued(tmp_path / "live.pem", tmp_path / "live.key")
    client_ca = tmp_path / "clients.pem"
    first_server, first_client = ca.issue("server", server=True), ca.issue("app", server=False)
    replace(first_server.cert, live.cert)
    replace(first_server.key, live.key)
    replace(ca.cert, client_ca)
    interval = 0.3
    collector = start_collector(
        tls_overrides(server_tls(live, client_ca_file=str(client_ca), reload_interval=f"{int(interval * 1000)}ms"))
    )
    exporter = EXPORTERS[transport]
    assert export(exporter(collector, ca.cert, first_client), genai_spans(1, transport)) == SpanExportResult.SUCCESS
    wait_for_rows(collector, 1)

    # Renewal: a server certificate and client CA from a new CA.
    new_server, new_client = other_ca.issue("server", server=True), other_ca.issue("app", server=False)
    replace(new_server.cert, live.cert)
    replace(new_server.key, live.key)
    replace(other_ca.cert, client_ca)

    spans = genai_spans(2, transport)
    wait_until(  # once reload_interval has passed, a new connection gets the new files
        lambda: export(exporter(collector, other_ca.cert, new_client), spans) == SpanExportResult.SUCCESS,
        timeout=30,
        what="the renewed certificates served",
    )
    wait_for_rows(collector, 3)
    assert len(rows(store, database)) == 3
    # The old CA is trusted no more, neither as the server's issuer nor as the clients'.
    assert export(exporter(collector, ca.cert, first_client), genai_spans(1, transport)) == SpanExportResult.FAILURE
    assert (
        export(exporter(collector, other_ca.cert, first_client), genai_spans(1, transport)) == SpanExportResult.FAILURE
    )
    time.sleep(0.3)
    assert len(rows(store, database)) == 3


def _served(collector: Collector, trust: Path) -> bool:
    """Whether the API answers over TLS trusting `trust` (a handshake refused is a no, not an error)."""
    try:
        return https_get(collector, "/healthz", trust)[0] == 200
    except OSError:
        return False


def test_a_half_renewed_pair_keeps_the_previous_certificate(
    start_collector: Callable[..., Collector],
    ca: CertificateAuthority,
    other_ca: CertificateAuthority,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A renewal caught between writing the certificate and the key: the old pair stays in use, and the new
    one is taken once the key arrives."""
    live = Issued(tmp_path / "live.pem", tmp_path / "live.key")
    first, second = ca.issue("server", server=True), other_ca.issue("server", server=True)
    replace(first.cert, live.cert)
    replace(first.key, live.key)
    collector = start_collector(
        {"receivers": {"otlp": {"protocols": {"http": {"tls": server_tls(live, reload_interval="200ms")}}}}}
    )
    replace(second.cert, live.cert)  # the key is still the old one
    wait_until(
        lambda: (
            https_get(collector, "/healthz", ca.cert)[0] == 200
            and any("not loaded" in record.getMessage() for record in caplog.records)
        ),
        what="the half-renewed pair refused, the old one still served",
    )
    replace(second.key, live.key)
    wait_until(lambda: _served(collector, other_ca.cert), what="the completed pair served")


# --- configuration -----------------------------------------------------------------------------


def test_config_errors_name_the_key_path_and_the_file(
    make_config: Callable[..., Config], ca: CertificateAuthority, other_ca: CertificateAuthority, tmp_path: Path
) -> None:
    server, stranger = ca.issue("server", server=True), other_ca.issue("server", server=True)
    missing = tmp_path / "nowhere.pem"

    def error(tls: dict[str, Any], protocol: str = "http") -> str:
        with pytest.raises(ConfigError) as raised:
            make_config({"receivers": {"otlp": {"protocols": {protocol: {"tls": tls}}}}})
        return str(raised.value)

    message = error({"cert_file": str(missing), "key_file": str(server.key)})
    assert "receivers.otlp.protocols.http.tls.cert_file" in message and str(missing) in message
    message = error(server_tls(server, client_ca_file=str(missing)), "grpc")
    assert "receivers.otlp.protocols.grpc.tls.client_ca_file" in message and str(missing) in message
    message = error({"cert_file": str(server.cert), "key_file": str(stranger.key)})
    assert "receivers.otlp.protocols.http.tls.key_file" in message and "not the private key" in message
    message = error({"cert_file": str(server.key), "key_file": str(server.key)})
    assert "tls.cert_file" in message and "no PEM certificate" in message
    message = error(server_tls(server, min_version="1.3"), "grpc")
    assert "receivers.otlp.protocols.grpc.tls.min_version" in message
    message = error(server_tls(server, min_version="1.1"))
    assert "receivers.otlp.protocols.http.tls.min_version" in message
    assert "unknown key" in error(server_tls(server, ca_pem="x"))
    assert "tls.key_file: required key is missing" in error({"cert_file": str(server.cert)})


def test_config_errors_never_print_key_material(make_config: Callable[..., Config], ca: CertificateAuthority) -> None:
    """Key text pasted where a path belongs is not echoed back."""
    server = ca.issue("server", server=True)
    pem = server.key.read_text()
    with pytest.raises(ConfigError) as raised:
        make_config(
            {"receivers": {"otlp": {"protocols": {"http": {"tls": {"cert_file": str(server.cert), "key_file": pem}}}}}}
        )
    message = str(raised.value)
    assert "receivers.otlp.protocols.http.tls.key_file" in message
    assert "PRIVATE KEY" not in message and pem.splitlines()[1] not in message
