"""Vocabulary pruning of a SentencePiece-unigram model (issue 14: multilingual-e5-small, shippable size).

multilingual-e5-small's word table is 250,037 x 384 rows (96M of its 118M parameters) for XLM-R's 250,002
pieces in ~100 languages; English, Spanish and Portuguese text uses a small part of it. Pruning keeps a
chosen set of token ids, renumbers them densely in their old order, and cuts both the ``tokenizer.json``
(the unigram vocabulary with its scores) and the word table to those rows, so nothing else of the model
changes.

Why a text whose tokens are all kept is tokenized exactly as before: unigram tokenization is the Viterbi
path (highest sum of piece scores) over every segmentation of a pre-token into vocabulary pieces. Pruning
only removes candidate pieces and keeps the scores of the rest, so a best path made of kept pieces is still
available and still the best; the ids differ only by the renumbering. Two details of the ``tokenizers``
implementation are kept the same on purpose: the score given to an unknown character (``min score - 10``,
so the piece with the lowest score is always kept) and the rule that an unknown node is added only where no
single-character piece starts (every single-character piece is kept by :func:`select_ids`). Since every
character of XLM-R's vocabulary is also a single-character piece, keeping those means no text gets more
``<unk>`` than before: a text that needs a dropped piece is segmented into smaller kept pieces instead (its
token sequence, and so its vector, then differ from the unpruned model's).

Nothing shipped imports this module yet; ``bench/experiment_vocab_pruning.py`` applies it to
multilingual-e5-small and measures it (docs/model-next.md).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from tokenizers import Tokenizer

NEUTRAL_PIECES = re.compile(r"\u2581?(?:.|[0-9.,:/%+\-]+)", re.DOTALL)
"""Pieces :func:`select_ids` keeps by default whatever the texts: a character after the word-start marker
(``▁¿``, ``▁¡``, ``▁(``; 1,569 in XLM-R) and numbers with their separators (``▁2019.``, ``6,8``, ``-13``;
2,358): language-neutral, and no word list has them in running-text form."""


class PruningError(ValueError):
    """A tokenizer or id set that cannot be pruned as asked (the message says why)."""


@dataclass(frozen=True)
class PrunedVocabulary:
    kept_ids: np.ndarray
    """Old ids kept, ascending; new id ``i`` is old id ``kept_ids[i]``."""
    old_to_new: np.ndarray
    """Old id -> new id, ``-1`` where the piece was dropped (length: the old vocabulary)."""
    tokenizer_json: str
    """The pruned ``tokenizer.json`` (same normalizer, pre-tokenizer, post-processor and decoder)."""

    def tokenizer(self) -> Tokenizer:
        from tokenizers import Tokenizer

        return Tokenizer.from_str(self.tokenizer_json)

    def remap(self, old_ids: Sequence[int]) -> list[int]:
        """Old ids as new ids; a dropped id is an error (a caller should re-tokenize instead)."""
        new = self.old_to_new[np.asarray(old_ids, dtype=np.int64)]
        if (new < 0).any():
            raise PruningError(
                f"ids {sorted({int(i) for i in np.asarray(old_ids)[new < 0]})[:5]} were dropped"
            )
        return [int(i) for i in new]


def _spec(tokenizer_json: str | dict[str, Any]) -> dict[str, Any]:
    spec = (
        json.loads(tokenizer_json)
        if isinstance(tokenizer_json, str)
        else json.loads(json.dumps(tokenizer_json))
    )
    model = spec.get("model", {})
    if model.get("type") != "Unigram":
        raise PruningError(f"only a Unigram (SentencePiece) model can be pruned, not {model.get('type')!r}")
    if model.get("byte_fallback"):
        raise PruningError("a byte-fallback unigram model is not supported (its <0x..> pieces need keeping)")
    return spec


def always_kept_ids(tokenizer_json: str | dict[str, Any]) -> list[int]:
    """Ids every pruned vocabulary keeps: the added/special tokens, the unknown piece, every
    single-character piece (so no text gets more ``<unk>``) and the lowest-scored piece(s) (so the unknown
    score, ``min score - 10``, does not move)."""
    spec = _spec(tokenizer_json)
    vocab = spec["model"]["vocab"]
    ids = {int(token["id"]) for token in spec.get("added_tokens", [])}
    if spec["model"].get("unk_id") is not None:
        ids.add(int(spec["model"]["unk_id"]))
    ids.update(i for i, (piece, _score) in enumerate(vocab) if len(piece) == 1)
    lowest = min(score for _piece, score in vocab)
    ids.update(i for i, (_piece, score) in enumerate(vocab) if score == lowest)
    return sorted(ids)


def ids_seen(tokenizer: Tokenizer, texts: Iterable[str], batch_size: int = 1024) -> set[int]:
    """Every token id the tokenizer gives ``texts`` (special tokens of the post-processor included)."""
    seen: set[int] = set()
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) == batch_size:
            for encoding in tokenizer.encode_batch(batch):
                seen.update(encoding.ids)
            batch = []
    if batch:
        for encoding in tokenizer.encode_batch(batch):
            seen.update(encoding.ids)
    return seen


def word_forms(words: Iterable[str], upper_max_len: int = 4) -> list[str]:
    """Each word as written in running text: lower case, capitalised (sentence starts, names) and, up to
    ``upper_max_len`` characters, upper case (acronyms: ``usb`` -> ``USB``); word lists are lower case."""
    forms: dict[str, None] = {}
    for word in words:
        forms[word] = None
        forms[word[:1].upper() + word[1:]] = None
        if len(word) <= upper_max_len:
            forms[word.upper()] = None
    return list(forms)


def select_ids(
    tokenizer_json: str | dict[str, Any],
    texts: Iterable[str],
    keep_pieces: re.Pattern[str] | None = NEUTRAL_PIECES,
) -> list[int]:
    """The ids to keep: :func:`always_kept_ids`, the pieces that ``keep_pieces`` matches in full, and every
    id the unpruned tokenizer gives ``texts``."""
    from tokenizers import Tokenizer

    spec = _spec(tokenizer_json)
    tokenizer = Tokenizer.from_str(json.dumps(spec))
    kept = set(always_kept_ids(spec)) | ids_seen(tokenizer, texts)
    if keep_pieces is not None:
        vocab = spec["model"]["vocab"]
        kept.update(i for i, (piece, _score) in enumerate(vocab) if keep_pieces.fullmatch(piece))
    return sorted(kept)


def prune_tokenizer(tokenizer_json: str | dict[str, Any], kept_ids: Iterable[int]) -> PrunedVocabulary:
    """``tokenizer.json`` cut to ``kept_ids`` (renumbered densely in their old order, scores kept).

    The ids of :func:`always_kept_ids` are added if missing; added tokens and the post-processor's special
    tokens get their new ids."""
    spec = _spec(tokenizer_json)
    vocab = spec["model"]["vocab"]
    kept = np.array(sorted(set(kept_ids) | set(always_kept_ids(spec))), dtype=np.int64)
    if kept[0] < 0 or kept[-1] >= len(vocab):
        raise PruningError(f"kept ids must lie in 0..{len(vocab) - 1}")
    old_to_new = np.full(len(vocab), -1, dtype=np.int64)
    old_to_new[kept] = np.arange(len(kept))
    spec["model"]["vocab"] = [vocab[i] for i in kept]
    if spec["model"].get("unk_id") is not None:
        spec["model"]["unk_id"] = int(old_to_new[spec["model"]["unk_id"]])
    for token in spec.get("added_tokens", []):
        token["id"] = int(old_to_new[token["id"]])
    _remap_post_processor(spec.get("post_processor"), old_to_new)
    return PrunedVocabulary(kept, old_to_new, json.dumps(spec, ensure_ascii=False))


def _remap_post_processor(processor: dict[str, Any] | None, old_to_new: np.ndarray) -> None:
    if not processor:
        return
    if processor.get("type") == "Sequence":
        for inner in processor.get("processors", []):
            _remap_post_processor(inner, old_to_new)
    for special in (processor.get("special_tokens") or {}).values():
        special["ids"] = [int(old_to_new[i]) for i in special["ids"]]
    for key in ("sep", "cls"):  # RobertaProcessing / BertProcessing: [piece, id]
        if isinstance(processor.get(key), list):
            processor[key][1] = int(old_to_new[processor[key][1]])


def prune_rows(matrix: np.ndarray, pruned: PrunedVocabulary) -> np.ndarray:
    """The rows of a word table (``rows >= old vocabulary``) for the kept ids, in the new order."""
    if matrix.shape[0] < len(pruned.old_to_new):
        raise PruningError(
            f"a table of {matrix.shape[0]} rows is smaller than the {len(pruned.old_to_new)} ids"
        )
    return np.ascontiguousarray(matrix[pruned.kept_ids])


def prune_model_embeddings(model: Any, pruned: PrunedVocabulary) -> Any:
    """A ``transformers`` model with its input word table cut to the kept ids (in place; also returned);
    ``config.vocab_size`` follows. For encoders without a tied output layer (BERT, XLM-R classifiers)."""
    import torch

    old = model.get_input_embeddings()
    rows = torch.from_numpy(prune_rows(old.weight.detach().cpu().numpy(), pruned))
    padding_idx = old.padding_idx
    if padding_idx is not None:
        padding_idx = int(pruned.old_to_new[padding_idx])
    new = torch.nn.Embedding(rows.shape[0], rows.shape[1], padding_idx=padding_idx)
    with torch.no_grad():
        new.weight.copy_(rows)
    model.set_input_embeddings(new)
    model.config.vocab_size = rows.shape[0]
    if getattr(model.config, "pad_token_id", None) is not None:
        model.config.pad_token_id = int(pruned.old_to_new[model.config.pad_token_id])
    for key in ("bos_token_id", "eos_token_id"):
        if getattr(model.config, key, None) is not None:
            setattr(model.config, key, int(pruned.old_to_new[getattr(model.config, key)]))
    return model


def with_prefix(tokenizer_json: str, prefix: str) -> str:
    """``tokenizer.json`` whose post-processor writes ``prefix``'s pieces right after the leading special
    token of every text (``<s> query: ...``), so a model trained on prefixed texts (e5's ``"query: "``) gets
    them with no change to the code that runs it.

    The pieces are ``prefix`` tokenized on its own (trailing space stripped: the text's first word gets its
    own ``▁``), so the ids equal those of tokenizing ``prefix + " " + text`` for any text that starts with a
    word; truncation counts them like the special tokens. Needs a ``TemplateProcessing`` post-processor whose
    single-text template starts with a special token (XLM-R: ``<s> $A </s>``)."""
    from tokenizers import Tokenizer

    spec = json.loads(tokenizer_json)
    processor = spec.get("post_processor") or {}
    single = processor.get("single") or []
    if processor.get("type") != "TemplateProcessing" or not single or "SpecialToken" not in single[0]:
        raise PruningError(
            "the prefix needs a TemplateProcessing post-processor that starts with a special token"
        )
    encoding = Tokenizer.from_str(tokenizer_json).encode(prefix.rstrip(), add_special_tokens=False)
    if not encoding.ids:
        raise PruningError(f"prefix {prefix!r} has no tokens")
    special = processor["special_tokens"][single[0]["SpecialToken"]["id"]]
    special["ids"] = [*special["ids"], *encoding.ids]
    special["tokens"] = [*special["tokens"], *encoding.tokens]
    return json.dumps(spec, ensure_ascii=False)
