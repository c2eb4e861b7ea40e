"""The shipped dashboards and alert rules use metrics the code really exports, and the alerts behave.

Alert rules are checked by the real ``promtool`` (Debian's prometheus package, installed by
``scripts/services.sh install``): syntax with ``check rules``, behaviour with ``test rules``.
"""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import sentiment_operator.metrics  # noqa: F401  (registers the operator's metrics on the default registry)
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.registry import REGISTRY
from sentiment_workers.metrics import PipelineMetrics

MONITORING = Path(__file__).resolve().parents[1] / "k8s-manifests" / "monitoring"
METRIC_NAME = re.compile(r"\bsentiment_[a-z0-9_]+")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def exported_series_names() -> set[str]:
    names: set[str] = set()
    registries = (PipelineMetrics(CollectorRegistry()).registry, REGISTRY)
    for registry in registries:
        for family in registry.collect():
            if family.name.startswith("sentiment_"):
                names.update(family.name + s for s in SUFFIXES.get(family.type, ("",)))
    return names


def alert_rules() -> dict:
    return yaml.safe_load((MONITORING / "pipeline-alerts.yaml").read_text())["spec"]


def referenced_names() -> dict[str, set[str]]:
    refs: dict[str, set[str]] = {}
    for dashboard in MONITORING.glob("grafana-*.json"):
        for panel in json.loads(dashboard.read_text())["panels"]:
            for target in panel.get("targets", []):
                refs.setdefault(dashboard.name, set()).update(METRIC_NAME.findall(target["expr"]))
    for group in alert_rules()["groups"]:
        for rule in group["rules"]:
            refs.setdefault("pipeline-alerts.yaml", set()).update(METRIC_NAME.findall(rule["expr"]))
    return refs


def test_dashboards_and_alerts_only_query_metrics_the_code_exports() -> None:
    exported = exported_series_names()
    refs = referenced_names()
    assert {
        "grafana-pipeline-dashboard.json",
        "grafana-operator-dashboard.json",
        "pipeline-alerts.yaml",
    } <= set(refs)
    unknown = {source: sorted(names - exported) for source, names in refs.items() if names - exported}
    assert unknown == {}


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(alert_rules()))
    return path


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool missing: run scripts/services.sh install"
    return path


def test_alert_rules_pass_promtool_check(rules_file: Path) -> None:
    result = subprocess.run([promtool(), "check", "rules", str(rules_file)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "8 rules found" in result.stdout


def test_alerts_fire_on_a_growing_backlog_and_on_dead_letters_but_not_when_healthy(
    rules_file: Path, tmp_path: Path
) -> None:
    labels = 'namespace="prod"'
    tests = {
        "rule_files": [str(rules_file)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    # backlog grows by 100 a minute from 500; a healthy namespace stays at 50
                    {"series": f"sentiment_inference_backlog_messages{{{labels}}}", "values": "500+100x60"},
                    {"series": 'sentiment_inference_backlog_messages{namespace="ok"}', "values": "50x60"},
                    # 5 dead letters a minute for an hour
                    {
                        "series": "sentiment_messages_dead_lettered_total"
                        f'{{{labels},stage="consume",reason="invalid_json"}}',
                        "values": "0+5x60",
                    },
                ],
                "alert_rule_test": [
                    {"eval_time": "5m", "alertname": "SentimentBacklogGrowing", "exp_alerts": []},
                    {
                        "eval_time": "40m",
                        "alertname": "SentimentBacklogGrowing",
                        "exp_alerts": [
                            {
                                "exp_labels": {"namespace": "prod", "severity": "warning"},
                                "exp_annotations": {
                                    "summary": "Inference backlog in prod is 4500 and still growing",
                                    "description": (
                                        "Staged messages arrive faster than the inference workers classify"
                                        " them. Raise spec.autoscaling.maxReplicas, the batch size, or use"
                                        " the onnx-int8 backend."
                                    ),
                                },
                            }
                        ],
                    },
                    {
                        "eval_time": "30m",
                        "alertname": "SentimentMessagesDeadLettered",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "namespace": "prod",
                                    "stage": "consume",
                                    "reason": "invalid_json",
                                    "severity": "warning",
                                },
                                "exp_annotations": {
                                    "summary": "consume dead-lettered 50 messages in 10 min (invalid_json)",
                                    "description": (
                                        "Messages are being set aside in the dead-letter collection. Inspect"
                                        " them (reason and raw bytes are stored with each: sentiment-pipeline"
                                        " dead-letters list --reason R), fix the producer, the model or the"
                                        " store, then sentiment-pipeline dead-letters replay --reason R."
                                    ),
                                },
                            }
                        ],
                    },
                    {"eval_time": "30m", "alertname": "SentimentStoreUnreachable", "exp_alerts": []},
                ],
            }
        ],
    }
    test_file = tmp_path / "alerts_test.yaml"
    test_file.write_text(yaml.safe_dump(tests, width=1000))
    result = subprocess.run([promtool(), "test", "rules", str(test_file)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dead_letter_ratio_alert_fires_above_five_percent_of_consumed_messages(
    rules_file: Path, tmp_path: Path
) -> None:
    """10 of 100 messages a minute dead-lettered (10%) fires after 10 minutes; 1 of 100 (1%) never does."""
    series = []
    for namespace, dead_per_minute in (("bad", 10), ("fine", 1)):
        series += [
            {
                "series": f'sentiment_messages_consumed_total{{namespace="{namespace}",topic="t"}}',
                "values": "0+100x60",
            },
            {
                "series": "sentiment_messages_dead_lettered_total"
                f'{{namespace="{namespace}",stage="infer",reason="store_rejected"}}',
                "values": f"0+{dead_per_minute}x60",
            },
        ]
    tests = {
        "rule_files": [str(rules_file)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [
                    {"eval_time": "5m", "alertname": "SentimentDeadLetterRatioHigh", "exp_alerts": []},
                    {
                        "eval_time": "40m",
                        "alertname": "SentimentDeadLetterRatioHigh",
                        "exp_alerts": [
                            {
                                "exp_labels": {"namespace": "bad", "severity": "warning"},
                                "exp_annotations": {
                                    "summary": "10% of the messages in bad are dead-lettered",
                                    "description": (
                                        "More than 5% of the consumed messages end in the dead letters (all"
                                        " stages and reasons) for 10 minutes: a producer sends bad data, or"
                                        " a store or the model refuses a kind of message. sentiment-pipeline"
                                        " dead-letters list shows the reasons; sentiment-pipeline reconcile"
                                        " the counts."
                                    ),
                                },
                            }
                        ],
                    },
                ],
            }
        ],
    }
    test_file = tmp_path / "ratio_test.yaml"
    test_file.write_text(yaml.safe_dump(tests, width=1000))
    result = subprocess.run([promtool(), "test", "rules", str(test_file)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_credentials_alert_fires_when_a_store_refuses_the_workers_for_five_minutes(
    rules_file: Path, tmp_path: Path
) -> None:
    """A store that refuses the credentials (sentiment_store_error{kind="auth"} 1) alerts after 5 minutes,
    naming the store; an unreachable store (kind="unreachable") is not a credentials problem."""
    tests = {
        "rule_files": [str(rules_file)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {
                        "series": 'sentiment_store_error{namespace="a",store="mysql",kind="auth"}',
                        "values": "1x30",
                    },
                    {
                        "series": 'sentiment_store_error{namespace="b",store="mongo",kind="auth"}',
                        "values": "0x30",
                    },
                    {
                        "series": 'sentiment_store_error{namespace="b",store="mongo",kind="unreachable"}',
                        "values": "1x30",
                    },
                ],
                "alert_rule_test": [
                    {"eval_time": "3m", "alertname": "SentimentStoreCredentialsRefused", "exp_alerts": []},
                    {
                        "eval_time": "10m",
                        "alertname": "SentimentStoreCredentialsRefused",
                        "exp_alerts": [
                            {
                                "exp_labels": {"namespace": "a", "store": "mysql", "severity": "critical"},
                                "exp_annotations": {
                                    "summary": "mysql refuses the workers' credentials in a",
                                    "description": (
                                        "A worker's user or password for mysql is refused (wrong Secret,"
                                        " missing grant, expired password). The workers keep retrying and"
                                        " lose nothing, but no data flows. The pipeline's Degraded condition"
                                        " (reason StoreAuthFailed) names the Secret: fix it and the operator"
                                        " rolls the workers that read it."
                                    ),
                                },
                            }
                        ],
                    },
                ],
            }
        ],
    }
    test_file = tmp_path / "alerts_test.yaml"
    test_file.write_text(yaml.safe_dump(tests, width=1000))
    result = subprocess.run([promtool(), "test", "rules", str(test_file)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
