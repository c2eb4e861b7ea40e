"""`sentiment-pipeline produce`: burst generator or dataset loader onto the Kafka topic."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sentiment_workers.cli._errors import run_or_exit


def register(app: typer.Typer) -> None:
    """Add this module's command(s) to the CLI."""
    app.command("produce")(produce)


def produce(
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            "-f",
            exists=True,
            dir_okay=False,
            help="CSV or JSONL dataset to load instead of a burst.",
        ),
    ] = None,
    text_column: str = typer.Option("comment", help="Dataset column holding the text."),
    id_column: str = typer.Option("id", help="Dataset column holding a stable id (else <file>-<row>)."),
    encoding: str = typer.Option("utf-8", help="Dataset file encoding (e.g. latin-1)."),
    count: int = typer.Option(
        None,
        min=0,
        help="Burst: number of synthetic messages (default 1000); dataset: at most this many rows.",
    ),
    rate: float = typer.Option(0.0, min=0, help="Messages per second (0 = as fast as possible)."),
    concurrency: int = typer.Option(64, min=1, help="Concurrent sends awaiting acknowledgement."),
    run_id: str = typer.Option(None, help="Burst id prefix; reuse it to replay the same messages."),
    topic: str = typer.Option(None, help="Topic (default: SENTIMENT_KAFKA_TOPIC)."),
    progress: bool = typer.Option(True, help="Show a tqdm progress bar."),
) -> None:
    """Send test traffic (a burst of synthetic messages, or a dataset) to Kafka. Config: SENTIMENT_*."""
    import uuid

    from tqdm import tqdm

    from sentiment_workers.adapters.kafka import create_producer
    from sentiment_workers.runner import load_config
    from sentiment_workers.traffic import dataset_messages, synthetic_messages

    config = load_config()
    target = topic or config.kafka_topic
    if file is not None:
        limit = count if count else None
        messages = list(
            dataset_messages(
                file, text_column=text_column, id_column=id_column, encoding=encoding, limit=limit
            )
        )
        label = file.name
    else:
        messages = list(synthetic_messages(1000 if count is None else count, run_id or uuid.uuid4().hex[:8]))
        label = "burst"

    async def main() -> int:
        from sentiment_workers.traffic import send_messages

        producer = create_producer(config)
        await producer.start()
        try:
            with tqdm(total=len(messages), desc=label, unit="msg", disable=not progress) as bar:
                return await send_messages(
                    producer, target, messages, rate=rate, concurrency=concurrency, on_sent=bar.update
                )
        finally:
            await producer.stop()

    sent = run_or_exit(main)
    typer.echo(f"sent {sent} messages to {target}")
