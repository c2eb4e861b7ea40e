"""Whether a worker can reach its stores, probed every few seconds while it runs.

A worker touches a store only when data moves: an idle inference worker never calls MySQL, a consumer without
records never writes to MongoDB, and a consumer notices no broker outage at all (aiokafka reconnects quietly).
So each worker also probes its stores through their adapters (``ping``) every ``interval`` seconds, with a
``probe_timeout``, and records the answer in ``sentiment_store_up{store}`` next to what
``retry.with_retries`` records on real calls. ``/readyz`` (:mod:`sentiment_workers.health`) and the
operator's status read it.

Bound: a store that goes away is seen within ``interval + probe_timeout`` (15 s by default) even when no data
moves, and at once by the first failing call when data does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

from sentiment_workers.config import STORE_UP_METRIC, WorkerConfig
from sentiment_workers.logging import get_logger
from sentiment_workers.metrics import PipelineMetrics

Probe = Callable[[], Awaitable[object]]
PROBE_INTERVAL_S = 10.0
PROBE_TIMEOUT_S = 5.0
log = get_logger("reachability")


async def probe_once(store: str, probe: Probe, metrics: PipelineMetrics, *, probe_timeout: float) -> bool:
    """Run one probe and record its answer; True when the store answered."""
    try:
        await asyncio.wait_for(probe(), probe_timeout)
    except Exception as exc:  # any failure to get an answer means "cannot reach it" for readiness
        if _recorded(metrics, store) is not False:
            log.warning("store unreachable", store=store, error=f"{type(exc).__name__}: {exc}"[:300])
        metrics.store_up.labels(store).set(0)
        return False
    if _recorded(metrics, store) is False:
        log.info("store reachable again", store=store)
    metrics.store_up.labels(store).set(1)
    return True


def _recorded(metrics: PipelineMetrics, store: str) -> bool | None:
    value = metrics.registry.get_sample_value(STORE_UP_METRIC, {"store": store})
    return None if value is None else value >= 1


async def watch(
    probes: Mapping[str, Probe],
    metrics: PipelineMetrics,
    stop: asyncio.Event,
    *,
    interval: float = PROBE_INTERVAL_S,
    probe_timeout: float = PROBE_TIMEOUT_S,
) -> None:
    """Probe every store now, then every ``interval`` seconds, until ``stop`` is set."""
    while not stop.is_set():
        await asyncio.gather(
            *(probe_once(s, p, metrics, probe_timeout=probe_timeout) for s, p in probes.items())
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


@contextlib.asynccontextmanager
async def watching(
    probes: Mapping[str, Probe],
    metrics: PipelineMetrics,
    *,
    interval: float = PROBE_INTERVAL_S,
    probe_timeout: float = PROBE_TIMEOUT_S,
) -> AsyncIterator[None]:
    """Run :func:`watch` in the background for the duration of the block."""
    done = asyncio.Event()
    task = asyncio.create_task(
        watch(probes, metrics, done, interval=interval, probe_timeout=probe_timeout), name="probes"
    )
    try:
        yield
    finally:
        done.set()
        await task


@contextlib.asynccontextmanager
async def consumer_probes(config: WorkerConfig) -> AsyncIterator[dict[str, Probe]]:
    """The consumer's stores: Kafka (a metadata request) and MongoDB (a read of the staging collection)."""
    from sentiment_workers.adapters import kafka
    from sentiment_workers.adapters.mongo import StagingStore

    store = StagingStore.from_config(config)
    try:
        yield {"kafka": lambda: kafka.ping(config), "mongo": store.ping}
    finally:
        store.close()


@contextlib.asynccontextmanager
async def inference_probes(config: WorkerConfig) -> AsyncIterator[dict[str, Probe]]:
    """The inference worker's stores: MongoDB (staging) and MySQL (``SELECT 1`` as the warehouse user)."""
    from sentiment_workers.adapters.mongo import StagingStore
    from sentiment_workers.adapters.mysql import Warehouse

    store = StagingStore.from_config(config)
    warehouse = await Warehouse.connect(config, maxsize=1)  # connects lazily: never fails here
    try:
        yield {"mongo": store.ping, "mysql": warehouse.ping}
    finally:
        store.close()
        await warehouse.close()


async def wait_for_kafka(config: WorkerConfig, metrics: PipelineMetrics, stop: asyncio.Event) -> bool:
    """Until a broker answers (the consumer cannot start without one), retried with backoff and recorded;
    False when ``stop`` came first."""
    from sentiment_workers.adapters import kafka
    from sentiment_workers.retry import with_retries

    answered = asyncio.create_task(
        with_retries(
            lambda: kafka.ping(config), store="kafka", is_transient=kafka.is_transient, metrics=metrics
        )
    )
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({answered, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (answered, stopped):
            task.cancel()
    if answered.done() and not answered.cancelled():
        answered.result()  # a non-transient error (e.g. bad SASL settings) propagates
        return True
    return False
