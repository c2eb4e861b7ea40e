"""Crashes and outages on real servers: a worker SIGKILLed mid-batch, MariaDB and the Mongo server restarted
mid-stream. Each ends with exactly N rows and nothing left pending or leased."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Sequence

import pytest
from sentiment_workers.fused import FusedWorker
from sentiment_workers.inference import InferenceWorker
from sentiment_workers.model import Prediction, SentimentClassifier

from tests.dataplane.conftest import KAFKA_TEST_OVERRIDES, ROOT
from tests.dataplane.helpers import (
    MODES,
    RunningAll,
    WrappedClassifier,
    create_topic,
    leased_count,
    messages,
    pipeline_workers,
    produce,
    sample_value,
    staging_states,
    wait_until,
    warehouse_ids,
)
from tests.dataplane.test_inference import stage


@pytest.mark.parametrize("mode", MODES)
async def test_sigkill_mid_batch_then_another_worker_leaves_exactly_n_rows(
    mode, services, config, store, warehouse, classifier, tiny_model_dir, metrics
):
    n = 150
    if mode == "fused":  # the killed worker consumes the topic itself
        await create_topic(config, partitions=1)
        sent = messages(n, "k")
        await produce(config, sent)
        ids = [m["id"] for m in sent]
    else:
        ids = await stage(store, n)
    worker_config = config.model_copy(update={"lease_seconds": 2.0, "model_batch_size": 10})
    env = services.worker_env(worker_config) | {
        "SLOW_PREDICT_S": "0.2",
        "SLOW_MARK_DONE_S": "3",
        "WORKER_MODE": mode,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.dataplane.slow_worker", str(tiny_model_dir)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        # Kill it once its first batch is committed to MySQL but (mark_done being slow) not yet done in Mongo.
        await wait_until(lambda: _has_rows(warehouse), timeout=90, what="first committed batch")
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
    rows_at_kill = await warehouse.count()
    states_at_kill = await staging_states(store)
    assert rows_at_kill > states_at_kill.get("done", 0), "the kill should land between commit and mark-done"
    if mode == "fused":
        assert await store.batches.count_documents({"state": "open"}) > 0, (
            "the kill should leave a batch open"
        )
    else:
        assert await leased_count(store) > 0, "the kill should leave leased documents behind"

    # Another worker takes over once the dead worker's leases expire.
    survivor: InferenceWorker | FusedWorker = InferenceWorker(config, store, warehouse, classifier, metrics)
    if mode == "fused":  # it also consumes what the dead worker never fetched
        survivor = FusedWorker(
            config, store, warehouse, classifier, metrics, kafka_overrides=KAFKA_TEST_OVERRIDES
        )
    await asyncio.wait_for(survivor.run(asyncio.Event(), exit_when_idle=0.5), 120)

    final_ids = await warehouse_ids(warehouse)
    assert len(final_ids) == n and sorted(final_ids) == sorted(ids)
    assert await staging_states(store) == {"done": n}
    assert await leased_count(store) == 0


class Slowed(WrappedClassifier):
    """The real classifier with a pause per batch, so the stream is still flowing when servers restart."""

    def __init__(self, inner: SentimentClassifier, pause: float) -> None:
        super().__init__(inner)
        self.pause = pause

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        import time

        time.sleep(self.pause)
        return self.inner.predict(texts)


@pytest.mark.parametrize("mode", MODES)
async def test_restarting_mariadb_and_mongo_mid_stream_leaves_exactly_n_rows(
    mode, services, config, store, warehouse, classifier, metrics
):
    n = 400
    await create_topic(config, partitions=2)
    sent = messages(n, "r")
    slowed = Slowed(classifier, 0.15)
    workers = pipeline_workers(
        mode, config, store, warehouse, slowed, metrics, claim_size=16, kafka_overrides=KAFKA_TEST_OVERRIDES
    )
    async with RunningAll(workers):
        producing = asyncio.create_task(produce(config, sent, rate=100))  # ~4 s of traffic
        await wait_until(lambda: _has_rows(warehouse), what="first rows")

        # Each server stays down until the workers have run into the outage (a retry is counted): a fixed
        # sleep could end before any request noticed, the Mongo driver waiting up to its server-selection
        # timeout before it reports a server gone.
        await asyncio.to_thread(services.stop, "mysql")
        await wait_until(lambda: _retried(metrics, "mysql"), timeout=60, what="a MySQL retry")
        await asyncio.to_thread(services.start, "mysql")

        await wait_until(lambda: _more_staged(store, 60), what="more staged")
        await asyncio.to_thread(services.stop, "mongo")
        await wait_until(lambda: _retried(metrics, "mongo"), timeout=60, what="a Mongo retry")
        await asyncio.to_thread(services.start, "mongo")

        await producing
        await wait_until(lambda: _rows_at_least(warehouse, n), timeout=120, what=f"{n} rows")
        await wait_until(lambda: _backlog_empty(store), what="empty backlog")

    ids = await warehouse_ids(warehouse)
    assert len(ids) == n and set(ids) == {m["id"] for m in sent}
    assert await staging_states(store) == {"done": n}
    assert await leased_count(store) == 0
    assert sample_value(metrics, "sentiment_store_retries_total", {"store": "mysql"}) > 0
    assert sample_value(metrics, "sentiment_store_retries_total", {"store": "mongo"}) > 0


async def _has_rows(warehouse) -> bool:
    try:
        return await warehouse.count() > 0
    except Exception:
        return False


async def _rows_at_least(warehouse, n: int) -> bool:
    return await warehouse.count() >= n


async def _retried(metrics, store_name: str) -> bool:
    return sample_value(metrics, "sentiment_store_retries_total", {"store": store_name}) > 0


async def _more_staged(store, n: int) -> bool:
    return await store.messages.count_documents({}) >= n


async def _backlog_empty(store) -> bool:
    return await store.count_backlog() == 0
