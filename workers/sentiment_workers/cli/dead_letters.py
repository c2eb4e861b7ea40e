"""`sentiment-pipeline dead-letters list|replay`: look at what was set aside, and replay it after a fix."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from sentiment_workers.cli._errors import run_or_exit

dead_letters_app = typer.Typer(
    help="Messages set aside with their reason: list them, replay them after a fix.", no_args_is_help=True
)
_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}

ReasonOption = Annotated[str | None, typer.Option("--reason", help="Only this reason, e.g. store_rejected.")]
StageOption = Annotated[str | None, typer.Option("--stage", help="Only this stage: consume or infer.")]


def register(app: typer.Typer) -> None:
    """Add this module's command(s) to the CLI."""
    app.add_typer(dead_letters_app, name="dead-letters")


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def parse_since(value: str | None, now: datetime | None = None) -> datetime | None:
    """ISO-8601 (naive = UTC) or a duration back from now (``45s``, ``30m``, ``2h``, ``7d``); naive UTC."""
    if value is None:
        return None
    now = now or datetime.now(UTC).replace(tzinfo=None)
    match = _DURATION.match(value.strip())
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(  # noqa: B904 (the parse error adds nothing)
            f"--since {value!r}: expected ISO-8601 (2024-05-01T10:00) or a duration (30m, 2h, 7d)"
        )
    return parsed.astimezone(UTC).replace(tzinfo=None) if parsed.tzinfo else parsed


def _check_filters(reason: str | None, stage: str | None) -> None:
    from sentiment_workers.messages import DeadLetterReason

    reasons = sorted(r.value for r in DeadLetterReason)
    if reason is not None and reason not in reasons:
        _fail(f"--reason {reason!r}: expected one of {', '.join(reasons)}")
    if stage is not None and stage not in ("consume", "infer"):
        _fail(f"--stage {stage!r}: expected consume or infer")


def _summary(letter: dict[str, Any]) -> dict[str, Any]:
    when = letter.get("dead_lettered_at")
    replayed = letter.get("replayed_at")
    return {
        "id": str(letter["_id"]),
        "stage": letter.get("stage"),
        "reason": letter.get("reason"),
        "message_id": letter.get("message_id"),
        "topic": letter.get("topic"),
        "partition": letter.get("partition"),
        "offset": letter.get("offset"),
        "dead_lettered_at": when.isoformat() if isinstance(when, datetime) else None,
        "replayed_at": replayed.isoformat() if isinstance(replayed, datetime) else None,
        "replay_result": letter.get("replay_result"),
        "detail": letter.get("detail"),
    }


@dead_letters_app.command("list")
def list_dead_letters(
    reason: ReasonOption = None,
    stage: StageOption = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Dead-lettered at or after: ISO-8601, or 30m / 2h / 7d ago.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=0, help="At most this many (0: all).")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Dead letters, oldest first: when, stage, reason, id, and the error. Config: SENTIMENT_MONGO_*."""
    import json

    from sentiment_workers.adapters.mongo import StagingStore
    from sentiment_workers.runner import load_config

    _check_filters(reason, stage)
    try:
        since_ts = parse_since(since)
    except ValueError as exc:
        _fail(str(exc))
    config = load_config()

    async def fetch() -> list[dict[str, Any]]:
        store = StagingStore.from_config(config)
        try:
            return await store.find_dead_letters(reason=reason, stage=stage, since=since_ts, limit=limit)
        finally:
            store.close()

    letters = [_summary(d) for d in run_or_exit(fetch)]
    for letter in letters:
        if as_json:
            typer.echo(json.dumps(letter, ensure_ascii=False))
            continue
        where = letter["message_id"] or f"{letter['topic']}:{letter['partition']}:{letter['offset']}"
        replayed = f"  replayed {letter['replayed_at']}" if letter["replayed_at"] else ""
        detail = " ".join(str(letter["detail"] or "").split())[:160]
        head = f"{letter['dead_lettered_at']}  {letter['stage']:<7} {letter['reason']:<17}"
        typer.echo(f"{head} {where}{replayed}  {detail}")
    if not as_json:
        typer.echo(f"{len(letters)} dead letter(s)", err=True)


@dead_letters_app.command("replay")
def replay_dead_letters(
    reason: ReasonOption = None,
    stage: StageOption = None,
    letter_id: Annotated[
        str | None,
        typer.Option(
            "--id",
            help="One dead letter: its id (topic:partition:offset or infer:<message id>) or the message id.",
        ),
    ] = None,
) -> None:
    """Send open dead letters back into the pipeline after a fix: consume ones are parsed and staged again,
    infer ones are queued again. Idempotent (replayed ones are closed; still one row per message). Exits 1
    when some are still refused."""
    from sentiment_workers.adapters.mongo import StagingStore
    from sentiment_workers.dead_letters import ReplayOutcome, replay
    from sentiment_workers.runner import load_config

    _check_filters(reason, stage)
    config = load_config()

    async def run() -> list[ReplayOutcome]:
        store = StagingStore.from_config(config)
        try:
            letters = await store.find_dead_letters(
                reason=reason, stage=stage, letter_id=letter_id, include_replayed=letter_id is not None
            )
            return await replay(store, letters, max_bytes=config.max_message_bytes)
        finally:
            store.close()

    outcomes = run_or_exit(run)
    for outcome in outcomes:
        typer.echo(f"{outcome.letter_id}  {outcome.stage:<7} {outcome.reason:<17} {outcome.result}")
    replayed = sum(o.replayed for o in outcomes)
    refused = [o for o in outcomes if not o.replayed and not o.result.startswith("already replayed")]
    typer.echo(
        f"replayed {replayed} of {len(outcomes)} dead letter(s); {len(refused)} still refused", err=True
    )
    if refused:
        raise typer.Exit(1)
