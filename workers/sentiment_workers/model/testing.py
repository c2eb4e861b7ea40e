"""Test helpers: a tiny, randomly initialised BERT sequence classifier saved like a real model."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

_VOCAB_WORDS = [
    *[
        "the",
        "a",
        "an",
        "is",
        "was",
        "i",
        "you",
        "it",
        "this",
        "that",
        "not",
        "no",
        "very",
        "good",
        "great",
        "love",
        "happy",
        "bad",
        "awful",
        "hate",
        "sad",
        "okay",
    ],
    *[
        "car",
        "cars",
        "drive",
        "driving",
        "self",
        "autonomous",
        "google",
        "future",
        "safe",
        "safety",
        "road",
        "traffic",
        "today",
        "new",
    ],
    *[
        "will",
        "would",
        "can",
        "cannot",
        "don't",
        "won't",
        "and",
        "or",
        "but",
        "so",
        "just",
        "really",
        "think",
        "see",
        "want",
        "need",
        "like",
        "people",
    ],
]


def build_tiny_model(
    path: Path,
    labels: Sequence[str] | None = ("negative", "neutral", "positive"),
    seed: int = 0,
    *,
    num_labels: int | None = None,
    architecture: str = "bert",
    max_position_embeddings: int = 128,
) -> Path:
    """Write a tiny real-architecture BERT classifier (config with id2label, tokenizer, weights) to ``path``.

    ``labels=None`` writes a config without real label names (transformers' ``LABEL_<i>``), for
    ``num_labels`` classes (default 5), to exercise the label fallback. ``architecture="xlm-roberta"`` writes
    an XLM-R classifier (positions numbered from ``pad_token_id + 1``, as RoBERTa's are) with the same
    WordPiece tokenizer. Deterministic for a given seed.
    """
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *_VOCAB_WORDS]
    vocab += [chr(c) for c in range(ord("a"), ord("z") + 1) if chr(c) not in vocab]
    vocab += [f"##{chr(c)}" for c in range(ord("a"), ord("z") + 1)]
    vocab += list(".,!?'#@:-0123456789")
    vocab_file = path / "vocab.txt"
    vocab_file.write_text("\n".join(dict.fromkeys(vocab)) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(vocab_file=str(vocab_file), do_lower_case=True, model_max_length=512)

    sizes: dict[str, Any] = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": max_position_embeddings,
        "initializer_range": 0.5,  # large random weights: predictions vary from text to text
    }
    config: Any
    if architecture == "xlm-roberta":
        from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

        config = XLMRobertaConfig(**sizes, pad_token_id=1, type_vocab_size=1)
        model_class: Any = XLMRobertaForSequenceClassification
    elif architecture == "bert":
        config = BertConfig(**sizes)
        model_class = BertForSequenceClassification
    else:
        raise ValueError(f"architecture {architecture!r}: bert or xlm-roberta")
    if labels is None:
        config.num_labels = num_labels or 5  # transformers names them LABEL_0..LABEL_<n-1>
    else:
        config.id2label = dict(enumerate(labels))
        config.label2id = {name: i for i, name in enumerate(labels)}
    torch.manual_seed(seed)
    model = model_class(config).eval()
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path
