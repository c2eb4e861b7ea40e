"""Kafka adapter: aiokafka producer and consumer factories built from :class:`WorkerConfig`.

Security: PLAINTEXT, SSL (system CA store, or ``SENTIMENT_KAFKA_SSL_CAFILE``), SASL_PLAINTEXT and
SASL_SSL with PLAIN or SCRAM-SHA-256/512; the password comes from the environment (a Secret reference).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.conn import create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    IllegalSaslStateError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
    UnsupportedSaslMechanismError,
)
from aiokafka.helpers import create_ssl_context

from sentiment_workers.config import WorkerConfig

# "The broker refuses these credentials or this user's rights" (SASL, ACLs): a wrong Secret or missing ACLs.
AUTH_ERRORS = (
    SaslAuthenticationFailed,
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    UnsupportedSaslMechanismError,
    IllegalSaslStateError,
    TopicAuthorizationFailedError,
    GroupAuthorizationFailedError,
    ClusterAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)


def connection_options(config: WorkerConfig) -> dict[str, Any]:
    """Bootstrap servers and security keyword arguments shared by producers and consumers."""
    protocol = config.kafka_security_protocol.value  # validated by WorkerConfig
    options: dict[str, Any] = {
        "bootstrap_servers": [s.strip() for s in config.kafka_bootstrap_servers.split(",") if s.strip()],
        "security_protocol": protocol,
    }
    if protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = create_ssl_context(cafile=config.kafka_ssl_cafile or None)
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
    """Raise unless a broker answers a metadata request, with the configured security (reachability probe).

    aiokafka's bootstrap reports every failure as "unable to bootstrap"; when it fails, one direct connection
    to the first broker says whether the broker refused the credentials (raised: :func:`is_auth_error`)."""
    options = connection_options(config)
    client = AIOKafkaClient(**options, request_timeout_ms=timeout_ms)
    try:
        await client.bootstrap()
    except KafkaConnectionError:
        await _raise_auth_error(options, timeout_ms)
        raise
    finally:
        await client.close()


async def _raise_auth_error(options: dict[str, Any], timeout_ms: int) -> None:
    """Connect once to the first bootstrap server; re-raise only an authentication/authorization refusal."""
    if not str(options["security_protocol"]).startswith("SASL_"):
        return
    host, _, port = options["bootstrap_servers"][0].rpartition(":")
    settings = {k: v for k, v in options.items() if k != "bootstrap_servers"}
    try:
        conn = await create_conn(host, int(port), request_timeout_ms=timeout_ms, **settings)
    except AUTH_ERRORS:
        raise
    except (KafkaError, OSError, TimeoutError, ValueError):
        return
    conn.close()


def is_auth_error(exc: BaseException) -> bool:
    """True for "the broker refuses these credentials or this user's rights" (SASL authentication failed,
    mechanism not enabled, topic/group/cluster authorization failed)."""
    return isinstance(exc, AUTH_ERRORS)


def is_transient(exc: BaseException) -> bool:
    """True for "Kafka is unreachable" (no broker answers, connection lost, timeouts): worth retrying.
    Refused credentials or rights are not (:func:`is_auth_error`): retried slowly instead."""
    return isinstance(exc, KafkaError | OSError | TimeoutError) and not is_auth_error(exc)


async def partition_offsets(config: WorkerConfig) -> list[tuple[int, int, int, int | None]]:
    """``(partition, beginning, end, committed)`` of every partition of ``kafka_topic``, the committed offset
    being ``kafka_group_id``'s (None when it never committed). Reads only: it does not join the group."""
    consumer = create_consumer(config, request_timeout_ms=10_000)
    await consumer.start()
    try:
        await consumer.topics()  # metadata of every topic, so partitions_for_topic knows ours
        partitions = sorted(consumer.partitions_for_topic(config.kafka_topic) or ())
        tps = [TopicPartition(config.kafka_topic, p) for p in partitions]
        if not tps:
            return []
        beginning = await consumer.beginning_offsets(tps)
        listed_end = await consumer.end_offsets(tps)
        committed = {tp: await consumer.committed(tp) for tp in tps}
        # The end is the high watermark of a fetch response: some brokers (Tansu) answer ListOffsets(latest)
        # with the last batch's position rather than the end of the log.
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, committed[tp] if committed[tp] is not None else beginning[tp])
        deadline = asyncio.get_running_loop().time() + 5
        while (
            any(consumer.highwater(tp) is None for tp in tps) and asyncio.get_running_loop().time() < deadline
        ):
            await consumer.getmany(*tps, timeout_ms=200, max_records=1)
        end = {tp: max(listed_end[tp], consumer.highwater(tp) or 0) for tp in tps}
        return [(tp.partition, beginning[tp], end[tp], committed[tp]) for tp in tps]
    finally:
        await consumer.stop()
