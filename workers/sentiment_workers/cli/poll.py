"""`sentiment-pipeline poll`: the HTTP source (paged API -> landing store -> the pipeline's Kafka topic)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from sentiment_workers.http_source.settings import HttpSourceConfig


def register(app: typer.Typer) -> None:
    """Add this module's command(s) to the CLI."""
    app.command("poll")(poll)


def poll(
    once: bool = typer.Option(
        False,
        "--once",
        help="One run, then exit (status 1 and one error line when the API or a store fails).",
    ),
    lease_seconds: float = typer.Option(
        30.0, min=1.0, help="Single-poller lease: how long a poller that died keeps others waiting."
    ),
    attempts: int = typer.Option(
        6, min=1, help="Tries per page request before the API counts as unreachable."
    ),
    backoff_seconds: float = typer.Option(
        0.5, min=0.01, help="First retry wait after a 5xx or a timeout (doubles, with jitter, up to 30 s)."
    ),
) -> None:
    """Poll a paged HTTP API, land its pages, publish its records. Config: SENTIMENT_HTTP_*, SENTIMENT_*."""
    import asyncio

    from sentiment_workers.adapters import kafka, mongo
    from sentiment_workers.adapters.kafka import create_producer
    from sentiment_workers.adapters.landing import LandingStore, LeaseLostError
    from sentiment_workers.cli._errors import run_or_exit
    from sentiment_workers.http_source.client import PageClient, SourceError
    from sentiment_workers.http_source.poller import HttpPoller, LeaseHeldError
    from sentiment_workers.logging import configure_logging
    from sentiment_workers.metrics import PipelineMetrics
    from sentiment_workers.reachability import StoreProbe, wait_for_kafka, watching
    from sentiment_workers.retry import with_retries
    from sentiment_workers.runner import install_stop_handlers, load_config, run_worker

    config = load_config()
    source = load_source_config()

    def parts(metrics: PipelineMetrics) -> tuple[LandingStore, PageClient, HttpPoller]:
        landing = LandingStore.from_config(
            config, collection=source.landing_collection, landing_url=source.landing_url
        )
        client = PageClient(
            source.headers, source.timeout_seconds, attempts=attempts, backoff_s=backoff_seconds
        )
        producer = create_producer(config)
        poller = HttpPoller(config, source, landing, producer, client, metrics, lease_seconds=lease_seconds)
        return landing, client, poller

    async def main_once() -> str:
        configure_logging(config.log_level, config.log_format)
        stop = asyncio.Event()
        install_stop_handlers(stop)
        landing, client, poller = parts(PipelineMetrics())
        try:
            await landing.ensure_indexes()  # MongoDB unreachable or refusing: one error line
            await poller.producer.start()  # Kafka likewise
            try:
                summary = await poller.run(stop, once=True)
            except (SourceError, LeaseHeldError, LeaseLostError) as exc:
                typer.echo(f"error: {exc}", err=True)
                raise typer.Exit(1) from None
            return summary.line() if summary is not None else "stopped before a run"
        finally:
            await poller.producer.stop()
            await client.close()
            landing.close()

    if once:
        typer.echo(f"poll {source.source_name}: {run_or_exit(main_once)}")
        return

    async def main(stop: asyncio.Event, metrics: PipelineMetrics) -> None:
        landing, client, poller = parts(metrics)
        probes = {
            "kafka": StoreProbe(lambda: kafka.ping(config), kafka.is_auth_error),
            "mongo": StoreProbe(landing.ping, mongo.is_auth_error),
        }
        try:
            async with watching(
                probes,
                metrics,
                interval=config.store_probe_interval_seconds,
                probe_timeout=config.store_probe_timeout_seconds,
            ):
                await with_retries(
                    landing.ensure_indexes,
                    store="mongo",
                    is_transient=mongo.is_transient,
                    is_auth_error=mongo.is_auth_error,
                    metrics=metrics,
                )
                if not await wait_for_kafka(config, metrics, stop):
                    return
                await with_retries(
                    poller.producer.start,
                    store="kafka",
                    is_transient=kafka.is_transient,
                    is_auth_error=kafka.is_auth_error,
                    metrics=metrics,
                )
                await poller.run(stop)
        finally:
            await poller.producer.stop()
            await client.close()
            landing.close()

    run_worker(config, main)


def load_source_config() -> HttpSourceConfig:
    """``HttpSourceConfig`` from ``SENTIMENT_HTTP_*``; bad or missing values: one line, exit 2."""
    import re

    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from sentiment_workers.http_source.settings import HttpSourceConfig, env_name

    try:
        return HttpSourceConfig()
    except SettingsError as exc:  # a JSON setting (the headers) that is not JSON
        field = re.search(r'field "(\w+)"', str(exc))
        name = env_name(field.group(1)) if field else "SENTIMENT_HTTP_*"
        typer.echo(f"error: invalid configuration: {name}: not valid JSON", err=True)
        raise SystemExit(2) from None
    except ValidationError as exc:
        problems = [
            f"{env_name(str(e['loc'][0])) if e['loc'] else 'SENTIMENT_HTTP_*'}: {e['msg']}"
            for e in exc.errors()
        ]
        typer.echo(f"error: invalid configuration: {'; '.join(problems)}", err=True)
        raise SystemExit(2) from None
