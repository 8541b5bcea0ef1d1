"""End-to-end ingest throughput of the spanmeter collector, beside the ceiling measured in the same run.

Starts `spanmeter serve` as a child process (its own embedded store, ports the OS picks), sends N GenAI
spans through the real OTLP exporters (gRPC, then HTTP/protobuf) from sender threads in this process,
and waits until the collector reports all of them stored. In the same run it times Python's protobuf
(upb) decoding the very same request bodies: the rate no Python receiver can beat. Prints medians over
rounds and the ratio, since these machines are shared and noisy.

    python bench/ingest.py [--spans 100000] [--batch 512] [--senders 4] [--rounds 3] [--baseline REV]
        [--end-to-end grpc,http] [--raw grpc,http]

With `--baseline REV` the collector of that git revision (a worktree) runs beside this one, round by round,
and the ratios are printed: a change's cost measured in one run.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml
from minimal_server import MinimalServer
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

REPO = Path(__file__).resolve().parents[1]
RUN_CLI = "import sys; from spanmeter.cli import main; sys.exit(main())"
MODELS = (
    ("openai", "gpt-4o-2024-08-06"),
    ("openai", "gpt-4o-mini"),
    ("anthropic", "claude-sonnet-4-5"),
    ("gcp.gemini", "gemini-2.5-flash"),
    ("openai", "o3-mini"),
)


def make_spans(count: int) -> list[ReadableSpan]:
    """GenAI spans shaped like an instrumentation's: ~20 attributes, tags, usage with cache and reasoning."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": "bench", "deployment.environment.name": "prod"})
    )
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("bench")
    for index in range(count):
        system, model = MODELS[index % len(MODELS)]
        tracer.start_span(
            f"chat {model}",
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": system,
                "gen_ai.request.model": model,
                "gen_ai.response.model": model,
                "gen_ai.response.id": f"resp-{index}",
                "gen_ai.response.finish_reasons": ["stop"],
                "gen_ai.request.temperature": 0.2,
                "gen_ai.request.max_tokens": 1024,
                "gen_ai.usage.input_tokens": 1200 + index % 97,
                "gen_ai.usage.output_tokens": 300 + index % 13,
                "gen_ai.usage.cache_read.input_tokens": 512,
                "gen_ai.usage.reasoning.output_tokens": 100 if model == "o3-mini" else 0,
                "server.address": "api.example.com",
                "server.port": 443,
                "user.id": f"u-{index % 500}",
                "session.id": f"s-{index % 2000}",
                "spanmeter.tag.feature": ("chat", "search", "summarize")[index % 3],
                "spanmeter.tag.team": "growth",
            },
        ).end()
    provider.shutdown()
    return list(memory.get_finished_spans())


def chunks(spans: Sequence[ReadableSpan], size: int) -> list[Sequence[ReadableSpan]]:
    return [spans[i : i + size] for i in range(0, len(spans), size)]


RAW_NAMES = {"grpc": "gRPC", "http": "HTTP/protobuf"}
RAW_SUFFIX = {"grpc": "", "http": " http"}
"""Pre-encoded sends (`--raw`): their names in the report, and in the results' keys."""

THROUGHPUT: dict[str, Any] = {"exporters": {"clickhouse": {"batch": {"max_age": "1s"}}}}
"""Set in every collector a throughput run measures (this and the baseline): under load segments fill to
`batch.max_rows` first, but a run's last one, partly full, is sealed by age, and the shipped 5 s would add up to
5 s of waiting to the few seconds a run stores in (stored 0.7-0.85x in such a run against a 1 s baseline)."""


class Collector:
    """`spanmeter serve` in a child process, as a user runs it; from `source` (a checkout), this one by default."""

    def __init__(
        self,
        data: Path,
        workers: int = 0,
        source: Path = REPO,
        overrides: dict[str, Any] | None = None,
        environment: dict[str, str] | None = None,
    ) -> None:
        config = Path(data) / "pipelines.yaml"
        raw = yaml.safe_load((source / "pipelines.yaml").read_text())
        raw["service"]["workers"] = workers
        raw = merged(raw, overrides or {})
        config.write_text(yaml.safe_dump(raw))
        env = {
            **os.environ,
            "SPANMETER_DATA": str(Path(data) / "store"),
            "SPANMETER_WAL": str(Path(data) / "wal"),
            "SPANMETER_SPOOL": str(Path(data) / "spool"),  # what versions before the WAL used instead
            "SPANMETER_GRPC_ENDPOINT": "127.0.0.1:0",
            "SPANMETER_HTTP_ENDPOINT": "127.0.0.1:0",
            **(environment or {}),
        }
        if source != REPO:
            env["PYTHONPATH"] = str(package_of(source, Path(data) / "lib"))
        self.process = subprocess.Popen(
            [sys.executable, "-c", RUN_CLI, "serve", "--config", str(config)],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.grpc_port = self.http_port = 0
        self.api_scheme, self.api_context = "http", None  # https and its CA when the API speaks TLS
        assert self.process.stderr is not None
        for line in self.process.stderr:
            if match := re.search(r"OTLP/gRPC receiver listening on [\d.]+:(\d+)", line):
                self.grpc_port = int(match.group(1))
            if match := re.search(r"OTLP/HTTP receiver listening on [\d.]+:(\d+)", line):
                self.http_port = int(match.group(1))
                break
        if not self.http_port:
            raise RuntimeError("collector did not start")
        threading.Thread(target=self.process.stderr.read, daemon=True).start()  # keep the pipe drained

    def counter(self, name: str) -> int:
        """A counter of the collector's /metrics, summed over its labels (0 before its first count)."""
        url = f"{self.api_scheme}://localhost:{self.http_port}/metrics"
        with urllib.request.urlopen(url, timeout=10, context=self.api_context) as response:
            text = response.read().decode()
        found = re.findall(rf"^{name}_total(?:{{[^}}]*}})? ([\d.e+]+)$", text, re.MULTILINE)
        return sum(int(float(value)) for value in found)

    def stored(self) -> int:
        return self.counter("spanmeter_spans_stored")

    def wait_stored(self, count: int) -> None:
        # Not more often: each look renders every metric on the collector's event loop, and at 10 ms that took a
        # quarter of the receiving thread's time (py-spy) from the run it measures.
        while self.stored() < count:
            time.sleep(0.1)

    def peak_memory(self) -> int:
        """The collector process's peak resident memory (VmHWM), bytes."""
        return self.memory("VmHWM")

    def memory(self, field: str) -> int:
        """A memory figure of the collector process's /proc status (VmHWM, VmRSS), bytes."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        match = re.search(rf"^{field}:\s+(\d+) kB", status, re.MULTILINE)
        return int(match.group(1)) * 1024 if match else 0

    def cpu_seconds(self) -> tuple[float, float]:
        """CPU time the collector process has used, all its threads: (user + system, system). The system (kernel)
        share shows what touching new memory and writing new files costs: on the virtual machines here, where
        every new page faults in at ~7 ms a MiB, it was half of the collector's CPU (bench/README.md)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        user, system = (int(fields[index]) / os.sysconf("SC_CLK_TCK") for index in (11, 12))
        return user + system, system

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=120)


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` laid over `base`, mapping by mapping."""
    result = dict(base)
    for key, value in override.items():
        result[key] = (
            merged(result[key], value) if isinstance(value, dict) and isinstance(result.get(key), dict) else value
        )
    return result


def dotted(key: str, value: Any) -> dict[str, Any]:
    """`a.b.c`, v as {"a": {"b": {"c": v}}}."""
    for part in reversed(key.split(".")):
        value = {part: value}
    return value


def checkout(revision: str, into: Path) -> Path:
    """A worktree of this repository at `revision`: the version to compare against, in the same run."""
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(into), revision], check=True)
    return into


def remove_checkout(path: Path) -> None:
    subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)], check=False)


def package_of(source: Path, lib: Path) -> Path:
    """The `spanmeter` package of a checkout laid out as pyproject.toml installs it (collector/ is the
    package, clickhouse/schema/ its `schema` subpackage, its native modules built), for PYTHONPATH; its
    dependencies are this venv's."""
    package = lib / "spanmeter"
    if not package.exists():
        shutil.copytree(source / "collector", package, ignore=shutil.ignore_patterns("*.so"))
        shutil.copytree(source / "clickhouse" / "schema", package / "schema", dirs_exist_ok=True)
        build_extensions(source, lib)
    return lib


def build_extensions(source: Path, lib: Path) -> None:
    """The checkout's native modules (its pyproject's `ext-modules`, their flags) built into `lib` as `pip install`
    builds them: without them a revision's engine reads with the Protobuf format, and a comparison with it
    measures that. A module that does not build is left out, as an optional one is at install."""
    from setuptools import Distribution, Extension

    config = tomllib.loads((source / "pyproject.toml").read_text())
    for module in config["tool"]["setuptools"].get("ext-modules", []):
        extension = Extension(
            module["name"],
            [str(source / path) for path in module["sources"]],
            extra_compile_args=module.get("extra-compile-args", []),
        )
        command = Distribution({"ext_modules": [extension]}).get_command_obj("build_ext")
        command.build_lib, command.build_temp = str(lib), str(lib / "build")
        try:
            command.ensure_finalized()
            command.run()
        except Exception as exc:  # setuptools raises several kinds; the module is optional
            print(f"{module['name']} not built for {source}: {exc}", file=sys.stderr)


class Versions:
    """This checkout's collector and, with `baseline`, that git revision's (a worktree) beside it, each on a store
    of its own in `workdir`: a change's cost measured in one run."""

    def __init__(
        self,
        workdir: Path,
        baseline: str | None,
        workers: int = 0,
        overrides: dict[str, Any] | None = None,
        common: dict[str, Any] | None = None,
        environment: dict[str, str] | None = None,
    ) -> None:
        """`overrides`: pipelines.yaml keys set in this checkout's collector (not the baseline's); `common`: keys
        set in both, under `overrides`; `environment`: variables set in this checkout's collector's process."""
        self._workdir, self._baseline, self._workers = workdir, baseline, workers
        self._overrides, self._common, self._environment = overrides, common or {}, environment
        self.collectors: dict[str, Collector] = {}

    def start(self) -> dict[str, Collector]:
        sources = {"this": REPO}
        if self._baseline:
            sources = {self._baseline: checkout(self._baseline, self._workdir / "baseline"), **sources}
        for label, source in sources.items():
            (self._workdir / label).mkdir()
            overrides = merged(self._common, self._overrides or {}) if source == REPO else self._common
            environment = self._environment if source == REPO else None
            self.collectors[label] = Collector(self._workdir / label, self._workers, source, overrides, environment)
        return self.collectors

    def stop(self) -> None:
        for collector in self.collectors.values():
            collector.stop()
        if self._baseline:
            remove_checkout(self._workdir / "baseline")


def in_threads(target: Callable[[Any], None], parts: Sequence[Any]) -> None:
    """Run `target(part)` for each part, each in its own thread, and wait for all."""
    threads = [threading.Thread(target=target, args=(part,)) for part in parts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def send(batches: list[Sequence[ReadableSpan]], make_exporter: Callable[[], SpanExporter], senders: int) -> None:
    """Each sender thread owns one real OTLP exporter, as parallel app workers would."""
    errors: list[str] = []

    def worker(mine: list[Sequence[ReadableSpan]]) -> None:
        exporter = make_exporter()
        for batch in mine:
            if exporter.export(batch) is not SpanExportResult.SUCCESS:
                errors.append("export failed")
        exporter.shutdown()

    in_threads(worker, [batches[i::senders] for i in range(senders)])
    if errors:
        raise RuntimeError(f"{len(errors)} exports failed")


def end_to_end(collector: Collector, batches: list[Sequence[ReadableSpan]], transport: str, senders: int) -> float:
    total = sum(len(b) for b in batches)
    before = collector.stored()
    if transport == "grpc":
        make: Callable[[], SpanExporter] = lambda: GrpcSpanExporter(  # noqa: E731
            endpoint=f"127.0.0.1:{collector.grpc_port}", insecure=True
        )
    else:
        make = lambda: HttpSpanExporter(endpoint=f"http://127.0.0.1:{collector.http_port}/v1/traces")  # noqa: E731
    started = time.perf_counter()
    send(batches, make, senders)
    collector.wait_stored(before + total)
    return total / (time.perf_counter() - started)


def send_raw(port: int, bodies: list[bytes], senders: int) -> None:
    """Already encoded requests over gRPC, each sender thread its own channel, as separate app processes would."""
    import grpc

    path = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

    def worker(mine: list[bytes]) -> None:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            export = channel.unary_unary(path)
            for body in mine:
                export_until_accepted(export, body)

    in_threads(worker, [bodies[i::senders] for i in range(senders)])


def export_until_accepted(export: Callable[..., Any], body: bytes) -> int:
    """One gRPC export; a full WAL answers UNAVAILABLE, retried after a backoff as the SDK's exporters do.
    Returns the number of retries."""
    import grpc

    backoff, retries = 0.05, 0
    while True:
        try:
            export(body, timeout=60)
            return retries
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE:  # type: ignore[attr-defined]
                raise
            retries += 1
            time.sleep(backoff)
            backoff = min(backoff * 2, 1.0)


def send_raw_http(port: int, bodies: list[bytes], senders: int) -> None:
    """Already encoded requests POSTed as OTLP/HTTP protobuf, each sender thread on a keep-alive connection of its
    own; a 503 (the WAL full) is retried after a backoff, as the SDK's exporters do."""
    import http.client

    def worker(mine: list[bytes]) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            for body in mine:
                backoff = 0.05
                while True:
                    connection.request("POST", "/v1/traces", body, {"Content-Type": "application/x-protobuf"})
                    response = connection.getresponse()
                    response.read()
                    if response.status == 200:
                        break
                    if response.status != 503:
                        raise RuntimeError(f"the collector answered HTTP {response.status}")
                    time.sleep(backoff)
                    backoff = min(backoff * 2, 1.0)
        finally:
            connection.close()

    in_threads(worker, [bodies[i::senders] for i in range(senders)])


def collector_only(
    collector: Collector, bodies: list[bytes], spans: int, senders: int, transport: str = "grpc"
) -> tuple[float, float, float, float]:
    """The same requests, already encoded, sent over gRPC by raw channels (or OTLP/HTTP on keep-alive
    connections): the collector's own rate, without the SDK's encoding competing for the 2 cores. (spans/s until
    every request is answered, i.e. durable in the WAL; spans/s until every span is in the store; the collector's
    CPU µs a span over that time, which other work on a shared machine changes far less than the rates; the
    kernel's share of that CPU.)"""
    before = collector.stored()
    cpu, system = collector.cpu_seconds()
    started = time.perf_counter()
    if transport == "grpc":
        send_raw(collector.grpc_port, bodies, senders)
    else:
        send_raw_http(collector.http_port, bodies, senders)
    answered = time.perf_counter() - started
    collector.wait_stored(before + spans)
    elapsed = time.perf_counter() - started
    cpu_after, system_after = collector.cpu_seconds()
    used = cpu_after - cpu
    return spans / answered, spans / elapsed, used / spans * 1e6, (system_after - system) / used if used else 0.0


def minimal_rate(server: MinimalServer, bodies: list[bytes], spans: int, senders: int) -> float:
    started = time.perf_counter()
    send_raw(server.port, bodies, senders)
    return spans / (time.perf_counter() - started)


def decode_ceiling(bodies: list[bytes], spans: int) -> float:
    started = time.perf_counter()
    for body in bodies:
        ExportTraceServiceRequest.FromString(body)
    return spans / (time.perf_counter() - started)


def client_encode_rate(batches: list[Sequence[ReadableSpan]], spans: int) -> float:
    """What the sender side spends: the SDK encoding spans into requests (in this process, not the collector's)."""
    started = time.perf_counter()
    for batch in batches:
        encode_spans(batch).SerializeToString()
    return spans / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spans", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=512, help="spans per export request (the SDK's default)")
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=0, help="the collector's service.workers (default 0)")
    parser.add_argument(
        "--baseline", metavar="REV", help="also run the collector of this git revision, round by round beside this one"
    )
    parser.add_argument(
        "--reader", choices=("engine", "python"), help="this collector's processors.genai.reader (default: its own)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a pipelines.yaml key of this checkout's collector, dotted (exporters.clickhouse.batch.max_rows=100000)",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable of this checkout's collector's process (GLIBC_TUNABLES=...)",
    )
    parser.add_argument(
        "--end-to-end",
        default="grpc,http",
        help="the SDK exporters to run end to end, comma-separated; empty: the pre-encoded collector-alone run only",
    )
    parser.add_argument(
        "--raw",
        default="grpc",
        help="how the pre-encoded requests are sent to the collector alone, comma-separated: grpc, http",
    )
    args = parser.parse_args()
    transports = [name for name in args.end_to_end.split(",") if name]
    raw = [name for name in args.raw.split(",") if name]
    if not raw or set(raw) - set(RAW_NAMES):
        parser.error("--raw takes grpc, http or both")

    print(f"building {args.spans} spans...", file=sys.stderr)
    spans = make_spans(args.spans)
    batches = chunks(spans, args.batch)
    bodies = [encode_spans(batch).SerializeToString() for batch in batches]
    print(
        f"{len(bodies)} requests of {args.batch} spans, {sum(map(len, bodies)) / len(spans):.0f} bytes/span",
        file=sys.stderr,
    )

    workdir = Path(tempfile.mkdtemp(prefix="spanmeter-bench-"))
    overrides: dict[str, Any] = {"processors": {"genai": {"reader": args.reader}}} if args.reader else {}
    for setting in args.set:
        key, _, value = setting.partition("=")
        overrides = merged(overrides, dotted(key, yaml.safe_load(value)))
    environment = {name: value for name, _, value in (setting.partition("=") for setting in args.env)}
    versions = Versions(workdir, args.baseline, args.workers, overrides or None, THROUGHPUT, environment)
    results: dict[str, list[float]] = {"decode": [], "encode": [], "minimal": []}
    minimal = MinimalServer()
    try:
        collectors = versions.start()
        for round_index in range(args.rounds):
            # The order alternates: the first collector to run after the setup (spans built, the ceilings
            # measured) touches memory freed moments before, which these VMs hand back to the host.
            order = list(collectors.items())
            for label, collector in order[::-1] if round_index % 2 else order:
                # New spans for every send: the collector recognises resent spans and does not store them twice.
                for transport in transports:
                    fresh = chunks(make_spans(args.spans), args.batch)
                    rate = end_to_end(collector, fresh, transport, args.senders)
                    results.setdefault(f"{label} {transport}", []).append(rate)
                    print(
                        f"round {round_index + 1}: {label} {transport:4s} end to end {rate:>10,.0f} spans/s",
                        file=sys.stderr,
                    )
                for kind in raw:
                    encoded = [
                        encode_spans(batch).SerializeToString() for batch in chunks(make_spans(args.spans), args.batch)
                    ]
                    answered, rate, cpu, kernel = collector_only(collector, encoded, args.spans, args.senders, kind)
                    suffix = RAW_SUFFIX[kind]
                    results.setdefault(f"{label} raw{suffix}", []).append(rate)
                    results.setdefault(f"{label} answered{suffix}", []).append(answered)
                    results.setdefault(f"{label} cpu{suffix}", []).append(cpu)
                    results.setdefault(f"{label} kernel{suffix}", []).append(kernel)
                    print(
                        f"round {round_index + 1}: {label} pre-encoded {RAW_NAMES[kind]} {rate:>10,.0f} spans/s "
                        f"stored, {answered:>10,.0f} answered, {cpu:.1f} µs CPU a span ({kernel:.0%} in the kernel)",
                        file=sys.stderr,
                    )
            results["minimal"].append(minimal_rate(minimal, bodies, len(spans), args.senders))
            results["decode"].append(decode_ceiling(bodies, len(spans)))
            results["encode"].append(client_encode_rate(batches, len(spans)))
        memory = {label: collector.peak_memory() for label, collector in collectors.items()}
    finally:
        versions.stop()
        minimal.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    median = {name: statistics.median(values) for name, values in results.items()}
    print(
        f"\nspanmeter ingest, {args.spans} GenAI spans x {args.rounds} rounds, {os.cpu_count()} cores, "
        f"service.workers {args.workers} (medians)"
    )
    print(f"  protobuf decode alone (the ceiling)  {median['decode']:>10,.0f} spans/s")
    share = median["minimal"] / median["decode"]
    print(f"  minimal grpc.aio server (parse, ack) {median['minimal']:>10,.0f} spans/s   {share:6.1%} of ceiling")
    for label in versions.collectors:
        prefix = f"[{label}] " if args.baseline else ""
        for transport in transports:
            ratio = median[f"{label} {transport}"] / median["decode"]
            rate = median[f"{label} {transport}"]
            print(f"  {prefix}end to end, OTLP/{transport:4s}     {rate:>10,.0f} spans/s   {ratio:6.1%} of ceiling")
        for kind in raw:
            suffix = RAW_SUFFIX[kind]
            rate = median[f"{label} raw{suffix}"]
            ratio = rate / median["decode"]
            print(
                f"  {prefix}collector alone, pre-encoded {RAW_NAMES[kind]:<13s} {rate:>10,.0f} spans/s   "
                f"{ratio:6.1%} of ceiling"
            )
            answered = median[f"{label} answered{suffix}"]
            print(
                f"  {prefix}  of which answered (durable in the WAL) {answered:>10,.0f} spans/s   "
                f"{answered / median['minimal']:6.1%} of the minimal server"
            )
            cpu = median[f"{label} cpu{suffix}"]
            print(
                f"  {prefix}  collector CPU a span stored          {cpu:>10.1f} µs      "
                f"(2 cores at most {2e6 / cpu:,.0f} spans/s; {median[f'{label} kernel{suffix}']:.0%} in the kernel)"
            )
        print(f"  {prefix}collector peak memory (VmHWM)     {memory[label] / 2**20:>10,.0f} MiB")
    if args.baseline:
        for kind in (*transports, *(f"{name}{RAW_SUFFIX[k]}" for k in raw for name in ("raw", "cpu"))):
            ratio = median[f"this {kind}"] / median[f"{args.baseline} {kind}"]
            print(f"  this / {args.baseline}, {kind:4s}: {ratio:.2f}")
    print(f"  sender-side SDK encoding (client)    {median['encode']:>10,.0f} spans/s")
    print("  target                                  100,000 spans/s end to end on 2 cores")


if __name__ == "__main__":
    main()
