# syntax=docker/dockerfile:1.7
# Operator image: `python -m sentiment_operator` (kopf). No torch, no Kafka/Mongo/MySQL clients.
#
#   docker build -f docker/operator.Dockerfile -t ghcr.io/sentiment-pipeline/operator:0.1.0 .
#
# Layers as in worker.Dockerfile (docs/images.md): the third-party dependencies (/opt/venv, from `deps`, which
# reads pyproject.toml and nothing else of the project), then the project's own code (/opt/app, from `app`) as a
# small layer of its own, so an edit to operator/ or workers/ reuses the dependency layer.

# Base: exact patch + Debian release tag (Dependabot bumps it; docs/images.md explains digest pinning).
FROM python:3.11.13-slim-bookworm AS deps
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# The project's dependencies plus the `operator` extra's only (the import-linter contracts keep the operator off
# the workers' I/O and model code), read from pyproject.toml with tomllib, where their pins live. Bytecode best
# effort (see worker.Dockerfile); pip, setuptools and wheel leave the venv in the same step.
COPY pyproject.toml ./
RUN python -c 'import sys, tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; extras = p["optional-dependencies"]; print(*p["dependencies"], *(r for e in sys.argv[1:] for r in extras[e]), sep="\n")' \
       operator >requirements.txt \
    && pip install --requirement requirements.txt \
    && { python -m compileall -q /opt/venv/lib || echo "compileall: files for other Python versions left as source"; } \
    && pip uninstall --yes pip setuptools wheel

# The project's own code: /opt/app, installed without dependencies by the pip of a venv at /opt/venv (the
# runtime's venv path), found through PYTHONPATH; byte-compiled strictly (a syntax error fails the build).
FROM python:3.11.13-slim-bookworm AS app
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY workers/ workers/
COPY operator/ operator/
RUN pip install --no-deps --no-compile --target /opt/app . \
    && python -m compileall -q /opt/app

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
# The dependencies first (large, changed by pyproject.toml only), then the project's code (small).
COPY --from=deps /opt/venv /opt/venv
COPY --from=app /opt/app /opt/app
ENV PATH=/opt/app/bin:/opt/venv/bin:$PATH \
    PYTHONPATH=/opt/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
USER 10001:10001
WORKDIR /tmp
# Probes: Kubernetes ignores HEALTHCHECK; the chart's liveness probe targets kopf's --liveness endpoint.
# checkov:skip=CKV_DOCKER_2: Kubernetes-only image; health is the pod's liveness probe, set by the chart.
ENTRYPOINT ["python", "-m", "sentiment_operator"]
