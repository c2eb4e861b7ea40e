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
from collections.abc import Sequence
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
from sentiment_workers.retry import with_retries

log = get_logger("inference")
BACKLOG_REFRESH_S = 5.0
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
        self._backlog_at = 0.0
        self._leases: set[str] = set()
        """Tokens of the claims taken and not yet written: their leases are renewed while the worker lives,
        and a claim of suspects is only taken when there is none."""
        self._drained = asyncio.Event()
        self._drained.set()

    async def _mongo(self, operation: Any) -> Any:
        return await with_retries(
            operation,
            store="mongo",
            is_transient=mongo.is_transient,
            is_auth_error=mongo.is_auth_error,
            metrics=self.metrics,
        )

    async def _mysql(self, operation: Any) -> Any:
        return await with_retries(
            operation,
            store="mysql",
            is_transient=mysql.is_transient,
            is_auth_error=mysql.is_auth_error,
            metrics=self.metrics,
        )

    async def prepare(self) -> None:
        """Idempotent start-up: staging indexes and the warehouse table."""
        await self._mongo(self.store.ensure_indexes)
        await self._mysql(self.warehouse.ensure_schema)

    async def run(self, stop: asyncio.Event, *, exit_when_idle: float | None = None) -> None:
        """Run until ``stop`` is set; with ``exit_when_idle``, also return once nothing was claimable and
        the backlog was empty for that many seconds."""
        await self.prepare()
        log.info("inference worker started", owner=self.owner, model=self.classifier.model_id)
        to_predict: asyncio.Queue[Claim | None] = asyncio.Queue(maxsize=1)
        to_write: asyncio.Queue[ClassifiedBatch | None] = asyncio.Queue(maxsize=1)
        tasks = [
            asyncio.create_task(self._claim_loop(stop, to_predict, exit_when_idle), name="claim"),
            asyncio.create_task(self._predict_loop(to_predict, to_write), name="predict"),
            asyncio.create_task(self._write_loop(to_write), name="write"),
        ]
        renewer = asyncio.create_task(self._renew_loop(), name="renew")
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in [*tasks, renewer]:
                task.cancel()
        log.info("inference worker stopped", classified=self.classified)

    # -- claim -----------------------------------------------------------------------------------

    async def _claim_loop(
        self, stop: asyncio.Event, out: asyncio.Queue[Claim | None], exit_when_idle: float | None
    ) -> None:
        idle_since: float | None = None
        while not stop.is_set():
            await self._refresh_backlog()
            exclusive = not self._leases
            claim = await self._mongo(
                lambda exclusive=exclusive: self.store.claim(
                    self.owner, self.claim_size, self.config.lease_seconds, exclusive=exclusive
                )
            )
            if claim.suspects_waiting:  # finish what is in flight, then claim the suspects alone
                await self._drained.wait()
                continue
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
                await asyncio.wait_for(stop.wait(), self.config.poll_interval_seconds)
        await out.put(None)  # normal end only: on an error, run() cancels every task

    async def _renew_loop(self) -> None:
        """Extend the leases of the claims in flight every third of a lease: a lease then only expires when
        its worker is gone (killed, wedged, partitioned from Mongo), which is what ``attempts`` counts."""
        interval = self.config.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            for token in list(self._leases):
                try:
                    await self._mongo(lambda token=token: self.store.renew(token, self.config.lease_seconds))
                except Exception as exc:  # not transient: the lease may expire, the claim is then redone
                    log.warning("lease renewal failed", error=f"{type(exc).__name__}: {exc}"[:300])

    async def _refresh_backlog(self) -> None:
        if time.monotonic() - self._backlog_at >= BACKLOG_REFRESH_S:
            self._backlog_at = time.monotonic()
            self.metrics.pending_backlog.set(await self._mongo(self.store.count_backlog))

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
        self, inbox: asyncio.Queue[Claim | None], out: asyncio.Queue[ClassifiedBatch | None]
    ) -> None:
        while (claim := await inbox.get()) is not None:
            await out.put(await self.classify(claim))
        await out.put(None)

    async def classify(self, claim: Claim) -> ClassifiedBatch:
        """Run the model on a claim (in a thread); isolate texts that make it raise."""
        docs = claim.documents
        texts = [str(d["comment"]) for d in docs]
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
            self._leases.discard(batch.claim.token)
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
    store = StagingStore.from_config(config)
    warehouse = await with_retries(
        lambda: Warehouse.connect(config),
        store="mysql",
        is_transient=mysql.is_transient,
        is_auth_error=mysql.is_auth_error,
        metrics=metrics,
    )
    try:
        worker = InferenceWorker(config, store, warehouse, classifier, metrics, claim_size=claim_size)
        await worker.run(stop, exit_when_idle=exit_when_idle)
        return worker.classified
    finally:
        store.close()
        await warehouse.close()
