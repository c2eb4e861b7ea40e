"""The ``sentiment-pipeline`` command line.

Each subcommand lives in its own module exposing ``register(app)``; heavy imports (torch, aiokafka, ...)
happen inside the commands so ``--help`` stays fast.

A bad argument (an unknown option or command, a value of the wrong type, a missing one) prints ONE line,
``error: invalid value for '--limit': ... (see 'sentiment-pipeline dead-letters list --help')``, and exits 2,
for every command: :func:`main` runs the click command in non-standalone mode and formats its usage errors
itself instead of click/rich's multi-line box. Errors at run time (a server unreachable, credentials refused)
are one line too (:mod:`sentiment_workers.cli._errors`, exit 1).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import typer

try:  # typer 0.2x runs its own copy of click
    from typer._click.exceptions import ClickException, NoArgsIsHelpError
except ImportError:  # pragma: no cover - older typer on click
    from click.exceptions import ClickException, NoArgsIsHelpError  # type: ignore[assignment]

app = typer.Typer(
    name="sentiment-pipeline",
    help="Near-real-time sentiment analysis of text streams: local runs, datasets and test traffic.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _subcommand_modules() -> list[str]:
    """Every public module of this package is one subcommand (``register(app)``): adding a command is adding a
    module, never editing a list here."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


for _name in _subcommand_modules():
    importlib.import_module(f"{__name__}.{_name}").register(app)


PROG = "sentiment-pipeline"
EXIT_USAGE = 2


def usage_error_line(exc: ClickException) -> str:
    """A click usage error (or any click error) in one line: ``error: <what> (see '<command> --help')``."""
    text = " ".join(exc.format_message().split())
    text = text[:1].lower() + text[1:]
    context = getattr(exc, "ctx", None)
    command = context.command_path if context is not None else PROG
    return f"error: {text.rstrip('.')} (see '{command} --help')"


def main(args: list[str] | None = None) -> None:
    """Console-script entry point: run the command, usage errors as one line (exit 2)."""
    command = typer.main.get_command(app)
    try:
        result = command.main(args=args, prog_name=PROG, standalone_mode=False)
    except NoArgsIsHelpError as exc:  # a bare group: its help, as before
        exc.show()
        raise SystemExit(EXIT_USAGE) from None
    except ClickException as exc:
        typer.echo(usage_error_line(exc), err=True)
        raise SystemExit(exc.exit_code) from None
    except typer.Abort:
        typer.echo("error: aborted", err=True)
        raise SystemExit(1) from None
    sys.exit(result if isinstance(result, int) else 0)
