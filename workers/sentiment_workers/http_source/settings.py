"""Configuration of the HTTP poller, from ``SENTIMENT_HTTP_*`` environment variables.

The table of truth for those variable names: the operator imports this module (and nothing else from
``sentiment_workers.http_source``) to render the poller's Deployment. Keep it free of I/O libraries.
The poller also reads the ordinary :class:`sentiment_workers.config.WorkerConfig` (``SENTIMENT_KAFKA_*``
to publish to the pipeline's topic, ``SENTIMENT_MONGO_*`` for landing, cursor and lease, metrics, logs).
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "SENTIMENT_HTTP_"

HTTP_STORE = "http"
"""Value of the ``store`` label of ``sentiment_store_up``/``sentiment_store_error`` for the polled API. Kinds:
``auth`` (401/403), ``rejected`` (any other 4xx: bad URL, bad request), ``unreachable`` (connection errors,
timeouts, 5xx after retries): part of the contract with the operator's status."""


class HttpPaging(StrEnum):
    """How the API hands out the next page."""

    CURSOR = "cursor"
    """The response carries a cursor (``cursor_field``) sent back as the ``cursor_param`` query parameter."""
    NEXT_LINK = "next_link"
    """The response carries the URL of the next page (``next_link_field``)."""
    PAGE_NUMBER = "page_number"
    """Pages are numbered from 1 in the ``page_param`` query parameter; an empty page ends a run."""


class HttpSourceConfig(BaseSettings):
    """Everything the poller needs to know about the API, its paging and the landing store."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=None, extra="ignore")

    url: str = Field(pattern=r"^https?://", description="The API endpoint.")
    method: str = Field("GET", pattern=r"^(GET|POST)$", description="GET or POST.")
    headers: dict[str, str] = Field(
        default_factory=dict,
        repr=False,
        description="JSON object header -> value (e.g. Authorization); comes from a Secret key `headers`.",
    )
    paging: HttpPaging = HttpPaging.CURSOR
    cursor_field: str = Field("next_cursor", min_length=1, description="Dotted path of the next cursor.")
    cursor_param: str = Field("cursor", min_length=1, description="Query parameter that sends it back.")
    next_link_field: str = Field("next", min_length=1, description="Dotted path of the next page's URL.")
    page_param: str = Field("page", min_length=1, description="Query parameter of the page number.")
    records_path: str = Field("records", description="Dotted path of the list of records ('' : the body).")
    id_field: str = Field(
        "id", description="Record field that is the stable message id (absent: a hash of the record)."
    )
    text_field: str = Field("text", min_length=1, description="Record field holding the text.")
    interval_seconds: float = Field(60.0, gt=0, description="Pause between runs.")
    timeout_seconds: float = Field(30.0, gt=0, description="Per request.")
    max_pages_per_run: int = Field(100, ge=1)
    landing_url: str = Field(
        "",
        description="Empty: the MongoDB collection `landing_collection` in the staging database; "
        "else a local path or an fsspec URL (s3://bucket/prefix: endpoint, region and credentials from the "
        "standard AWS variables AWS_ENDPOINT_URL, AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID, "
        "AWS_SECRET_ACCESS_KEY).",
    )
    landing_collection: str = Field("landing_pages", pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,119}$")
    source_name: str = Field(
        pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$",
        description="The pipeline's name: key of its cursor and of its single-poller lease.",
    )


def env_name(field: str) -> str:
    """The environment variable that sets ``field`` (``url`` -> ``SENTIMENT_HTTP_URL``)."""
    if field not in HttpSourceConfig.model_fields:
        raise KeyError(f"unknown HTTP source setting {field!r}")
    return ENV_PREFIX + field.upper()
