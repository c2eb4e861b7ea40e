"""The inference worker: MongoDB staging -> model -> MySQL ``dw_messages``, exactly once per message id.

Three tasks joined by one-slot queues, so Mongo I/O, the model and MySQL I/O overlap:

* claim: lease a batch (three Mongo round trips, see :meth:`StagingStore.claim`). A claim that did not
  finish (its worker died) comes back halved, suspects first, until a document that keeps killing workers
  is claimed alone; claimed alone more than ``max_attempts`` times, it is dead-lettered
  (``too_many_attempts``): an innocent document never is;
* predict: ``classifier.predict`` in a thread; if the batch raises, texts are retried one by one and the
  ones that still raise are dead-lettered with the error (a poison text never crash-loops the worker);
* write: upsert the batch into MySQL in one transaction, then mark the Mongo documents done. Rows MySQL
  refuses because of the data (``mysql.is_rejection``) are isolated by bisection
  (:mod:`sentiment_workers.isolation`) and dead-lettered alone (``store_rejected``); the others are written.

A crash anywhere leaves the documents leased, not done; once the lease expires another worker re-claims
them and upserts again, which updates the same rows (primary key = message id): never lost, never twice.
SIGTERM: stop claiming, finish the batches in flight, exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from sentiment_workers.adapters import mongo, mysql
from sentiment_workers.adapters.mongo import Claim, StagingStore
from sentiment_workers.adapters.mysql import Warehouse, WarehouseRow
from sentiment_workers.config import WorkerConfig
from sentiment_workers.isolation import describe, write_isolating
from sentiment_workers.logging import get_logger
from sentiment_workers.messages import DeadLetterReason, utcnow
from sentiment_workers.metrics import PipelineMetrics
from sentiment_workers.model import Prediction, SentimentClassifier

log = get_logger("inference")
BACKLOG_REFRESH_S = 5.0
"""How often the backlog gauge is read (and, with the same cadence, expired fused batches released)."""
BACKLOG_READ_TIMEOUT_S = 15.0
"""A backlog read that takes longer fails: the gauge keeps its last value."""
DEFAULT_MAX_ATTEMPTS = 3
"""Claims of a document ALONE that may end without a result (its worker died) before it is dead-lettered."""


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass
class ClassifiedBatch:
    """A claim with its predictions, ready to be written."""

    claim: Claim
    rows: list[WarehouseRow]
    failed: list[tuple[dict[str, Any], str]]
    """Documents the model could not classify, with the error."""


class InferenceWorker:
    """Classify staged messages until stopped (or until idle, for batch runs)."""

    def __init__(
        self,
        config: WorkerConfig,
        store: StagingStore,
        warehouse: Warehouse,
        classifier: SentimentClassifier,
        metrics: PipelineMetrics,
        *,
        claim_size: int | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> None:
        self.config = config
        self.store = store
        self.warehouse = warehouse
        self.classifier = classifier
        self.metrics = metrics
        self.owner = config.worker_id or default_worker_id()
        self.claim_size = claim_size or config.model_batch_size * 4
        self.max_attempts = max_attempts
        self.classified = 0
        self.backlog: Callable[[], Awaitable[int]] = store.count_backlog
        """What ``sentiment_inference_backlog_messages`` reports, read every ``backlog_refresh_seconds``: the
        staged messages not classified yet (:meth:`StagingStore.count_backlog`). A fused worker puts its own
        here (its group's Kafka lag plus the staged messages waiting for the lease path)."""
        self.backlog_refresh_seconds = BACKLOG_REFRESH_S
        self._leases: set[str] = set()
        """Tokens of the claims taken and not yet written: their leases are renewed while the worker lives,
        and a claim of suspects is only taken when there is none."""
        self._drained = asyncio.Event()
        self._drained.set()
        self._batches: dict[str, set[str]] = {}
        """Fused claims among ``_leases``: their batch documents (the leases, renewed one write each)."""
        self.exclusive_wanted = asyncio.Event()
        """Set while suspects wait for a claim of their own: a fused worker takes no new batch meanwhile."""
        self.after_write: Callable[[Claim], Awaitable[None]] | None = None
        """Called once a batch is written, in claim order (a fused worker commits its Kafka offsets there)."""
        self.claim_poll_seconds = config.poll_interval_seconds
        """Pause between claims when nothing was claimable (a fused worker only claims replays: longer)."""
        self._released_at = 0.0

    async def _mongo(self, operation: Any) -> Any:
        return await mongo.retrying(operation, self.metrics)

    async def _mysql(self, operation: Any) -> Any:
        return await mysql.retrying(operation, self.metrics)

    async def prepare(self) -> None:
        """Idempotent start-up: staging indexes and the warehouse table."""
        await self._mongo(self.store.ensure_indexes)
        await self._mysql(self.warehouse.ensure_schema)

    async def run(
        self,
        stop: asyncio.Event,
        *,
        exit_when_idle: float | None = None,
        feeder: Callable[[asyncio.Queue[Claim | None]], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        """Run until ``stop`` is set; with ``exit_when_idle``, also return once nothing was claimable and
        the backlog was empty for that many seconds. ``feeder`` (a fused worker's Kafka loop) puts its own
        claims on the same queue as the claim loop, and the pipeline ends once both are done."""
        await self.prepare()
        log.info("inference worker started", owner=self.owner, model=self.classifier.model_id)
        to_predict: asyncio.Queue[Claim | None] = asyncio.Queue(maxsize=1)
        to_write: asyncio.Queue[ClassifiedBatch | None] = asyncio.Queue(maxsize=1)
        sources = [self._claim_loop(stop, to_predict, exit_when_idle)]
        if feeder is not None:
            sources.append(feeder(to_predict))
        tasks = [
            *(asyncio.create_task(source, name="claim") for source in sources),
            asyncio.create_task(self._predict_loop(to_predict, to_write, len(sources)), name="predict"),
            asyncio.create_task(self._write_loop(to_write), name="write"),
        ]
        background = [
            asyncio.create_task(self._renew_loop(), name="renew"),
            asyncio.create_task(self._backlog_loop(), name="backlog"),
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in [*tasks, *background]:
                task.cancel()
        log.info("inference worker stopped", classified=self.classified)

    # -- claim -----------------------------------------------------------------------------------

    async def _claim_loop(
        self, stop: asyncio.Event, out: asyncio.Queue[Claim | None], exit_when_idle: float | None
    ) -> None:
        idle_since: float | None = None
        while not stop.is_set():
            await self._release_expired_batches()
            exclusive = not self._leases
            claim = await self._mongo(
                lambda exclusive=exclusive: self.store.claim(
                    self.owner, self.claim_size, self.config.lease_seconds, exclusive=exclusive
                )
            )
            if claim.suspects_waiting:  # finish what is in flight, then claim the suspects alone
                self.exclusive_wanted.set()
                await self._drained.wait()
                continue
            if not any(int(d.get("attempts", 0)) > 1 for d in claim.documents):
                self.exclusive_wanted.clear()  # no suspect left in this claim: fused batches may flow again
            claim = await self._drop_exhausted(claim)
            if claim.documents:
                idle_since = None
                self.metrics.batch_size.labels("infer").observe(len(claim.documents))
                self._leases.add(claim.token)
                self._drained.clear()
                await out.put(claim)
                continue
            now = time.monotonic()
            idle_since = idle_since or now
            if exit_when_idle is not None and now - idle_since >= exit_when_idle:
                backlog = await self._mongo(self.store.count_backlog)
                self.metrics.pending_backlog.set(backlog)
                if backlog == 0:
                    log.info("backlog empty, exiting", idle_s=exit_when_idle)
                    break
                idle_since = now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.claim_poll_seconds)
        await out.put(None)  # normal end only: on an error, run() cancels every task

    async def _renew_loop(self) -> None:
        """Extend the leases of the claims in flight every third of a lease: a lease then only expires when
        its worker is gone (killed, wedged, partitioned from Mongo), which is what ``attempts`` counts."""
        interval = self.config.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            for token in list(self._leases):
                renew = self.store.renew_batch if token in self._batches else self.store.renew
                try:
                    await self._mongo(
                        lambda token=token, renew=renew: renew(token, self.config.lease_seconds)
                    )
                except Exception as exc:  # not transient: the lease may expire, the claim is then redone
                    log.warning("lease renewal failed", error=f"{type(exc).__name__}: {exc}"[:300])

    async def _backlog_loop(self) -> None:
        """Set the backlog gauge from :attr:`backlog` every ``backlog_refresh_seconds``, in its own task (a
        claim loop waiting on the model does not hold it back). A read that fails or hangs leaves the last
        value and is logged once, until a read works again: the gauge never stops the worker."""
        failing = False
        while True:
            try:
                value = await asyncio.wait_for(self.backlog(), BACKLOG_READ_TIMEOUT_S)
            except Exception as exc:
                if not failing:
                    log.warning(
                        "backlog not read; the gauge keeps its last value",
                        error=f"{type(exc).__name__}: {exc}"[:300],
                    )
                failing = True
            else:
                if failing:
                    log.info("backlog read again", backlog=value)
                failing = False
                self.metrics.pending_backlog.set(value)
            await asyncio.sleep(self.backlog_refresh_seconds)

    async def _release_expired_batches(self) -> None:
        """Every few seconds: the documents of fused batches whose worker died go back to the lease path."""
        if time.monotonic() - self._released_at >= BACKLOG_REFRESH_S:
            self._released_at = time.monotonic()
            released = await self._mongo(self.store.release_expired_batches)
            if released:
                log.warning("fused batches of a dead worker released to the lease path", batches=released)

    def track(self, claim: Claim) -> None:
        """Hold a claim taken outside the claim loop (a fused batch): renewed, written, then released."""
        self._leases.add(claim.token)
        if claim.batch:
            self._batches[claim.token] = {str(d["batch"]) for d in claim.documents}
        self._drained.clear()

    def _exhausted(self, doc: dict[str, Any]) -> bool:
        return int(doc.get("solo_attempts", 0)) > self.max_attempts

    async def _drop_exhausted(self, claim: Claim) -> Claim:
        """Dead-letter a document claimed alone more than ``max_attempts`` times: its workers died while it
        was the only document they held, so it is the culprit (claims shrink until it is alone)."""
        exhausted = [d for d in claim.documents if self._exhausted(d)]
        if not exhausted:
            return claim
        detail = (
            f"claimed alone {self.max_attempts}+ times without finishing (the worker died or timed out "
            "on this message, e.g. out of memory)"
        )
        await self._dead_letter(exhausted, DeadLetterReason.TOO_MANY_ATTEMPTS, detail)
        keep = [d for d in claim.documents if not self._exhausted(d)]
        return Claim(token=claim.token, owner=claim.owner, expires=claim.expires, documents=keep)

    async def _dead_letter(
        self, docs: Sequence[dict[str, Any]], reason: DeadLetterReason, detail: str
    ) -> None:
        new = await self._mongo(lambda: self.store.dead_letter_staged(docs, reason.value, detail, utcnow()))
        self.metrics.messages_dead_lettered.labels("infer", reason.value).inc(new)
        log.warning("messages dead-lettered", reason=reason.value, count=len(docs), detail=detail[:300])

    # -- predict ---------------------------------------------------------------------------------

    async def _predict_loop(
        self,
        inbox: asyncio.Queue[Claim | None],
        out: asyncio.Queue[ClassifiedBatch | None],
        sources: int = 1,
    ) -> None:
        """Classify claims in the order they come; ends after ``sources`` end markers (the claim loop's, and
        a fused worker's Kafka loop's)."""
        ended = 0
        while ended < sources:
            claim = await inbox.get()
            if claim is None:
                ended += 1
                continue
            await out.put(await self.classify(claim))
        await out.put(None)

    async def classify(self, claim: Claim) -> ClassifiedBatch:
        """Run the model on a claim (in a thread); isolate texts that make it raise."""
        docs = claim.documents
        texts = [str(d["comment"]) for d in docs]
        if not docs:  # a fused batch of duplicates or rejects only: nothing to classify, offsets to commit
            return ClassifiedBatch(claim=claim, rows=[], failed=[])
        started = time.perf_counter()
        failed: list[tuple[dict[str, Any], str]] = []
        try:
            predictions: list[Prediction | None] = list(await asyncio.to_thread(self._predict, texts))
        except Exception as exc:
            log.warning("batch prediction failed, retrying texts one by one", error=repr(exc)[:300])
            predictions = []
            for doc, text in zip(docs, texts, strict=True):
                try:
                    predictions.extend(await asyncio.to_thread(self._predict, [text]))
                except Exception as one_exc:
                    predictions.append(None)
                    failed.append((doc, f"{type(one_exc).__name__}: {one_exc}"[:1000]))
        self.metrics.inference_seconds.observe(time.perf_counter() - started)
        processed_at = utcnow()
        rows = [
            WarehouseRow(
                id=str(doc["_id"]),
                user_id=doc.get("user_id"),
                comment=str(doc["comment"]),
                ingest_ts=doc["ingest_ts"],
                sentiment_label=pred.label,
                sentiment_score=min(max(float(pred.score), 0.0), 1.0),
                raw_json=doc.get("payload"),
                model=self.classifier.model_id,
                processed_at=processed_at,
            )
            for doc, pred in zip(docs, predictions, strict=True)
            if pred is not None
        ]
        return ClassifiedBatch(claim=claim, rows=rows, failed=failed)

    def _predict(self, texts: list[str]) -> list[Prediction]:
        predictions = self.classifier.predict(texts)
        if len(predictions) != len(texts):
            raise RuntimeError(f"model returned {len(predictions)} predictions for {len(texts)} texts")
        return predictions

    # -- write -----------------------------------------------------------------------------------

    async def _write_loop(self, inbox: asyncio.Queue[ClassifiedBatch | None]) -> None:
        while (batch := await inbox.get()) is not None:
            await self.write(batch)
            if self.after_write is not None:
                await self.after_write(batch.claim)
            self._leases.discard(batch.claim.token)
            self._batches.pop(batch.claim.token, None)
            if not self._leases:
                self._drained.set()

    async def write(self, batch: ClassifiedBatch) -> None:
        """MySQL first (one transaction), then mark done in Mongo; both retried while their server is down.

        Rows MySQL refuses are found by bisection and dead-lettered alone (``store_rejected``); a document
        Mongo refuses to mark done with its prediction (its row is committed) is marked done with a note.
        """
        for doc, error in batch.failed:
            await self._dead_letter([doc], DeadLetterReason.MODEL_ERROR, error)
        if not batch.rows:
            if batch.claim.batch:
                await self._complete_fused(batch.claim, [])
            return
        written = await write_isolating(
            batch.rows,
            lambda part: self._mysql(lambda: self.warehouse.upsert(part)),
            is_rejection=mysql.is_rejection,
        )
        if written.rejected:
            by_id = {str(d["_id"]): d for d in batch.claim.documents}
            for row, exc in written.rejected:
                await self._dead_letter(
                    [by_id[row.id]], DeadLetterReason.STORE_REJECTED, describe("mysql", exc)
                )
        refused = {row.id for row, _ in written.rejected}
        rows = [r for r in batch.rows if r.id not in refused]
        if batch.claim.batch:  # fused: one write completes the batch, the raw documents stay untouched
            committed = utcnow()
            await self._complete_fused(batch.claim, rows)
            self._observe_written(rows, committed)
            return
        if not rows:
            return
        committed = utcnow()
        marked = await write_isolating(
            rows,
            lambda part: self._mongo(lambda: self.store.mark_done([(r.id, _done_fields(r)) for r in part])),
            is_rejection=mongo.is_rejection,
        )
        for row, exc in marked.rejected:
            note = describe("mongo", exc)
            log.warning("prediction not stored in staging; marked done with a note", id=row.id, error=note)
            await self._mongo(
                lambda row=row, note=note: self.store.mark_done_without_prediction(row.id, note)
            )
        self._observe_written(rows, committed)

    async def _complete_fused(self, claim: Claim, rows: Sequence[WarehouseRow]) -> None:
        """One write per batch document (a batch split by a Mongo rejection has several): done, with the
        predictions of its documents."""
        per_batch: dict[str, list[tuple[str, dict[str, Any]]]] = {
            str(d["batch"]): [] for d in claim.documents
        }
        batch_of = {str(d["_id"]): str(d["batch"]) for d in claim.documents}
        for row in rows:
            per_batch[batch_of[row.id]].append((row.id, _done_fields(row)))
        for token, results in per_batch.items():
            try:
                completed = await self._mongo(
                    lambda token=token, results=results: self.store.complete_batch(token, results)
                )
            except Exception as exc:
                if not mongo.is_rejection(exc):
                    raise
                # Mongo refuses the predictions (their rows are committed): complete the batch without them.
                note = describe("mongo", exc)
                log.warning("predictions not stored in staging; batch completed with a note", error=note)
                completed = await self._mongo(
                    lambda token=token, note=note: self.store.complete_batch(token, [], note)
                )
            if not completed:
                log.warning("fused batch released before it completed; the lease path redoes it", batch=token)

    def _observe_written(self, rows: Sequence[WarehouseRow], committed: Any) -> None:
        for row in rows:
            self.metrics.texts_classified.labels(row.sentiment_label).inc()
            self.metrics.end_to_end_latency.observe(max((committed - row.ingest_ts).total_seconds(), 0.0))
        self.classified += len(rows)


def _done_fields(row: WarehouseRow) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "sentiment_label": row.sentiment_label,
        "sentiment_score": row.sentiment_score,
        "model": row.model,
        "processed_at": row.processed_at,
    }
    return fields


@contextlib.asynccontextmanager
async def connect_stores(
    config: WorkerConfig, metrics: PipelineMetrics
) -> AsyncIterator[tuple[StagingStore, Warehouse]]:
    """The staging store and the warehouse of ``config`` (MySQL connected with the data plane's retries),
    closed on exit."""
    store = StagingStore.from_config(config)
    try:
        warehouse = await mysql.retrying(lambda: Warehouse.connect(config), metrics)
        try:
            yield store, warehouse
        finally:
            await warehouse.close()
    finally:
        store.close()


async def run_inference(
    config: WorkerConfig,
    stop: asyncio.Event,
    metrics: PipelineMetrics,
    classifier: SentimentClassifier,
    *,
    claim_size: int | None = None,
    exit_when_idle: float | None = None,
) -> int:
    """Connect to Mongo and MySQL from ``config`` and classify until stopped; returns texts classified."""
    async with connect_stores(config, metrics) as (store, warehouse):
        worker = InferenceWorker(config, store, warehouse, classifier, metrics, claim_size=claim_size)
        await worker.run(stop, exit_when_idle=exit_when_idle)
        return worker.classified
