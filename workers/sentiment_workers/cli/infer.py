"""`sentiment-pipeline infer`: MongoDB staging -> model -> MySQL (the inference worker)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's command(s) to the CLI."""
    app.command("infer")(infer)


TORCH_BACKENDS = ("torch", "torch-int8")
EXIT_BACKEND_UNAVAILABLE = 3


def backend_unavailable(backend: str) -> str | None:
    """Why this installation cannot run ``backend`` (None when it can): the slim image has no torch."""
    import importlib.util

    if backend in TORCH_BACKENDS and importlib.util.find_spec("torch") is None:
        return (
            f"model backend {backend} needs torch, which this worker image does not have (the slim image "
            "runs onnx-int8 only): set the pipeline's spec.model.backend to onnx-int8, or run the torch "
            "image (worker:<version>-torch, or -cuda for GPUs)"
        )
    return None


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
    fused: bool = typer.Option(
        False,
        "--fused",
        help="Also consume the Kafka topic: stage, classify and write per Kafka batch (docs/data-plane.md, "
        "'Fused mode'); no separate consume process is needed.",
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
    problem = backend_unavailable(config.model_backend.value)
    if problem is not None:
        typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(EXIT_BACKEND_UNAVAILABLE)

    async def main(stop: asyncio.Event, metrics: PipelineMetrics) -> None:
        try:
            classifier = await asyncio.to_thread(
                load_classifier,
                config.model_name,
                config.model_backend,
                batch_size=config.model_batch_size,
                max_length=config.model_max_length,
            )
        except ModuleNotFoundError as exc:  # e.g. a model whose onnx-int8 export is not baked into the image
            typer.echo(
                f"error: model {config.model_name} on {config.model_backend.value} needs {exc.name}, which "
                "this worker image does not have (the slim image runs the onnx-int8 exports baked into it)",
                err=True,
            )
            raise typer.Exit(EXIT_BACKEND_UNAVAILABLE) from None
        # Probed only once the model is loaded: /readyz stays "starting" until then.
        async with (
            inference_probes(config, fused=fused) as probes,
            watching(
                probes,
                metrics,
                interval=config.store_probe_interval_seconds,
                probe_timeout=config.store_probe_timeout_seconds,
            ),
        ):
            if fused:
                from sentiment_workers.fused import run_fused

                await run_fused(
                    config, stop, metrics, classifier, batch_size=claim_size, exit_when_idle=exit_when_idle
                )
            else:
                await run_inference(
                    config, stop, metrics, classifier, claim_size=claim_size, exit_when_idle=exit_when_idle
                )

    run_worker(config, main)
