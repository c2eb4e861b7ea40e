"""`sentiment-pipeline consume`: Kafka -> MongoDB staging (the consumer worker)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's command(s) to the CLI."""
    app.command("consume")(consume)


def consume(
    exit_when_idle: float = typer.Option(
        None, "--exit-when-idle", help="Exit after this many seconds without records (batch runs, demo)."
    ),
    session_timeout_ms: int = typer.Option(
        None, "--session-timeout-ms", help="Kafka group session timeout (default: aiokafka's)."
    ),
) -> None:
    """Consume the topic into the staging collection; dead-letter invalid messages. Config: SENTIMENT_*."""
    from sentiment_workers.consumer import run_consumer
    from sentiment_workers.runner import load_config, run_worker

    config = load_config()
    overrides: dict[str, object] = {}
    if session_timeout_ms:
        overrides.update(
            session_timeout_ms=session_timeout_ms, heartbeat_interval_ms=max(session_timeout_ms // 3, 100)
        )
    run_worker(
        config,
        lambda stop, metrics: run_consumer(
            config, stop, metrics, exit_when_idle=exit_when_idle, kafka_overrides=overrides
        ),
    )
