"""The landing store of the HTTP source: every page the API served, raw, before anything else is done with it.

Two collections of the staging database (MongoDB, through :mod:`sentiment_workers.adapters.mongo`'s client):

* the landing collection (``SENTIMENT_HTTP_LANDING_COLLECTION``, ``landing_pages``): one document per page,
  ``_id`` = ``<source>/<sha256 of the body>`` so a page landed twice (a retry, a refetch after a crash) is
  stored once. With ``SENTIMENT_HTTP_LANDING_URL`` set (a local path or an fsspec URL such as
  ``s3://bucket/prefix``), the raw page is an object ``<url>/<source>/<sha256>.json`` holding the same
  document (body in base64) and the collection keeps the same fields minus the body, plus ``object``;
* ``http_sources``: one document per source (the pipeline's name) with its position in the API
  (``position``, ``seq``) and the single-poller lease (``owner``, ``lease_expires``).

Landing document (see docs/http-source.md)::

    _id, source, hash, seq, request {method, url, params}, status, headers [[name, value], ...],
    body (exact bytes) | object, body_bytes, requested_at, received_at, landed_at, attempts,
    records (count, None when unreadable), next (position after the page), error (why unreadable),
    published_at (None until every record is on the topic)

The lease is compare-and-set on ``http_sources``: acquired when free, expired or already ours; renewed by
its owner; every move of the position is conditional on still owning it (a poller that lost its lease can
land pages, harmlessly, but never moves the position).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import posixpath
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bson import Binary
from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorCollection
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from sentiment_workers.adapters.mongo import create_client
from sentiment_workers.config import WorkerConfig
from sentiment_workers.messages import utcnow

STATE_COLLECTION = "http_sources"
PAGE_FIELDS_IN_OBJECT = ("body",)


@dataclass(frozen=True)
class LandedPage:
    """A page as landed: its document (``body`` as bytes) and whether its records are on the topic."""

    document: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.document["_id"])

    @property
    def body(self) -> bytes:
        return bytes(self.document["body"])

    @property
    def published(self) -> bool:
        return self.document.get("published_at") is not None


@dataclass(frozen=True)
class SourceState:
    """Where a source stands: its position in the API (a plain dict) and the sequence number of its last
    landed page."""

    position: dict[str, Any]
    seq: int


class LeaseLostError(RuntimeError):
    """Another poller holds the source's lease now: this one must stop moving its position."""


def page_id(source: str, digest: str) -> str:
    return f"{source}/{digest}"


class LandingStore:
    """Landing collection (and object store, when configured) plus the source's position and lease."""

    def __init__(
        self,
        client: AsyncIOMotorClient[dict[str, Any]],
        config: WorkerConfig,
        *,
        collection: str,
        landing_url: str = "",
    ) -> None:
        self.client = client
        database = client[config.mongo_database]
        self.pages: AsyncIOMotorCollection[dict[str, Any]] = database[collection]
        self.sources: AsyncIOMotorCollection[dict[str, Any]] = database[STATE_COLLECTION]
        self.objects = ObjectStore(landing_url) if landing_url else None

    @classmethod
    def from_config(cls, config: WorkerConfig, *, collection: str, landing_url: str = "") -> LandingStore:
        return cls(create_client(config), config, collection=collection, landing_url=landing_url)

    def close(self) -> None:
        self.client.close()

    async def ping(self) -> None:
        """One read of the landing collection (reachability probe)."""
        await self.pages.find_one({}, {"_id": 1})

    async def ensure_indexes(self) -> None:
        """Idempotent: unpublished pages of a source in landing order, and its latest page."""
        await self.pages.create_index(
            [("source", ASCENDING), ("published_at", ASCENDING), ("seq", ASCENDING)], name="unpublished"
        )
        await self.pages.create_index([("source", ASCENDING), ("seq", DESCENDING)], name="latest")

    # -- pages -----------------------------------------------------------------------------------

    async def land(self, document: dict[str, Any]) -> tuple[LandedPage, bool]:
        """Make the page durable; returns the landed page (the earlier copy when this body was already
        landed, with its ``published_at``) and whether it is new. Idempotent."""
        if self.objects is not None:
            await self.objects.put(document)
            stored = {k: v for k, v in document.items() if k not in PAGE_FIELDS_IN_OBJECT}
            stored["object"] = self.objects.path_of(document)
        else:
            stored = {**document, "body": Binary(document["body"])}
        try:
            await self.pages.insert_one(stored)
        except DuplicateKeyError:
            earlier = await self.pages.find_one({"_id": document["_id"]}, {"body": 0})
            if earlier is not None:
                return LandedPage({**earlier, "body": document["body"]}), False
        return LandedPage(document), True

    async def unpublished(self, source: str) -> list[LandedPage]:
        """The source's landed pages whose records may not all be on the topic yet, in landing order,
        bodies included (read back from the landing store, never from the API)."""
        if self.objects is not None:
            await self._index_orphans(source)
        cursor = self.pages.find({"source": source, "published_at": None, "error": None}).sort("seq", 1)
        pages = []
        async for document in cursor:
            if self.objects is not None:
                document = {**(await self.objects.get(document["object"])), **document}
            pages.append(LandedPage({**document, "body": bytes(document["body"])}))
        return pages

    async def _index_orphans(self, source: str) -> None:
        """Objects written by a poller killed before it recorded them: recorded now (their records are then
        published like any unpublished page)."""
        assert self.objects is not None
        names = await self.objects.list(source)
        known = set(await self.pages.distinct("_id", {"source": source}))
        for name in names:
            document = await self.objects.get(name)
            if document["_id"] in known:
                continue
            stored = {k: v for k, v in document.items() if k not in PAGE_FIELDS_IN_OBJECT}
            stored["object"] = name
            try:
                await self.pages.insert_one(stored)
            except DuplicateKeyError:
                continue

    async def mark_published(self, page: str) -> None:
        """Every record of ``page`` is acknowledged by Kafka."""
        await self.pages.update_one({"_id": page, "published_at": None}, {"$set": {"published_at": utcnow()}})

    async def latest(self, source: str) -> dict[str, Any] | None:
        """The source's readable page with the highest ``seq`` (``seq`` and ``next`` only)."""
        return await self.pages.find_one(
            {"source": source, "error": None}, {"seq": 1, "next": 1}, sort=[("seq", DESCENDING)]
        )

    # -- position and lease ----------------------------------------------------------------------

    async def state(self, source: str) -> SourceState:
        document = await self.sources.find_one({"_id": source}) or {}
        return SourceState(position=document.get("position") or {}, seq=int(document.get("seq") or 0))

    async def acquire(self, source: str, owner: str, lease_seconds: float) -> bool:
        """Take (or keep) the source's lease when free, expired or ours; False while another holds it."""
        now = utcnow()
        try:
            held = await self.sources.find_one_and_update(
                {"_id": source, "$or": [{"owner": owner}, {"lease_expires": {"$lte": now}}]},
                {
                    "$set": {"owner": owner, "lease_expires": now + timedelta(seconds=lease_seconds)},
                    "$setOnInsert": {"seq": 0, "position": {}},
                },
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
        except DuplicateKeyError:  # the document exists and another poller's lease is live
            return False
        return held is not None and held.get("owner") == owner

    async def holder(self, source: str) -> str | None:
        """The owner of the source's lease (None when nobody ever held it)."""
        document = await self.sources.find_one({"_id": source}, {"owner": 1})
        return None if document is None else document.get("owner")

    async def renew(self, source: str, owner: str, lease_seconds: float) -> bool:
        """Extend our lease; False when it is no longer ours (it expired and another took it)."""
        result = await self.sources.update_one(
            {"_id": source, "owner": owner},
            {"$set": {"lease_expires": utcnow() + timedelta(seconds=lease_seconds)}},
        )
        return result.matched_count == 1

    async def release(self, source: str, owner: str) -> None:
        """Give the lease up (a clean stop): the next poller starts at once."""
        await self.sources.update_one({"_id": source, "owner": owner}, {"$set": {"lease_expires": utcnow()}})

    async def advance(self, source: str, owner: str, position: dict[str, Any], seq: int) -> None:
        """Move the source's position (after its page is landed); raises :class:`LeaseLostError` when
        ``owner`` no longer holds the lease. Never moves backwards."""
        result = await self.sources.update_one(
            {"_id": source, "owner": owner, "seq": {"$lte": seq}},
            {"$set": {"position": position, "seq": seq, "updated_at": utcnow()}},
        )
        if result.matched_count == 1:
            return
        current = await self.sources.find_one({"_id": source}, {"owner": 1, "seq": 1}) or {}
        if current.get("owner") != owner:
            raise LeaseLostError(f"the lease of {source!r} is held by {current.get('owner')!r} now")


class ObjectStore:
    """Raw pages as JSON objects under ``<url>/<source>/`` through fsspec (a local path, ``file://``,
    ``s3://`` with s3fs, ...). Writes are atomic: a temporary name renamed on local disks, a single PUT
    on object stores."""

    def __init__(self, url: str) -> None:
        try:
            import fsspec

            self.fs, root = fsspec.core.url_to_fs(url)
        except (ImportError, ValueError) as exc:  # fsspec, or the protocol's package (s3fs), not installed
            raise ValueError(
                f"cannot use SENTIMENT_HTTP_LANDING_URL={url.split('?')[0]!r}: {type(exc).__name__}: {exc} "
                "(an object store needs fsspec and its protocol's package: s3fs for s3://, gcsfs for gs://)"
            ) from None
        self.root = root.rstrip("/")
        self.local = "file" in (
            self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        )

    def path_of(self, document: dict[str, Any]) -> str:
        return posixpath.join(self.root, str(document["source"]), f"{document['hash']}.json")

    async def put(self, document: dict[str, Any]) -> None:
        await asyncio.to_thread(self._put, self.path_of(document), encode_object(document))

    def _put(self, path: str, data: bytes) -> None:
        if self.fs.exists(path):
            return
        self.fs.makedirs(posixpath.dirname(path), exist_ok=True)
        if not self.local:
            self.fs.pipe_file(path, data)
            return
        temporary = f"{path}.partial"
        with self.fs.open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        self.fs.mv(temporary, path)

    async def get(self, path: str) -> dict[str, Any]:
        return decode_object(await asyncio.to_thread(self.fs.cat_file, path))

    async def list(self, source: str) -> list[str]:
        folder = posixpath.join(self.root, source)

        def _list() -> list[str]:
            if not self.fs.exists(folder):
                return []
            return sorted(p for p in self.fs.ls(folder, detail=False) if str(p).endswith(".json"))

        return await asyncio.to_thread(_list)


def encode_object(document: dict[str, Any]) -> bytes:
    """The landing document as a self-describing JSON object: the body in base64, times in ISO 8601."""
    plain = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in document.items() if k != "body"}
    plain["body_base64"] = base64.b64encode(document["body"]).decode("ascii")
    return json.dumps(plain, sort_keys=True, default=str).encode("utf-8")


TIME_FIELDS = ("requested_at", "received_at", "landed_at")


def decode_object(data: bytes) -> dict[str, Any]:
    """Inverse of :func:`encode_object`."""
    plain = json.loads(data)
    document = {k: v for k, v in plain.items() if k != "body_base64"}
    document["body"] = base64.b64decode(plain["body_base64"])
    for name in TIME_FIELDS:
        if isinstance(document.get(name), str):
            document[name] = datetime.fromisoformat(document[name])
    return document
