"""The fused worker: Kafka -> MongoDB staging -> model -> MySQL in one process, one Mongo write per message.

Kafka's consumer group distributes the work (no Mongo claim on the normal path). Per fetched batch:

1. parse and validate every record; rejects are dead-lettered (as the consumer does);
2. stage: one *batch document* (``<collection>_batches``: the lease of the whole batch, ``open``), then one
   insert per new message (status ``fused``, ``batch`` = the batch's token). Every raw message is in
   MongoDB before it is classified. A message already staged (a redelivery, a duplicate id) is not inserted
   again: its Kafka position is added to ``sources`` and it stays with whoever staged it;
3. classify and write to MySQL exactly as the inference worker does (the same code: one transaction, store
   rejections isolated and dead-lettered alone, model errors dead-lettered alone);
4. complete: one write marks the batch document ``done`` with the predictions; the raw documents are never
   updated on this path;
5. commit the batch's Kafka offsets, in fetch order, only after its warehouse commit.

Crash safety: a worker that dies leaves its batch ``open``; the batch's lease (renewed while the worker
lives) expires, and any worker (fused or lease) releases its documents to the lease path: they become
``pending`` with one attempt counted, and the claim path's bisection finishes them, or isolates a message
that kills workers (``too_many_attempts``). The redelivered records find their ids staged and are skipped.
The lease path (``InferenceWorker``'s claim loop) also runs here, polling less often, for replays, released
batches and backfills staged by the plain consumer.

The backlog gauge (:meth:`FusedWorker.backlog`) is what the group has left: its Kafka lag over every partition
plus the documents pending for the lease path; parsing and staging are :mod:`sentiment_workers.intake`'s, the
group's plumbing :mod:`sentiment_workers.kafka_group`'s, classifying and writing the inference worker's.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from sentiment_workers import intake, kafka_group
from sentiment_workers.adapters import mongo
from sentiment_workers.adapters.kafka import create_consumer
from sentiment_workers.adapters.mongo import Claim, StagingStore
from sentiment_workers.adapters.mysql import Warehouse
from sentiment_workers.config import WorkerConfig
from sentiment_workers.inference import InferenceWorker, connect_stores
from sentiment_workers.intake import Batch
from sentiment_workers.kafka_group import DrainOnRevoke, GroupLag
from sentiment_workers.logging import get_logger
from sentiment_workers.messages import utcnow
from sentiment_workers.metrics import PipelineMetrics
from sentiment_workers.model import SentimentClassifier

log = get_logger("fused")
REPLAY_POLL_S = 2.0
"""How often the lease path looks for claimable documents in a fused worker (replays, released batches)."""


class FusedWorker:
    """Consume ``kafka_topic``, stage, classify and write to the warehouse until ``stop`` is set."""

    def __init__(
        self,
        config: WorkerConfig,
        store: StagingStore,
        warehouse: Warehouse,
        classifier: SentimentClassifier,
        metrics: PipelineMetrics,
        *,
        batch_size: int | None = None,
        max_attempts: int | None = None,
        kafka_overrides: dict[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.metrics = metrics
        extra = {} if max_attempts is None else {"max_attempts": max_attempts}
        self.worker = InferenceWorker(
            config, store, warehouse, classifier, metrics, claim_size=batch_size, **extra
        )
        self.worker.after_write = self._committed
        self.worker.claim_poll_seconds = max(config.poll_interval_seconds, REPLAY_POLL_S)
        self.worker.backlog = self.backlog
        self._lag: GroupLag | None = None
        self.batch_size = self.worker.claim_size
        self.kafka_overrides = kafka_overrides or {}
        self.offsets: dict[str, dict[TopicPartition, int]] = {}
        """Kafka offsets to commit once the batch with this token is written."""
        self.settled = asyncio.Event()
        self.settled.set()
        self._consumer: AIOKafkaConsumer | None = None
        self.committed_batches = 0

    @property
    def classified(self) -> int:
        return self.worker.classified

    async def run(self, stop: asyncio.Event, *, exit_when_idle: float | None = None) -> None:
        """Run until ``stop`` is set (or, with ``exit_when_idle``, until no record came for that long and
        nothing is left to claim)."""
        done = asyncio.Event()  # the Kafka loop ended: the claim loop ends too

        async def mirror() -> None:
            await stop.wait()
            done.set()

        mirrored = asyncio.create_task(mirror())
        await self.worker.prepare()
        consumer = create_consumer(self.config, **self.kafka_overrides)
        consumer.subscribe([self.config.kafka_topic], listener=DrainOnRevoke(self.settled.wait))
        await consumer.start()
        self._consumer = consumer
        self._lag = GroupLag(self.config, consumer)
        log.info("fused worker started", topic=self.config.kafka_topic, group=self.config.kafka_group_id)

        async def feed(out: asyncio.Queue[Claim | None]) -> None:
            try:
                await self._fetch_loop(consumer, stop, out, exit_when_idle)
            finally:
                done.set()
            await out.put(None)

        try:
            await self.worker.run(done, feeder=feed)
        finally:
            mirrored.cancel()
            await self._lag.close()
            await consumer.stop()  # leaves the group
            self._consumer, self._lag = None, None
            log.info("fused worker stopped", batches=self.committed_batches, classified=self.classified)

    async def backlog(self) -> int:
        """What this worker has left to classify, as every fused worker of the group reports it
        (``sentiment_inference_backlog_messages``): the group's Kafka lag over all partitions (records not
        fetched yet, and fetched ones whose batch is not committed: staged, classified or written) plus the
        staged documents waiting for the lease path (released batches, replays, backfills of a plain
        consumer), which its claim loop also classifies."""
        if self._lag is None:
            raise RuntimeError("the fused worker is not consuming")
        lag = await self._lag.read()
        pending = await self.store.count_pending()
        return lag + pending

    async def _fetch_loop(
        self,
        consumer: AIOKafkaConsumer,
        stop: asyncio.Event,
        out: asyncio.Queue[Claim | None],
        idle: float | None,
    ) -> None:
        last_record_at = time.monotonic()
        while not stop.is_set():
            if self.worker.exclusive_wanted.is_set():  # suspects get a claim of their own first
                await asyncio.sleep(self.config.poll_interval_seconds)
                continue
            batch = await consumer.getmany(timeout_ms=500, max_records=self.batch_size)
            await kafka_group.observe_lag(consumer, self.metrics)
            if batch:
                last_record_at = time.monotonic()
                claim = await self.stage(batch)
                self.offsets[claim.token] = kafka_group.batch_offsets(batch)
                self.settled.clear()
                self.worker.track(claim)
                await out.put(claim)
            elif idle is not None and time.monotonic() - last_record_at > idle and not self.offsets:
                backlog = await self._mongo(self.store.count_backlog)
                if backlog == 0:
                    log.info("idle, exiting", idle_s=idle)
                    return
                last_record_at = time.monotonic()

    async def stage(self, batch: Batch) -> Claim:
        """Validate a fetched batch, dead-letter its rejects and stage the rest as one fused batch."""
        good, bad = intake.parse_batch(batch, self.metrics, max_bytes=self.config.max_message_bytes)
        ingest_ts = utcnow()
        owner, lease = self.worker.owner, self.config.lease_seconds
        staged = await intake.stage_isolating(
            good, lambda part: self._mongo(lambda: self.store.stage_batch(part, owner, lease, ingest_ts)), bad
        )
        await intake.dead_letter(self.store, bad, ingest_ts, self.metrics)
        self.metrics.messages_staged.inc(sum(r.staged for _, r in staged.results))
        # One claim for the whole fetched batch; its documents name their batch document (several when a
        # message Mongo refused split it), which the write completes.
        documents = [doc for claim, _ in staged.results for doc in claim.documents]
        self.metrics.batch_size.labels("infer").observe(len(documents))
        return Claim(token=uuid.uuid4().hex, owner=owner, expires=utcnow(), documents=documents, batch=True)

    async def _committed(self, claim: Claim) -> None:
        """After a batch is written and completed: commit its offsets (in fetch order)."""
        offsets = self.offsets.pop(claim.token, None)
        if not self.offsets:
            self.settled.set()
        # Refused when partitions moved: the next owner re-reads them, finds the ids staged and skips them.
        if (
            offsets
            and self._consumer is not None
            and await kafka_group.commit(self._consumer, offsets, self.metrics)
        ):
            self.committed_batches += 1

    async def _mongo(self, operation: Any) -> Any:
        return await mongo.retrying(operation, self.metrics)


async def run_fused(
    config: WorkerConfig,
    stop: asyncio.Event,
    metrics: PipelineMetrics,
    classifier: SentimentClassifier,
    *,
    batch_size: int | None = None,
    exit_when_idle: float | None = None,
    kafka_overrides: dict[str, Any] | None = None,
) -> int:
    """Connect to Kafka, Mongo and MySQL from ``config`` and run fused until stopped; returns texts
    classified."""
    async with connect_stores(config, metrics) as (store, warehouse):
        worker = FusedWorker(
            config,
            store,
            warehouse,
            classifier,
            metrics,
            batch_size=batch_size,
            kafka_overrides=kafka_overrides,
        )
        await worker.run(stop, exit_when_idle=exit_when_idle)
        return worker.classified
