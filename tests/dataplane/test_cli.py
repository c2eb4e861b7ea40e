"""The command line as an operator uses it: produce a dataset, consume, infer, report (text, JSON, PNG), and
the /metrics endpoint the workers expose."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request

from sentiment_workers.metrics import PipelineMetrics
from sentiment_workers.runner import serve_metrics

from tests.dataplane.conftest import ROOT, free_port
from tests.dataplane.helpers import create_topic, messages, produce, wait_until


def cli(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    code = "from sentiment_workers.cli import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


async def test_produce_consume_infer_report_from_the_command_line(
    services, config, store, warehouse, tiny_model_dir, tmp_path
):
    dataset = tmp_path / "tweets.csv"
    rows = ["tweet_id,body,mood"] + [f"t{i},this is tweet {i},positive" for i in range(25)] + [",no id row,x"]
    dataset.write_text("\n".join(rows) + "\n")
    await create_topic(config, partitions=2)
    env = services.worker_env(config.model_copy(update={"model_name": str(tiny_model_dir)}))

    produced = cli(
        "produce", "--file", str(dataset), "--text-column", "body", "--id-column", "tweet_id", env=env
    )
    assert produced.returncode == 0, produced.stderr
    assert "sent 26 messages" in produced.stdout

    consumed = cli("consume", "--exit-when-idle", "3", "--session-timeout-ms", "1500", env=env)
    assert consumed.returncode == 0, consumed.stderr
    assert await store.messages.count_documents({}) == 26
    assert await store.messages.find_one({"_id": "t3"}) is not None
    assert await store.messages.find_one({"_id": "tweets-26"}) is not None  # row without id: <file>-<row>

    inferred = cli("infer", "--exit-when-idle", "1", env=env)
    assert inferred.returncode == 0, inferred.stderr
    assert await warehouse.count() == 26

    png = tmp_path / "report.png"
    reported = cli("report", "--json", "--png", str(png), env=env)
    assert reported.returncode == 0, reported.stderr
    report = json.loads(reported.stdout)
    assert report["total"] == 26 and sum(report["by_label"].values()) == 26
    assert sum(report["per_day"].values()) == 26
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # The read-only BI user can run the report too.
    bi_env = env | {
        "SENTIMENT_MYSQL_USER": services.env["BI_MYSQL_USER"],
        "SENTIMENT_MYSQL_PASSWORD": services.env["BI_MYSQL_PASSWORD"],
    }
    assert "total messages: 26" in cli("report", env=bi_env).stdout


async def test_infer_fused_consumes_the_topic_itself(services, config, store, warehouse, tiny_model_dir):
    """``infer --fused`` (docs/data-plane.md, fused mode): no consume process; the worker stages, classifies
    and writes per Kafka batch, each message once, and commits the topic's offsets."""
    await create_topic(config, partitions=2)
    env = services.worker_env(config.model_copy(update={"model_name": str(tiny_model_dir)}))
    produced = cli("produce", "--count", "40", "--run-id", "fused", "--no-progress", env=env)
    assert produced.returncode == 0, produced.stderr

    inferred = cli("infer", "--fused", "--exit-when-idle", "3", env=env)
    assert inferred.returncode == 0, inferred.stderr
    assert await warehouse.count() == 40
    assert await store.messages.count_documents({}) == 40  # every raw message staged first
    again = cli("infer", "--fused", "--exit-when-idle", "2", env=env)  # a second run adds nothing
    assert again.returncode == 0, again.stderr
    assert await warehouse.count() == 40


async def test_sigterm_stops_the_consumer_cleanly_with_offsets_committed(services, config, store):
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from sentiment_workers.adapters.kafka import connection_options

    await create_topic(config, partitions=1)
    await produce(config, messages(40, "sig"))
    metrics_port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from sentiment_workers.cli import main; main()",
            "consume",
            "--session-timeout-ms",
            "1500",
        ],
        env=services.worker_env(config) | {"SENTIMENT_METRICS_PORT": str(metrics_port)},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        await wait_until(lambda: _count_at_least(store, 40), what="40 staged")
        # The running worker's event loop beats: its liveness endpoint says so.
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/healthz", timeout=5) as health:
            assert health.status == 200 and health.read().startswith(b"ok: last beat")
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    assert "stop requested" in stderr and "consumer stopped" in stderr
    probe = AIOKafkaConsumer(**connection_options(config), group_id=config.kafka_group_id)
    await probe.start()
    try:
        assert await probe.committed(TopicPartition(config.kafka_topic, 0)) == 40
    finally:
        await probe.stop()


async def _count_at_least(store, n: int) -> bool:
    return await store.messages.count_documents({}) >= n


def test_bad_configuration_is_a_clear_error(services, config):
    env = services.worker_env(config) | {"SENTIMENT_MYSQL_TABLE": "dw; DROP TABLE x"}
    result = cli("report", env=env)
    assert result.returncode == 2
    assert "SENTIMENT_MYSQL_TABLE" in result.stderr


def test_metrics_endpoint_serves_prometheus_text():
    from prometheus_client import CollectorRegistry

    metrics = PipelineMetrics(CollectorRegistry())
    metrics.messages_dead_lettered.labels("consume", "invalid_json").inc()
    port = free_port()
    serve_metrics(port, metrics)
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'sentiment_messages_dead_lettered_total{reason="invalid_json",stage="consume"} 1.0' in body
    for name in (
        "sentiment_messages_consumed_total",
        "sentiment_batch_size_messages_bucket",
        "sentiment_inference_duration_seconds_bucket",
        "sentiment_texts_classified_total",
        "sentiment_inference_backlog_messages",
        "sentiment_end_to_end_latency_seconds_bucket",
    ):
        assert name in body or f"# TYPE {name.rsplit('_bucket', 1)[0]}" in body


BAD_ARGUMENTS = [
    (("dead-letters", "list", "--limit", "abc"), "invalid value for '--limit'", "dead-letters list"),
    (("dead-letters", "list", "--limt", "3"), "no such option: --limt", "dead-letters list"),
    (("dead-letters", "nope"), "no such command 'nope'", "dead-letters"),
    (("nope",), "no such command 'nope'", ""),
    (("infer", "--claim-size", "0"), "invalid value for '--claim-size'", "infer"),
    (("consume", "--session-timeout-ms", "soon"), "invalid value for '--session-timeout-ms'", "consume"),
    (("classify", "--batch-size", "0", "text"), "invalid value for '--batch-size'", "classify"),
    (("train", "--seed", "x"), "invalid value for '--seed'", "train"),
    (("report", "extra"), "got unexpected extra argument", "report"),
    (("reconcile", "--expect-drained", "--nope"), "no such option: --nope", "reconcile"),
]


def test_a_bad_argument_is_one_clear_line_for_every_command():
    """Typer/click printed a multi-line usage box. Every command's usage errors are now one line on stderr,
    ``error: <what> (see '<command> --help')``, exit status 2, no traceback; --help still works."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENTIMENT_")} | {"PYTHONPATH": str(ROOT)}
    for args, says, command in BAD_ARGUMENTS:
        result = cli(*args, env=env)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2, (args, result.stderr)
        assert len(lines) == 1 and lines[0].startswith(f"error: {says}"), (args, result.stderr)
        assert lines[0].endswith(f"(see '{' '.join(['sentiment-pipeline', command]).strip()} --help')"), lines
        assert result.stdout == ""
    helped = cli("dead-letters", "list", "--help", env=env)
    assert helped.returncode == 0 and "--limit" in helped.stdout and helped.stderr == ""


UNREACHABLE = [
    (("report",), "error: cannot reach MySQL (SENTIMENT_MYSQL_HOST/PORT): "),
    (("report", "--json"), "error: cannot reach MySQL (SENTIMENT_MYSQL_HOST/PORT): "),
    (("dead-letters", "list"), "error: cannot reach MongoDB (SENTIMENT_MONGO_URI): "),
    (("reconcile",), "error: cannot reach Kafka (SENTIMENT_KAFKA_BOOTSTRAP_SERVERS): "),
    (("produce", "--count", "3"), "error: cannot reach Kafka (SENTIMENT_KAFKA_BOOTSTRAP_SERVERS): "),
]


def test_an_unreachable_server_is_one_clear_line_for_every_command():
    """Every server on a closed port: each one-shot command says which server it cannot reach and the settings
    that point at it, in one line on stderr, exit status 1; no traceback, and the libraries' own connection
    warnings (aiokafka's 'Unable connect to ...', 'Unclosed AIOKafkaConsumer') are not repeated around it."""
    closed = free_port()  # nothing listens there
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENTIMENT_")} | {
        "PYTHONPATH": str(ROOT),
        "SENTIMENT_MYSQL_HOST": "127.0.0.1",
        "SENTIMENT_MYSQL_PORT": str(closed),
        "SENTIMENT_MONGO_URI": f"mongodb://127.0.0.1:{closed}/?directConnection=true",
        "SENTIMENT_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{closed}",
    }
    for args, says in UNREACHABLE:
        result = cli(*args, env=env)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1, (args, result.stderr)
        assert len(lines) == 1, (args, result.stderr)
        assert lines[0].startswith(says), (args, lines[0])
        assert "Traceback" not in result.stderr
        assert result.stdout == ""
