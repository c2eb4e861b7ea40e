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
    import asyncio

    from sentiment_workers.consumer import run_consumer
    from sentiment_workers.metrics import PipelineMetrics
    from sentiment_workers.reachability import consumer_probes, wait_for_kafka, watching
    from sentiment_workers.runner import load_config, run_worker

    config = load_config()
    overrides: dict[str, object] = {}
    if session_timeout_ms:
        overrides.update(
            session_timeout_ms=session_timeout_ms, heartbeat_interval_ms=max(session_timeout_ms // 3, 100)
        )

    async def main(stop: asyncio.Event, metrics: PipelineMetrics) -> None:
        # Kafka and MongoDB are probed all along (/readyz, sentiment_store_up); the consumer waits for a
        # broker instead of exiting (aiokafka's start fails at once without one).
        async with (
            consumer_probes(config) as probes,
            watching(
                probes,
                metrics,
                interval=config.store_probe_interval_seconds,
                probe_timeout=config.store_probe_timeout_seconds,
            ),
        ):
            if await wait_for_kafka(config, metrics, stop):
                await run_consumer(
                    config, stop, metrics, exit_when_idle=exit_when_idle, kafka_overrides=overrides
                )

    run_worker(config, main)
