# syntax=docker/dockerfile:1.7
# Operator image: `python -m sentiment_operator` (kopf). No torch, no Kafka/Mongo/MySQL clients.
#
#   docker build -f docker/operator.Dockerfile -t ghcr.io/sentiment-pipeline/operator:0.1.0 .

# Base: exact patch + Debian release tag (Dependabot bumps it; docs/images.md explains digest pinning).
FROM python:3.11.13-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY workers/ workers/
COPY operator/ operator/
# Only the `operator` extra: the import-linter contracts keep the operator off the workers' I/O and model code.
# Bytecode: the project's packages strictly, third-party packages best effort (see worker.Dockerfile).
# The project itself is a local path; its dependencies are pinned in pyproject.toml, not here.
# hadolint ignore=DL3013
RUN pip install ".[operator]" \
    && python -m compileall -q /opt/venv/lib/python3*/site-packages/sentiment_workers \
       /opt/venv/lib/python3*/site-packages/sentiment_operator \
    && { python -m compileall -q /opt/venv/lib || echo "compileall: files for other Python versions left as source"; } \
    && pip uninstall --yes pip setuptools wheel

FROM python:3.11.13-slim-bookworm AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="sentiment-pipeline operator" \
      org.opencontainers.image.description="kopf operator reconciling SentimentPipeline resources (sentiment.io/v1alpha1)" \
      org.opencontainers.image.source="https://github.com/sentiment-pipeline/sentiment-pipeline" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
RUN groupadd --system --gid 10001 sentiment \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin sentiment
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
USER 10001:10001
WORKDIR /tmp
# Probes: Kubernetes ignores HEALTHCHECK; the chart's liveness probe targets kopf's --liveness endpoint.
# checkov:skip=CKV_DOCKER_2: Kubernetes-only image; health is the pod's liveness probe, set by the chart.
ENTRYPOINT ["python", "-m", "sentiment_operator"]
