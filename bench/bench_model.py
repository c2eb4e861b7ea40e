"""Model runtime benchmark: texts/s per backend and batch size on real tweets, load time, RSS, macro-F1.

Each backend runs in its own subprocess (clean RSS, its own thread pool). Prints a Markdown table and,
with --json, writes the raw numbers. Usage:

    .venv/bin/python bench/bench_model.py                      # all backends, batch 1/8/32/64
    .venv/bin/python bench/bench_model.py --backends onnx-int8 --batch-sizes 32 --no-f1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BACKENDS = ("torch", "torch-int8", "onnx-int8")
SORTED = 0
"""Key of the worker-style column: all texts in one predict call, sorted by length into batches."""


def rss_mb() -> tuple[float, float]:
    """Current and peak resident set size of this process, MB."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return round(fields["VmRSS"], 1), round(fields["VmHWM"], 1)


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """Runs in a child process: one backend, every batch size."""
    from sentiment_workers.training.dataset import load_examples, stratified_split

    split = stratified_split(load_examples(), validation_fraction=0.1, seed=42)
    validation = split.validation
    rss_before, _ = rss_mb()

    from sentiment_workers.model import load_classifier

    started = time.perf_counter()
    classifier = load_classifier(
        args.model, args.backend, batch_size=64, max_length=args.max_length, threads=args.threads
    )
    load_seconds = round(time.perf_counter() - started, 2)
    rss_loaded, _ = rss_mb()

    quality = None
    if args.f1:
        from sentiment_workers.training.evaluation import classification_metrics

        classifier.batch_size = 64
        started = time.perf_counter()
        predicted = [p.label for p in classifier.predict([e.text for e in validation])]
        metrics = classification_metrics([e.label for e in validation], predicted)
        quality = {
            "macro_f1": metrics["macro_f1"],
            "accuracy": metrics["accuracy"],
            "n": metrics["n"],
            "seconds": round(time.perf_counter() - started, 1),
        }
    _, rss_peak = rss_mb()
    return {
        "backend": args.backend,
        "model_id": classifier.model_id,
        "threads": getattr(classifier, "threads", None),
        "load_seconds": load_seconds,
        "onnx_export_seconds": None,
        "rss_mb": {"before_load": rss_before, "after_load": rss_loaded, "peak": rss_peak},
        "quality": quality,
    }


def throughput(args: argparse.Namespace) -> dict[str, dict[int, float]]:
    """All backends in one process, measured round-robin: load from other users of a shared machine hits
    every backend alike. Per backend and batch size, the best of ``--rounds`` passes counts."""
    from sentiment_workers.model import load_classifier
    from sentiment_workers.training.dataset import load_examples, stratified_split

    validation = stratified_split(load_examples(), validation_fraction=0.1, seed=42).validation
    texts = [e.text for e in validation[: args.texts]]
    classifiers = {
        backend: load_classifier(args.model, backend, max_length=args.max_length, threads=args.threads)
        for backend in args.backends
    }
    best: dict[str, dict[int, float]] = {backend: {} for backend in classifiers}
    for batch_size in args.batch_sizes:
        sample = texts if batch_size > 1 else texts[:64]
        for classifier in classifiers.values():
            classifier.batch_size = batch_size
            classifier.predict(sample[: max(batch_size, 64)])  # warm-up at this batch size
        for _ in range(args.rounds):
            for backend, classifier in classifiers.items():
                started = time.perf_counter()
                for start in range(0, len(sample), batch_size):
                    classifier.predict(sample[start : start + batch_size])
                rate = len(sample) / (time.perf_counter() - started)
                best[backend][batch_size] = round(max(rate, best[backend].get(batch_size, 0.0)), 1)
    # Worker style: one predict call over every text; the runtime sorts them by length before batching.
    for classifier in classifiers.values():
        classifier.batch_size = args.sorted_batch_size
    for _ in range(args.rounds):
        for backend, classifier in classifiers.items():
            started = time.perf_counter()
            classifier.predict(texts)
            rate = len(texts) / (time.perf_counter() - started)
            best[backend][SORTED] = round(max(rate, best[backend].get(SORTED, 0.0)), 1)
    return best


def column_name(size: int) -> str:
    return "one call, sorted (texts/s)" if size == SORTED else f"batch {size} (texts/s)"


def markdown(results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    sizes = list(results[0]["texts_per_second"])
    base = results[0]["texts_per_second"] if results[0]["backend"] == "torch" else None
    lines = [
        f"Host: {meta['cpu']}, {meta['threads']} thread(s), load average {meta['load_before']} before / "
        f"{meta['load_after']} after; model `{results[0]['model_id'].split('/')[0]}`, "
        f"max_length {meta['max_length']}, {meta['texts']} validation tweets per batch size "
        f"(64 at batch 1), best of {meta['rounds']} round-robin passes; one-call column: all texts in one "
        f"predict call, sorted by length, batch {meta['sorted_batch_size']}.",
        "",
        "| backend | " + " | ".join(column_name(b) for b in sizes) + " | load s | RSS after load MB "
        "| peak RSS MB | macro-F1 | accuracy |",
        "|---" * (len(sizes) + 6) + "|",
    ]
    for r in results:
        q = r["quality"] or {}
        cells = []
        for b in sizes:
            value = r["texts_per_second"][b]
            ratio = f" ({value / base[b]:.1f}x)" if base and r["backend"] != "torch" else ""
            cells.append(f"{value:.0f}{ratio}")
        load = f"{r['load_seconds']:.1f}"
        if r["onnx_export_seconds"] is not None:
            load += f" (+{r['onnx_export_seconds']:.0f} s one-off export)"
        lines.append(
            f"| {r['backend']} | "
            + " | ".join(cells)
            + f" | {load} | {r['rss_mb']['after_load']:.0f} | {r['rss_mb']['peak']:.0f} | "
            + f"{q.get('macro_f1', float('nan')):.4f} | {q.get('accuracy', float('nan')):.4f} |"
        )
    return "\n".join(lines)


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="default")
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument(
        "--batch-sizes", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8, 32, 64]
    )
    parser.add_argument("--texts", type=int, default=512, help="Validation tweets timed per batch size.")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument(
        "--sorted-batch-size", type=int, default=32, help="Batch size of the one-call column."
    )
    parser.add_argument("--rounds", type=int, default=3, help="Timed passes per batch size; the best counts.")
    parser.add_argument("--threads", type=int, default=None, help="Default: the cgroup CPU quota.")
    parser.add_argument("--no-f1", dest="f1", action="store_false", help="Skip the macro-F1 pass.")
    parser.add_argument("--json", type=Path, help="Write the raw results here.")
    parser.add_argument("--backend", help=argparse.SUPPRESS)  # child-process mode: load, RSS, F1
    parser.add_argument("--throughput", action="store_true", help=argparse.SUPPRESS)  # child: texts/s
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    if args.backend:
        print(json.dumps(worker(args)))
        return
    if args.throughput:
        print(json.dumps(throughput(args)))
        return

    from sentiment_workers.model.threads import default_threads

    meta = {
        "cpu": cpu_name(),
        "threads": args.threads or default_threads(),
        "max_length": args.max_length,
        "texts": args.texts,
        "rounds": args.rounds,
        "sorted_batch_size": args.sorted_batch_size,
        "load_before": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
    }
    results = []
    env = {**os.environ, "SENTIMENT_ONNX_CACHE_DIR": tempfile.mkdtemp(prefix="bench-onnx-")}
    for backend in args.backends:
        command = [sys.executable, __file__, "--backend", backend, "--model", args.model]
        command += ["--batch-sizes", ",".join(map(str, args.batch_sizes)), "--texts", str(args.texts)]
        command += ["--max-length", str(args.max_length)]
        if args.threads:
            command += ["--threads", str(args.threads)]
        if not args.f1:
            command.append("--no-f1")
        command += ["--rounds", str(args.rounds)]
        print(f"# {backend} ...", file=sys.stderr, flush=True)
        export_seconds = None
        if backend == "onnx-int8":
            # First use exports and quantizes (in its own process, with torch); the timed worker then
            # loads the cached file like a restarted pod does, without torch.
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "sentiment_workers.model.prepare", "--model", args.model],
                env=env,
                check=True,
                capture_output=True,
            )
            export_seconds = round(time.perf_counter() - started, 1)
        done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
        if done.returncode != 0:
            sys.exit(f"{backend} failed:\n{done.stderr[-4000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        result["onnx_export_seconds"] = export_seconds
        results.append(result)
        print(json.dumps(result), file=sys.stderr, flush=True)
    print("# throughput, round-robin ...", file=sys.stderr, flush=True)
    command = [sys.executable, __file__, "--throughput", "--model", args.model, "--backends", *args.backends]
    command += ["--batch-sizes", ",".join(map(str, args.batch_sizes)), "--texts", str(args.texts)]
    command += ["--max-length", str(args.max_length), "--rounds", str(args.rounds)]
    command += ["--sorted-batch-size", str(args.sorted_batch_size)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        sys.exit(f"throughput run failed:\n{done.stderr[-4000:]}")
    rates = json.loads(done.stdout.strip().splitlines()[-1])
    for result in results:
        result["texts_per_second"] = {int(k): v for k, v in rates[result["backend"]].items()}
    meta["load_after"] = round(os.getloadavg()[0], 2)
    shutil.rmtree(env["SENTIMENT_ONNX_CACHE_DIR"], ignore_errors=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    print(markdown(results, meta))


if __name__ == "__main__":
    main()
