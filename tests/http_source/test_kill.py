"""The poller killed with SIGKILL at random points of a run, then restarted, against the real Kafka, MongoDB
and consumer, while the API also fails now and then (500, 429 with Retry-After, a dropped connection): every
page the API served is landed once, every landed page is published, and every record is staged exactly once
by the project's consumer. The seed is printed (``KILL_SEED=<n>`` replays it)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter

from sentiment_workers.adapters.landing import LandingStore
from sentiment_workers.adapters.mongo import StagingStore
from sentiment_workers.consumer import run_consumer

from tests.dataplane.conftest import KAFKA_TEST_OVERRIDES, ROOT
from tests.http_source.conftest import source_config, source_env, topic_messages

POLL = "from sentiment_workers.cli import main; main()"
KILLS = 6


def start_poller(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", POLL, "poll", "--lease-seconds", "2", "--backoff-seconds", "0.05", *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


async def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_sigkill_at_random_points_then_restart_lands_publishes_and_stages_everything_once(
    services, config, metrics, paged_api, topic
):
    seed = int(os.environ.get("KILL_SEED") or time.time_ns() % 1_000_000)
    rng = random.Random(seed)
    faults = {n: rng.choice(["500", "429", "drop"]) for n in rng.sample(range(2, 60), 4)}
    api = paged_api("cursor", pages=60, per_page=10, delay_s=0.01, faults=faults)
    source = source_config(api, config)
    env = services.worker_env(config) | source_env(source) | {"SENTIMENT_LOG_LEVEL": "WARNING"}

    killed_at = []
    for _ in range(KILLS):
        before = api.requests
        poller = start_poller(env)
        try:
            await wait_for(lambda before=before: api.requests > before, 60, "the poller's first request")
            await asyncio.sleep(rng.uniform(0.0, 0.4))
        finally:
            poller.send_signal(signal.SIGKILL)
            poller.wait(10)
        killed_at.append(api.requests)
    final = start_poller(env, "--once")
    out, err = final.communicate(timeout=120)
    assert final.returncode == 0, err.decode()[-2000:]

    landing = LandingStore.from_config(config, collection=source.landing_collection)
    staging = StagingStore.from_config(config)
    try:
        pages = [p async for p in landing.pages.find({"source": source.source_name}, {"body": 0})]
        on_topic = [json.loads(value)["id"] for _, value in await topic_messages(config)]
        stop = asyncio.Event()
        await run_consumer(config, stop, metrics, exit_when_idle=3.0, kafka_overrides=KAFKA_TEST_OVERRIDES)
        staged = await staging.messages.distinct("_id")
        expected = api.expected_ids()
        numbers = {
            "seed": seed,
            "requests_at_each_kill": killed_at,
            "faults": faults,
            "pages_served": len(api.served),
            "pages_served_twice": sum(1 for n in api.served_times.values() if n > 1),
            "pages_landed": len(pages),
            "pages_published": sum(1 for p in pages if p["published_at"] is not None),
            "records_expected": len(expected),
            "records_on_topic": len(on_topic),
            "records_on_topic_distinct": len(set(on_topic)),
            "records_staged": len(staged),
            "final_run": out.decode().strip(),
        }
        print("kill test:", json.dumps(numbers))
        assert {p["hash"] for p in pages} == set(api.served), numbers
        assert len(pages) == len(api.served) == 61, numbers  # 60 pages of records and the end page
        assert all(p["published_at"] is not None for p in pages), numbers
        assert set(on_topic) == expected, numbers
        assert max(Counter(on_topic).values()) <= 1 + KILLS, numbers  # repeats only from republished pages
        assert set(staged) == expected and len(staged) == 600, numbers
        assert api.gone == 0, "no poller asked for a page it had moved past"
    finally:
        await landing.client.drop_database(config.mongo_database)
        landing.close()
        staging.close()
