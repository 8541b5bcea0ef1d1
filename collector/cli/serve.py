"""`spanmeter serve`: run the collector until SIGINT or SIGTERM, then flush and exit. SIGHUP reloads the
configuration file: what can change while running is applied, the rest is logged as needing a restart (reload.py);
a file that does not load is logged, naming the key at fault, and the running configuration kept."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from ..config import ConfigError, load_config
from ..service import Collector
from ..store import StoreError, describe_endpoint, first_line
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
        return asyncio.run(_serve(Collector(config), args.config))
    except (StoreError, OSError) as exc:
        return fail(str(exc), EXIT_RUNTIME)


async def _serve(collector: Collector, path: str) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    reloading = asyncio.Lock()
    tasks: set[asyncio.Task[None]] = set()

    def reload() -> None:
        task = loop.create_task(_reload(collector, path, reloading))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    loop.add_signal_handler(signal.SIGHUP, reload)
    await collector.start()
    store = collector.store_config
    logger.info(
        "spanmeter collector running: store %s database %s; stop with Ctrl-C or SIGTERM",
        describe_endpoint(store.endpoint),
        store.database,
    )
    await stop.wait()
    loop.remove_signal_handler(signal.SIGHUP)
    async with reloading:  # a reload under way finishes first
        pass
    logger.info("stopping: no new requests; storing %d accepted rows", collector.exporter.queued_rows)
    left = await collector.stop()
    if left:  # safe on disk, but the operator should know the store did not take them
        logger.warning("stopped with %d rows in the write-ahead log, to be stored at the next start", left)
        return EXIT_RUNTIME
    logger.info("stopped cleanly")
    return 0


async def _reload(collector: Collector, path: str, reloading: asyncio.Lock) -> None:
    async with reloading:
        try:
            loaded = load_config(path)
        except ConfigError as exc:
            logger.error("reload of %s refused, the running configuration is kept:\n%s", path, exc)
            return
        try:
            ignored = await asyncio.to_thread(collector.reload, loaded)
        except Exception as exc:
            logger.error("reload of %s failed, the running configuration is kept: %s", path, first_line(exc))
            return
        for key in ignored:
            logger.warning("reload: %s changed but needs a restart; ignored until then", key)
        logger.info("reloaded %s: processors and log level applied", path)
