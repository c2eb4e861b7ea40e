"""Whether a worker can reach its stores, probed every few seconds while it runs.

A worker touches a store only when data moves: an idle inference worker never calls MySQL, a consumer without
records never writes to MongoDB, and a consumer notices no broker outage at all (aiokafka reconnects quietly).
So each worker also probes its stores through their adapters (``ping``) every ``interval`` seconds, with a
``probe_timeout``, and records the answer in ``sentiment_store_up{store}`` next to what
``retry.with_retries`` records on real calls, with ``sentiment_store_error{store,kind}`` saying why
(``unreachable``, or ``auth`` when the store refused the credentials: a wrong Secret). ``/readyz``
(:mod:`sentiment_workers.health`) and the operator's status read them.

Bound: a store that goes away is seen within ``interval + probe_timeout`` (15 s by default) even when no data
moves, and at once by the first failing call when data does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass

from sentiment_workers.config import STORE_UP_METRIC, WorkerConfig
from sentiment_workers.logging import get_logger
from sentiment_workers.metrics import PipelineMetrics
from sentiment_workers.retry import one_line, record_failure

Probe = Callable[[], Awaitable[object]]


@dataclass(frozen=True)
class StoreProbe:
    """How to ask a store whether it answers (``call``), and which of its errors mean "refused the
    credentials or rights" (its adapter's ``is_auth_error``)."""

    call: Probe
    is_auth_error: Callable[[BaseException], bool]


PROBE_INTERVAL_S = 10.0
PROBE_TIMEOUT_S = 5.0
log = get_logger("reachability")


async def probe_once(
    store: str, probe: StoreProbe, metrics: PipelineMetrics, *, probe_timeout: float
) -> bool:
    """Run one probe and record its answer; True when the store answered."""
    try:
        await asyncio.wait_for(probe.call(), probe_timeout)
    except Exception as exc:  # any failure to get an answer means "cannot use it" for readiness
        before = metrics.store_fault(store)
        kind = record_failure(metrics, store, exc, probe.is_auth_error, probe=True)
        if kind != before:
            log.warning(
                "store refused the credentials" if kind == "auth" else "store unreachable",
                store=store,
                error=one_line(exc),
            )
        return False
    if _recorded(metrics, store) is False:
        log.info("store reachable again", store=store)
    metrics.store_reached(store, probe=True)
    return True


def _recorded(metrics: PipelineMetrics, store: str) -> bool | None:
    value = metrics.registry.get_sample_value(STORE_UP_METRIC, {"store": store})
    return None if value is None else value >= 1


async def watch(
    probes: Mapping[str, StoreProbe],
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
    probes: Mapping[str, StoreProbe],
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
async def consumer_probes(config: WorkerConfig) -> AsyncIterator[dict[str, StoreProbe]]:
    """The consumer's stores: Kafka (a metadata request) and MongoDB (a read of the staging collection)."""
    from sentiment_workers.adapters import kafka, mongo
    from sentiment_workers.adapters.mongo import StagingStore

    store = StagingStore.from_config(config)
    try:
        yield {
            "kafka": StoreProbe(lambda: kafka.ping(config), kafka.is_auth_error),
            "mongo": StoreProbe(store.ping, mongo.is_auth_error),
        }
    finally:
        store.close()


@contextlib.asynccontextmanager
async def inference_probes(
    config: WorkerConfig, *, fused: bool = False
) -> AsyncIterator[dict[str, StoreProbe]]:
    """The inference worker's stores: MongoDB (staging) and MySQL (``SELECT 1`` as the warehouse user); in
    fused mode (``infer --fused``, which consumes the topic itself) Kafka too, as the consumer probes it."""
    from sentiment_workers.adapters import kafka, mongo, mysql
    from sentiment_workers.adapters.mongo import StagingStore
    from sentiment_workers.adapters.mysql import Warehouse

    store = StagingStore.from_config(config)
    warehouse = await Warehouse.connect(config, maxsize=1)  # connects lazily: never fails here
    try:
        probes = {
            "mongo": StoreProbe(store.ping, mongo.is_auth_error),
            "mysql": StoreProbe(warehouse.ping, mysql.is_auth_error),
        }
        if fused:
            probes = {"kafka": StoreProbe(lambda: kafka.ping(config), kafka.is_auth_error), **probes}
        yield probes
    finally:
        store.close()
        await warehouse.close()


async def wait_for_kafka(config: WorkerConfig, metrics: PipelineMetrics, stop: asyncio.Event) -> bool:
    """Until a broker answers (the consumer cannot start without one) and accepts the credentials, retried
    with backoff and recorded; False when ``stop`` came first."""
    from sentiment_workers.adapters import kafka
    from sentiment_workers.retry import with_retries

    answered = asyncio.create_task(
        with_retries(
            lambda: kafka.ping(config),
            store="kafka",
            is_transient=kafka.is_transient,
            is_auth_error=kafka.is_auth_error,
            metrics=metrics,
        )
    )
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({answered, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (answered, stopped):
            task.cancel()
    if answered.done() and not answered.cancelled():
        answered.result()  # an error that is neither transient nor refused credentials propagates
        return True
    return False
