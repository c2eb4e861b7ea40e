"""The operator's own configuration, from ``SENTIMENT_OPERATOR_*`` environment variables."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sentiment_workers.config import BACKLOG_METRIC, STORE_ERROR_METRIC, STORE_UP_METRIC


class OperatorConfig(BaseSettings):
    """Named apart from :class:`kopf.OperatorSettings`, which the startup handler configures alongside."""

    model_config = SettingsConfigDict(env_prefix="SENTIMENT_OPERATOR_", env_file=None, extra="ignore")

    worker_image: str = Field(
        "ghcr.io/sentiment-pipeline/worker:0.1.0",
        description="Image of the workers when a CR names none (the chart sets it to its appVersion).",
    )
    worker_image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        "IfNotPresent",
        description="Pull policy of the workers when a CR sets none (the chart: worker.image.pullPolicy).",
    )
    worker_image_backends: str = Field(
        "",
        description="Comma-separated model backends the default worker image runs (the chart: onnx-int8 "
        "for the slim image); empty: all of them.",
    )
    resync_seconds: float = Field(
        15.0, gt=0, description="Resync period: drift repair, status, store reachability, autoscaling."
    )
    idle_seconds: float = Field(
        2.0, ge=0, description="The resync skips a pipeline changed less than this long ago."
    )
    metrics_port: int = Field(8080, ge=0, le=65535, description="Operator /metrics; 0 disables it.")
    health_port: int = Field(8081, ge=1, le=65535, description="Liveness endpoint /healthz.")
    backlog_metric: str = Field(
        BACKLOG_METRIC,
        description="Gauge of pending staged messages exported by the inference workers.",
    )
    store_metric: str = Field(
        STORE_UP_METRIC,
        description="Gauge (label store) the workers export: 1 while they reach the store, else 0.",
    )
    store_error_metric: str = Field(
        STORE_ERROR_METRIC,
        description="Gauge (labels store, kind) the workers export: kind auth is 1 while the store refuses "
        "their credentials.",
    )
    backlog_scrape_timeout_seconds: float = Field(2.0, gt=0)
    api_connections: int = Field(
        16,
        ge=1,
        description="Most API server connections the operator's own client opens (kopf's watches aside). "
        "Bounds memory in bursts: each TLS connection buffers ~128 KiB.",
    )
    log_format: str = Field("json", pattern="^(json|console)$")
    namespaces: str = Field(
        "",
        description="Comma-separated namespaces to watch; empty watches the whole cluster (ClusterRole).",
    )
