# syntax=docker/dockerfile:1.7
# Worker image: `sentiment-pipeline consume` / `sentiment-pipeline infer`, with the default model baked in, in
# two variants (build targets) of this one Dockerfile:
#
#   slim  (default, the last stage): the onnx-int8 backend on CPU; ONNX Runtime + tokenizers, no torch, no
#         transformers (~1 GB smaller). The CPU production choice (docs/model.md, docs/benchmarks.md).
#   torch: every transformer backend (torch, torch-int8, onnx-int8), CPU torch or, with TORCH_VARIANT=cu128,
#         CUDA torch.
# Both also serve registered models (models:/NAME@ALIAS, through the MLflow client) and scikit-learn models
# (the `sklearn` backend, e.g. the TF-IDF + Naive Bayes baseline of `sentiment-pipeline train`).
#
#   docker build -f docker/worker.Dockerfile -t ghcr.io/sentiment-pipeline/worker:0.1.0 .
#   docker build -f docker/worker.Dockerfile --target torch -t ghcr.io/sentiment-pipeline/worker:0.1.0-torch .
#   docker build -f docker/worker.Dockerfile --target torch --build-arg TORCH_VARIANT=cu128 \
#     -t ghcr.io/sentiment-pipeline/worker:0.1.0-cuda .
#
# TORCH_VARIANT picks the PyTorch wheel index: `cpu` (default, ~1 GB smaller) or a CUDA build such as `cu128`;
# TORCH_INDEX_URL overrides the index itself (a mirror, or a local wheel index where download.pytorch.org is
# not reachable). Both variants build the `model` stage: the onnx-int8 export of the default model is made
# there, with torch, and baked into both.
# CUDA wheels carry their own CUDA runtime (nvidia-* wheels); the node only needs the NVIDIA driver and the
# NVIDIA container toolkit / device plugin. See docs/images.md.
#
# Layers (docs/images.md): the final images hold the third-party dependencies (/opt/venv, from `deps` or
# `deps-slim`, which read pyproject.toml and nothing else of the project), then the model, then the project's own
# code (/opt/app, from `app`: a few MB) as a layer of its own. An edit under workers/ or operator/ rebuilds `app`,
# the model's export and the last layers only; the multi-GB venv layers are reused.

# Base: exact patch + Debian release tag (Dependabot bumps it; docs/images.md explains digest pinning).
# The torch variant's third-party dependencies: /opt/venv, which the `torch` target copies as it is.
FROM python:3.11.13-slim-bookworm AS deps
ARG TORCH_VERSION=2.13.0
ARG TORCH_VARIANT=cpu
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/${TORCH_VARIANT}
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# torch first, from the variant's index, so the project's pin resolves to it and never pulls another build.
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"
WORKDIR /src
# The project's dependencies plus those of the extras named at the end of the step (read with tomllib into
# requirements.txt): this stage depends on pyproject.toml alone, so an edit to workers/ or operator/ reuses it.
# Their pins live in pyproject.toml, not here. Bytecode is compiled at build time (the root filesystem is
# read-only at run time), best effort, since some packages ship files for newer Pythons (torch's
# testing/_internal/py312_intrinsics.py) that this interpreter can neither compile nor ever import. pip,
# setuptools and wheel leave the venv in the same step: what the runtime copies is this layer's venv, as it is.
COPY pyproject.toml ./
RUN python -c 'import sys, tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; extras = p["optional-dependencies"]; print(*p["dependencies"], *(r for e in sys.argv[1:] for r in extras[e]), sep="\n")' \
       workers model registry >requirements.txt \
    && pip install --requirement requirements.txt \
    && { python -m compileall -q /opt/venv/lib || echo "compileall: files for other Python versions left as source"; } \
    && pip uninstall --yes pip setuptools wheel

# The slim variant's third-party dependencies: the workers, the onnx-int8 runtime (the `onnx-runtime` extra)
# and what serving a registered model takes (the `registry` extra: the MLflow client, mlflow-skinny, and
# scikit-learn + skops for the `sklearn` backend). No torch, no transformers.
FROM python:3.11.13-slim-bookworm AS deps-slim
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml ./
RUN python -c 'import sys, tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; extras = p["optional-dependencies"]; print(*p["dependencies"], *(r for e in sys.argv[1:] for r in extras[e]), sep="\n")' \
       workers onnx-runtime registry >requirements.txt \
    && pip install --requirement requirements.txt \
    && { python -m compileall -q /opt/venv/lib || echo "compileall: files for other Python versions left as source"; } \
    && pip uninstall --yes pip setuptools wheel

# The project's own code, pure Python, for both variants: /opt/app, installed without dependencies by the pip
# of a venv at /opt/venv (the console script /opt/app/bin/sentiment-pipeline starts with #!/opt/venv/bin/python,
# the runtime's venv), found through PYTHONPATH (importlib.metadata too: the dist-info is there). Byte-compiled
# strictly: a syntax error in the project fails the build.
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

# The default model, with its onnx-int8 export built now (torch and the project): the runtime finds
# <model>/onnx/<hash>/ before any cache, so pods on a read-only root filesystem never export or quantize at start.
FROM deps AS model
COPY models/sentiment-e5/ /opt/sentiment/models/sentiment-e5/
COPY --from=app /opt/app /opt/app
ENV PYTHONPATH=/opt/app \
    PATH=/opt/app/bin:/opt/venv/bin:$PATH
RUN HF_HUB_OFFLINE=1 python -m sentiment_workers.model.prepare \
      --model /opt/sentiment/models/sentiment-e5 --into-model-dir

# What both variants share: the non-root user and the run-time environment.
FROM python:3.11.13-slim-bookworm AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="sentiment-pipeline worker" \
      org.opencontainers.image.source="https://github.com/sentiment-pipeline/sentiment-pipeline" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
# Non-root, fixed numeric ids (runAsNonRoot can check them); no login shell, no home to write to.
RUN groupadd --system --gid 10001 sentiment \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin sentiment
# Read-only root FS: everything that writes goes to /tmp (an emptyDir in the pod). Offline by default.
# The project's code (/opt/app) comes before the venv on PYTHONPATH and PATH.
ENV PATH=/opt/app/bin:/opt/venv/bin:$PATH \
    PYTHONPATH=/opt/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    HF_HOME=/tmp/.cache/huggingface \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    MPLCONFIGDIR=/tmp/.cache/matplotlib \
    SENTIMENT_MODEL_DIR=/opt/sentiment/models/sentiment-e5 \
    SENTIMENT_METRICS_PORT=9000 \
    SENTIMENT_LOG_FORMAT=json
WORKDIR /tmp
EXPOSE 9000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9000/healthz', timeout=4)"]
ENTRYPOINT ["sentiment-pipeline"]
CMD ["infer"]

# `--target torch`: every backend, CPU or CUDA torch (TORCH_VARIANT). Layers from the largest and most stable
# (the venv: pyproject.toml) to the smallest and most often changed (the project's code).
FROM runtime AS torch
ARG TORCH_VARIANT=cpu
LABEL org.opencontainers.image.description="Kafka consumer and transformer inference workers (torch ${TORCH_VARIANT}: torch, torch-int8, onnx-int8; sklearn)"
COPY --from=deps /opt/venv /opt/venv
COPY --from=model --chown=root:root /opt/sentiment/models/ /opt/sentiment/models/
COPY --from=app /opt/app /opt/app
ENV SENTIMENT_IMAGE_BACKENDS=torch,torch-int8,onnx-int8,sklearn
USER 10001:10001

# Default target, slim: onnx-int8 on CPU (no torch, no transformers), and scikit-learn models.
FROM runtime AS slim
LABEL org.opencontainers.image.description="Kafka consumer and transformer inference workers (slim: onnx-int8 on CPU, sklearn; no torch)"
COPY --from=deps-slim /opt/venv /opt/venv
COPY --from=model --chown=root:root /opt/sentiment/models/ /opt/sentiment/models/
COPY --from=app /opt/app /opt/app
ENV SENTIMENT_IMAGE_BACKENDS=onnx-int8,sklearn \
    SENTIMENT_MODEL_BACKEND=onnx-int8
USER 10001:10001
