"""Pricing per row (the `pricing` processor) against pricing on columns (`ColumnarPricer`), same rows, same run.

    python bench/pricing.py [--rounds 7]

Rows are a realistic mix of 5 models (OpenAI, Anthropic with cache, Gemini with its long-context tier,
DeepSeek with its time-of-day prices, a small model), timestamps over the last day, in a 512-row request and
in 5,000-row batches. Per-row pricing is timed on the SpanRecords, columnar pricing on the same rows as the
Arrow table the exporter builds (`to_arrow`, not timed: the pipeline builds it anyway). Prints the median
microseconds per row over the rounds and checks both give the same costs.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from spanmeter.config import PricingProcessorConfig
from spanmeter.exporters.clickhouse import to_arrow
from spanmeter.processors.columnar_pricing import COST_COLUMNS, ColumnarPricer
from spanmeter.processors.pricing import PricingProcessor
from spanmeter.records import COLUMNS, SpanRecord

MIX = [  # (provider, model, share)
    ("openai", "gpt-4o-2024-08-06", 0.35),
    ("anthropic", "claude-sonnet-4-5", 0.25),
    ("gcp.gemini", "gemini-2.5-pro", 0.15),
    ("openai", "gpt-4o-mini", 0.15),
    ("deepseek", "deepseek-chat", 0.10),
]


def make_rows(count: int, seed: int) -> list[SpanRecord]:
    rng = random.Random(seed)
    now = time.time_ns()
    rows = []
    for _ in range(count):
        record = SpanRecord()
        for name in COLUMNS:
            if not hasattr(record, name):
                setattr(record, name, "")
        record.finish_reasons, record.span_attributes, record.resource_attributes = [], {}, {}
        record.duration_ns = 0
        record.provider, record.response_model, _ = rng.choices(MIX, weights=[m[2] for m in MIX])[0]
        record.request_model = record.response_model
        record.timestamp = now - rng.randrange(86_400 * 10**9)
        record.input_tokens = int(rng.lognormvariate(8, 1.2)) + 1
        record.cache_read_tokens = rng.randrange(record.input_tokens) if rng.random() < 0.4 else 0
        record.cache_write_tokens = (record.input_tokens - record.cache_read_tokens) // 4 if rng.random() < 0.1 else 0
        record.output_tokens = int(rng.lognormvariate(6, 1)) + 1
        record.reasoning_tokens = record.output_tokens // 3 if rng.random() < 0.2 else 0
        record.has_usage = True
        rows.append(record)
    return rows


def per_row_us(reference: PricingProcessor, rows: list[SpanRecord], repeat: int) -> float:
    started = time.perf_counter()
    for _ in range(repeat):
        reference.process(rows)
    return (time.perf_counter() - started) / repeat / len(rows) * 1e6


def columnar_us(pricer: ColumnarPricer, rows: list[SpanRecord], repeat: int) -> float:
    table = to_arrow(rows)
    has_usage = [record.has_usage for record in rows]
    started = time.perf_counter()
    for _ in range(repeat):
        pricer.price(table, has_usage)
    return (time.perf_counter() - started) / repeat / len(rows) * 1e6


def check_same(reference: PricingProcessor, pricer: ColumnarPricer, rows: list[SpanRecord]) -> None:
    priced = pricer.price(to_arrow(rows), [record.has_usage for record in rows])
    reference.process(rows)
    for name in COST_COLUMNS:
        if priced.table.column(name).to_pylist() != [getattr(record, name) for record in rows]:
            raise SystemExit(f"columnar {name} differs from the reference")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    config = PricingProcessorConfig()
    reference = PricingProcessor(config)
    pricer = ColumnarPricer(PricingProcessor(config))
    print(f"{'rows':>6}  {'per row (us/row)':>17}  {'columnar (us/row)':>18}  {'speed-up':>8}")
    for size, repeat in ((512, 40), (5_000, 6)):
        samples = [make_rows(size, seed) for seed in range(args.rounds)]
        check_same(reference, pricer, samples[0])
        row_times, column_times = [], []
        for rows in samples:  # interleaved, so a busy moment on the host hits both
            row_times.append(per_row_us(reference, rows, repeat))
            column_times.append(columnar_us(pricer, rows, repeat))
        row, column = statistics.median(row_times), statistics.median(column_times)
        print(f"{size:>6}  {row:>17.2f}  {column:>18.3f}  {row / column:>7.1f}x")


if __name__ == "__main__":
    main()
