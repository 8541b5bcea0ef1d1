"""`spanmeter serve`: run the collector until SIGINT or SIGTERM, then flush and exit."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from ..service import Collector
from ..store import StoreError, describe_endpoint
from .common import EXIT_RUNTIME, add_config_argument, fail, load_or_exit, setup_logging

logger = logging.getLogger("spanmeter")


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("serve", help="run the collector", description=__doc__)
    add_config_argument(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = load_or_exit(args.config)
    setup_logging(config.service.telemetry.log_level)
    try:
        return asyncio.run(_serve(Collector(config)))
    except (StoreError, OSError) as exc:
        return fail(str(exc), EXIT_RUNTIME)


async def _serve(collector: Collector) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await collector.start()
    store = collector.store_config
    logger.info(
        "spanmeter collector running: store %s database %s; stop with Ctrl-C or SIGTERM",
        describe_endpoint(store.endpoint),
        store.database,
    )
    await stop.wait()
    logger.info("stopping: no new requests; storing %d accepted rows", collector.exporter.queued_rows)
    left = await collector.stop()
    if left:  # safe on disk, but the operator should know the store did not take them
        logger.warning("stopped with %d rows in the write-ahead log, to be stored at the next start", left)
        return EXIT_RUNTIME
    logger.info("stopped cleanly")
    return 0
