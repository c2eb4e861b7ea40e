"""MongoDB adapter: the staging collection (raw messages + inference leases) and the dead letters.

Staged document lifecycle::

    pending (lease_expires <= now)  --claim-->  pending, leased (lease_token, lease_expires > now)
        --mark_done-->  done (+ prediction)          --expired lease-->  claimable again
        --dead_letter-->  dead_lettered (+ reason, copy in the dead-letter collection)

Every batch operation is a constant number of round trips: a claim is one find, one ``update_many`` and
one re-read; marking a batch done is one ``bulk_write``. See docs/data-plane.md for the measurements.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from bson import Binary
from bson.errors import InvalidDocument
from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorCollection
from pymongo import ASCENDING, DESCENDING, UpdateOne
from pymongo.errors import (
    AutoReconnect,
    BulkWriteError,
    ConnectionFailure,
    DocumentTooLarge,
    OperationFailure,
    PyMongoError,
)

from sentiment_workers.config import WorkerConfig
from sentiment_workers.messages import Rejected, StagedMessage, scrub_text, utcnow
from sentiment_workers.metrics import PipelineMetrics
from sentiment_workers.retry import with_retries

PENDING = "pending"
DONE = "done"
DEAD_LETTERED = "dead_lettered"
FUSED = "fused"
"""Staged by a fused worker (:mod:`sentiment_workers.fused`) in batch ``batch``: done or in flight as its
batch document in the ``<collection>_batches`` collection says. The raw document is never updated on that
path."""
BATCH_OPEN = "open"
BATCH_DONE = "done"
BATCH_RELEASED = "released"
EPOCH = datetime(1970, 1, 1)
DUPLICATE_KEY = 11000
SOURCES = "sources"
DETAIL_LIMIT = 2000
CLAIM_INDEX = "claim_pending"
LEGACY_CLAIM_INDEX = "claim"

# Server codes meaning "this server is (briefly) unavailable": network errors, shutting down, stepping down,
# a write conflict or a time limit. Retried like a lost connection.
TRANSIENT_CODES = frozenset(
    {
        6,  # HostUnreachable
        7,  # HostNotFound
        89,  # NetworkTimeout
        91,  # ShutdownInProgress
        112,  # WriteConflict
        189,  # PrimarySteppedDown
        262,  # ExceededTimeLimit
        9001,  # SocketException
        10107,  # NotWritablePrimary
        11600,  # InterruptedAtShutdown
        11602,  # InterruptedDueToReplStateChange
        13435,  # NotPrimaryNoSecondaryOk
        13436,  # NotPrimaryOrSecondary
    }
)
# Server codes meaning "this document is refused": it will be refused again, whatever the retries.
REJECTION_CODES = frozenset(
    {
        2,  # BadValue
        9,  # FailedToParse
        14,  # TypeMismatch
        15,  # Overflow (e.g. nesting deeper than the server allows)
        16,  # InvalidLength
        17,  # ProtocolError (a malformed document)
        28,  # PathNotViable
        52,  # DollarPrefixedFieldName
        55,  # InvalidDBRef
        56,  # EmptyFieldName
        57,  # DottedFieldName
        121,  # DocumentValidationFailure
        10334,  # BSONObjectTooLarge
        17419,  # document grew past the size limit
        17420,  # document to upsert is larger than the size limit
    }
)
# Server codes meaning "the server refuses these credentials or this user's rights": a wrong Secret (the URI's
# user or password) or missing roles. No retry fixes them; the worker waits slowly (retry.with_retries).
AUTH_CODES = frozenset(
    {
        11,  # UserNotFound
        13,  # Unauthorized (no such right on this database, or not authenticated)
        18,  # AuthenticationFailed (wrong user or password)
        33,  # AuthSchemaIncompatible / mechanism unavailable
        334,  # MechanismUnavailable
    }
)
# Client-side errors raised while encoding one document to BSON.
_ENCODING_ERRORS = (InvalidDocument, DocumentTooLarge, UnicodeError, OverflowError, RecursionError)


def is_transient(exc: BaseException) -> bool:
    """True for errors that mean "Mongo is (briefly) unreachable": retry the same request."""
    if isinstance(exc, ConnectionFailure | AutoReconnect):  # incl. server selection and network timeouts
        return True
    if isinstance(exc, BulkWriteError):  # per-document write errors: see is_rejection
        return False
    if isinstance(exc, PyMongoError) and exc.has_error_label("RetryableWriteError"):
        return True
    return isinstance(exc, OperationFailure) and exc.code in TRANSIENT_CODES


def is_auth_error(exc: BaseException) -> bool:
    """True for "Mongo refuses these credentials or this user's rights" (SecantusDB and mongod answer a wrong
    password with code 18 AuthenticationFailed, a missing role with 13 Unauthorized)."""
    if isinstance(exc, BulkWriteError):
        return any(e.get("code") in AUTH_CODES for e in exc.details.get("writeErrors", []))
    return isinstance(exc, OperationFailure) and exc.code in AUTH_CODES


def is_rejection(exc: BaseException) -> bool:
    """True for errors that mean "Mongo refuses this data": isolate the documents, dead-letter them.

    Encoding errors (a lone surrogate, an integer over 64 bits, a NUL in a key, nesting the encoder cannot
    follow, a document over 16 MiB) and server write errors whose codes are all about the document.
    Anything else (unknown command, ...) is neither transient nor a rejection: it propagates (refused
    credentials or rights, :func:`is_auth_error`, are retried slowly instead).
    """
    if isinstance(exc, _ENCODING_ERRORS):
        return True
    if isinstance(exc, BulkWriteError):  # duplicate keys (a racing upsert) may come along: harmless
        codes = {e.get("code") for e in exc.details.get("writeErrors", [])}
        return bool(codes & REJECTION_CODES) and codes <= REJECTION_CODES | {DUPLICATE_KEY}
    return isinstance(exc, OperationFailure) and exc.code in REJECTION_CODES


def claim_size_for(limit: int, attempts: int) -> int:
    """The size of a claim whose most-claimed document was claimed ``attempts`` times already: halved per
    unfinished attempt (a bisection across claims), never below one."""
    return max(1, limit >> min(attempts, 62))


@dataclass(frozen=True)
class StageResult:
    """What one consumer batch did to the store."""

    staged: int
    """Documents newly inserted (replayed messages already staged are not counted)."""
    dead_lettered: dict[str, int]
    """Dead letters newly inserted, per reason."""


@dataclass(frozen=True)
class Claim:
    """A batch of staged documents leased to one worker under ``token`` until ``expires``."""

    token: str
    owner: str
    expires: datetime
    documents: list[dict[str, Any]]
    suspects_waiting: bool = False
    """Nothing claimed because the candidates include suspects and the claim was not ``exclusive``."""
    batch: bool = False
    """A fused batch (:meth:`StagingStore.stage_batch`): completed by :meth:`StagingStore.complete_batch`, one
    write for the batch, instead of marking each document done."""


def create_client(config: WorkerConfig, **overrides: Any) -> AsyncIOMotorClient[dict[str, Any]]:
    """A motor client; short server-selection timeout so outages surface quickly to the retry loop."""
    options: dict[str, Any] = {
        "serverSelectionTimeoutMS": 3000,
        "connectTimeoutMS": 3000,
        "tz_aware": False,
        "appname": "sentiment-workers",
    }
    options.update(overrides)
    return AsyncIOMotorClient(config.mongo_uri.get_secret_value(), **options)


class StagingStore:
    """The staging and dead-letter collections of one database."""

    def __init__(self, client: AsyncIOMotorClient[dict[str, Any]], config: WorkerConfig) -> None:
        self.client = client
        database = client[config.mongo_database]
        self.messages: AsyncIOMotorCollection[dict[str, Any]] = database[config.mongo_collection]
        self.dead_letters: AsyncIOMotorCollection[dict[str, Any]] = database[
            config.mongo_dead_letter_collection
        ]
        self.batches: AsyncIOMotorCollection[dict[str, Any]] = database[f"{config.mongo_collection}_batches"]
        self.raw_limit = config.max_message_bytes

    @classmethod
    def from_config(cls, config: WorkerConfig) -> StagingStore:
        return cls(create_client(config), config)

    def close(self) -> None:
        self.client.close()

    async def ping(self) -> None:
        """One authenticated read of the staging collection (reachability probe); raises when Mongo is not."""
        await self.messages.find_one({}, {"_id": 1})

    async def ensure_indexes(self) -> None:
        """Idempotent: the claim index and a reason index for the dead letters."""
        # Partial: only claimable-to-be documents carry an entry, so a fused insert (status ``fused``) or a
        # finished document costs no claim-index write (SecantusDB: 0.26 -> 0.18 ms per insert). The claim,
        # renewal and backlog queries all say ``status: pending``, which lets the planner use it.
        await self.messages.create_index(
            [("status", ASCENDING), ("lease_expires", ASCENDING)],
            name=CLAIM_INDEX,
            partialFilterExpression={"status": PENDING},
        )
        with contextlib.suppress(OperationFailure):  # the full index of earlier versions, if still there
            await self.messages.drop_index(LEGACY_CLAIM_INDEX)
        await self.dead_letters.create_index([("reason", ASCENDING)], name="reason")
        await self.batches.create_index([("state", ASCENDING), ("lease_expires", ASCENDING)], name="lease")

    # -- consumer side ---------------------------------------------------------------------------

    async def stage(
        self, messages: Sequence[StagedMessage], rejected: Sequence[Rejected], ingest_ts: datetime
    ) -> StageResult:
        """Upsert a batch keyed by message id (``$setOnInsert``: a replay changes nothing) and its rejects.

        Each staged document also collects the Kafka positions it was read from (``sources``, a set: a
        redelivery adds nothing), so ``reconcile`` can account for every offset, duplicates included.

        Dead letters are keyed by topic/partition/offset, so a redelivered reject is not stored twice.
        Idempotent: safe to repeat after a failure part-way.
        """
        staged = 0
        if messages:
            ops = []
            for message in messages:
                doc = message.to_document(ingest_ts)
                doc.update(status=PENDING, lease_expires=EPOCH, attempts=0)
                source = message.source
                delivered = {"t": source.topic, "p": source.partition, "o": source.offset}
                ops.append(
                    UpdateOne(
                        {"_id": message.id},
                        {"$setOnInsert": doc, "$addToSet": {SOURCES: delivered}},
                        upsert=True,
                    )
                )
            staged = len(await self._bulk_upsert(self.messages, ops))
        new_dead: dict[str, int] = {}
        if rejected:
            ops = [
                UpdateOne(
                    {"_id": f"{r.source.topic}:{r.source.partition}:{r.source.offset}"},
                    {"$setOnInsert": self._dead_letter_doc(r, ingest_ts)},
                    upsert=True,
                )
                for r in rejected
            ]
            for index in await self._bulk_upsert(self.dead_letters, ops):
                reason = rejected[index].reason.value
                new_dead[reason] = new_dead.get(reason, 0) + 1
        return StageResult(staged=staged, dead_lettered=new_dead)

    def _dead_letter_doc(self, rejected: Rejected, ts: datetime) -> dict[str, Any]:
        raw = rejected.source.value or b""
        return {
            "stage": "consume",
            "reason": rejected.reason.value,
            "detail": scrub_text(rejected.detail)[:DETAIL_LIMIT],
            "raw": Binary(raw[: self.raw_limit]),
            "raw_size": len(raw),
            "raw_truncated": len(raw) > self.raw_limit,
            "key": Binary(rejected.source.key) if rejected.source.key is not None else None,
            "topic": rejected.source.topic,
            "partition": rejected.source.partition,
            "offset": rejected.source.offset,
            "dead_lettered_at": ts,
        }

    @staticmethod
    async def _bulk_upsert(
        collection: AsyncIOMotorCollection[dict[str, Any]], ops: list[UpdateOne]
    ) -> list[int]:
        """Run an unordered bulk of upserts; return the indexes of the operations that inserted."""
        try:
            result = await collection.bulk_write(ops, ordered=False)
            return sorted(result.upserted_ids or {})
        except BulkWriteError as exc:
            # Two writers upserting the same new id race to E11000: the document exists, which is the goal.
            errors = exc.details.get("writeErrors", [])
            if errors and all(e.get("code") == DUPLICATE_KEY for e in errors):
                return sorted(int(u["index"]) for u in exc.details.get("upserted", []))
            raise

    # -- inference side --------------------------------------------------------------------------

    async def claim(self, owner: str, limit: int, lease_seconds: float, *, exclusive: bool = True) -> Claim:
        """Lease up to ``limit`` claimable documents in three round trips (find, update_many, re-read).

        Claimable: pending and never leased, or leased with an expired lease (a crashed worker). Each
        claim bumps ``attempts`` (and ``solo_attempts`` when the claim holds one document). Several workers
        may race for the same candidates; the conditional ``update_many`` gives each document to one of
        them, and each re-reads only what its token won.

        A claim that did not finish makes its documents suspects (``attempts`` >= 1): a claim holding a
        suspect that has been claimed ``a`` times is at most ``limit >> a`` documents, suspects first, so a
        document that kills every worker holding it is halved down to a claim of its own, while the others
        finish in the smaller claims (see :func:`claim_size_for`). ``exclusive`` says the worker holds no
        other claim: suspects are only claimed then (otherwise an empty claim says ``suspects_waiting``),
        and only then does a claim of one document count as a ``solo_attempts``, so a worker that dies
        on a document claimed alone died on that document.
        """
        now = utcnow()
        token = uuid.uuid4().hex
        expires = now + timedelta(seconds=lease_seconds)
        claimable = {"status": PENDING, "lease_expires": {"$lte": now}}
        candidates = (
            await self.messages.find(claimable, {"_id": 1, "attempts": 1})
            .sort([("lease_expires", DESCENDING)])  # expired leases (suspects) before never-leased
            .limit(limit)
            .to_list(limit)
        )
        if not candidates:
            return Claim(token=token, owner=owner, expires=expires, documents=[])
        most = max(int(c.get("attempts", 0)) for c in candidates)
        if most > 0 and not exclusive:
            return Claim(token=token, owner=owner, expires=expires, documents=[], suspects_waiting=True)
        size = claim_size_for(limit, most)
        if size < len(candidates):
            candidates = sorted(candidates, key=lambda c: -int(c.get("attempts", 0)))[:size]
        ids = [c["_id"] for c in candidates]
        solo = exclusive and len(ids) == 1
        increments = {"attempts": 1, "solo_attempts": 1} if solo else {"attempts": 1}
        await self.messages.update_many(
            {"_id": {"$in": ids}, **claimable},
            {
                "$set": {"lease_owner": owner, "lease_token": token, "lease_expires": expires},
                "$inc": increments,
            },
        )
        documents = await self.messages.find({"_id": {"$in": ids}, "lease_token": token}).to_list(None)
        return Claim(token=token, owner=owner, expires=expires, documents=documents)

    async def renew(self, token: str, lease_seconds: float) -> None:
        """Extend the lease of a claim still in progress (one ``update_many``); documents already done, or
        re-claimed by another worker after the lease expired, are not touched."""
        await self.messages.update_many(
            {"lease_token": token, "status": PENDING},
            {"$set": {"lease_expires": utcnow() + timedelta(seconds=lease_seconds)}},
        )

    async def mark_done(self, results: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Mark documents done with their prediction fields, one ``bulk_write``. Idempotent."""
        if not results:
            return
        ops = [
            UpdateOne(
                {"_id": doc_id},
                {
                    "$set": {"status": DONE, **fields},
                    "$unset": {"lease_owner": "", "lease_token": "", "lease_expires": ""},
                },
            )
            for doc_id, fields in results
        ]
        await self.messages.bulk_write(ops, ordered=False)

    async def mark_done_without_prediction(self, doc_id: str, note: str) -> None:
        """Mark one document done with only a note (its row is in the warehouse; Mongo refused the fields)."""
        await self.messages.update_one(
            {"_id": doc_id},
            {
                "$set": {"status": DONE, "done_note": scrub_text(note)[:DETAIL_LIMIT]},
                "$unset": {"lease_owner": "", "lease_token": "", "lease_expires": ""},
            },
        )

    async def dead_letter_staged(
        self, documents: Sequence[dict[str, Any]], reason: str, detail: str, ts: datetime
    ) -> int:
        """Copy staged documents to the dead letters (keyed ``infer:<id>``) and take them out of the queue.

        Returns how many dead letters were new or reopened. Idempotent. A message dead-lettered again after
        a replay gets its new reason and detail, and is no longer marked replayed.
        """
        if not documents:
            return 0
        ops = [
            UpdateOne(
                {"_id": f"infer:{doc['_id']}"},
                {
                    "$setOnInsert": {
                        "stage": "infer",
                        "message_id": doc["_id"],
                        "comment": doc.get("comment"),
                        "payload": doc.get("payload"),
                        "topic": doc.get("topic"),
                        "partition": doc.get("partition"),
                        "offset": doc.get("offset"),
                        "dead_lettered_at": ts,
                    },
                    "$set": {
                        "reason": reason,
                        "detail": scrub_text(detail)[:DETAIL_LIMIT],
                        "attempts": doc.get("attempts"),
                    },
                    "$unset": {"replayed_at": "", "replay_result": ""},
                },
                upsert=True,
            )
            for doc in documents
        ]
        reopened = await self.dead_letters.count_documents(
            {"_id": {"$in": [f"infer:{d['_id']}" for d in documents]}, "replayed_at": {"$exists": True}}
        )
        new = len(await self._bulk_upsert(self.dead_letters, ops)) + reopened
        await self.messages.update_many(
            {"_id": {"$in": [d["_id"] for d in documents]}, "status": {"$in": [PENDING, FUSED]}},
            {
                "$set": {"status": DEAD_LETTERED, "dead_letter_reason": reason},
                "$unset": {"lease_owner": "", "lease_token": "", "lease_expires": ""},
            },
        )
        return new

    async def count_backlog(self) -> int:
        """Staged documents not classified yet (pending, leased or not, and those of open fused batches)."""
        pending = await self.count_pending()
        rows = await self.batches.aggregate(
            [{"$match": {"state": BATCH_OPEN}}, {"$group": {"_id": None, "n": {"$sum": "$size"}}}]
        ).to_list(None)
        return pending + sum(int(row["n"]) for row in rows)

    async def count_pending(self) -> int:
        """Staged documents waiting for the lease path (released fused batches, replays, backfills)."""
        return int(await self.messages.count_documents({"status": PENDING}))

    async def count_by_status(self) -> dict[str, int]:
        """Documents per status, e.g. ``{"done": 10, "pending": 2}``. A fused document counts as its batch
        says: ``done`` once the batch is complete, ``pending`` while it is in flight."""
        rows = await self.messages.aggregate([{"$group": {"_id": "$status", "n": {"$sum": 1}}}]).to_list(None)
        counts = {row["_id"]: row["n"] for row in rows}
        if counts.pop(FUSED, 0):
            per_batch = await self.messages.aggregate(
                [{"$match": {"status": FUSED}}, {"$group": {"_id": "$batch", "n": {"$sum": 1}}}]
            ).to_list(None)
            done = {
                b["_id"]
                async for b in self.batches.find(
                    {"_id": {"$in": [row["_id"] for row in per_batch]}, "state": BATCH_DONE}, {"_id": 1}
                )
            }
            for row in per_batch:
                status = DONE if row["_id"] in done else PENDING
                counts[status] = counts.get(status, 0) + int(row["n"])
        return counts

    # -- fused batches: one insert per message, leases and completion per batch ------------------------

    async def stage_batch(
        self, messages: Sequence[StagedMessage], owner: str, lease_seconds: float, ingest_ts: datetime
    ) -> tuple[Claim, StageResult]:
        """Stage a fused worker's batch: one batch document (the lease), then one insert per new message.

        The batch document is written first, so a document staged under it always has a lease that
        expires if its worker dies (:meth:`release_expired_batches` then hands its documents to the lease
        path). Messages already staged (a redelivery, a duplicate) are not inserted again: their Kafka
        position is added to ``sources`` and they stay with whoever staged them; the returned claim holds
        only the documents this call inserted. Idempotent per message id, like :meth:`stage`.
        """
        now = utcnow()
        token = uuid.uuid4().hex
        expires = now + timedelta(seconds=lease_seconds)
        docs = []
        for message in messages:
            doc = message.to_document(ingest_ts)
            source = message.source
            doc.update(
                status=FUSED,
                batch=token,
                attempts=1,
                sources=[{"t": source.topic, "p": source.partition, "o": source.offset}],
            )
            docs.append(doc)
        if not docs:
            return Claim(token=token, owner=owner, expires=expires, documents=[], batch=True), StageResult(
                0, {}
            )
        await self.batches.insert_one(
            {"_id": token, "state": BATCH_OPEN, "owner": owner, "lease_expires": expires, "size": len(docs)}
        )
        try:
            existing = await self._insert_new(docs)
        except Exception:
            # Refused or cut off: what this call inserted (a server may refuse one document and take the
            # others) goes to the lease path at once, not after the lease; the caller retries or splits.
            with contextlib.suppress(PyMongoError):
                await self._release_batch(token, attempted=False)
            raise
        if existing:
            await self.messages.bulk_write(
                [
                    UpdateOne({"_id": docs[i]["_id"]}, {"$addToSet": {SOURCES: docs[i][SOURCES][0]}})
                    for i in existing
                ],
                ordered=False,
            )
        fresh = [doc for i, doc in enumerate(docs) if i not in existing]
        if existing:  # the batch holds only what it inserted (nothing: it is not needed)
            if fresh:
                await self.batches.update_one({"_id": token}, {"$set": {"size": len(fresh)}})
            else:
                await self.batches.delete_one({"_id": token, "state": BATCH_OPEN})
        claim = Claim(token=token, owner=owner, expires=expires, documents=fresh, batch=True)
        return claim, StageResult(staged=len(fresh), dead_lettered={})

    async def _insert_new(self, docs: list[dict[str, Any]]) -> set[int]:
        """Insert documents (unordered); return the indexes of those whose id was already staged."""
        try:
            await self.messages.insert_many(docs, ordered=False)
            return set()
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if errors and all(e.get("code") == DUPLICATE_KEY for e in errors):
                return {int(e["index"]) for e in errors}
            raise

    async def renew_batch(self, token: str, lease_seconds: float) -> None:
        """Extend the lease of a fused batch still in flight (one write, whatever its size)."""
        await self.batches.update_one(
            {"_id": token, "state": BATCH_OPEN},
            {"$set": {"lease_expires": utcnow() + timedelta(seconds=lease_seconds)}},
        )

    async def complete_batch(
        self, token: str, results: Sequence[tuple[str, dict[str, Any]]], note: str | None = None
    ) -> bool:
        """Mark a fused batch done with its predictions (one write); its documents count as ``done``.

        False when the batch was released meanwhile (its lease expired): its documents are then pending
        again and the lease path finishes them (the warehouse upsert makes that harmless).
        """
        fields: dict[str, Any] = {
            "state": BATCH_DONE,
            "done_at": utcnow(),
            "results": [{"_id": doc_id, **values} for doc_id, values in results],
        }
        if note is not None:
            fields["done_note"] = scrub_text(note)[:DETAIL_LIMIT]
        result = await self.batches.update_one(
            {"_id": token, "state": BATCH_OPEN}, {"$set": fields, "$unset": {"lease_expires": ""}}
        )
        return bool(result.modified_count)

    async def release_expired_batches(self, limit: int = 16) -> int:
        """Hand the documents of fused batches whose worker died (lease expired) to the lease path: they
        become ``pending`` and claimable, with the dead batch counted as one attempt (so the claim path's
        bisection isolates a message that kills workers). Returns the number of batches released."""
        now = utcnow()
        expired = await self.batches.find(
            {"state": BATCH_OPEN, "lease_expires": {"$lte": now}}, {"_id": 1}
        ).to_list(limit)
        for batch in expired:
            await self._release_batch(batch["_id"], attempted=True)
        return len(expired)

    async def _release_batch(self, token: str, *, attempted: bool) -> None:
        """Make a batch's fused documents ``pending`` and claimable (``attempted``: its worker died holding
        them, which counts as one attempt; otherwise the batch never reached the model: no attempt)."""
        update: dict[str, Any] = {"status": PENDING, "lease_expires": EPOCH}
        if not attempted:
            update["attempts"] = 0
        await self.messages.update_many({"batch": token, "status": FUSED}, {"$set": update})
        await self.batches.update_one(
            {"_id": token, "state": BATCH_OPEN}, {"$set": {"state": BATCH_RELEASED, "released_at": utcnow()}}
        )

    async def batch_results(self, doc_id: str) -> dict[str, Any] | None:
        """The prediction a completed fused batch stored for one message (None: not in a done batch)."""
        doc = await self.messages.find_one({"_id": doc_id, "status": FUSED}, {"batch": 1})
        if doc is None:
            return None
        batch = await self.batches.find_one({"_id": doc["batch"], "state": BATCH_DONE})
        if batch is None:
            return None
        return next((r for r in batch.get("results", []) if r["_id"] == doc_id), None)

    # -- dead letters: list, replay --------------------------------------------------------------------

    async def find_dead_letters(
        self,
        *,
        reason: str | None = None,
        stage: str | None = None,
        since: datetime | None = None,
        letter_id: str | None = None,
        include_replayed: bool = True,
        limit: int = 0,
    ) -> list[dict[str, Any]]:
        """Dead letters matching every given filter, oldest first (``letter_id``: the dead letter's ``_id``
        or the message id of an inference dead letter)."""
        query: dict[str, Any] = {}
        if reason:
            query["reason"] = reason
        if stage:
            query["stage"] = stage
        if since is not None:
            query["dead_lettered_at"] = {"$gte": since}
        if letter_id:
            query["$or"] = [{"_id": letter_id}, {"message_id": letter_id}]
        if not include_replayed:
            query["replayed_at"] = {"$exists": False}
        cursor = self.dead_letters.find(query).sort([("dead_lettered_at", ASCENDING), ("_id", ASCENDING)])
        return await cursor.limit(limit).to_list(None)

    async def mark_replayed(self, letter_id: str, result: str, ts: datetime) -> None:
        """Record that a dead letter was replayed (kept for the audit trail, no longer counted as open)."""
        await self.dead_letters.update_one(
            {"_id": letter_id}, {"$set": {"replayed_at": ts, "replay_result": result}}
        )

    async def requeue_dead_lettered(self, message_id: str) -> bool:
        """Put a dead-lettered staged message back in the queue (fresh attempts); False if it is not
        dead-lettered (already requeued, done, or unknown)."""
        result = await self.messages.update_one(
            {"_id": message_id, "status": DEAD_LETTERED},
            {
                "$set": {"status": PENDING, "lease_expires": EPOCH, "attempts": 0, "solo_attempts": 0},
                "$unset": {"dead_letter_reason": "", "lease_owner": "", "lease_token": ""},
            },
        )
        return bool(result.modified_count)

    async def status_of(self, message_id: str) -> str | None:
        """The staged message's status, None if it is not staged."""
        doc = await self.messages.find_one({"_id": message_id}, {"status": 1})
        return None if doc is None else str(doc.get("status"))

    # -- reconciliation ------------------------------------------------------------------------------

    async def count_positions(
        self, topic: str, windows: dict[int, tuple[int, int]]
    ) -> dict[int, tuple[int, int]]:
        """Kafka positions ``[start, end)`` per partition of ``topic`` accounted for in Mongo, as
        ``(staged, dead-lettered)``: read into a staged document (``sources``), or dead-lettered by the
        consumer (open: a replayed record's position is in its staged document)."""
        if not windows:
            return {}
        in_window = [
            {"t": topic, "p": p, "o": {"$gte": start, "$lt": end}} for p, (start, end) in windows.items()
        ]
        staged = await self.messages.aggregate(
            [
                {"$match": {f"{SOURCES}.t": topic}},
                {"$unwind": f"${SOURCES}"},
                {"$match": {"$or": [{f"{SOURCES}.{k}": v for k, v in w.items()} for w in in_window]}},
                {"$group": {"_id": f"${SOURCES}.p", "n": {"$sum": 1}}},
            ]
        ).to_list(None)
        rejected = await self.dead_letters.aggregate(
            [
                {"$match": {"stage": "consume", "replayed_at": {"$exists": False}}},
                {
                    "$match": {
                        "$or": [{"topic": w["t"], "partition": w["p"], "offset": w["o"]} for w in in_window]
                    }
                },
                {"$group": {"_id": "$partition", "n": {"$sum": 1}}},
            ]
        ).to_list(None)
        in_staging = {int(row["_id"]): int(row["n"]) for row in staged}
        in_dead_letters = {int(row["_id"]): int(row["n"]) for row in rejected}
        return {p: (in_staging.get(p, 0), in_dead_letters.get(p, 0)) for p in windows}

    async def count_altered(self) -> int:
        """Staged messages that parsing changed to make them storable (they carry ``altered`` and ``raw``)."""
        return await self.messages.count_documents({"altered": {"$exists": True}})

    async def count_dead_letters(self) -> list[tuple[str, str, bool, int]]:
        """``(stage, reason, replayed, count)`` for every group of dead letters."""
        groups: list[tuple[str, str, bool, int]] = []
        for replayed in (False, True):
            rows = await self.dead_letters.aggregate(
                [
                    {"$match": {"replayed_at": {"$exists": replayed}}},
                    {"$group": {"_id": {"stage": "$stage", "reason": "$reason"}, "n": {"$sum": 1}}},
                ]
            ).to_list(None)
            groups += [(str(r["_id"]["stage"]), str(r["_id"]["reason"]), replayed, int(r["n"])) for r in rows]
        return sorted(groups)


T = TypeVar("T")


async def retrying(operation: Callable[[], Awaitable[T]], metrics: PipelineMetrics) -> T:
    """``operation`` (a MongoDB call) under the data plane's retry policy
    (:func:`sentiment_workers.retry.with_retries` with this adapter's error classes): transient errors and
    refused credentials are retried, a rejection is raised at once."""
    return await with_retries(
        operation, store="mongo", is_transient=is_transient, is_auth_error=is_auth_error, metrics=metrics
    )
