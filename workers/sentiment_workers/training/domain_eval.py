"""Out-of-domain yardstick: the hand-labelled sets in ``data/eval``, scored for any model and for VADER.

Each set is one JSON-lines file ``<lang>-<domain>.jsonl`` of ``{"text", "label", "domain", "lang", "split"}``
records. The split of a text is a pure function of the text (:func:`split_for`), so adding sentences never
moves the old ones between dev and test. Scores are macro-F1 over the three labels, accuracy and the recall of
each label, per set; the table is markdown (:func:`markdown_table`). ``docs/evaluation.md`` tells the story.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sentiment_workers.training.dataset import LABELS

SPLITS = ("dev", "test")
FIELDS = ("text", "label", "domain", "lang", "split")
DEV_EVERY = 3
"""One text in three (by hash) is dev, the rest test: a 1:2 split."""

_SPACES = re.compile(r"\s+")

Predictor = Callable[[Sequence[str]], list[str]]
"""Texts in, one label of :data:`LABELS` per text out, in order."""


class EvalSetError(ValueError):
    """A set file that is not what the format says (the message names the file and line)."""


@dataclass(frozen=True)
class EvalItem:
    text: str
    label: str
    domain: str
    lang: str
    split: str


@dataclass(frozen=True)
class SetScores:
    """The scores of one predictor on one set."""

    n: int
    accuracy: float
    macro_f1: float
    recall: dict[str, float]
    confusion: dict[str, dict[str, int]]
    """``confusion[true_label][predicted_label]``: how many texts."""


@dataclass(frozen=True)
class Row:
    set_name: str
    predictor: str
    scores: SetScores


def split_for(text: str) -> str:
    """``dev`` or ``test`` by a stable hash (sha256) of the text: the same on every run and machine."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "dev" if int.from_bytes(digest[:8], "big") % DEV_EVERY == 0 else "test"


def normalised(text: str) -> str:
    """The form used to find duplicates: case-folded, whitespace collapsed."""
    return _SPACES.sub(" ", text).strip().casefold()


def load_set(path: Path) -> list[EvalItem]:
    """All records of one set file, checked field by field."""
    items = []
    with path.open(encoding="utf-8") as stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            where = f"{path.name}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise EvalSetError(f"{where}: not JSON ({exc.msg})") from None
            if not isinstance(record, dict) or sorted(record) != sorted(FIELDS):
                raise EvalSetError(f"{where}: expected exactly the fields {', '.join(FIELDS)}")
            if not all(isinstance(record[field], str) and record[field].strip() for field in FIELDS):
                raise EvalSetError(f"{where}: every field must be a non-empty string")
            if record["label"] not in LABELS:
                raise EvalSetError(f"{where}: label {record['label']!r} is not one of {', '.join(LABELS)}")
            if record["split"] not in SPLITS:
                raise EvalSetError(f"{where}: split {record['split']!r} is not one of {', '.join(SPLITS)}")
            items.append(EvalItem(**{field: record[field] for field in FIELDS}))
    return items


def set_files(directory: Path) -> list[Path]:
    """The set files of a folder, sorted by name."""
    if not directory.is_dir():
        raise EvalSetError(f"{directory}: no such folder of evaluation sets")
    files = sorted(directory.glob("*.jsonl"))
    if not files:
        raise EvalSetError(f"{directory}: no *.jsonl evaluation sets in it")
    return files


def load_sets(directory: Path, split: str | None = "test") -> dict[str, list[EvalItem]]:
    """Every set of ``directory`` by name (the file stem), kept to one split (``None``: all records)."""
    if split is not None and split not in SPLITS:
        raise EvalSetError(f"split {split!r} is not one of {', '.join(SPLITS)}")
    sets = {}
    for path in set_files(directory):
        items = [item for item in load_set(path) if split is None or item.split == split]
        if items:
            sets[path.stem] = items
    return sets


def score(truth: Sequence[str], predicted: Sequence[str]) -> SetScores:
    """Accuracy, macro-F1 over all three labels (a label never true nor predicted counts F1 0, as
    scikit-learn's ``zero_division=0``), the recall of each label (0 when the set has none of it) and the
    confusion counts."""
    if len(truth) != len(predicted):
        raise ValueError(f"{len(truth)} true labels but {len(predicted)} predictions")
    if not truth:
        raise ValueError("no examples to score")
    f1s = []
    recall = {}
    for label in LABELS:
        tp = sum(t == label and p == label for t, p in zip(truth, predicted, strict=True))
        fp = sum(t != label and p == label for t, p in zip(truth, predicted, strict=True))
        fn = sum(t == label and p != label for t, p in zip(truth, predicted, strict=True))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
        recall[label] = tp / (tp + fn) if tp + fn else 0.0
    confusion = {t: {p: 0 for p in LABELS} for t in LABELS}
    for t, p in zip(truth, predicted, strict=True):
        if t in confusion and p in confusion:
            confusion[t][p] += 1
    correct = sum(t == p for t, p in zip(truth, predicted, strict=True))
    return SetScores(
        n=len(truth),
        accuracy=correct / len(truth),
        macro_f1=sum(f1s) / len(LABELS),
        recall=recall,
        confusion=confusion,
    )


def vader_predictor() -> Predictor:
    """The lexicon baseline (VADER compound, cut-offs +-0.05), as the training module scores it."""
    from sentiment_workers.training.evaluation import vader_predictions

    return vader_predictions


def evaluate(sets: Mapping[str, Sequence[EvalItem]], predictors: Mapping[str, Predictor]) -> list[Row]:
    """Every predictor on every set, rows ordered by set then predictor."""
    rows = []
    for set_name, items in sets.items():
        texts = [item.text for item in items]
        truth = [item.label for item in items]
        for name, predict in predictors.items():
            rows.append(Row(set_name, name, score(truth, predict(texts))))
    return rows


def markdown_table(rows: Iterable[Row]) -> str:
    """One line per (set, predictor): n, macro-F1, accuracy, recall of each label."""
    header = ["set", "predictor", "n", "macro-F1", "accuracy", *(f"recall {label}" for label in LABELS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        s = row.scores
        cells = [row.set_name, row.predictor, str(s.n), f"{s.macro_f1:.3f}", f"{s.accuracy:.3f}"]
        cells += [f"{s.recall[label]:.3f}" for label in LABELS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def rows_as_json(rows: Iterable[Row]) -> list[dict[str, object]]:
    """The rows as plain dicts, for ``--json``."""
    return [
        {
            "set": row.set_name,
            "predictor": row.predictor,
            "n": row.scores.n,
            "macro_f1": round(row.scores.macro_f1, 4),
            "accuracy": round(row.scores.accuracy, 4),
            "recall": {label: round(value, 4) for label, value in row.scores.recall.items()},
            "confusion_rows_truth_cols_predicted": row.scores.confusion,
        }
        for row in rows
    ]
