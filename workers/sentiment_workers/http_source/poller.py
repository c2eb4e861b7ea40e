"""The HTTP poller: fetch pages, land them raw, move the position, publish their records to Kafka.

One run::

    1. republish: every landed page of the source not marked published (read from the landing store,
       never from the API: it does not serve a page twice), in landing order, then mark it published;
    2. position: the source's stored position, or the ``next`` of its latest landed page when that one is
       newer (a poller killed between landing and moving the position);
    3. up to ``max_pages_per_run`` times: fetch the page at the position; LAND it (durable, keyed by the
       body's hash: a page served twice is stored once); MOVE the position past it (conditional on holding
       the lease); PUBLISH its records (each with its stable id, acknowledged by every in-sync replica);
       MARK it published; stop when the API has nothing more right now.

A kill between any two steps loses nothing and the ids make every repeat harmless: before 3's land, the
page was not durable and its position did not move, so it is asked for again; between land and move, step 2
adopts the landed page's ``next``; between move and mark, step 1 republishes the page (duplicates on the
topic carry the same ids, the consumer stages each id once). See docs/http-source.md.

Only the holder of the source's lease polls (acquired before a run, renewed in the background, released on
a clean stop); the operator's Recreate strategy keeps a second pod from starting, the lease keeps a second
process (a ``poll --once`` by hand, a pod that lingers) from polling at the same time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from aiokafka import AIOKafkaProducer

from sentiment_workers.adapters import kafka, mongo
from sentiment_workers.adapters.landing import LandedPage, LandingStore, LeaseLostError, page_id
from sentiment_workers.config import WorkerConfig
from sentiment_workers.http_source import paging
from sentiment_workers.http_source.client import REJECTED, PageClient, Response, SourceError
from sentiment_workers.http_source.metrics import api_failed, api_reached, poller_metrics
from sentiment_workers.http_source.settings import HttpSourceConfig
from sentiment_workers.logging import get_logger
from sentiment_workers.messages import utcnow
from sentiment_workers.metrics import PipelineMetrics
from sentiment_workers.retry import with_retries

T = TypeVar("T")
LEASE_SECONDS = 30.0
log = get_logger("http_source.poller")


class LeaseHeldError(RuntimeError):
    """``poll --once`` gave up waiting: another poller holds the source's lease."""


def default_owner() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass
class RunSummary:
    """What one run did."""

    fetched: int = 0
    landed: int = 0
    duplicates: int = 0
    republished: int = 0
    published_records: int = 0

    def line(self) -> str:
        return (
            f"{self.fetched} pages fetched ({self.landed} landed, {self.duplicates} already landed), "
            f"{self.republished} landed pages republished, {self.published_records} records published"
        )


def landing_document(
    source: str, seq: int, response: Response, page: paging.Page | None, error: str | None
) -> dict[str, Any]:
    """The landing document of one page (see :mod:`sentiment_workers.adapters.landing`)."""
    digest = paging.content_hash(response.body)
    return {
        "_id": page_id(source, digest),
        "source": source,
        "hash": digest,
        "seq": seq,
        "request": {
            "method": response.request.method,
            "url": response.url,
            "params": response.request.params,
        },
        "status": response.status,
        "headers": [list(pair) for pair in response.headers],
        "body": response.body,
        "body_bytes": len(response.body),
        "requested_at": _naive(response.requested_at),
        "received_at": _naive(response.received_at),
        "landed_at": utcnow(),
        "attempts": response.attempts,
        "records": len(page.records) if page is not None else None,
        "next": page.next.to_dict() if page is not None else None,
        "error": error,
        "published_at": None,
    }


def _naive(value: Any) -> Any:
    """A UTC datetime as naive UTC with millisecond precision (what BSON keeps)."""
    value = value.replace(tzinfo=None)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


class HttpPoller:
    """Polls one source for as long as it holds the source's lease."""

    def __init__(
        self,
        config: WorkerConfig,
        source: HttpSourceConfig,
        landing: LandingStore,
        producer: AIOKafkaProducer,
        client: PageClient,
        metrics: PipelineMetrics,
        *,
        owner: str | None = None,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        self.config = config
        self.source = source
        self.name = source.source_name
        self.landing = landing
        self.producer = producer
        self.client = client
        self.metrics = metrics
        self.counters = poller_metrics(metrics)
        self.owner = owner or config.worker_id or default_owner()
        self.lease_seconds = lease_seconds
        self.lease_lost = False

    # -- store calls -----------------------------------------------------------------------------

    async def _mongo(self, operation: Callable[[], Awaitable[T]]) -> T:
        return await mongo.retrying(operation, self.metrics)

    def _check_lease(self) -> None:
        if self.lease_lost:
            raise LeaseLostError(f"lost the lease of {self.name!r}")

    # -- one run ---------------------------------------------------------------------------------

    async def run_once(self) -> RunSummary:
        """One run (see the module docstring); raises :class:`SourceError` when the API gives no page."""
        summary = RunSummary()
        for landed in await self._mongo(lambda: self.landing.unpublished(self.name)):
            self._check_lease()
            summary.published_records += await self._publish(landed)
            summary.republished += 1
            self.counters.pages_republished.inc()
        state = await self._mongo(lambda: self.landing.state(self.name))
        position, seq = paging.Position.from_dict(state.position), state.seq
        latest = await self._mongo(lambda: self.landing.latest(self.name))
        if latest is not None and int(latest.get("seq") or 0) > seq and latest.get("next") is not None:
            position, seq = paging.Position.from_dict(latest["next"]), int(latest["seq"])
            log.info("position recovered from the landing store", source=self.name, seq=seq)
            await self._advance(position, seq)
        for _ in range(self.source.max_pages_per_run):
            self._check_lease()
            request = paging.request_for(self.source, position)
            response = await self.client.fetch(request)
            api_reached(self.metrics)
            summary.fetched += 1
            seq += 1
            page, error = self._read(position, request, response)
            document = landing_document(self.name, seq, response, page, error)
            try:
                landed, new = await self._mongo(partial(self.landing.land, document))
            except Exception as exc:
                if not mongo.is_rejection(exc):
                    raise
                raise SourceError(  # e.g. over MongoDB's 16 MiB: it needs an object store
                    REJECTED,
                    f"a page of {len(response.body)} bytes cannot land in MongoDB ({type(exc).__name__}); "
                    "set SENTIMENT_HTTP_LANDING_URL to an object store",
                    response.status,
                ) from None
            summary.landed += new
            summary.duplicates += not new
            if page is None:
                self.counters.pages.labels("unreadable").inc()
                raise SourceError(
                    REJECTED, f"unreadable page landed as {landed.id}: {error}", response.status
                )
            self.counters.pages.labels("landed" if new else "duplicate").inc()
            await self._advance(page.next, seq)
            if not landed.published:
                summary.published_records += await self._publish(landed, page.records)
            position = page.next
            if not page.more:
                break
        return summary

    def _read(
        self, position: paging.Position, request: paging.Request, response: Response
    ) -> tuple[paging.Page | None, str | None]:
        try:
            return paging.read_page(self.source, position, request, response.body), None
        except paging.UnreadablePageError as exc:
            return None, str(exc)

    async def _advance(self, position: paging.Position, seq: int) -> None:
        self._check_lease()
        await self._mongo(lambda: self.landing.advance(self.name, self.owner, position.to_dict(), seq))

    async def _publish(self, page: LandedPage, records: list[Any] | None = None) -> int:
        """Send every record of ``page`` and wait for Kafka's acknowledgements, then mark it published."""
        if records is None:
            try:
                records = paging.records_of(self.source, page.body)
            except paging.UnreadablePageError as exc:  # the settings changed since it was landed
                raise SourceError(
                    REJECTED, f"landed page {page.id} cannot be read with the current settings: {exc}"
                ) from None
        messages = [paging.message_for(self.source, record, page.id) for record in records]
        topic = self.config.kafka_topic

        async def send() -> None:
            futures = [await self.producer.send(topic, value=value, key=key) for key, value in messages]
            await asyncio.gather(*futures)

        if messages:
            await with_retries(
                send,
                store="kafka",
                is_transient=kafka.is_transient,
                is_auth_error=kafka.is_auth_error,
                metrics=self.metrics,
            )
        await self._mongo(lambda: self.landing.mark_published(page.id))
        self.counters.records_published.inc(len(messages))
        return len(messages)

    # -- the loop --------------------------------------------------------------------------------

    async def acquire(self, stop: asyncio.Event, *, patience_s: float | None = None) -> bool:
        """Wait until this poller holds the source's lease; False when ``stop`` came first. After
        ``patience_s`` (None: forever) raises :class:`LeaseHeldError` naming the holder."""
        waited = False
        deadline = None if patience_s is None else asyncio.get_running_loop().time() + patience_s
        while not stop.is_set():
            if await self._mongo(lambda: self.landing.acquire(self.name, self.owner, self.lease_seconds)):
                self.lease_lost = False
                log.info("lease acquired", source=self.name, owner=self.owner)
                return True
            if not waited:
                log.info("another poller holds the lease, waiting", source=self.name)
                waited = True
            if deadline is not None and asyncio.get_running_loop().time() > deadline:
                holder = await self._mongo(lambda: self.landing.holder(self.name))
                raise LeaseHeldError(
                    f"another poller ({holder}) holds the lease of {self.name!r}; try again later"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), min(5.0, self.lease_seconds / 3))
        return False

    async def _renew(self, done: asyncio.Event) -> None:
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), self.lease_seconds / 3)
            if done.is_set():
                return
            try:
                held = await self.landing.renew(self.name, self.owner, self.lease_seconds)
            except Exception as exc:  # Mongo down: the lease may expire; the fenced writes stay safe
                log.warning("lease renewal failed", source=self.name, error=str(exc)[:300])
                continue
            if not held and not self.lease_lost:
                log.warning("lease lost", source=self.name)
                self.lease_lost = True

    async def run(self, stop: asyncio.Event, *, once: bool = False) -> RunSummary | None:
        """Hold the lease and poll every ``interval_seconds`` until ``stop`` (``once``: a single run, whose
        :class:`SourceError` propagates). Returns the last run's summary."""
        if not await self.acquire(stop, patience_s=2 * self.lease_seconds if once else None):
            return None
        renewing = asyncio.Event()
        renewer = asyncio.create_task(self._renew(renewing), name="lease-renewal")
        last: RunSummary | None = None
        try:
            while not stop.is_set():
                try:
                    summary = await until_stopped(self.run_once(), stop)
                except SourceError as exc:
                    api_failed(self.metrics, exc)
                    log.warning(
                        "the API gave no page; next run later",
                        source=self.name,
                        kind=exc.kind,
                        error=str(exc)[:300],
                    )
                    if once:
                        raise
                except LeaseLostError as exc:
                    log.warning("stopped polling: lease lost", source=self.name, error=str(exc))
                    if once:
                        raise
                    if not await self.acquire(stop):
                        break
                    continue
                else:
                    if summary is not None:
                        last = summary
                        log.info("run done", source=self.name, **vars(summary))
                if once:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.source.interval_seconds)
        finally:
            renewing.set()
            await renewer
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.landing.release(self.name, self.owner), 5)
        return last


async def until_stopped(work: Coroutine[Any, Any, T], stop: asyncio.Event) -> T | None:
    """``await work`` unless ``stop`` is set first: then it is cancelled (safe at any point: see the module
    docstring) and None is returned."""
    task = asyncio.create_task(work)
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return None if task.cancelled() else task.result()
