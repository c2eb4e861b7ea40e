"""The dashboard's content: native SQL questions over the fact table and where they sit.

The dashboard users asked for (issue 12) is ``Sentiment_Streaming_Kafka_Mongo_DL_MySQL`` with three
questions, the same numbers as ``sentiment-pipeline report``:

- "Total messages": a KPI (Metabase display ``scalar``), the row count;
- "Messages by sentiment": a ``bar`` chart of the count per sentiment label;
- "Messages per day": a ``line`` over ``ingest_ts`` by day.

The two chart displays are configurable (:data:`BY_SENTIMENT_DISPLAYS`, :data:`PER_DAY_DISPLAYS`); the
table name is a validated identifier, quoted with backticks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from sentiment_workers.config import SQL_IDENTIFIER

_IDENTIFIER = re.compile(SQL_IDENTIFIER)

GRID_WIDTH = 24
"""Metabase dashboards are 24 columns wide."""

DEFAULT_DASHBOARD_NAME = "Sentiment_Streaming_Kafka_Mongo_DL_MySQL"
"""The dashboard's name as specified (issue 12)."""

BySentimentDisplay = Literal["bar", "row", "pie"]
PerDayDisplay = Literal["line", "area", "bar"]
BY_SENTIMENT_DISPLAYS: tuple[str, ...] = ("bar", "row", "pie")
PER_DAY_DISPLAYS: tuple[str, ...] = ("line", "area", "bar")

TOTAL = "Total messages"
BY_SENTIMENT = "Messages by sentiment"
PER_DAY = "Messages per day"


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


def chart_settings(display: str, dimension: str, metric: str) -> dict[str, Any]:
    """Metabase ``visualization_settings`` naming the dimension and metric columns of a chart.

    Pie charts read ``pie.dimension``/``pie.metric``; line, area, bar and row charts read
    ``graph.dimensions``/``graph.metrics`` (Metabase's frontend visualization settings keys)."""
    if display == "pie":
        return {"pie.dimension": dimension, "pie.metric": metric}
    return {"graph.dimensions": [dimension], "graph.metrics": [metric]}


def dashboard_questions(
    table: str = "dw_messages",
    *,
    by_sentiment_display: str = "bar",
    per_day_display: str = "line",
) -> tuple[Question, ...]:
    """The questions of the sentiment dashboard, reading ``table``."""
    if by_sentiment_display not in BY_SENTIMENT_DISPLAYS:
        raise ValueError(f"by-sentiment display must be one of {', '.join(BY_SENTIMENT_DISPLAYS)}")
    if per_day_display not in PER_DAY_DISPLAYS:
        raise ValueError(f"per-day display must be one of {', '.join(PER_DAY_DISPLAYS)}")
    t = quote_table(table)
    return (
        Question(
            name=TOTAL,
            description="Messages classified so far.",
            sql=f"SELECT COUNT(*) AS total_messages FROM {t}",
            display="scalar",
            layout=Layout(row=0, col=0, size_x=6, size_y=4),
        ),
        Question(
            name=BY_SENTIMENT,
            description="Count of messages per sentiment label.",
            sql=(
                f"SELECT sentiment_label, COUNT(*) AS messages FROM {t} "
                "GROUP BY sentiment_label ORDER BY sentiment_label"
            ),
            display=by_sentiment_display,
            layout=Layout(row=0, col=6, size_x=9, size_y=8),
            visualization_settings=chart_settings(by_sentiment_display, "sentiment_label", "messages"),
        ),
        Question(
            name=PER_DAY,
            description="Messages per ingest day.",
            sql=f"SELECT DATE(ingest_ts) AS day, COUNT(*) AS messages FROM {t} GROUP BY day ORDER BY day",
            display=per_day_display,
            layout=Layout(row=0, col=15, size_x=9, size_y=8),
            visualization_settings=chart_settings(per_day_display, "day", "messages"),
        ),
    )
