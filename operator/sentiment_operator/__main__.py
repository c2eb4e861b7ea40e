"""``python -m sentiment_operator``: run the operator (kopf) with its liveness and metrics endpoints."""

from __future__ import annotations

import kopf

from . import handlers  # noqa: F401 - registers the handlers
from .settings import OperatorConfig


def main() -> None:
    config = OperatorConfig()
    kopf.configure(
        verbose=False,
        log_format=kopf.LogFormat.JSON if config.log_format == "json" else kopf.LogFormat.FULL,
        log_refkey="pipeline",
    )
    namespaces = [ns.strip() for ns in config.namespaces.split(",") if ns.strip()]
    kopf.run(
        standalone=True,
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=f"http://0.0.0.0:{config.health_port}/healthz",
    )


if __name__ == "__main__":
    main()
