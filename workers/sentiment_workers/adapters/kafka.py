"""Kafka adapter: aiokafka producer and consumer factories built from :class:`WorkerConfig`.

Security: PLAINTEXT, SSL (system CA store, or ``SENTIMENT_KAFKA_SSL_CAFILE``), SASL_PLAINTEXT and
SASL_SSL with PLAIN or SCRAM-SHA-256/512; the password comes from the environment (a Secret reference).
"""

from __future__ import annotations

import os
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError
from aiokafka.helpers import create_ssl_context

from sentiment_workers.config import WorkerConfig

SSL_CAFILE_ENV = "SENTIMENT_KAFKA_SSL_CAFILE"


def connection_options(config: WorkerConfig) -> dict[str, Any]:
    """Bootstrap servers and security keyword arguments shared by producers and consumers."""
    protocol = config.kafka_security_protocol.value  # validated by WorkerConfig
    options: dict[str, Any] = {
        "bootstrap_servers": [s.strip() for s in config.kafka_bootstrap_servers.split(",") if s.strip()],
        "security_protocol": protocol,
    }
    if protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = create_ssl_context(cafile=os.environ.get(SSL_CAFILE_ENV) or None)
    if protocol.startswith("SASL_"):
        mechanism = config.kafka_sasl_mechanism.value
        if not config.kafka_sasl_username or config.kafka_sasl_password is None:
            raise ValueError(f"{protocol} needs kafka_sasl_username and kafka_sasl_password")
        options.update(
            sasl_mechanism=mechanism,
            sasl_plain_username=config.kafka_sasl_username,
            sasl_plain_password=config.kafka_sasl_password.get_secret_value(),
        )
    return options


def create_consumer(config: WorkerConfig, **overrides: Any) -> AIOKafkaConsumer:
    """A consumer in ``kafka_group_id`` with manual commits (offsets are committed after staging).

    Not subscribed yet: the caller subscribes with its rebalance listener.
    """
    options: dict[str, Any] = {
        **connection_options(config),
        "group_id": config.kafka_group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_poll_records": config.consumer_batch_size,
    }
    options.update(overrides)
    return AIOKafkaConsumer(**options)


def create_producer(config: WorkerConfig, **overrides: Any) -> AIOKafkaProducer:
    """A producer that waits for all in-sync replicas and batches (linger) for throughput."""
    options: dict[str, Any] = {
        **connection_options(config),
        "acks": "all",
        "linger_ms": 5,
        "compression_type": "gzip",
        "max_batch_size": 256 * 1024,
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


async def ping(config: WorkerConfig, *, timeout_ms: int = 5000) -> None:
    """Raise unless a broker answers a metadata request, with the configured security (reachability probe)."""
    client = AIOKafkaClient(**connection_options(config), request_timeout_ms=timeout_ms)
    try:
        await client.bootstrap()
    finally:
        await client.close()


def is_transient(exc: BaseException) -> bool:
    """True for "Kafka is unreachable" (no broker answers, connection lost, timeouts): worth retrying."""
    return isinstance(exc, KafkaError | OSError | TimeoutError)
