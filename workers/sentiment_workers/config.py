"""The configuration contract shared by the workers and the operator.

Workers read it from environment variables (prefix ``SENTIMENT_``); the operator renders the same
variables into a ConfigMap (plain values) and ``secretKeyRef`` entries (credentials). Keep this module
free of I/O libraries: the operator image imports it without aiokafka, motor, aiomysql or torch.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "SENTIMENT_"


SQL_IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
"""A MySQL table or column name the project will interpolate (quoted): the one definition."""


class ModelBackend(StrEnum):
    """How the model runs: fp32 torch, torch dynamic int8, or ONNX Runtime dynamic int8."""

    TORCH = "torch"
    TORCH_INT8 = "torch-int8"
    ONNX_INT8 = "onnx-int8"


class KafkaSecurityProtocol(StrEnum):
    """How the workers talk to Kafka."""

    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"


class KafkaSaslMechanism(StrEnum):
    """SASL mechanism for the SASL_* protocols."""

    PLAIN = "PLAIN"
    SCRAM_SHA_256 = "SCRAM-SHA-256"
    SCRAM_SHA_512 = "SCRAM-SHA-512"


BACKLOG_METRIC = "sentiment_inference_backlog_messages"
"""Gauge of messages not yet classified, exported by the inference workers and read by the operator's
autoscaler: part of the contract between the two. Lease mode: staged documents not classified yet; fused mode:
the consumer group's Kafka lag over every partition plus staged documents pending (the same value on every
pod)."""

STORE_UP_METRIC = "sentiment_store_up"
"""Gauge per store (label ``store``: ``kafka``, ``mongo``, ``mysql``), 1 while the worker reaches it, 0 while
it cannot; exported by both workers, read by their ``/readyz`` and by the operator's status (which store is
unreachable, from which pods): part of the contract between the two."""

STORE_ERROR_METRIC = "sentiment_store_error"
"""Gauge per store and kind of failure (labels ``store``, ``kind``: one of :data:`STORE_FAULT_KINDS`), 1 for
the kind of the worker's last failure to use the store while ``sentiment_store_up`` is 0, else 0. ``auth``:
the store refused the credentials or their rights (a wrong Secret), which no retry fixes; the operator
reports it as ``StoreAuthFailed``: part of the contract between the two."""

UNREACHABLE = "unreachable"
AUTH = "auth"
REJECTED = "rejected"
STORE_FAULT_KINDS = (UNREACHABLE, AUTH, REJECTED)
"""Why a worker cannot use a store: the values of the label ``kind`` of ``sentiment_store_error``, the one
table every worker writes and the operator reads (``operator/sentiment_operator/backlog.py``: ``auth`` is
reported as ``StoreAuthFailed``, ``rejected`` apart, anything else as unreachable):

- ``unreachable``: no answer, connection lost, timeouts (it comes back by itself);
- ``auth``: the store refused the credentials or their rights (a wrong Secret, fixed by a person);
- ``rejected``: the store answers but refuses the requests as they are made (the HTTP source's API: a 4xx
  other than 401/403, or a page the settings cannot read; fixed by a person). Kafka, MongoDB and MySQL never
  report it: a message they refuse is dead-lettered alone, which is not a fault of the store.

Every kind is exported for every store a worker uses (0, or 1 for the current fault), so a query for one kind
finds a series whatever the store."""

DEFAULT_MODEL = "default"
"""Sentinel model name: the offline model shipped with the project (see models/)."""


class WorkerConfig(BaseSettings):
    """Everything a consumer or inference worker needs, read from ``SENTIMENT_*`` variables."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=None, extra="ignore")

    # Source: Kafka
    kafka_bootstrap_servers: str = Field("127.0.0.1:9092", description="Comma-separated host:port list.")
    kafka_topic: str = Field("messages", description="Topic carrying the raw text messages.")
    kafka_group_id: str = Field("sentiment-consumer", description="Consumer group of the consumer workers.")
    kafka_security_protocol: KafkaSecurityProtocol = KafkaSecurityProtocol.PLAINTEXT
    kafka_sasl_mechanism: KafkaSaslMechanism = KafkaSaslMechanism.PLAIN
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: str | None = Field(
        None, description="PEM CA bundle that verifies the brokers (SSL, SASL_SSL); unset: the system store."
    )

    # Staging: MongoDB
    mongo_uri: SecretStr = Field(SecretStr("mongodb://127.0.0.1:27017/?directConnection=true"))
    mongo_database: str = "sentiment"
    mongo_collection: str = Field("raw_messages", description="Staging collection of raw messages.")
    mongo_dead_letter_collection: str = Field("dead_letters", description="Rejected messages with reasons.")

    # Sink: MySQL
    mysql_host: str = "127.0.0.1"
    mysql_port: int = 3306
    mysql_user: str = "sentiment"
    mysql_password: SecretStr = SecretStr("")
    mysql_database: str = "sentiment"
    mysql_table: str = Field("dw_messages", pattern=SQL_IDENTIFIER)

    # Model
    model_name: str = Field(DEFAULT_MODEL, description="'default', a Hugging Face model name, or a path.")
    model_backend: ModelBackend = ModelBackend.TORCH
    model_batch_size: int = Field(32, ge=1, le=1024)
    model_max_length: int = Field(128, ge=8, le=4096)

    # Worker behaviour
    consumer_batch_size: int = Field(500, ge=1)
    consumer_max_in_flight: int = Field(2, ge=1, description="Bounded queue of batches awaiting storage.")
    max_message_bytes: int = Field(64 * 1024, ge=1)
    lease_seconds: float = Field(120.0, gt=0, description="How long an inference claim is held.")
    poll_interval_seconds: float = Field(0.5, gt=0)
    worker_id: str | None = Field(None, description="Defaults to hostname-pid.")

    # Observability
    metrics_port: int = Field(
        9000, ge=0, le=65535, description="Port of /metrics and /healthz; 0 disables the endpoint."
    )
    liveness_timeout_seconds: float = Field(
        60.0, gt=0, description="/healthz fails when the event loop has not beaten for this long."
    )
    store_probe_interval_seconds: float = Field(
        10.0, gt=0, description="How often a worker probes its stores (sentiment_store_up, /readyz)."
    )
    store_probe_timeout_seconds: float = Field(5.0, gt=0, description="A probe with no answer by then fails.")
    log_level: str = "INFO"
    log_format: str = Field("json", pattern="^(json|console)$")


def env_name(field: str) -> str:
    """The environment variable that sets ``field`` (``kafka_topic`` -> ``SENTIMENT_KAFKA_TOPIC``)."""
    if field not in WorkerConfig.model_fields:
        raise KeyError(f"unknown worker setting {field!r}")
    return ENV_PREFIX + field.upper()
