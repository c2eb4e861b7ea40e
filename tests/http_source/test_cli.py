"""`sentiment-pipeline poll` as an operator runs it: one error line for bad settings or unreachable servers,
`--once` for one run, and a long-running poller that serves /metrics and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.request

from sentiment_workers.adapters.landing import LandingStore
from sentiment_workers.messages import utcnow

from tests.dataplane.conftest import ROOT, free_port
from tests.http_source.conftest import source_config, source_env, topic_messages

POLL = "from sentiment_workers.cli import main; main()"


def poll(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", POLL, "poll", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_missing_settings_are_one_line_naming_the_variables():
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENTIMENT_")} | {"PYTHONPATH": str(ROOT)}
    result = poll("--once", env=env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: invalid configuration: SENTIMENT_HTTP_URL: Field required; "
        "SENTIMENT_HTTP_SOURCE_NAME: Field required"
    ]


def test_headers_that_are_not_a_json_object_are_one_line_without_the_value():
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENTIMENT_")} | {"PYTHONPATH": str(ROOT)}
    env |= {
        "SENTIMENT_HTTP_URL": "https://api.example.com/feed",
        "SENTIMENT_HTTP_SOURCE_NAME": "reviews",
        "SENTIMENT_HTTP_HEADERS": "Authorization: Bearer s3cret",
    }
    result = poll("--once", env=env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: invalid configuration: SENTIMENT_HTTP_HEADERS: not valid JSON"
    ]


def test_a_bad_option_is_one_line():
    result = poll("--attempts", "zero", env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "'--attempts'" in result.stderr


async def test_an_unreachable_api_is_one_error_line_and_status_1(services, config, paged_api, topic):
    api = paged_api("cursor", pages=1)
    source = source_config(api, config, url=f"http://127.0.0.1:{free_port()}/feed?token=secret")
    env = services.worker_env(config) | source_env(source)

    result = poll("--once", "--attempts", "2", "--backoff-seconds", "0.05", env=env)

    assert result.returncode == 1
    [line] = error_lines(result.stderr)
    assert line.startswith(f"error: {source.url.split('?')[0]} unreachable after 2 attempts: ConnectError")
    assert "secret" not in result.stderr


async def test_unreachable_mongodb_is_one_error_line(services, config, paged_api, topic):
    api = paged_api("cursor", pages=1)
    env = services.worker_env(config) | source_env(source_config(api, config))
    env["SENTIMENT_MONGO_URI"] = f"mongodb://127.0.0.1:{free_port()}/?directConnection=true"

    result = poll("--once", env=env)

    assert result.returncode == 1
    [line] = error_lines(result.stderr)
    assert line.startswith("error: cannot reach MongoDB (SENTIMENT_MONGO_URI)")


async def test_the_long_running_poller_serves_metrics_and_stops_on_sigterm(
    services, config, paged_api, topic
):
    api = paged_api("next_link", pages=3)
    source = source_config(api, config)
    port = free_port()
    env = services.worker_env(config.model_copy(update={"metrics_port": port})) | source_env(source)
    process = subprocess.Popen(
        [sys.executable, "-c", POLL, "poll", "--lease-seconds", "5"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        for _ in range(600):
            if api.statuses["200"] >= 5:  # three pages, the end page, and the next run's end page
                break
            await asyncio.sleep(0.05)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            exposed = answer.read().decode()
        assert 'sentiment_store_up{store="http"} 1.0' in exposed
        assert "sentiment_http_records_published_total 15.0" in exposed
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err.decode()[-2000:]
    landing = LandingStore.from_config(config, collection=source.landing_collection)
    try:
        state = await landing.sources.find_one({"_id": source.source_name})
        assert state is not None and state["lease_expires"] <= utcnow(), "the lease was released"
        on_topic = [json.loads(value)["id"] for _, value in await topic_messages(config)]
        assert set(on_topic) == api.expected_ids() and len(on_topic) == 15
    finally:
        await landing.client.drop_database(config.mongo_database)
        landing.close()
