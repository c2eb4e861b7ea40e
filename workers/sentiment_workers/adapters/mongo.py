"""MongoDB adapter: the staging collection (raw messages + inference leases) and the dead letters.

Staged document lifecycle::

    pending (lease_expires <= now)  --claim-->  pending, leased (lease_token, lease_expires > now)
        --mark_done-->  done (+ prediction)          --expired lease-->  claimable again
        --dead_letter-->  dead_lettered (+ reason, copy in the dead-letter collection)

Every batch operation is a constant number of round trips: a claim is one find, one ``update_many`` and
one re-read; marking a batch done is one ``bulk_write``. See docs/data-plane.md for the measurements.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bson import Binary
from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorCollection
from pymongo import ASCENDING, UpdateOne
from pymongo.errors import AutoReconnect, BulkWriteError, ConnectionFailure, OperationFailure

from sentiment_workers.config import WorkerConfig
from sentiment_workers.messages import Rejected, StagedMessage, utcnow

PENDING = "pending"
DONE = "done"
DEAD_LETTERED = "dead_lettered"
EPOCH = datetime(1970, 1, 1)
DUPLICATE_KEY = 11000
# Codes a server returns while it shuts down or steps down (retry them like a lost connection).
_TRANSIENT_CODES = {6, 7, 89, 91, 189, 9001, 10107, 11600, 11602, 13435, 13436}


def is_transient(exc: BaseException) -> bool:
    """True for errors that mean "Mongo is (briefly) unreachable", worth retrying."""
    if isinstance(exc, ConnectionFailure | AutoReconnect):
        return True
    if isinstance(exc, BulkWriteError):
        return False
    return isinstance(exc, OperationFailure) and exc.code in _TRANSIENT_CODES


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
        self.raw_limit = config.max_message_bytes

    @classmethod
    def from_config(cls, config: WorkerConfig) -> StagingStore:
        return cls(create_client(config), config)

    def close(self) -> None:
        self.client.close()

    async def ensure_indexes(self) -> None:
        """Idempotent: the claim index and a reason index for the dead letters."""
        await self.messages.create_index([("status", ASCENDING), ("lease_expires", ASCENDING)], name="claim")
        await self.dead_letters.create_index([("reason", ASCENDING)], name="reason")

    # -- consumer side ---------------------------------------------------------------------------

    async def stage(
        self, messages: Sequence[StagedMessage], rejected: Sequence[Rejected], ingest_ts: datetime
    ) -> StageResult:
        """Upsert a batch keyed by message id (``$setOnInsert``: a replay changes nothing) and its rejects.

        Dead letters are keyed by topic/partition/offset, so a redelivered reject is not stored twice.
        Idempotent: safe to repeat after a failure part-way.
        """
        staged = 0
        if messages:
            ops = []
            for message in messages:
                doc = message.to_document(ingest_ts)
                doc.update(status=PENDING, lease_expires=EPOCH, attempts=0)
                ops.append(UpdateOne({"_id": message.id}, {"$setOnInsert": doc}, upsert=True))
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
            "detail": rejected.detail,
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

    async def claim(self, owner: str, limit: int, lease_seconds: float) -> Claim:
        """Lease up to ``limit`` claimable documents in three round trips (find, update_many, re-read).

        Claimable: pending and never leased, or leased with an expired lease (a crashed worker). Each
        claim bumps ``attempts``. Several workers may race for the same candidates; the conditional
        ``update_many`` gives each document to one of them, and each re-reads only what its token won.
        """
        now = utcnow()
        token = uuid.uuid4().hex
        expires = now + timedelta(seconds=lease_seconds)
        claimable = {"status": PENDING, "lease_expires": {"$lte": now}}
        candidates = await self.messages.find(claimable, {"_id": 1}).limit(limit).to_list(limit)
        if not candidates:
            return Claim(token=token, owner=owner, expires=expires, documents=[])
        ids = [c["_id"] for c in candidates]
        await self.messages.update_many(
            {"_id": {"$in": ids}, **claimable},
            {
                "$set": {"lease_owner": owner, "lease_token": token, "lease_expires": expires},
                "$inc": {"attempts": 1},
            },
        )
        documents = await self.messages.find({"_id": {"$in": ids}, "lease_token": token}).to_list(None)
        return Claim(token=token, owner=owner, expires=expires, documents=documents)

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

    async def dead_letter_staged(
        self, documents: Sequence[dict[str, Any]], reason: str, detail: str, ts: datetime
    ) -> int:
        """Copy staged documents to the dead letters (keyed ``infer:<id>``) and take them out of the queue.

        Returns how many dead letters were new. Idempotent.
        """
        if not documents:
            return 0
        ops = [
            UpdateOne(
                {"_id": f"infer:{doc['_id']}"},
                {
                    "$setOnInsert": {
                        "stage": "infer",
                        "reason": reason,
                        "detail": detail,
                        "message_id": doc["_id"],
                        "comment": doc.get("comment"),
                        "payload": doc.get("payload"),
                        "attempts": doc.get("attempts"),
                        "topic": doc.get("topic"),
                        "partition": doc.get("partition"),
                        "offset": doc.get("offset"),
                        "dead_lettered_at": ts,
                    }
                },
                upsert=True,
            )
            for doc in documents
        ]
        new = len(await self._bulk_upsert(self.dead_letters, ops))
        await self.messages.update_many(
            {"_id": {"$in": [d["_id"] for d in documents]}, "status": PENDING},
            {
                "$set": {"status": DEAD_LETTERED, "dead_letter_reason": reason},
                "$unset": {"lease_owner": "", "lease_token": "", "lease_expires": ""},
            },
        )
        return new

    async def count_backlog(self) -> int:
        """Staged documents not classified yet (pending, leased or not)."""
        return await self.messages.count_documents({"status": PENDING})

    async def count_by_status(self) -> dict[str, int]:
        """Documents per status, e.g. ``{"done": 10, "pending": 2}``."""
        rows = await self.messages.aggregate([{"$group": {"_id": "$status", "n": {"$sum": 1}}}]).to_list(None)
        return {row["_id"]: row["n"] for row in rows}
