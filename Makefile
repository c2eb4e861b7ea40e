# Entry points for developers and CI. Every target sets up what it needs (idempotently).
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: help setup services services-down cluster cluster-down demo test test-all lint format bench train chart-lint chart-sync images clean

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F':.*?## ' '{printf "  %-15s %s\n", $$1, $$2}'

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

demo: ## From a fresh clone: services, sample data through Kafka, consumer + inference, report and PNG
	@bash scripts/demo.sh

test: ## Set everything up and run the default test suite (what CI runs)
	@bash scripts/test.sh

test-all: ## The default suite plus the slow suites
	@PYTEST_ADDOPTS="-m 'slow or not slow'" bash scripts/test.sh

lint: setup ## ruff, mypy, import contracts
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

format: setup ## Apply ruff's formatting and safe fixes
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# One model thread leaves a core to the co-located servers (production runs them elsewhere); override to compare.
PIPELINE_BENCH_ARGS ?= --threads 1

bench: setup ## Benchmarks: model runtime, pipeline, operator (numbers go to docs/benchmarks.md)
	$(PY) bench/bench_model.py
	$(PY) bench/bench_pipeline.py $(PIPELINE_BENCH_ARGS)
	$(PY) bench/bench_operator.py

train: setup ## Retrain the default model from packaged parts (models/sentiment-minilm)
	$(VENV)/bin/sentiment-pipeline train

chart-lint: ## helm lint --strict the chart, and check its CRD/RBAC copies match k8s-manifests
	@helm=$$(bash scripts/install-helm.sh) && $$helm lint --strict charts/sentiment-pipeline
	@bash scripts/sync-crds.sh --check

chart-sync: ## Copy the CRD and operator RBAC from k8s-manifests into the chart
	@bash scripts/sync-crds.sh

images: ## Build the operator and worker images (needs a Docker engine)
	docker build -f docker/operator.Dockerfile -t ghcr.io/sentiment-pipeline/operator:dev .
	docker build -f docker/worker.Dockerfile -t ghcr.io/sentiment-pipeline/worker:dev .

clean: services-down cluster-down ## Stop everything and remove local state (.dev)
	rm -rf .dev
