"""Pure functions: a validated spec -> the manifests of a pipeline's children.

Nothing here talks to the API server. Every child carries the pipeline's labels and a controller owner
reference to the CR, so deleting the CR lets the garbage collector remove them. Worker settings are rendered
under the names of :mod:`sentiment_workers.config` (``env_name``): plain values go to the ConfigMap (but the
poller's S3 settings, which every boto client would read, go on its container only), credentials to
``secretKeyRef`` entries of the components that read them. Each Deployment's pod template carries a hash of
the settings that component reads, so a change (e.g. the model) rolls exactly the Deployments it concerns,
and a digest of the ``resourceVersion`` of the Secrets it reads (never their values), so a fixed Secret rolls
the pods that use it (environment variables from a Secret are only read when a container starts).

``spec.mode`` decides which worker Deployments exist (:func:`worker_components`): ``lease`` runs a consumer
and inference workers, ``fused`` only inference workers running ``infer --fused``, which read the consumer's
settings and credentials as well.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sentiment_workers.config import ModelBackend, env_name
from sentiment_workers.http_source.settings import env_name as http_env_name

from . import FIELD_MANAGER, GROUP, KIND, VERSION, autoscaling
from .spec import CREDENTIALS, Mode, PipelineSpec, SourceKind, State, Workload

Manifest = dict[str, Any]

CONSUMER = "consumer"
INFERENCE = "inference"
POLLER = "poller"
WORKER_COMPONENTS = (CONSUMER, INFERENCE, POLLER)
WORKER_COMMANDS = {
    CONSUMER: ["sentiment-pipeline", "consume"],
    INFERENCE: ["sentiment-pipeline", "infer"],
    POLLER: ["sentiment-pipeline", "poll"],
}
FUSED_FLAG = "--fused"
HTTP_PREFIX = "http_"
MLFLOW_SETTINGS = (
    "mlflow_tracking_uri",
    "mlflow_tracking_token",
    "mlflow_tracking_username",
    "mlflow_tracking_password",
)
"""MLflow's own environment variables (``MLFLOW_TRACKING_URI``, ...), read by its client in the inference
workers when they resolve a ``models:/`` name."""
AWS_PREFIX = "aws_"
AWS_SETTINGS = (
    "aws_endpoint_url",
    "aws_default_region",
    "aws_region",
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
)
"""botocore's own environment variables (``AWS_ENDPOINT_URL``, ...), read by s3fs in the poller when pages
land in an ``s3://`` bucket. Every boto client of a pod reads them (an MLflow artifact download from S3 as
well): they are set on the poller's container only, never in the ConfigMap that every worker reads."""
MODEL_CACHE_ENV = "SENTIMENT_MODEL_CACHE_DIR"
"""Where the workers download registry models (``sentiment_workers.model.source.REGISTRY_CACHE_ENV``)."""
MODEL_CACHE_DIR = "/model-cache"

LABEL_PIPELINE = f"{GROUP}/pipeline"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
ANNOTATION_CONFIG_HASH = f"{GROUP}/config-hash"
ANNOTATION_SECRETS_VERSION = f"{GROUP}/secrets-version"
WORKER_APP = "sentiment-pipeline-worker"
RUN_AS_USER = 10001
CACHE_DIR = "/cache"

# Which worker settings each component reads (prefixes of WorkerConfig field names). Credentials follow the
# same rule (least privilege: the consumer never sees MySQL's password).
_COMPONENT_SETTINGS = {
    CONSUMER: ("kafka_", "mongo_", "consumer_", "max_message_bytes", "metrics_", "log_"),
    INFERENCE: ("mongo_", "mysql_", "model_", "mlflow_", "lease_", "poll_", "metrics_", "log_"),
    # The HTTP poller publishes to Kafka, lands pages (and keeps its cursor and lease) in MongoDB.
    POLLER: ("kafka_", "mongo_", "metrics_", "log_", HTTP_PREFIX, AWS_PREFIX),
}
# Requests sized so that a default install with inference autoscaled to its maximum (4) fits a 2-CPU node and
# the Terraform default VM (tests/deploy/test_chart_sizing.py): onnx-int8 peaks at ~400 MiB RSS (the default
# model, sentiment-e5, batch 32, 128 tokens; the earlier MiniLM default: 284 MiB). The torch backends need
# more. A replica uses more CPU than it requests when the node has it (no CPU limit); raise the requests with
# spec.inference.resources on bigger nodes.
_DEFAULT_RESOURCES: dict[str, dict[str, dict[str, str]]] = {
    CONSUMER: {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
    INFERENCE: {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
    POLLER: {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "384Mi"}},
}
_TORCH_INFERENCE_RESOURCES: dict[str, dict[str, str]] = {
    "requests": {"cpu": "500m", "memory": "1Gi"},
    "limits": {"memory": "2Gi"},
}


def worker_components(spec: PipelineSpec) -> tuple[str, ...]:
    """The worker Deployments a spec runs, in apply order: no consumer in fused mode, a poller only for an
    HTTP source."""
    components = (INFERENCE,) if spec.mode is Mode.FUSED else (CONSUMER, INFERENCE)
    return (*components, POLLER) if spec.source.kind is SourceKind.HTTP else components


def component_prefixes(spec: PipelineSpec, component: str) -> tuple[str, ...]:
    """Prefixes of the settings ``component`` reads; a fused inference worker also reads the consumer's."""
    if component == INFERENCE and spec.mode is Mode.FUSED:
        return tuple(dict.fromkeys(_COMPONENT_SETTINGS[CONSUMER] + _COMPONENT_SETTINGS[INFERENCE]))
    return _COMPONENT_SETTINGS[component]


def worker_command(spec: PipelineSpec, component: str) -> list[str]:
    """The container command: ``infer --fused`` for inference in fused mode."""
    if component == INFERENCE and spec.mode is Mode.FUSED:
        return [*WORKER_COMMANDS[INFERENCE], FUSED_FLAG]
    return list(WORKER_COMMANDS[component])


def default_resources(spec: PipelineSpec, component: str) -> dict[str, dict[str, str]]:
    """Requests and limits of a worker whose spec sets none (inference: by model backend)."""
    if component == INFERENCE and spec.model.backend is not ModelBackend.ONNX_INT8:
        return _TORCH_INFERENCE_RESOURCES
    return _DEFAULT_RESOURCES[component]


@dataclass(frozen=True)
class Owner:
    """The identity of the SentimentPipeline that owns the children."""

    name: str
    namespace: str
    uid: str

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Owner:
        meta = body["metadata"]
        return cls(name=meta["name"], namespace=meta["namespace"], uid=meta["uid"])


def config_map_name(pipeline: str) -> str:
    return f"{pipeline}-config"


def deployment_name(pipeline: str, component: str) -> str:
    return f"{pipeline}-{component}"


def metrics_service_name(pipeline: str) -> str:
    return f"{pipeline}-metrics"


def service_monitor_name(pipeline: str) -> str:
    return pipeline


def labels(owner: Owner, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": WORKER_APP,
        "app.kubernetes.io/instance": owner.name,
        "app.kubernetes.io/part-of": "sentiment-pipeline",
        LABEL_COMPONENT: component,
        LABEL_MANAGED_BY: FIELD_MANAGER,
        LABEL_PIPELINE: owner.name,
    }


def selector(owner: Owner, component: str) -> dict[str, str]:
    """Immutable Deployment selector: keep it to the two labels that identify a worker set."""
    return {LABEL_PIPELINE: owner.name, LABEL_COMPONENT: component}


def _metadata(owner: Owner, name: str, component: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels(owner, component),
        "ownerReferences": [
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": KIND,
                "name": owner.name,
                "uid": owner.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }


def setting_env(setting: str) -> str:
    """The environment variable of a worker setting: a WorkerConfig field (``kafka_topic`` ->
    ``SENTIMENT_KAFKA_TOPIC``) or ``http_<field>`` of the poller's HttpSourceConfig (``http_url`` ->
    ``SENTIMENT_HTTP_URL``) or one of MLflow's own (:data:`MLFLOW_SETTINGS`: ``mlflow_tracking_uri`` ->
    ``MLFLOW_TRACKING_URI``) or botocore's (:data:`AWS_SETTINGS`: ``aws_endpoint_url`` ->
    ``AWS_ENDPOINT_URL``); an unknown setting is a KeyError."""
    if setting in MLFLOW_SETTINGS or setting in AWS_SETTINGS:
        return setting.upper()
    if setting.startswith(HTTP_PREFIX):
        return http_env_name(setting.removeprefix(HTTP_PREFIX))
    return env_name(setting)


def http_settings(spec: PipelineSpec) -> dict[str, Any]:
    """The poller's settings (``http_<HttpSourceConfig field>``) from ``spec.source.http``; none for Kafka."""
    http = spec.source.http
    if spec.source.kind is not SourceKind.HTTP or http is None:
        return {}
    paging = http.paging
    fields: dict[str, Any] = {
        "url": http.url,
        "method": http.method,
        "paging": paging.type.setting.value,
        "cursor_field": paging.cursor_field,
        "cursor_param": paging.cursor_param,
        "next_link_field": paging.next_link_field,
        "page_param": paging.page_param,
        "records_path": http.records_path,
        "id_field": http.id_field,
        "text_field": http.text_field,
        "interval_seconds": http.interval_seconds,
        "timeout_seconds": http.timeout_seconds,
        "max_pages_per_run": http.max_pages_per_run,
        "landing_url": http.landing.url,
        "landing_collection": http.landing.collection,
    }
    return {HTTP_PREFIX + field: value for field, value in fields.items()}


def landing_settings(spec: PipelineSpec) -> dict[str, str]:
    """The plain settings of the poller's S3 client (``spec.source.http.landing``), keyed by ``AWS_*``
    variable name: the endpoint (MinIO, any S3-compatible store) and the region (``AWS_DEFAULT_REGION``, which
    botocore reads, and ``AWS_REGION``, which other AWS SDKs read). Values on the poller's container, not in
    the ConfigMap (:data:`AWS_SETTINGS`)."""
    http = spec.source.http
    if spec.source.kind is not SourceKind.HTTP or http is None:
        return {}
    values: dict[str, str] = {}
    if http.landing.endpoint_url is not None:
        values["aws_endpoint_url"] = http.landing.endpoint_url
    if http.landing.region is not None:
        values["aws_default_region"] = values["aws_region"] = http.landing.region
    return {setting_env(field): value for field, value in sorted(values.items())}


def component_settings(spec: PipelineSpec, component: str) -> dict[str, str]:
    """The plain settings set on ``component``'s container itself rather than in the shared ConfigMap."""
    return landing_settings(spec) if component == POLLER else {}


def worker_settings(spec: PipelineSpec) -> dict[str, str]:
    """The plain (non-secret) worker settings, keyed by ``SENTIMENT_*`` variable name."""
    src, stg, snk, mdl = spec.source, spec.staging, spec.sink, spec.model
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": src.bootstrap_servers,
        "kafka_topic": src.topic,
        "kafka_group_id": src.consumer_group,
        "kafka_security_protocol": src.security_protocol.value,
        "mongo_database": stg.database,
        "mongo_collection": stg.collection,
        "mongo_dead_letter_collection": stg.dead_letter_collection,
        "mysql_host": snk.host,
        "mysql_port": snk.port,
        "mysql_database": snk.database,
        "mysql_table": snk.table,
        "model_name": mdl.name,
        "model_backend": mdl.backend.value,
        "model_batch_size": mdl.batch_size,
        "model_max_length": mdl.max_length,
        "metrics_port": spec.metrics.port,
        "log_level": spec.log_level,
        "log_format": "json",
    }
    if src.auth_secret_ref is not None:
        values["kafka_sasl_mechanism"] = src.sasl_mechanism.value
    if mdl.tracking is not None:
        values["mlflow_tracking_uri"] = mdl.tracking.uri
    values.update(http_settings(spec))
    return {setting_env(field): str(value) for field, value in sorted(values.items())}


def secret_env(spec: PipelineSpec) -> dict[str, tuple[str, str]]:
    """Credential settings: ``SENTIMENT_*`` name -> (Secret name, key) (table: :data:`spec.CREDENTIALS`)."""
    return {setting_env(field): ref for field, ref in spec.credentials().items()}


def optional_secret_env() -> set[str]:
    """The credential variables whose Secret key may be absent (``secretKeyRef`` ``optional: true``)."""
    return {setting_env(c.setting) for c in CREDENTIALS if c.optional}


def _component_reads(spec: PipelineSpec, component: str, variable: str) -> bool:
    field = variable.removeprefix("SENTIMENT_").lower()
    return field.startswith(component_prefixes(spec, component))


def component_secret_env(spec: PipelineSpec, component: str) -> dict[str, tuple[str, str]]:
    """The credential settings ``component``'s pods get."""
    return {k: v for k, v in secret_env(spec).items() if _component_reads(spec, component, k)}


def config_hash(spec: PipelineSpec, component: str) -> str:
    """A digest of every setting ``component`` reads: it changes exactly when those pods must restart."""
    relevant = {k: v for k, v in worker_settings(spec).items() if _component_reads(spec, component, k)}
    relevant.update(component_settings(spec, component))
    relevant.update({k: "/".join(v) for k, v in component_secret_env(spec, component).items()})
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def component_secrets(spec: PipelineSpec, component: str) -> list[str]:
    """The names of the Secrets ``component``'s pods read, sorted."""
    return sorted({name for name, _ in component_secret_env(spec, component).values()})


def secrets_version(spec: PipelineSpec, component: str, versions: Mapping[str, str]) -> str:
    """A digest of the ``resourceVersion`` of each Secret ``component`` reads (``versions``: name ->
    resourceVersion, as read by the operator): it changes when one of those Secrets is edited."""
    mine = {name: versions.get(name, "") for name in component_secrets(spec, component)}
    return hashlib.sha256(json.dumps(mine, sort_keys=True).encode()).hexdigest()[:16]


def build_config_map(spec: PipelineSpec, owner: Owner) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(owner, config_map_name(owner.name), "config"),
        "data": worker_settings(spec),
    }


def _workload(spec: PipelineSpec, component: str) -> Workload:
    """The spec's placement and sizing of ``component`` (the poller has none: defaults, one replica)."""
    if component == POLLER:
        return Workload()
    workload: Workload = getattr(spec, component)
    return workload


def desired_replicas(spec: PipelineSpec, component: str, autoscaled: int | None = None) -> int:
    """Replicas of a worker Deployment: 0 when paused, the autoscaler's choice (within its bounds) when it is
    on; the poller is one replica, never more (its lease keeps a second one idle anyway)."""
    if spec.state is State.PAUSED:
        return 0
    if component == POLLER:
        return 1
    if component == INFERENCE and spec.autoscaling.enabled:
        return autoscaling.within(spec.autoscaling, autoscaled)
    return _workload(spec, component).replicas


def _container(
    spec: PipelineSpec, owner: Owner, component: str, image: str, pull_policy: str
) -> dict[str, Any]:
    workload = _workload(spec, component)
    env: list[dict[str, Any]] = [
        {"name": "HF_HUB_OFFLINE", "value": "1"},
        {"name": "HF_HOME", "value": f"{CACHE_DIR}/huggingface"},
        {
            "name": env_name("worker_id"),
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
        },
    ]
    if component == POLLER:  # the key of its cursor and of its single-poller lease
        env.append({"name": setting_env("http_source_name"), "value": owner.name})
    env.extend({"name": name, "value": value} for name, value in component_settings(spec, component).items())
    if _model_cache(spec, component):
        env.append({"name": MODEL_CACHE_ENV, "value": MODEL_CACHE_DIR})
    optional = optional_secret_env()
    for variable, (secret, key) in sorted(component_secret_env(spec, component).items()):
        ref: dict[str, Any] = {"name": secret, "key": key}
        if variable in optional:
            ref["optional"] = True
        env.append({"name": variable, "valueFrom": {"secretKeyRef": ref}})
    resources = (
        workload.resources.model_dump(exclude_none=True)
        if workload.resources is not None
        else default_resources(spec, component)
    )
    # /healthz answers 200 only while the worker's event loop beats; /readyz only while, in addition, it
    # reaches every store it uses (sentiment_workers.health): Ready means data can flow.
    probe = {"httpGet": {"path": "/healthz", "port": "metrics"}, "periodSeconds": 20, "timeoutSeconds": 5}
    ready = {"httpGet": {"path": "/readyz", "port": "metrics"}, "timeoutSeconds": 5}
    return {
        "name": component,
        "image": image,
        "imagePullPolicy": workload.image_pull_policy or pull_policy,
        "command": worker_command(spec, component),
        "envFrom": [{"configMapRef": {"name": config_map_name(owner.name)}}],
        "env": env,
        "ports": [{"name": "metrics", "containerPort": spec.metrics.port, "protocol": "TCP"}],
        "resources": resources,
        # A slow start (a large image's imports, a cold volume) gets 5 minutes before liveness applies.
        "startupProbe": {**probe, "periodSeconds": 5, "failureThreshold": 60},
        "livenessProbe": {**probe, "failureThreshold": 3},
        "readinessProbe": {**ready, "periodSeconds": 5, "failureThreshold": 2},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "privileged": False,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - an emptyDir, the root FS is read-only
            {"name": "cache", "mountPath": CACHE_DIR},
            *(
                [{"name": "model-cache", "mountPath": MODEL_CACHE_DIR}]
                if _model_cache(spec, component)
                else []
            ),
        ],
    }


def _model_cache(spec: PipelineSpec, component: str) -> bool:
    """Whether ``component``'s pods get the registry model cache: the inference pods, when the spec names a
    tracking server (they download ``models:/`` versions into it)."""
    return component == INFERENCE and spec.model.tracking is not None


def build_deployment(
    spec: PipelineSpec,
    owner: Owner,
    component: str,
    *,
    default_image: str,
    default_pull_policy: str = "IfNotPresent",
    autoscaled: int | None = None,
    secret_versions: Mapping[str, str] | None = None,
) -> Manifest:
    """The consumer, inference or poller Deployment (image and pull policy: the workload's, else the defaults;
    with ``secret_versions``, the pods roll when a Secret they read changes). The poller is replaced, never
    rolled (strategy Recreate): two pollers never run at once."""
    if component not in WORKER_COMPONENTS:
        raise ValueError(f"unknown worker component {component!r}")
    workload = _workload(spec, component)
    container = _container(spec, owner, component, workload.image or default_image, default_pull_policy)
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 60,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "runAsGroup": RUN_AS_USER,
            "fsGroup": RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [
            {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
            {"name": "cache", "emptyDir": {"sizeLimit": "4Gi"}},
        ],
    }
    if _model_cache(spec, component):
        pod_spec["volumes"].append(
            {"name": "model-cache", "emptyDir": {"sizeLimit": spec.model.cache_size_limit}}
        )
    if workload.node_selector:
        pod_spec["nodeSelector"] = dict(workload.node_selector)
    if workload.tolerations:
        pod_spec["tolerations"] = [
            t.model_dump(by_alias=True, exclude_none=True) for t in workload.tolerations
        ]
    if workload.affinity:
        pod_spec["affinity"] = workload.affinity
    pod_labels = labels(owner, component)
    annotations = {
        ANNOTATION_CONFIG_HASH: config_hash(spec, component),
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(spec.metrics.port),
        "prometheus.io/path": "/metrics",
    }
    if secret_versions is not None:
        annotations[ANNOTATION_SECRETS_VERSION] = secrets_version(spec, component, secret_versions)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(owner, deployment_name(owner.name, component), component),
        "spec": {
            "replicas": desired_replicas(spec, component, autoscaled),
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector(owner, component)},
            "strategy": (
                {"type": "Recreate"}
                if component == POLLER
                else {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
            ),
            "template": {
                "metadata": {
                    "labels": pod_labels,
                    "annotations": annotations,
                },
                "spec": pod_spec,
            },
        },
    }


def build_metrics_service(spec: PipelineSpec, owner: Owner) -> Manifest:
    """Headless Service over every worker pod of the pipeline: Prometheus and the autoscaler scrape it."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(owner, metrics_service_name(owner.name), "metrics"),
        "spec": {
            "clusterIP": "None",
            "selector": {LABEL_PIPELINE: owner.name, "app.kubernetes.io/name": WORKER_APP},
            "ports": [
                {"name": "metrics", "port": spec.metrics.port, "targetPort": "metrics", "protocol": "TCP"}
            ],
        },
    }


def build_service_monitor(spec: PipelineSpec, owner: Owner) -> Manifest:
    """prometheus-operator ServiceMonitor for the metrics Service (only applied when that CRD exists)."""
    manifest_labels = {**labels(owner, "metrics"), **spec.metrics.service_monitor.labels}
    metadata = _metadata(owner, service_monitor_name(owner.name), "metrics")
    metadata["labels"] = manifest_labels
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": metadata,
        "spec": {
            "selector": {"matchLabels": {LABEL_PIPELINE: owner.name, LABEL_COMPONENT: "metrics"}},
            "namespaceSelector": {"matchNames": [owner.namespace]},
            "endpoints": [
                {"port": "metrics", "path": "/metrics", "interval": spec.metrics.service_monitor.interval}
            ],
        },
    }


def build_children(
    spec: PipelineSpec,
    owner: Owner,
    *,
    default_image: str,
    default_pull_policy: str = "IfNotPresent",
    autoscaled: int | None = None,
    service_monitor: bool = False,
    secret_versions: Mapping[str, str] | None = None,
) -> list[Manifest]:
    """Every child, in apply order (the ConfigMap before the Deployments that read it)."""
    children = [build_config_map(spec, owner)]
    for component in worker_components(spec):
        children.append(
            build_deployment(
                spec,
                owner,
                component,
                default_image=default_image,
                default_pull_policy=default_pull_policy,
                autoscaled=autoscaled if component == INFERENCE else None,
                secret_versions=secret_versions,
            )
        )
    children.append(build_metrics_service(spec, owner))
    if service_monitor and spec.metrics.service_monitor.enabled:
        children.append(build_service_monitor(spec, owner))
    return children
