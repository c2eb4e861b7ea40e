"""`sentiment-pipeline metabase provision`: set Metabase up through its REST API (idempotent).

Settings come from ``SENTIMENT_METABASE_*`` environment variables (see ``sentiment_workers.bi.settings``);
passwords only from the environment or from files, never from arguments.
"""

from __future__ import annotations

import json
import os
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add this module's command(s) to the CLI."""
    metabase_app = typer.Typer(
        name="metabase", help="Metabase dashboards over the fact table.", no_args_is_help=True
    )
    metabase_app.command("provision")(provision)
    app.add_typer(metabase_app, name="metabase")


def provision(
    url: Annotated[
        str | None,
        typer.Option(
            "--url", help="Metabase base URL (default: SENTIMENT_METABASE_URL).", show_default=False
        ),
    ] = None,
    wait_timeout: Annotated[
        float | None,
        typer.Option("--wait-timeout", help="Seconds to wait for /api/health.", show_default=False),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """First admin, the MySQL database (read-only BI user), the questions and the dashboard.

    Needs SENTIMENT_METABASE_ADMIN_EMAIL, SENTIMENT_METABASE_ADMIN_PASSWORD (or _FILE),
    SENTIMENT_METABASE_WAREHOUSE_HOST, SENTIMENT_METABASE_WAREHOUSE_USER and
    SENTIMENT_METABASE_WAREHOUSE_PASSWORD (or _FILE); see docs/metabase.md for the rest.
    """
    from pydantic import ValidationError

    from sentiment_workers.bi.metabase import MetabaseClient, MetabaseError, MetabaseNotReady
    from sentiment_workers.bi.provisioning import provision as run_provision
    from sentiment_workers.bi.settings import MetabaseSettings
    from sentiment_workers.logging import configure_logging

    overrides: dict[str, object] = {}
    if url is not None:
        overrides["url"] = url
    if wait_timeout is not None:
        overrides["wait_timeout_seconds"] = wait_timeout
    try:
        settings = MetabaseSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors(include_url=False)
        )
        typer.echo(f"error: invalid Metabase settings: {problems}", err=True)
        raise typer.Exit(2) from None

    configure_logging(
        os.environ.get("SENTIMENT_LOG_LEVEL", "INFO"), os.environ.get("SENTIMENT_LOG_FORMAT", "json")
    )
    try:
        with MetabaseClient(settings.url, timeout=settings.request_timeout_seconds) as client:
            result = run_provision(client, settings)
    except (MetabaseError, MetabaseNotReady) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "database_id": result.database_id,
                    "dashboard_id": result.dashboard_id,
                    "card_ids": result.card_ids,
                    "created": result.created,
                    "updated": result.updated,
                },
                indent=2,
            )
        )
    else:
        typer.echo(
            f"Metabase ready at {settings.url}: dashboard {result.dashboard_id} "
            f"({len(result.card_ids)} questions, database {result.database_id}); "
            f"created {len(result.created)}, updated {len(result.updated)}"
        )
