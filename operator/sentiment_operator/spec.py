"""The ``SentimentPipeline`` spec as a validated pydantic model.

The CRD's OpenAPI schema (``k8s-manifests/crds/sentimentpipelines.yaml``) rejects what a Kubernetes 1.20
structural schema can express (types, enums, ranges, patterns, required fields) and fills the same defaults
as these models. Cross-field rules the schema cannot express (autoscaling min <= max, SASL needs a secret,
source.kind http needs source.http and only it has one, the S3 settings of the landing store need an s3://
landing url) live here and surface as a ``Degraded`` condition with the validation message. The HTTP
source's defaults and patterns are the poller's own
(:class:`sentiment_workers.http_source.settings.HttpSourceConfig`); a registry model name follows the
workers' own pattern (``sentiment_workers.model.source``, which the operator may not import: a test keeps the
two equal).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel, to_snake
from sentiment_workers.config import (
    DEFAULT_MODEL,
    SQL_IDENTIFIER,
    KafkaSaslMechanism,
    KafkaSecurityProtocol,
    ModelBackend,
)
from sentiment_workers.http_source.settings import HttpPaging, HttpSourceConfig

K8S_NAME = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
MONGO_NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,119}$"
HTTP_URL = r"^https?://[^\s]+$"
QUANTITY = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$"
"""A positive Kubernetes quantity of bytes as people write them (``512Mi``, ``2Gi``, ``1.5G``)."""
ENDPOINT_URL = r"^https?://[^\s/?#@]+(/[^\s?#@]*)?$"
"""An S3 endpoint: http(s), a host and an optional path; no user info, query or fragment (credentials come
from a Secret, never in a URL)."""
AWS_REGION = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
S3_SCHEMES = ("s3://", "s3a://")
"""The landing URLs whose store s3fs (botocore) serves: the ones the AWS variables configure."""
REGISTRY_PREFIX = "models:/"
REGISTRY_MODEL = r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>\d+))$"
"""A model in an MLflow registry, ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``: the workers' pattern."""


class _Model(BaseModel):
    """camelCase on the wire (as in the CR), snake_case in Python; unknown fields are an error."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class SecretRef(_Model):
    """A reference to a Secret in the pipeline's namespace. Credentials are never inline."""

    name: str = Field(pattern=K8S_NAME, max_length=253)


class State(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"


class Mode(StrEnum):
    """How messages get from the topic to the warehouse."""

    LEASE = "lease"
    """A consumer Deployment stages messages in MongoDB; inference workers lease, classify and write them."""
    FUSED = "fused"
    """No consumer: the inference Deployment runs ``infer --fused`` (consume, stage, classify, write, commit
    the Kafka offsets after the warehouse commit) with the consumer group of ``source.consumerGroup``."""


class SourceKind(StrEnum):
    KAFKA = "kafka"
    """Messages are produced to the topic by others; the consumers read it."""
    HTTP = "http"
    """A poller Deployment pages through an HTTP API and publishes each record to the topic."""


class HttpPagingType(StrEnum):
    """``source.http.paging.type`` (camelCase as in the CR), one per :class:`HttpPaging` of the poller."""

    CURSOR = "cursor"
    NEXT_LINK = "nextLink"
    PAGE_NUMBER = "pageNumber"

    @property
    def setting(self) -> HttpPaging:
        return HttpPaging(to_snake(self.value))


def _http_default(field: str) -> Any:
    """The poller's own default for ``field`` (one table of truth: HttpSourceConfig)."""
    return HttpSourceConfig.model_fields[field].default


def _http_pattern(field: str) -> str:
    """The poller's own pattern for ``field``: the operator accepts nothing the poller would refuse."""
    for rule in HttpSourceConfig.model_fields[field].metadata:
        pattern = getattr(rule, "pattern", None)
        if isinstance(pattern, str):
            return pattern
    raise LookupError(f"HttpSourceConfig.{field} has no pattern")


LANDING_COLLECTION = _http_pattern("landing_collection")


class HttpPagingSpec(_Model):
    """How the API hands out the next page."""

    type: HttpPagingType = HttpPagingType(to_camel(str(_http_default("paging"))))
    cursor_field: str = Field(_http_default("cursor_field"), min_length=1)
    cursor_param: str = Field(_http_default("cursor_param"), min_length=1)
    next_link_field: str = Field(_http_default("next_link_field"), min_length=1)
    page_param: str = Field(_http_default("page_param"), min_length=1)


class HttpLanding(_Model):
    """Where raw pages land before their records are published: empty url, the staging MongoDB; an
    ``s3://bucket/prefix`` url, objects in S3 or an S3-compatible store. The poller's S3 client (botocore,
    under s3fs) is configured by the standard AWS variables: ``endpointUrl`` (MinIO and other S3-compatible
    stores; omit for AWS), ``region``, and the credentials Secret (keys ``accessKeyId`` and
    ``secretAccessKey``, optional ``sessionToken``; without it, the pod's identity). They reach the poller
    only, and only make sense with an ``s3://`` url."""

    url: str = Field(_http_default("landing_url"), max_length=2048)
    collection: str = Field(_http_default("landing_collection"), pattern=LANDING_COLLECTION)
    endpoint_url: str | None = Field(None, pattern=ENDPOINT_URL, max_length=2048)
    region: str | None = Field(None, pattern=AWS_REGION, max_length=64)
    credentials_secret_ref: SecretRef | None = None

    @property
    def s3(self) -> bool:
        """Whether pages land in an S3 (or S3-compatible) bucket."""
        return self.url.lower().startswith(S3_SCHEMES)

    @model_validator(mode="after")
    def _s3_settings_need_an_s3_url(self) -> HttpLanding:
        given = [
            name
            for name, value in (
                ("endpointUrl", self.endpoint_url),
                ("region", self.region),
                ("credentialsSecretRef", self.credentials_secret_ref),
            )
            if value is not None
        ]
        if given and not self.s3:
            where = (
                "landing.url is empty (pages land in the staging MongoDB)"
                if not self.url
                else f"landing.url {self.url!r} is not an s3:// URL"
            )
            names = " and ".join([", ".join(given[:-1]), given[-1]] if len(given) > 1 else given)
            raise ValueError(
                f"{names} configure{'s' if len(given) == 1 else ''} the S3 client of an s3:// landing store, "
                f"but {where}: set landing.url to s3://bucket/prefix, or remove {names}"
            )
        return self


class HttpSource(_Model):
    """An HTTP API polled for records. The headers Secret holds key ``headers`` (a JSON object)."""

    url: str = Field(pattern=HTTP_URL, max_length=2048)
    method: Literal["GET", "POST"] = _http_default("method")
    headers_secret_ref: SecretRef | None = None
    paging: HttpPagingSpec = Field(default_factory=HttpPagingSpec)
    records_path: str = Field(_http_default("records_path"), max_length=512)
    id_field: str = Field(_http_default("id_field"), max_length=512)
    text_field: str = Field(_http_default("text_field"), min_length=1, max_length=512)
    interval_seconds: int = Field(int(_http_default("interval_seconds")), ge=1, le=86400)
    timeout_seconds: int = Field(int(_http_default("timeout_seconds")), ge=1, le=600)
    max_pages_per_run: int = Field(_http_default("max_pages_per_run"), ge=1, le=100000)
    landing: HttpLanding = Field(default_factory=HttpLanding)


class Source(_Model):
    """Where raw messages come from: always a Kafka topic (the consumers read it), fed by others (kind
    ``kafka``) or by the pipeline's own HTTP poller (kind ``http``). The auth Secret holds keys ``username``
    and ``password``."""

    kind: SourceKind = SourceKind.KAFKA
    bootstrap_servers: str = Field(min_length=1)
    topic: str = Field(min_length=1, max_length=249, pattern=r"^[A-Za-z0-9._-]+$")
    consumer_group: str = Field("sentiment-consumer", min_length=1)
    security_protocol: KafkaSecurityProtocol = KafkaSecurityProtocol.PLAINTEXT
    sasl_mechanism: KafkaSaslMechanism = KafkaSaslMechanism.PLAIN
    auth_secret_ref: SecretRef | None = None
    http: HttpSource | None = None

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> Source:
        if self.security_protocol.startswith("SASL") and self.auth_secret_ref is None:
            raise ValueError(f"source.securityProtocol {self.security_protocol} needs source.authSecretRef")
        return self

    @model_validator(mode="after")
    def _http_goes_with_its_kind(self) -> Source:
        if self.kind is SourceKind.HTTP and self.http is None:
            raise ValueError("source.kind http needs source.http (at least source.http.url)")
        if self.kind is not SourceKind.HTTP and self.http is not None:
            raise ValueError(
                f"source.http is set but source.kind is {self.kind.value}: "
                "set source.kind to http, or remove source.http"
            )
        return self


class Staging(_Model):
    """MongoDB staging. The Secret holds key ``uri``."""

    mongo_secret_ref: SecretRef
    database: str = Field("sentiment", pattern=MONGO_NAME)
    collection: str = Field("raw_messages", pattern=MONGO_NAME)
    dead_letter_collection: str = Field("dead_letters", pattern=MONGO_NAME)


class Sink(_Model):
    """MySQL fact table. The Secret holds keys ``username`` and ``password``."""

    host: str = Field(min_length=1, max_length=253)
    port: int = Field(3306, ge=1, le=65535)
    database: str = Field("sentiment", pattern=SQL_IDENTIFIER)
    table: str = Field("dw_messages", pattern=SQL_IDENTIFIER)
    secret_ref: SecretRef


class ModelTracking(_Model):
    """The MLflow tracking server that resolves ``models:/`` names. The credentials Secret holds key ``token``
    (a bearer token), or keys ``username`` and ``password`` (basic auth); every key is optional."""

    uri: str = Field(pattern=HTTP_URL, max_length=2048)
    credentials_secret_ref: SecretRef | None = None


class ModelSpec(_Model):
    """The transformer: ``default`` (shipped offline), a Hugging Face name, a path in the image, or a version
    in an MLflow model registry (``models:/NAME@ALIAS``, ``models:/NAME/VERSION``; needs ``tracking``)."""

    name: str = Field(DEFAULT_MODEL, min_length=1, max_length=512)
    backend: ModelBackend = ModelBackend.ONNX_INT8  # the default (slim) worker image runs this one only
    batch_size: int = Field(32, ge=1, le=1024)
    max_length: int = Field(128, ge=8, le=4096)
    tracking: ModelTracking | None = None
    cache_size_limit: str = Field("2Gi", pattern=QUANTITY, max_length=32)

    @property
    def registry(self) -> bool:
        """Whether the model comes from an MLflow model registry."""
        return self.name.startswith(REGISTRY_PREFIX)

    @model_validator(mode="after")
    def _registry_needs_tracking(self) -> ModelSpec:
        if not self.registry:
            return self
        if re.match(REGISTRY_MODEL, self.name) is None:
            raise ValueError(
                f"model.name {self.name!r}: a registry model is models:/NAME@ALIAS or models:/NAME/VERSION"
            )
        if self.tracking is None:
            raise ValueError(
                f"model.name {self.name} is resolved by an MLflow tracking server: "
                "set spec.model.tracking.uri (and credentialsSecretRef if the server wants credentials)"
            )
        return self


class Toleration(_Model):
    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


class Resources(_Model):
    """Container resources; quantities as Kubernetes writes them ("500m", "1Gi", 2)."""

    requests: dict[str, int | str] | None = None
    limits: dict[str, int | str] | None = None


class Workload(_Model):
    """Placement and sizing of one worker Deployment."""

    replicas: int = Field(1, ge=0, le=100)
    image: str | None = Field(None, description="Defaults to the operator's worker image.")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = Field(
        None, description="Defaults to the operator's worker image pull policy."
    )
    resources: Resources | None = None
    node_selector: dict[str, str] | None = None
    tolerations: list[Toleration] | None = None
    affinity: dict[str, Any] | None = None


class Autoscaling(_Model):
    """Lag-aware scaling of the inference Deployment from the pending backlog."""

    enabled: bool = False
    min_replicas: int = Field(1, ge=0, le=100)
    max_replicas: int = Field(4, ge=1, le=100)
    target_backlog_per_replica: int = Field(500, ge=1)
    scale_down_stabilization_seconds: int = Field(120, ge=0, le=3600)

    @model_validator(mode="after")
    def _min_le_max(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"autoscaling.minReplicas ({self.min_replicas}) must be <= "
                f"autoscaling.maxReplicas ({self.max_replicas})"
            )
        return self


class ServiceMonitorSpec(_Model):
    enabled: bool = True
    interval: str = Field("30s", pattern=r"^[0-9]+(ms|s|m|h)$")
    labels: dict[str, str] = Field(default_factory=dict)


class Metrics(_Model):
    port: int = Field(9000, ge=1024, le=65535)
    service_monitor: ServiceMonitorSpec = Field(default_factory=ServiceMonitorSpec)


class PipelineSpec(_Model):
    """``spec`` of a SentimentPipeline."""

    state: State = State.RUNNING
    mode: Mode = Mode.LEASE
    source: Source
    staging: Staging
    sink: Sink
    model: ModelSpec = Field(default_factory=ModelSpec)
    consumer: Workload = Field(default_factory=Workload)
    inference: Workload = Field(default_factory=Workload)
    autoscaling: Autoscaling = Field(default_factory=Autoscaling)
    metrics: Metrics = Field(default_factory=Metrics)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    def secret_ref(self, path: str) -> SecretRef | None:
        """The SecretRef at ``path`` (camelCase, dotted, as in the CR), or None where the spec sets none."""
        node: Any = self
        for part in path.split("."):
            node = getattr(node, to_snake(part), None)
            if node is None:
                return None
        return node if isinstance(node, SecretRef) else None

    def credentials(self) -> dict[str, tuple[str, str]]:
        """Each credential setting the workers get -> (Secret name, key), from :data:`CREDENTIALS`."""
        found: dict[str, tuple[str, str]] = {}
        for credential in CREDENTIALS:
            ref = self.secret_ref(credential.ref)
            if ref is not None:
                found[credential.setting] = (ref.name, credential.key)
        return found

    def secret_refs(self) -> dict[str, tuple[str, ...]]:
        """Every referenced Secret with the keys the workers read from it."""
        refs: dict[str, set[str]] = {}
        for name, key in self.credentials().values():
            refs.setdefault(name, set()).add(key)
        return {name: tuple(sorted(keys)) for name, keys in refs.items()}

    def optional_keys(self) -> dict[str, tuple[str, ...]]:
        """Referenced Secrets -> the keys they may lack (every credential read from that key is optional);
        a Secret of which every key read is optional must still hold one of them."""
        keys: dict[tuple[str, str], bool] = {}
        for credential in CREDENTIALS:
            ref = self.secret_ref(credential.ref)
            if ref is not None:
                at = (ref.name, credential.key)
                keys[at] = keys.get(at, True) and credential.optional
        found: dict[str, set[str]] = {}
        for (name, key), optional in keys.items():
            if optional:
                found.setdefault(name, set()).add(key)
        return {name: tuple(sorted(k)) for name, k in found.items()}


@dataclass(frozen=True)
class Credential:
    """One credential a worker reads, and where it comes from: ``key`` of the Secret that the spec references
    at ``ref`` (camelCase, as written in the CR)."""

    setting: (
        str  # a WorkerConfig field, http_<field> of HttpSourceConfig, mlflow_* (MLflow's own variables) or
        # aws_* (botocore's own variables: the S3 landing store of the poller)
    )
    ref: str
    key: str
    optional: bool = False
    """The Secret may lack the key (``secretKeyRef`` with ``optional: true``); a Secret whose keys are all
    optional must hold one of them all the same."""


LANDING_CREDENTIALS = "source.http.landing.credentialsSecretRef"
CREDENTIALS = (
    Credential("kafka_sasl_username", "source.authSecretRef", "username"),
    Credential("kafka_sasl_password", "source.authSecretRef", "password"),
    Credential("mongo_uri", "staging.mongoSecretRef", "uri"),
    Credential("mysql_user", "sink.secretRef", "username"),
    Credential("mysql_password", "sink.secretRef", "password"),
    Credential("http_headers", "source.http.headersSecretRef", "headers"),
    Credential("mlflow_tracking_token", "model.tracking.credentialsSecretRef", "token", optional=True),
    Credential("mlflow_tracking_username", "model.tracking.credentialsSecretRef", "username", optional=True),
    Credential("mlflow_tracking_password", "model.tracking.credentialsSecretRef", "password", optional=True),
    Credential("aws_access_key_id", LANDING_CREDENTIALS, "accessKeyId"),
    Credential("aws_secret_access_key", LANDING_CREDENTIALS, "secretAccessKey"),
    Credential("aws_session_token", LANDING_CREDENTIALS, "sessionToken", optional=True),
)
"""The one table of which Secret key feeds which worker setting: the Secret checks, the workers'
``secretKeyRef`` entries, the Secret digests that roll pods and the status messages all derive from it."""


class InvalidSpec(ValueError):
    """The spec passed the CRD schema but breaks a rule only the operator checks."""


def parse_spec(raw: Any) -> PipelineSpec:
    """Validate a CR ``spec``; raise :class:`InvalidSpec` with one readable line per problem."""
    try:
        return PipelineSpec.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            where = ".".join(str(p) for p in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"spec.{where}: {msg}" if where else f"spec: {msg}")
        raise InvalidSpec("; ".join(problems)) from None
