"""`callcause run` and `callcause check-config`: config in, sources and sinks running.

SIGTERM/SIGINT stop the sources, drain what the pipeline holds into the sinks and exit 0;
SIGHUP reloads the overrides (a bad file keeps the old table) and reopens log files.
A source task that ends (it never should: sources reconnect by themselves) is restarted by
a supervisor with backoff, logged as the error it is, counted, and not ready while down.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from callcause import metrics
from callcause.config import SINK_KINDS, SOURCE_KINDS, Config, connector, load_config
from callcause.errors import ConfigError
from callcause.pipeline import Pipeline, Sink, Source

log = logging.getLogger("callcause.daemon")

DRAIN_TIMEOUT = 30.0      # seconds SIGTERM waits for queued records to reach the sinks
RESTART_MIN = 1.0         # first wait before a source that ended is started again, seconds
RESTART_MAX = 60.0        # the most it waits, after repeated ends


def _builder(table: dict[str, str], kind: str, config: Config) -> Callable[..., Any]:
    module = table.get(kind)
    if module is None:
        raise ConfigError(f"no connector of kind {kind!r}", file=config.file,
                          fix=f"use one of: {', '.join(table)}")
    try:
        return connector(module, "build")
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"the {kind!r} connector cannot be loaded ({exc})", file=config.file,
                          fix=f"reinstall callcause, or remove the {kind} entries") from None


def _load(path: str) -> Config:
    try:
        return load_config(path)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"a connector named in the file is not installed ({exc})", file=path,
                          fix="reinstall callcause, or remove that source/sink") from None


def build_connectors(config: Config) -> tuple[list[Source], list[Sink]]:
    sinks = [_builder(SINK_KINDS, getattr(cfg, "kind", "log"), config)(cfg, config)
             for cfg in config.sinks]
    sources = [_builder(SOURCE_KINDS, getattr(cfg, "kind", "asterisk"), config)(cfg, config)
               for cfg in config.sources]
    return sources, sinks


def setup_logging(config: Config) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if config.logging.format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(config.logging.level)


def freeze_long_lived() -> None:
    """Keep what start-up built (mapping tables, texts, connectors), which lives as long as
    the daemon, out of the garbage collector's full passes: walking it stalls the event loop
    for tens of milliseconds and can never free anything."""
    gc.collect()
    gc.freeze()


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"time": self.formatTime(record), "level": record.levelname,
                           "logger": record.name, "message": record.getMessage()},
                          ensure_ascii=False)


class Daemon:
    """The running daemon: one pipeline, its sinks, its sources, and the signal handlers."""

    def __init__(self, config: Config) -> None:
        from callcause.mapping.translator import Translator

        self.config = config
        self.translator = Translator.load(config.overrides)
        self.sources, self.sinks = build_connectors(config)
        self.pipeline = Pipeline(self.translator, self.sinks, instance=config.instance)
        self.stop = asyncio.Event()
        self.health: Any = None
        self.down: set[str] = set()          # sources whose task ended, waiting for a restart
        self.restart_min, self.restart_max = RESTART_MIN, RESTART_MAX
        self.restart_wait: Callable[[float], Awaitable[None]] = asyncio.sleep   # tests hold it
        self.trunks: Any = None
        if config.trunks is not None and config.trunks.enabled:
            from callcause.trunks.monitor import TrunkMonitor

            self.trunks = TrunkMonitor(config.trunks, sinks=self.sinks, translator_of=lambda: self.translator,
                                       instance=config.instance)
            self.pipeline.observers.append(self.trunks.observe)
        self.report: Any = None
        if config.report is not None and config.report.enabled:
            from callcause.report.live import LiveReport

            self.report = LiveReport(config.report, language=config.language, translator_of=lambda: self.translator,
                                     trunks=config.trunks)
            self.pipeline.observers.append(self.report.observe)

    def reload(self) -> bool:
        """SIGHUP: new overrides if the file is valid, else keep the old ones; reopen logs."""
        from callcause.mapping.translator import Translator

        for sink in self.sinks:
            reopen = getattr(sink, "reopen", None)
            if reopen is not None:
                reopen()
        try:
            translator = Translator.load(self.config.overrides)
        except Exception as exc:   # a ConfigError, or anything else: a reload must never take the daemon down
            metrics.OVERRIDE_RELOADS.labels(result="error").inc()
            log.error("overrides not reloaded, the previous ones stay in force: %s", exc)
            return False
        self.translator = self.pipeline.translator = translator
        metrics.OVERRIDE_RELOADS.labels(result="ok").inc()
        log.info("overrides reloaded from %s; log files reopened", self.config.overrides or "(none)")
        return True

    def readiness(self) -> dict[str, bool]:
        ready = {f"source:{s.name}": s.connected and s.name not in self.down for s in self.sources}
        for sink in self.sinks:
            ready[f"sink:{sink.name}"] = bool(getattr(sink, "ready", True))
        return ready

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        handlers = {signal.SIGTERM: self.stop.set, signal.SIGINT: self.stop.set,
                    signal.SIGHUP: self.reload}
        for sig, fn in handlers.items():
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, fn)
        await self.pipeline.start_sinks()
        if self.config.metrics.listen:
            from callcause.health import HealthServer

            self.health = HealthServer(self.config.metrics.listen, self.readiness,
                                       trunks=self.trunks.snapshot if self.trunks is not None else None,
                                       report=self.report.html if self.report is not None else None)
            await self.health.start()
        freeze_long_lived()
        consumer = asyncio.create_task(self.pipeline.run(), name="pipeline")
        evaluator = asyncio.create_task(self.trunks.run(), name="trunks") if self.trunks is not None else None
        tasks = [asyncio.create_task(self._supervise(src), name=f"source:{src.name}")
                 for src in self.sources]
        log.info("callcause running: %d source(s), %d sink(s)", len(tasks), len(self.sinks))
        try:
            await self.stop.wait()
        finally:
            log.info("stopping: sources first, then the queued records")
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)   # sources flush their legs
            try:
                await asyncio.wait_for(self.pipeline.queue.join(), DRAIN_TIMEOUT)
            except TimeoutError:
                log.error("%d record(s) still queued after %.0f s; stopping anyway",
                          self.pipeline.queue.qsize(), DRAIN_TIMEOUT)
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer
            if evaluator is not None:
                evaluator.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await evaluator
                await self.trunks.flush()      # alert events decided before the stop
            await self.pipeline.close_sinks()
            if self.health is not None:
                await self.health.close()
            for sig in handlers:
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)
        log.info("stopped after %d record(s)", self.pipeline.records)
        return 0

    async def _supervise(self, source: Source) -> None:
        """Run a source until cancelled, restarting it with backoff whenever it ends."""
        loop = asyncio.get_running_loop()
        delay = self.restart_min
        while True:
            started = loop.time()
            try:
                await source.run(self.pipeline.emit)
                why, exc = "its task returned", None
            except asyncio.CancelledError:
                raise
            except Exception as error:
                why, exc = f"{type(error).__name__}: {error}", error
            if loop.time() - started > self.restart_max:
                delay = self.restart_min     # it ran a good while: a fresh failure, not a loop
            self.down.add(source.name)
            metrics.SOURCE_RESTARTS.labels(source=source.name).inc()
            metrics.SOURCE_UP.labels(source=source.name).set(0)
            log.error("source:%s stopped unexpectedly (%s); no records come from it until it is "
                      "restarted in %.1f s; please report this", source.name, why, delay,
                      exc_info=exc)
            await self.restart_wait(delay)
            delay = min(delay * 2, self.restart_max)
            self.down.discard(source.name)
            log.info("source:%s restarted", source.name)


def main(args: Any) -> int:
    """`callcause run -c FILE`."""
    config = _load(args.config)
    setup_logging(config)

    async def _run() -> int:
        return await Daemon(config).run()

    return asyncio.run(_run())


def check_config_main(args: Any) -> int:
    """`callcause check-config -c FILE`: everything `run` checks, without connecting."""
    from callcause.mapping.translator import Translator

    config = _load(args.config)
    Translator.load(config.overrides)
    for cfg in config.sources:
        _builder(SOURCE_KINDS, getattr(cfg, "kind", "asterisk"), config)
    for cfg in config.sinks:
        _builder(SINK_KINDS, getattr(cfg, "kind", "log"), config)
    sources = ", ".join(f"{s.name} ({getattr(s, 'kind', '?')})" for s in config.sources) or "none"
    sinks = ", ".join(getattr(s, "name", getattr(s, "kind", "?")) for s in config.sinks) or "none"
    rules = ", ".join(r.name for r in config.trunks.rules) if config.trunks.enabled else "trunk health off"
    print(f"OK: {config.file}: sources: {sources}; sinks: {sinks}; "
          f"overrides: {config.overrides or 'none'}; language: {config.language}; trunk rules: {rules or 'none'}")
    return 0
