"""A worker's liveness: its event loop beats every few seconds, and ``/healthz`` answers 200 only while the
last beat is recent. A worker whose loop is wedged (a blocking call, a deadlock) fails its liveness probe and
is restarted; one that has not started its loop yet is "starting" (503), which the startup probe waits out.
(Model loading and inference run in worker threads, so the loop keeps beating through them.)

Readiness means "data can flow": ``/readyz`` answers 200 only while the loop beats and every store the
worker has tried is reachable, as ``sentiment_store_up`` records it (``retry.with_retries`` on every store
call, and the periodic probes of :mod:`sentiment_workers.reachability`). Before the first contact with a
store it is 503 "starting"; while one is unreachable, 503 naming it; while one refuses the credentials
(``sentiment_store_error{kind="auth"}``: a wrong Secret), 503 saying so first, in the store's words, e.g.
``credentials refused: MySQL refused the credentials (OperationalError: (1045, "Access denied for user
'sentiment'@'10.0.0.7' (using password: YES)"))``. The pod's readiness probe uses it, so a
worker cut off from its stores leaves the Service's ready endpoints and its Deployment's available replicas.

The HTTP server is prometheus-client's threaded WSGI server: ``/metrics``, ``/healthz`` and ``/readyz`` on one
port.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from sentiment_workers.config import AUTH, STORE_ERROR_METRIC, STORE_UP_METRIC

BEAT_INTERVAL_S = 5.0


class Heartbeat:
    """The time of the event loop's last beat; stale after ``timeout_s``."""

    def __init__(self, timeout_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout_s = timeout_s
        self.clock = clock
        self.last: float | None = None

    def beat(self) -> None:
        self.last = self.clock()

    def check(self) -> tuple[bool, str]:
        """(alive, reason) for the probe."""
        if self.last is None:
            return False, "starting: the event loop has not beaten yet"
        age = self.clock() - self.last
        if age > self.timeout_s:
            return False, f"stalled: last event-loop beat {age:.0f} s ago (limit {self.timeout_s:.0f} s)"
        return True, f"ok: last beat {age:.1f} s ago"

    async def run(self, stop: asyncio.Event, interval: float = BEAT_INTERVAL_S) -> None:
        """Beat until ``stop`` is set."""
        while not stop.is_set():
            self.beat()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)


def store_states(registry: CollectorRegistry) -> dict[str, bool]:
    """``{store: reachable}`` from the ``sentiment_store_up`` gauge (stores never tried are absent)."""
    return {
        sample.labels["store"]: sample.value >= 1
        for family in registry.collect()
        if family.name == STORE_UP_METRIC
        for sample in family.samples
        if sample.name == STORE_UP_METRIC and "store" in sample.labels
    }


def refused_stores(registry: CollectorRegistry) -> list[str]:
    """Stores whose last failure was refused credentials or rights (``sentiment_store_error``, auth)."""
    return sorted(
        sample.labels["store"]
        for family in registry.collect()
        if family.name == STORE_ERROR_METRIC
        for sample in family.samples
        if sample.name == STORE_ERROR_METRIC and sample.labels.get("kind") == AUTH and sample.value >= 1
    )


def readiness(
    registry: CollectorRegistry, heartbeat: Heartbeat | None, faults: Mapping[str, str] | None = None
) -> tuple[bool, str]:
    """(ready, reason): the loop beats and every store tried so far is reachable and accepts the
    credentials. ``faults`` (``PipelineMetrics.store_faults``) words what went wrong with a store."""
    alive, reason = heartbeat.check() if heartbeat is not None else (True, "ok")
    if not alive:
        return False, reason
    stores = store_states(registry)
    if not stores:
        return False, "starting: no store reached yet"
    down = sorted(store for store, up in stores.items() if not up)
    refused = [store for store in refused_stores(registry) if store in down]
    unreachable = [store for store in down if store not in refused]
    parts = []
    if refused:
        words = [(faults or {}).get(store) or f"{store} refused the credentials" for store in refused]
        parts.append(f"credentials refused: {'; '.join(words)}")
    if unreachable:
        parts.append(f"unreachable: {', '.join(unreachable)}")
    if parts:
        return False, "; ".join(parts)
    return True, f"ok: {', '.join(sorted(stores))} reachable"


def make_app(
    registry: CollectorRegistry, heartbeat: Heartbeat | None, faults: Mapping[str, str] | None = None
) -> Callable[..., Iterable[bytes]]:
    """WSGI app: ``/healthz`` from the heartbeat (always 200 without one), ``/readyz`` from the heartbeat and
    the stores' reachability, anything else ``/metrics``."""
    metrics_app = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO")
        if path in ("/healthz", "/readyz"):
            if path == "/healthz":
                ok, reason = heartbeat.check() if heartbeat is not None else (True, "ok")
            else:
                ok, reason = readiness(registry, heartbeat, faults)
            status = "200 OK" if ok else "503 Service Unavailable"
            start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
            return [reason.encode() + b"\n"]
        return metrics_app(environ, start_response)

    return app


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes and scrapes every few seconds: no access log."""


# All interfaces: Prometheus scrapes and the kubelet probes reach the Pod on its own IP.
ALL_INTERFACES = "0.0.0.0"  # noqa: S104


def serve(
    port: int,
    registry: CollectorRegistry,
    heartbeat: Heartbeat | None,
    addr: str = ALL_INTERFACES,
    faults: Mapping[str, str] | None = None,
) -> Any:
    """Serve ``/metrics``, ``/healthz`` and ``/readyz`` on ``port`` from a daemon thread; returns it."""
    app = make_app(registry, heartbeat, faults)
    server = make_server(addr, port, app, ThreadingWSGIServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server
