"""`sentiment-pipeline classify`: label texts (one per line) with the model runtime, offline."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Annotated, TextIO

import typer

from sentiment_workers.config import DEFAULT_MODEL, ModelBackend

CHUNK_LINES = 1024
"""Lines read, classified and written at a time: memory stays bounded for any input size."""


def _lines(stream: TextIO) -> Iterator[str]:
    for line in stream:
        text = line.rstrip("\r\n")
        if text.strip():
            yield text


def classify(
    file: Annotated[
        Path | None,
        typer.Argument(
            exists=True, dir_okay=False, readable=True, help="Text file, one text per line (default: stdin)."
        ),
    ] = None,
    model: Annotated[
        str,
        typer.Option(
            help="'default' (the shipped model), a model directory, models:/NAME@ALIAS (MLflow registry), "
            "or a cached hub name."
        ),
    ] = DEFAULT_MODEL,
    backend: Annotated[ModelBackend, typer.Option(help="Runtime backend.")] = ModelBackend.TORCH,
    batch_size: Annotated[int, typer.Option(min=1, max=1024, help="Texts per forward pass.")] = 32,
    max_length: Annotated[int, typer.Option(min=8, max=4096, help="Tokens kept per text.")] = 128,
    threads: Annotated[int | None, typer.Option(min=1, help="CPU threads (default: cgroup quota).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda when present).")] = None,
) -> None:
    """Classify texts (one per line, blank lines skipped) and print JSON lines {"text", "label", "score"}."""
    import json

    from sentiment_workers.model import ModelLoadError, load_classifier

    try:
        classifier = load_classifier(
            model, backend, batch_size=batch_size, max_length=max_length, device=device, threads=threads
        )
    except (ModelLoadError, ValueError) as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(2) from exc

    stream = file.open(encoding="utf-8", errors="replace") if file else sys.stdin
    out = sys.stdout
    try:
        lines = _lines(stream)
        while chunk := list(islice(lines, CHUNK_LINES)):
            for text, prediction in zip(chunk, classifier.predict(chunk), strict=True):
                out.write(
                    json.dumps(
                        {"text": text, "label": prediction.label, "score": round(prediction.score, 6)},
                        ensure_ascii=False,
                    )
                    + "\n"
                )
            out.flush()
    finally:
        if file:
            stream.close()


def register(app: typer.Typer) -> None:
    """Add ``classify`` to the CLI."""
    app.command("classify")(classify)
