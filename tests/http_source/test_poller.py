"""The poller against a real paged API (a local server), real Kafka and real MongoDB: every page served is
landed raw exactly once, every record reaches the topic with its stable id, failures are retried or named,
and the crash points between landing, moving the position and publishing lose nothing."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import uuid
from datetime import timedelta
from pathlib import PurePosixPath

import fsspec
import pytest
from sentiment_workers.adapters.landing import LeaseLostError
from sentiment_workers.http_source.client import SourceError
from sentiment_workers.http_source.metrics import api_fault
from sentiment_workers.http_source.poller import HttpPoller, LeaseHeldError
from sentiment_workers.messages import utcnow

from tests.dataplane.helpers import sample_value
from tests.http_source.conftest import run_killed_at, source_config, topic_messages
from tests.http_source.paged_api import VARIANTS


async def landed_pages(poller: HttpPoller) -> list[dict]:
    return [doc async for doc in poller.landing.pages.find({"source": poller.name}).sort("seq", 1)]


async def published_ids(config) -> tuple[list[str], set[str]]:
    """Ids of the messages on the topic (as the consumer reads them), and the set of them."""
    ids = [json.loads(value)["id"] for _, value in await topic_messages(config)]
    return ids, set(ids)


@pytest.mark.parametrize("variant", VARIANTS)
async def test_every_page_is_landed_raw_once_and_every_record_published_once(
    variant, config, metrics, paged_api, make_poller
):
    api = paged_api(variant, pages=6)
    poller = await make_poller(source_config(api, config), metrics)

    first = await poller.run(asyncio.Event(), once=True)
    second = await poller.run(asyncio.Event(), once=True)  # nothing new: the end page again

    pages = await landed_pages(poller)
    assert {p["hash"] for p in pages} == set(api.served), "landed bodies == served bodies"
    assert len(pages) == len(api.served) == 7  # six pages of records and the empty end page
    for page in pages:
        assert hashlib.sha256(page["body"]).hexdigest() == page["hash"]
        assert page["status"] == 200 and ["X-Page", str(api.served[page["hash"]])] in page["headers"]
        assert page["published_at"] is not None and page["error"] is None
        assert page["request"]["method"] == "GET" and page["requested_at"] <= page["received_at"]
    assert first is not None and (first.landed, first.published_records) == (7, 30)
    assert second is not None and (second.fetched, second.landed, second.published_records) == (1, 0, 0)
    ids, distinct = await published_ids(config)
    assert distinct == api.expected_ids() and len(ids) == 30, "each record exactly once on the topic"
    assert api.gone == 0, "the poller never asked for a page it had moved past"
    assert sample_value(metrics, "sentiment_store_up", {"store": "http"}) == 1


async def test_failures_mid_sequence_are_retried_and_lose_nothing(config, metrics, paged_api, make_poller):
    api = paged_api("cursor", pages=5, faults={2: "500", 3: "429", 5: "drop", 6: "500", 8: "drop"})
    poller = await make_poller(source_config(api, config), metrics)

    started = asyncio.get_running_loop().time()
    summary = await poller.run(asyncio.Event(), once=True)
    elapsed = asyncio.get_running_loop().time() - started

    assert summary is not None and summary.landed == 6
    assert api.statuses["429"] == 1 and api.statuses["500"] == 2 and api.statuses["drop"] == 2
    assert elapsed >= 1.0, "the 429's Retry-After: 1 was waited out"
    assert {p["hash"] for p in await landed_pages(poller)} == set(api.served)
    ids, distinct = await published_ids(config)
    assert distinct == api.expected_ids() and len(ids) == 25
    assert sample_value(metrics, "sentiment_store_up", {"store": "http"}) == 1


@pytest.mark.parametrize(("fault", "kind"), [("401", "auth"), ("404", "rejected"), ("500", "unreachable")])
async def test_an_api_that_refuses_is_named_in_the_metrics_and_the_poller_keeps_running(
    fault, kind, config, metrics, paged_api, make_poller
):
    api = paged_api("cursor", pages=2, faults=dict.fromkeys(range(1, 10_000), fault))
    poller = await make_poller(source_config(api, config, interval_seconds=0.1), metrics)
    poller.client.attempts = 2

    with pytest.raises(SourceError) as refused:
        await poller.run(asyncio.Event(), once=True)
    assert refused.value.kind == kind
    assert "127.0.0.1" in str(refused.value) and "?" not in str(refused.value)

    stop = asyncio.Event()
    running = asyncio.create_task(poller.run(stop))
    while api.requests < 7:  # a few failed runs: no crash, the fault stays named
        await asyncio.sleep(0.05)
        assert not running.done()
    assert api_fault(metrics) == kind
    assert sample_value(metrics, "sentiment_store_up", {"store": "http"}) == 0
    assert sample_value(metrics, "sentiment_store_error", {"store": "http", "kind": kind}) == 1
    api.faults.clear()
    while api.statuses["200"] < 3:  # the API recovers: so does the poller, by itself
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.wait_for(running, 10)
    assert api_fault(metrics) is None
    assert (await published_ids(config))[1] == api.expected_ids()


async def test_an_unreadable_page_is_landed_as_evidence_and_the_position_stays(
    config, metrics, paged_api, make_poller
):
    api = paged_api("cursor", pages=3, faults={2: "garbage"})
    poller = await make_poller(source_config(api, config), metrics)

    with pytest.raises(SourceError, match="not JSON"):
        await poller.run(asyncio.Event(), once=True)
    assert api_fault(metrics) == "rejected"
    await poller.run(asyncio.Event(), once=True)

    pages = await landed_pages(poller)
    unreadable = [p for p in pages if p["error"]]
    assert len(unreadable) == 1 and unreadable[0]["body"] == b"<html>maintenance</html>"
    assert unreadable[0]["published_at"] is None and unreadable[0]["next"] is None
    assert {p["hash"] for p in pages if not p["error"]} == set(api.served)
    assert (await published_ids(config))[1] == api.expected_ids()
    assert api.gone == 0


async def test_killed_after_landing_before_moving_the_position_it_resumes_from_the_landed_page(
    config, metrics, paged_api, make_poller
):
    api = paged_api("cursor", pages=4)
    poller = await make_poller(source_config(api, config), metrics)
    await run_killed_at(poller, poller.landing, "advance", 3, "killed after landing, before moving on")
    assert len(await landed_pages(poller)) == 3
    assert sum(1 for p in await landed_pages(poller) if p["published_at"] is None) == 1

    summary = await poller.run_once()

    assert summary.republished == 1, "the landed page was published from the landing store"
    assert max(api.served_times.values()) == 1, "no page was asked for twice"
    assert {p["hash"] for p in await landed_pages(poller)} == set(api.served)
    ids, distinct = await published_ids(config)
    assert distinct == api.expected_ids() and len(ids) == 20


async def test_killed_after_moving_the_position_before_publishing_it_republishes_from_landing(
    config, metrics, paged_api, make_poller
):
    api = paged_api("next_link", pages=4)
    poller = await make_poller(source_config(api, config), metrics)
    # The 8th send: the second page, three of its records sent.
    await run_killed_at(poller, poller.producer, "send", 8, "killed while publishing")
    state = await poller.landing.state(poller.name)
    assert state.seq == 2, "the position had moved past the page being published"

    summary = await poller.run_once()

    assert summary.republished == 1
    assert max(api.served_times.values()) == 1 and api.gone == 0
    ids, distinct = await published_ids(config)
    assert distinct == api.expected_ids()
    assert len(ids) - len(distinct) <= 3, "only the records sent before the kill are on the topic twice"


async def test_one_poller_per_source_the_lease_keeps_a_second_one_out(
    config, metrics, paged_api, make_poller
):
    api = paged_api("page_number", pages=2)
    source = source_config(api, config)
    first = await make_poller(source, metrics, owner="pod-a", lease_seconds=2)
    second = await make_poller(source, metrics, owner="pod-b", lease_seconds=2)

    assert await first.landing.acquire(source.source_name, "pod-a", 2)
    assert not await second.landing.acquire(source.source_name, "pod-b", 2)
    assert await first.landing.renew(source.source_name, "pod-a", 2)
    stop = asyncio.Event()
    waiting = asyncio.create_task(second.run(stop, once=True))
    await asyncio.sleep(1.0)
    assert not waiting.done() and api.requests == 0, "pod-b waits while pod-a holds the lease"

    summary = await asyncio.wait_for(waiting, 10)  # pod-a stops renewing: its lease expires, pod-b takes over
    assert summary is not None and summary.landed == 3
    with pytest.raises(LeaseLostError):
        await first.landing.advance(source.source_name, "pod-a", {"page": 1}, 99)
    assert (await first.landing.state(source.source_name)).position == {
        "cursor": None,
        "link": None,
        "page": 3,
    }


@pytest.mark.parametrize("store", ["local path", "fsspec URL"])
async def test_pages_can_land_in_an_object_store_url(
    store, config, metrics, paged_api, make_poller, tmp_path
):
    """A local path (written atomically by rename) and an fsspec URL (one PUT per object; fsspec's in-memory
    filesystem, the same code path as s3:// with s3fs)."""
    url = str(tmp_path / "landing") if store == "local path" else f"memory://landing-{uuid.uuid4().hex}"
    api = paged_api("cursor", pages=3)
    poller = await make_poller(source_config(api, config, landing_url=url), metrics)

    await poller.run(asyncio.Event(), once=True)

    fs, root = fsspec.core.url_to_fs(url)
    objects = sorted(fs.ls(f"{root.rstrip('/')}/{poller.name}", detail=False))
    assert {PurePosixPath(o).stem for o in objects} == set(api.served)
    assert not any(o.endswith(".partial") for o in objects)
    stored = json.loads(fs.cat_file(objects[0]))
    assert (
        hashlib.sha256(base64.b64decode(stored["body_base64"])).hexdigest() == PurePosixPath(objects[0]).stem
    )
    ledger = await landed_pages(poller)
    assert all("body" not in p and p["object"].endswith(".json") for p in ledger)
    assert (await published_ids(config))[1] == api.expected_ids()


async def test_an_object_landed_by_a_poller_killed_before_recording_it_is_still_published(
    config, metrics, paged_api, make_poller, tmp_path
):
    api = paged_api("cursor", pages=2)
    poller = await make_poller(source_config(api, config, landing_url=str(tmp_path)), metrics)
    await run_killed_at(
        poller, poller.landing.pages, "insert_one", 2, "killed after writing the object, before recording it"
    )

    summary = await poller.run_once()

    assert summary.republished == 1
    assert {p["hash"] for p in await landed_pages(poller)} == set(api.served)
    assert (await published_ids(config))[1] == api.expected_ids()


async def test_a_one_off_run_gives_up_naming_the_poller_that_holds_the_lease(
    config, metrics, paged_api, make_poller
):
    api = paged_api("cursor", pages=1)
    source = source_config(api, config)
    holder = await make_poller(source, metrics, owner="pod-a", lease_seconds=1)
    one_off = await make_poller(source, metrics, owner="laptop", lease_seconds=1)
    assert await holder.acquire(asyncio.Event())
    renewing = asyncio.Event()
    renewer = asyncio.create_task(holder._renew(renewing))
    try:
        with pytest.raises(LeaseHeldError, match="pod-a"):
            await one_off.run(asyncio.Event(), once=True)
    finally:
        renewing.set()
        await renewer
    assert api.requests == 0


async def test_a_poller_whose_lease_was_taken_stops_moving_the_position_until_it_holds_it_again(
    config, metrics, paged_api, make_poller
):
    api = paged_api("page_number", pages=40, delay_s=0.02)
    source = source_config(api, config)
    poller = await make_poller(source, metrics, owner="pod-a", lease_seconds=1.5)
    stop = asyncio.Event()
    running = asyncio.create_task(poller.run(stop))
    while api.statuses["200"] < 3:
        await asyncio.sleep(0.01)

    # pod-a stalls (a long GC pause, a partition): its lease expires and pod-b takes the source for 3 s
    await poller.landing.sources.update_one(
        {"_id": source.source_name},
        {"$set": {"owner": "pod-b", "lease_expires": utcnow() + timedelta(seconds=3)}},
    )
    frozen = (await poller.landing.state(source.source_name)).seq
    await asyncio.sleep(2.0)
    assert (await poller.landing.state(source.source_name)).seq == frozen, "pod-a moved a position it lost"

    while api.acked < api.last:  # pod-b's lease expires: pod-a holds the source again and finishes
        await asyncio.sleep(0.05)
        assert not running.done()
    await asyncio.sleep(0.5)
    stop.set()
    await asyncio.wait_for(running, 10)
    assert api.gone == 0, "no page it had moved past was asked for again"
    assert all(api.served_times[k] == 1 for k in range(api.first, api.last)), "nor any page of records"
    assert {p["hash"] for p in await landed_pages(poller)} == set(api.served)
    assert (await published_ids(config))[1] == api.expected_ids()
