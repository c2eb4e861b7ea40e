"""The inference worker on real Mongo and MariaDB: batched leases, reclaiming expired leases, several workers,
poison texts and exhausted attempts dead-lettered, a constant number of Mongo round trips per claim."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from pymongo import monitoring
from sentiment_workers.adapters.mongo import StagingStore, create_client
from sentiment_workers.inference import InferenceWorker
from sentiment_workers.messages import SourceRecord, StagedMessage, parse_record, utcnow
from sentiment_workers.model import Prediction, SentimentClassifier

from tests.dataplane.helpers import (
    Running,
    WrappedClassifier,
    sample_value,
    staging_states,
    wait_until,
    warehouse_ids,
)


async def stage(
    store: StagingStore, n: int, prefix: str = "s", texts: Sequence[str] | None = None
) -> list[str]:
    staged: list[StagedMessage] = []
    for i in range(n):
        text = texts[i] if texts else f"message {i} is good"
        rec = SourceRecord("topic", 0, i, None, f'{{"id": "{prefix}-{i}", "comment": "{text}"}}'.encode())
        parsed = parse_record(rec, max_bytes=10_000)
        assert isinstance(parsed, StagedMessage)
        staged.append(parsed)
    await store.stage(staged, [], utcnow())
    return [m.id for m in staged]


class RaisingOn(WrappedClassifier):
    """The real classifier, except that any batch holding ``marker`` raises (a text the model chokes on)."""

    def __init__(self, inner: SentimentClassifier, marker: str) -> None:
        super().__init__(inner)
        self.marker = marker

    def predict_proba(self, texts: Sequence[str]) -> list[list[float]]:
        if any(self.marker in t for t in texts):
            raise ValueError(f"cannot encode {self.marker}")
        return self.inner.predict_proba(texts)

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        self.predict_proba([t for t in texts if self.marker in t])
        return self.inner.predict(texts)


async def test_worker_classifies_the_backlog_in_batches(config, store, warehouse, classifier, metrics):
    ids = await stage(store, 100)
    worker = InferenceWorker(config, store, warehouse, classifier, metrics, claim_size=32)
    await asyncio.wait_for(worker.run(asyncio.Event(), exit_when_idle=0.3), 60)
    assert sorted(await warehouse_ids(warehouse)) == sorted(ids)
    assert await staging_states(store) == {"done": 100}
    assert sample_value(metrics, "sentiment_batch_size_messages_count", {"stage": "infer"}) == 4  # 32+32+32+4
    assert sample_value(metrics, "sentiment_inference_duration_seconds_count") == 4
    assert metrics.registry.get_sample_value("sentiment_inference_backlog_messages") == 0


async def test_a_claim_takes_three_round_trips_whatever_its_size(config, store):
    await stage(store, 120)
    commands: list[str] = []

    class Listener(monitoring.CommandListener):
        def started(self, event: monitoring.CommandStartedEvent) -> None:
            commands.append(event.command_name)

        def succeeded(self, event: monitoring.CommandSucceededEvent) -> None: ...

        def failed(self, event: monitoring.CommandFailedEvent) -> None: ...

    client = create_client(config, event_listeners=[Listener()])
    observed = StagingStore(client, config)
    try:
        for size in (10, 100):
            commands.clear()
            claim = await observed.claim("probe", size, lease_seconds=30)
            assert len(claim.documents) == size
            assert commands == ["find", "update", "find"]
        commands.clear()
        await observed.mark_done([(d["_id"], {"sentiment_label": "x"}) for d in claim.documents])
        assert commands == ["update"]
    finally:
        client.close()


async def test_two_claims_never_share_a_document(config, store):
    await stage(store, 60)
    first, second = await asyncio.gather(store.claim("a", 40, 30), store.claim("b", 40, 30))
    a = {d["_id"] for d in first.documents}
    b = {d["_id"] for d in second.documents}
    assert not a & b
    assert len(a | b) <= 60
    third = await store.claim("c", 100, 30)
    assert {d["_id"] for d in third.documents} == {f"s-{i}" for i in range(60)} - a - b


async def test_an_expired_lease_is_reclaimed(config, store, warehouse, classifier, metrics):
    ids = await stage(store, 20)
    abandoned = await store.claim("crashed-worker", 20, lease_seconds=1.0)  # then the worker "dies"
    assert len(abandoned.documents) == 20
    worker = InferenceWorker(config, store, warehouse, classifier, metrics)
    assert (await store.claim("other", 20, 30)).documents == []  # still leased
    await asyncio.wait_for(worker.run(asyncio.Event(), exit_when_idle=0.3), 60)
    assert sorted(await warehouse_ids(warehouse)) == sorted(ids)
    docs = await store.messages.find({}).to_list(None)
    assert {d["status"] for d in docs} == {"done"} and {d["attempts"] for d in docs} == {2}


async def test_several_workers_share_the_backlog_without_duplicates(config, store, warehouse, classifier):
    from prometheus_client import CollectorRegistry
    from sentiment_workers.metrics import PipelineMetrics

    ids = await stage(store, 240)
    workers = [
        InferenceWorker(
            config.model_copy(update={"worker_id": f"w{i}"}),
            store,
            warehouse,
            classifier,
            PipelineMetrics(CollectorRegistry()),
            claim_size=16,
        )
        for i in range(3)
    ]
    await asyncio.wait_for(
        asyncio.gather(*(w.run(asyncio.Event(), exit_when_idle=0.5) for w in workers)), 120
    )
    assert sorted(await warehouse_ids(warehouse)) == sorted(ids)
    assert sum(w.classified for w in workers) == 240  # each message classified by exactly one worker
    assert await staging_states(store) == {"done": 240}


async def test_a_text_the_model_cannot_process_is_dead_lettered_and_the_rest_flow(
    config, store, warehouse, classifier, metrics
):
    texts = [f"fine text {i}" for i in range(30)]
    texts[7] = "POISON text"
    ids = await stage(store, 30, texts=texts)
    worker = InferenceWorker(config, store, warehouse, RaisingOn(classifier, "POISON"), metrics)
    await asyncio.wait_for(worker.run(asyncio.Event(), exit_when_idle=0.3), 60)
    assert sorted(await warehouse_ids(warehouse)) == sorted(set(ids) - {"s-7"})
    assert await staging_states(store) == {"done": 29, "dead_lettered": 1}
    letter = await store.dead_letters.find_one({"message_id": "s-7"})
    assert letter["reason"] == "model_error" and "cannot encode POISON" in letter["detail"]
    assert letter["stage"] == "infer" and letter["comment"] == "POISON text"
    assert (
        sample_value(
            metrics, "sentiment_messages_dead_lettered_total", {"stage": "infer", "reason": "model_error"}
        )
        == 1
    )


async def test_a_message_that_keeps_killing_workers_alone_is_dead_lettered(
    config, store, warehouse, classifier, metrics
):
    ids = await stage(store, 5)
    # Eight claims died with it, the last three with s-3 alone in the claim: it is the culprit.
    await store.messages.update_one({"_id": "s-3"}, {"$set": {"attempts": 8, "solo_attempts": 3}})
    worker = InferenceWorker(config, store, warehouse, classifier, metrics, max_attempts=3)
    await asyncio.wait_for(worker.run(asyncio.Event(), exit_when_idle=0.3), 60)
    assert sorted(await warehouse_ids(warehouse)) == sorted(set(ids) - {"s-3"})
    letter = await store.dead_letters.find_one({"message_id": "s-3"})
    assert letter["reason"] == "too_many_attempts" and letter["attempts"] == 9
    assert await staging_states(store) == {"done": 4, "dead_lettered": 1}


async def test_a_claim_that_did_not_finish_comes_back_halved_suspects_first(config, store):
    await stage(store, 40)
    first = await store.claim("dies", 16, lease_seconds=0.05)
    died = {d["_id"] for d in first.documents}
    await asyncio.sleep(0.1)  # its worker died: the lease expires
    second = await store.claim("next", 16, lease_seconds=30)
    assert len(second.documents) == 8 and {d["_id"] for d in second.documents} <= died
    assert {d["attempts"] for d in second.documents} == {2}


async def test_sigterm_style_stop_finishes_the_batch_in_flight(config, store, warehouse, classifier, metrics):
    await stage(store, 200)
    worker = InferenceWorker(config, store, warehouse, classifier, metrics, claim_size=20)
    running = Running(worker.run)
    await wait_until(lambda: _some_rows(warehouse), what="first rows")
    await running.stop()
    rows = await warehouse.count()
    states = await staging_states(store)
    # Whatever was written is marked done; nothing stays leased after a graceful stop.
    assert states.get("done", 0) == rows and states.get("done", 0) + states.get("pending", 0) == 200
    assert await store.messages.count_documents({"lease_token": {"$exists": True}}) == 0


async def _some_rows(warehouse) -> bool:
    return await warehouse.count() > 0


class Pausing(WrappedClassifier):
    """The real classifier, taking ``pause`` seconds per batch (a long batch, a slow model)."""

    def __init__(self, inner: SentimentClassifier, pause: float) -> None:
        super().__init__(inner)
        self.pause = pause

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        import time

        time.sleep(self.pause)
        return self.inner.predict(texts)


async def test_a_live_worker_keeps_its_lease_however_long_its_batch_takes(
    config, store, warehouse, classifier, metrics
):
    await stage(store, 10)
    short_lease = config.model_copy(update={"lease_seconds": 0.6})
    worker = InferenceWorker(short_lease, store, warehouse, Pausing(classifier, 2.0), metrics)
    async with Running(worker.run):
        await wait_until(lambda: _leased(store, 10), what="the claim")
        await asyncio.sleep(1.5)  # well past the lease: renewed, so no other worker can take the batch
        assert (await store.claim("other", 10, 30)).documents == []
        await wait_until(lambda: _done(store, 10), what="the batch done")
    docs = await store.messages.find({}).to_list(None)
    assert {d["attempts"] for d in docs} == {1}


async def _leased(store, n: int) -> bool:
    return await store.messages.count_documents({"lease_token": {"$exists": True}}) >= n


async def _done(store, n: int) -> bool:
    return await store.messages.count_documents({"status": "done"}) >= n
