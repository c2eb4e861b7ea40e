"""Process plumbing for a worker: logging, the /metrics and /healthz endpoint, the event-loop heartbeat, and a
stop event set by SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError

from sentiment_workers.config import WorkerConfig
from sentiment_workers.health import Heartbeat, serve
from sentiment_workers.logging import configure_logging, get_logger
from sentiment_workers.metrics import PipelineMetrics

log = get_logger("runner")


def load_config(**overrides: Any) -> WorkerConfig:
    """``WorkerConfig`` from ``SENTIMENT_*`` variables (plus non-None overrides).

    A bad value exits with status 2 and one line per problem, naming the variable.
    """
    try:
        return WorkerConfig(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        lines = [f"  SENTIMENT_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()]
        print("invalid configuration:\n" + "\n".join(lines), file=sys.stderr)
        raise SystemExit(2) from None


def install_stop_handlers(stop: asyncio.Event) -> None:
    """SIGTERM and SIGINT set ``stop``: the worker finishes its batch, commits and exits."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _request_stop, stop, sig)


def _request_stop(stop: asyncio.Event, sig: signal.Signals) -> None:
    if stop.is_set():
        return
    log.info("stop requested", signal=sig.name)
    stop.set()


def serve_metrics(port: int, metrics: PipelineMetrics, heartbeat: Heartbeat | None = None) -> None:
    """Expose ``/metrics`` and ``/healthz`` on ``port`` (all interfaces, for the Pod's probes and scrape);
    0 disables both."""
    if port == 0:
        return
    serve(port, metrics.registry, heartbeat, faults=metrics.store_faults)
    log.info("metrics endpoint listening", port=port, paths=["/metrics", "/healthz"])


def run_worker(
    config: WorkerConfig, main: Callable[[asyncio.Event, PipelineMetrics], Awaitable[None]]
) -> None:
    """Run ``main(stop, metrics)`` until it returns; SIGTERM/SIGINT ask it to stop gracefully."""
    configure_logging(config.log_level, config.log_format)
    metrics = PipelineMetrics()
    heartbeat = Heartbeat(config.liveness_timeout_seconds)
    serve_metrics(config.metrics_port, metrics, heartbeat)

    async def _run() -> None:
        stop = asyncio.Event()
        install_stop_handlers(stop)
        beating = asyncio.Event()
        beats = asyncio.create_task(heartbeat.run(beating), name="heartbeat")
        try:
            await main(stop, metrics)
        finally:
            beating.set()
            await beats

    asyncio.run(_run())
