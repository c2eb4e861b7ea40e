"""Build the onnx-int8 export ahead of time (image builds, read-only root filesystems).

    python -m sentiment_workers.model.prepare [--model default] [--into-model-dir | --cache-dir DIR]

``--into-model-dir`` writes ``<model>/onnx/<weights-hash>-v<format>/model.int8.onnx``, which the runtime
finds before any cache (``models/**/onnx/`` is gitignored). Otherwise the usual cache is filled.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sentiment_workers.config import DEFAULT_MODEL
from sentiment_workers.model.onnx_backend import ensure_onnx_int8
from sentiment_workers.model.source import resolve_model


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description="Export and quantize the model for the onnx-int8 backend.")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--into-model-dir", action="store_true", help="Write next to the weights.")
    target.add_argument("--cache-dir", type=Path, help="Cache root (default: SENTIMENT_ONNX_CACHE_DIR).")
    args = parser.parse_args(argv)
    source = resolve_model(args.model)
    root = source.path / "onnx" if args.into_model_dir else args.cache_dir
    path = ensure_onnx_int8(source, cache_root=root)
    print(path)
    return path


if __name__ == "__main__":
    main()
