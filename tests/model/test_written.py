"""Hand-written training sentences (``data/train``, ``training/written.py``; issue 14).

The shipped sentences are checked as the build reads them: well formed, balanced, in the three languages,
never twice, and never close to a sentence of the evaluation sets (``data/eval``), which must stay unseen.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from sentiment_workers.training import domain_eval
from sentiment_workers.training.dataset import LABELS, Example
from sentiment_workers.training.written import (
    WrittenDataError,
    flip_initial_case,
    folder_sha256,
    load_written,
    near_duplicates,
    with_case_flips,
    words,
)

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ROOT / "data" / "train"


@pytest.fixture(scope="module")
def shipped() -> dict[str, list[dict[str, str]]]:
    return {
        path.name: [
            json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
        ]
        for path in sorted(TRAIN.glob("*.jsonl"))
    }


def test_the_shipped_sentences_load_and_cover_english_news_and_reviews_spanish_and_portuguese(
    shipped: dict[str, list[dict[str, str]]],
) -> None:
    sentences = load_written(TRAIN)
    assert len(sentences) == sum(len(rows) for rows in shipped.values()) >= 1000
    assert {s.lang for s in sentences} == {"en", "es", "pt"}
    domains = {(s.lang, s.domain) for s in sentences}
    assert {("en", "news"), ("en", "editorial"), ("en", "products"), ("en", "movies")} <= domains


def test_every_file_has_the_three_labels_in_equal_numbers(shipped: dict[str, list[dict[str, str]]]) -> None:
    for name, rows in shipped.items():
        counts = Counter(row["label"] for row in rows)
        assert set(counts) == set(LABELS) and len(set(counts.values())) == 1, (name, counts)


def test_no_sentence_is_written_twice(shipped: dict[str, list[dict[str, str]]]) -> None:
    keys = Counter(" ".join(words(row["text"])) for rows in shipped.values() for row in rows)
    assert [key for key, n in keys.items() if n > 1] == []


def test_no_sentence_is_close_to_one_of_the_evaluation_sets(shipped: dict[str, list[dict[str, str]]]) -> None:
    evaluation = [
        item.text
        for items in domain_eval.load_sets(ROOT / "data" / "eval", split=None).values()
        for item in items
    ]
    assert len(evaluation) > 2000
    written = [row["text"] for rows in shipped.values() for row in rows]
    assert near_duplicates(written, evaluation) == []


def test_near_duplicates_are_the_same_words_or_half_the_word_trigrams() -> None:
    references = ["The new bridge opened to traffic on Monday morning.", "Great phone, terrible battery."]
    assert near_duplicates(["the new bridge opened to traffic on monday morning!"], references) != []
    assert near_duplicates(["The new bridge opened to traffic on Monday, a week late."], references) != []
    assert near_duplicates(["GREAT PHONE; terrible battery"], references) != []
    assert near_duplicates(["A new school opened in the village.", "Terrible phone."], references) == []


@pytest.mark.parametrize(
    ("text", "flipped"),
    [
        ("pésimo servicio, nunca más", "Pésimo servicio, nunca más"),
        ("Pésimo servicio", "pésimo servicio"),
        ("¡Excelente atención!", "¡excelente atención!"),
        ("10/10 would buy again", "10/10 Would buy again"),
        ("!!!", "!!!"),
    ],
)
def test_a_case_flip_swaps_the_case_of_the_first_letter_only(text: str, flipped: str) -> None:
    assert flip_initial_case(text) == flipped
    assert flip_initial_case(flipped) == text


def test_case_flips_touch_the_chosen_fraction_keep_labels_and_order_and_depend_only_on_the_seed() -> None:
    examples = [Example(f"text number {i}", LABELS[i % 3], 1.0) for i in range(1000)]
    flipped = with_case_flips(examples, 0.3, seed=42)
    changed = [a for a, b in zip(examples, flipped, strict=True) if a != b]
    assert 250 <= len(changed) <= 350
    assert [e.label for e in flipped] == [e.label for e in examples]
    assert all(b.text in (a.text, flip_initial_case(a.text)) for a, b in zip(examples, flipped, strict=True))
    assert with_case_flips(examples, 0.3, seed=42) == flipped
    assert with_case_flips(examples, 0.3, seed=7) != flipped
    assert with_case_flips(examples, 0.0, seed=42) == examples
    assert all(e.text.startswith("T") for e in with_case_flips(examples, 1.0, seed=42))
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        with_case_flips(examples, 1.5, seed=42)


GOOD = '{"text": "Loved it", "label": "positive", "domain": "movies", "lang": "en"}'


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "a.jsonl:2: not JSON"),
        ('{"text": "x", "label": "positive", "lang": "en"}', "a.jsonl:2: a record has exactly the keys"),
        ('{"text": "x", "label": "happy", "domain": "d", "lang": "en"}', "a.jsonl:2: label must be one of"),
        ('{"text": " ", "label": "neutral", "domain": "d", "lang": "en"}', "a.jsonl:2: text, label, domain"),
    ],
)
def test_a_malformed_record_is_refused_naming_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    (tmp_path / "a.jsonl").write_text(f"{GOOD}\n{line}\n", encoding="utf-8")
    with pytest.raises(WrittenDataError, match=message):
        load_written(tmp_path)


def test_a_missing_or_empty_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(WrittenDataError, match="no such folder"):
        load_written(tmp_path / "absent")
    with pytest.raises(WrittenDataError, match="no training sentences"):
        load_written(tmp_path)


def test_the_folder_digest_follows_every_file_s_name_and_bytes(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text(GOOD + "\n", encoding="utf-8")
    first = folder_sha256(tmp_path)
    (tmp_path / "b.jsonl").write_text(GOOD.replace("Loved", "Hated") + "\n", encoding="utf-8")
    second = folder_sha256(tmp_path)
    (tmp_path / "b.jsonl").rename(tmp_path / "c.jsonl")
    assert len({first, second, folder_sha256(tmp_path)}) == 3
    assert [s.text for s in load_written(tmp_path)] == ["Loved it", "Hated it"]
