"""The dashboard's content: native SQL questions over the fact table and where they sit.

The three numbers match ``sentiment-pipeline report``: total messages, count by sentiment label and
messages per ingest day. The table name is a validated identifier, quoted with backticks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")

GRID_WIDTH = 24
"""Metabase dashboards are 24 columns wide."""


@dataclass(frozen=True)
class Layout:
    """A dashcard's place on the grid."""

    row: int
    col: int
    size_x: int
    size_y: int


@dataclass(frozen=True)
class Question:
    """A native SQL question (a Metabase card) and its dashcard layout."""

    name: str
    description: str
    sql: str
    display: str
    layout: Layout
    visualization_settings: dict[str, Any] = field(default_factory=dict)


def quote_table(table: str) -> str:
    """Backtick-quote a validated MySQL identifier."""
    if not _IDENTIFIER.match(table):
        raise ValueError(
            f"invalid table name {table!r}: letters, digits and _ only, not starting with a digit"
        )
    return f"`{table}`"


def dashboard_questions(table: str = "dw_messages") -> tuple[Question, ...]:
    """The questions of the sentiment dashboard, reading ``table``."""
    t = quote_table(table)
    return (
        Question(
            name="Total messages",
            description="Messages classified so far.",
            sql=f"SELECT COUNT(*) AS total_messages FROM {t}",
            display="scalar",
            layout=Layout(row=0, col=0, size_x=6, size_y=4),
        ),
        Question(
            name="Messages by sentiment",
            description="Count of messages per sentiment label.",
            sql=(
                f"SELECT sentiment_label, COUNT(*) AS messages FROM {t} "
                "GROUP BY sentiment_label ORDER BY sentiment_label"
            ),
            display="pie",
            layout=Layout(row=0, col=6, size_x=9, size_y=8),
            visualization_settings={"pie.dimension": "sentiment_label", "pie.metric": "messages"},
        ),
        Question(
            name="Messages per day",
            description="Messages per ingest day.",
            sql=f"SELECT DATE(ingest_ts) AS day, COUNT(*) AS messages FROM {t} GROUP BY day ORDER BY day",
            display="line",
            layout=Layout(row=0, col=15, size_x=9, size_y=8),
            visualization_settings={"graph.dimensions": ["day"], "graph.metrics": ["messages"]},
        ),
    )
