"""A worker's /healthz: 200 only while its event loop beats; "starting" before the first beat, "stalled"
when a blocking call wedges the loop; /metrics served on the same port."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.error
import urllib.request

from prometheus_client import CollectorRegistry
from sentiment_workers.health import Heartbeat, serve
from sentiment_workers.metrics import PipelineMetrics

from tests.dataplane.conftest import free_port


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_heartbeat_is_starting_then_ok_then_stalled():
    now = [100.0]
    heartbeat = Heartbeat(timeout_s=60, clock=lambda: now[0])
    assert heartbeat.check() == (False, "starting: the event loop has not beaten yet")
    heartbeat.beat()
    now[0] += 59
    assert heartbeat.check()[0] is True
    now[0] += 2
    alive, reason = heartbeat.check()
    assert not alive and reason == "stalled: last event-loop beat 61 s ago (limit 60 s)"


def test_healthz_follows_the_event_loop_and_metrics_share_the_port():
    metrics = PipelineMetrics(CollectorRegistry())
    metrics.messages_staged.inc(3)
    heartbeat = Heartbeat(timeout_s=0.5)
    port = free_port()
    server = serve(port, metrics.registry, heartbeat, addr="127.0.0.1")
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    runner = threading.Thread(target=loop.run_until_complete, args=(heartbeat.run(stop, interval=0.1),))
    try:
        status, body = _get(port, "/healthz")
        assert (status, body.strip()) == (503, "starting: the event loop has not beaten yet")

        runner.start()
        _wait_for_status(port, 200)

        # A blocking call on the loop (what a wedged worker looks like): the beats stop, /healthz fails.
        loop.call_soon_threadsafe(time.sleep, 1.5)
        _wait_for_status(port, 503)
        assert _get(port, "/healthz")[1].startswith("stalled: last event-loop beat")
        _wait_for_status(port, 200)  # the call returned: the loop beats again

        status, body = _get(port, "/metrics")
        assert status == 200 and "sentiment_messages_staged_total 3.0" in body
    finally:
        loop.call_soon_threadsafe(stop.set)
        runner.join(5)
        loop.close()
        server.shutdown()


def _wait_for_status(port: int, expected: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while (status := _get(port, "/healthz")[0]) != expected:
        assert time.monotonic() < deadline, f"/healthz stayed {status}, expected {expected}"
        time.sleep(0.05)
