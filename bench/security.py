"""What project keys and TLS cost per request, beside the same collector with both off, in one run.

Starts `spanmeter serve` three times (see ingest.py): plaintext without keys (the quick start), with project
keys on both receivers, and with keys over TLS (a CA and server certificate made here with `cryptography`).
Each is offered the same open-loop load over OTLP/gRPC (requests of `--batch` spans at `--rate` spans/s from
`--senders` threads, each sender on one channel, as SDK exporters are), and reports the acknowledgement p50 and
p99 and the collector process's CPU time per request (from /proc), with the ratios to the plain run.

    python bench/security.py [--rate 10000] [--seconds 10] [--batch 100] [--senders 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import ssl
import statistics
import sys
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from ingest import REPO, Collector
from latency import offer

sys.path.insert(0, str(REPO))
from tests.collector.test_tls import CertificateAuthority  # the tests' own CA maker

BOOTSTRAP = "bench-bootstrap-admin-key-0123456789abcdef"
KEYS = {"auth": {"authenticator": "spanmeter_keys"}}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def mode_overrides(mode: str, pki: dict[str, Path]) -> dict[str, Any]:
    if mode == "plain":
        return {}
    protocols: dict[str, Any] = {"grpc": dict(KEYS), "http": dict(KEYS)}
    if mode == "keys+tls":
        tls = {"cert_file": str(pki["cert"]), "key_file": str(pki["key"])}
        protocols = {name: {**body, "tls": tls} for name, body in protocols.items()}
    return {
        "extensions": {"spanmeter_keys": {"bootstrap_key": BOOTSTRAP}},
        "receivers": {"otlp": {"protocols": protocols}},
        "service": {"extensions": ["spanmeter_keys"]},
    }


def ingest_key(collector: Collector, mode: str, ca: Path) -> str:
    """An ingest key made through the collector's API with the bootstrap key, as an operator would."""
    scheme = "https" if mode == "keys+tls" else "http"
    request = urllib.request.Request(
        f"{scheme}://localhost:{collector.http_port}/v1/keys",
        data=json.dumps({"project": "bench", "name": "load", "role": "ingest"}).encode(),
        headers={"Authorization": f"Bearer {BOOTSTRAP}", "Content-Type": "application/json"},
    )
    context = ssl.create_default_context(cafile=str(ca)) if scheme == "https" else None
    with urllib.request.urlopen(request, timeout=30, context=context) as response:
        return str(json.load(response)["key"])


def channel_factory(collector: Collector, mode: str, ca: Path) -> Callable[[], grpc.Channel]:
    if mode != "keys+tls":
        return lambda: grpc.insecure_channel(f"127.0.0.1:{collector.grpc_port}")
    credentials = grpc.ssl_channel_credentials(root_certificates=ca.read_bytes())
    return lambda: grpc.secure_channel(f"localhost:{collector.grpc_port}", credentials)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="spanmeter-security-"))
    authority = CertificateAuthority(workdir, "bench")
    server = authority.issue("server", server=True)
    pki = {"cert": server.cert, "key": server.key}
    modes = ("plain", "keys", "keys+tls")
    collectors: dict[str, tuple[Collector, Callable[[], grpc.Channel], tuple[tuple[str, str], ...]]] = {}
    results: dict[str, dict[str, list[float]]] = {mode: {"p50": [], "p99": [], "cpu_us": []} for mode in modes}
    try:
        for mode in modes:
            (workdir / mode).mkdir()
            collector = Collector(workdir / mode, overrides=mode_overrides(mode, pki))
            if mode == "keys+tls":
                collector.api_scheme = "https"
                collector.api_context = ssl.create_default_context(cafile=str(authority.cert))
            metadata = (
                () if mode == "plain" else (("authorization", f"Bearer {ingest_key(collector, mode, authority.cert)}"),)
            )
            channel = channel_factory(collector, mode, authority.cert)
            offer(collector, 1000, 2, args.batch, args.senders, channel, metadata)  # warm-up
            collectors[mode] = (collector, channel, metadata)
        for round_index in range(args.rounds):
            for mode, (collector, channel, metadata) in collectors.items():
                before = cpu_seconds(collector.process.pid)
                latencies, stored = offer(
                    collector, args.rate, args.seconds, args.batch, args.senders, channel, metadata
                )
                cpu = cpu_seconds(collector.process.pid) - before
                latencies.sort()
                p50 = statistics.median(latencies) * 1000
                p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
                per_request = cpu / len(latencies) * 1e6
                results[mode]["p50"].append(p50)
                results[mode]["p99"].append(p99)
                results[mode]["cpu_us"].append(per_request)
                print(
                    f"round {round_index + 1} {mode:8s}: stored {stored:>8,.0f}/s, ack p50 {p50:6.1f} ms, "
                    f"p99 {p99:6.1f} ms, collector CPU {per_request:7.0f} us/request",
                    file=sys.stderr,
                )
    finally:
        for collector, _, _ in collectors.values():
            collector.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    print(
        f"\nkeys and TLS, OTLP/gRPC requests of {args.batch} spans at {args.rate:,} spans/s, {args.seconds:g} s x "
        f"{args.rounds} rounds, {os.cpu_count()} cores (medians; ratios to plain)"
    )
    print("  mode        ack p50 ms   ack p99 ms   collector CPU us/request")
    plain = {name: statistics.median(values) for name, values in results["plain"].items()}
    for mode in modes:
        median = {name: statistics.median(values) for name, values in results[mode].items()}
        print(
            f"  {mode:10s} {median['p50']:9.1f} ({median['p50'] / plain['p50']:.2f}x) "
            f"{median['p99']:9.1f} ({median['p99'] / plain['p99']:.2f}x) "
            f"{median['cpu_us']:9.0f} ({median['cpu_us'] / plain['cpu_us']:.2f}x)"
        )


if __name__ == "__main__":
    main()
