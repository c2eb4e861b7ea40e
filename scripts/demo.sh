#!/usr/bin/env bash
# `make demo`: from a fresh clone, set everything up, start Kafka (Tansu), MongoDB (SecantusDB) and MariaDB,
# load data/sample_tweets.jsonl through Kafka, run the consumer and the inference worker until every message
# is classified, print the report (read with the read-only BI user) and write it as a PNG, then stop.
#
#   DEMO_DATASET (data/sample_tweets.jsonl)   DEMO_PNG (out/demo-report.png)
#   DEMO_CONSUMER_METRICS_PORT (9101)  DEMO_WORKER_METRICS_PORT (9102): /metrics of the two workers
#   DEMO_KEEP_SERVICES=1   leave the servers running afterwards (e.g. to look at them with `make services`)
#   SENTIMENT_MODEL_NAME   model to use (default: the shipped model, models/sentiment-e5)
# Re-running the demo is safe: message ids are stable, so the warehouse still holds one row per message,
# labelled by the run that first classified it. To see another model's labels (SENTIMENT_MODEL_NAME, or a new
# default), start from empty stores: `SERVICES_DIR=$(mktemp -d) make demo`, or `make clean` first.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
DATASET=${DEMO_DATASET:-data/sample_tweets.jsonl}
PNG=${DEMO_PNG:-out/demo-report.png}
export SERVICES_DIR=${SERVICES_DIR:-$ROOT/.dev/services}
say() { printf '\n==> %s\n' "$*" >&2; }

say "setting up .venv and the local servers"
bash scripts/services.sh install
bash scripts/services.sh start kafka mongo mysql
if [ "${DEMO_KEEP_SERVICES:-0}" != 1 ]; then
  trap 'say "stopping the servers"; bash scripts/services.sh stop kafka mongo mysql' EXIT
fi
# shellcheck disable=SC1091
source "$SERVICES_DIR/env"
export SENTIMENT_LOG_FORMAT=${SENTIMENT_LOG_FORMAT:-console} HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
CLI=.venv/bin/sentiment-pipeline

if [ -z "${SENTIMENT_MODEL_NAME:-}" ] && ! .venv/bin/python -c \
  'from sentiment_workers.model import default_model_dir as d; import sys; sys.exit(0 if (d() / "config.json").exists() else 1)'; then
  # No shipped model in this checkout (it is built by `make train`): keep the demo runnable end to end with
  # a tiny random model, and say loudly that its labels mean nothing.
  export SENTIMENT_MODEL_NAME=$SERVICES_DIR/demo-tiny-model
  .venv/bin/python -c 'import sys; from pathlib import Path; from sentiment_workers.model.testing import build_tiny_model; build_tiny_model(Path(sys.argv[1]))' "$SENTIMENT_MODEL_NAME"
  say "WARNING: models/sentiment-e5 is missing (run 'make train'); using a RANDOM tiny model: labels are meaningless"
fi

expected=$(grep -c . "$DATASET")
say "producing $expected messages from $DATASET to Kafka"
$CLI produce --file "$DATASET"

CONSUMER_METRICS_PORT=${DEMO_CONSUMER_METRICS_PORT:-9101}
WORKER_METRICS_PORT=${DEMO_WORKER_METRICS_PORT:-9102}
say "running the consumer (metrics :$CONSUMER_METRICS_PORT) and the inference worker (metrics :$WORKER_METRICS_PORT)"
SENTIMENT_METRICS_PORT=$CONSUMER_METRICS_PORT $CLI consume --exit-when-idle 5 --session-timeout-ms 6000 &
consumer=$!
SENTIMENT_METRICS_PORT=$WORKER_METRICS_PORT $CLI infer --exit-when-idle 15 &
worker=$!
wait "$consumer"
wait "$worker"

say "report (read with the read-only user $BI_MYSQL_USER)"
mkdir -p "$(dirname "$PNG")"
report=$(SENTIMENT_MYSQL_USER=$BI_MYSQL_USER SENTIMENT_MYSQL_PASSWORD=$BI_MYSQL_PASSWORD $CLI report --png "$PNG")
echo "$report"
total=$(echo "$report" | awk '/^total messages:/ {print $3}')
if [ "$total" -lt "$expected" ]; then
  echo "demo: only $total of $expected messages reached the warehouse" >&2
  exit 1
fi
say "done: $total messages in the warehouse, each classified once; chart in $PNG"
