"""`sentiment-pipeline infer`: MongoDB staging -> model -> MySQL (the inference worker)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's command(s) to the CLI."""
    app.command("infer")(infer)


def infer(
    exit_when_idle: float = typer.Option(
        None, "--exit-when-idle", help="Exit once nothing was left to classify for this many seconds."
    ),
    claim_size: int = typer.Option(
        None,
        "--claim-size",
        min=1,
        help="Messages leased per claim (default: 4 x SENTIMENT_MODEL_BATCH_SIZE).",
    ),
) -> None:
    """Classify staged messages and upsert them into the warehouse table. Config: SENTIMENT_*."""
    import asyncio

    from sentiment_workers.inference import run_inference
    from sentiment_workers.metrics import PipelineMetrics
    from sentiment_workers.model import load_classifier
    from sentiment_workers.reachability import inference_probes, watching
    from sentiment_workers.runner import load_config, run_worker

    config = load_config()

    async def main(stop: asyncio.Event, metrics: PipelineMetrics) -> None:
        classifier = await asyncio.to_thread(
            load_classifier,
            config.model_name,
            config.model_backend,
            batch_size=config.model_batch_size,
            max_length=config.model_max_length,
        )
        # Probed only once the model is loaded: /readyz stays "starting" until then.
        async with (
            inference_probes(config) as probes,
            watching(
                probes,
                metrics,
                interval=config.store_probe_interval_seconds,
                probe_timeout=config.store_probe_timeout_seconds,
            ),
        ):
            await run_inference(
                config, stop, metrics, classifier, claim_size=claim_size, exit_when_idle=exit_when_idle
            )

    run_worker(config, main)
