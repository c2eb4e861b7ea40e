"""A consumer process for the consumer-group tests: the real consumer, whose offset commits wait
``SLOW_COMMIT_S`` after each batch is staged, so a SIGKILL lands between "durable in Mongo" and "committed
in Kafka" (the window that makes Kafka redeliver).

Run as ``python -m tests.dataplane.slow_commit_consumer`` with SENTIMENT_* settings in the environment."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from sentiment_workers.adapters.mongo import StagingStore
from sentiment_workers.consumer import StagingConsumer
from sentiment_workers.metrics import PipelineMetrics
from sentiment_workers.runner import install_stop_handlers, load_config

from tests.dataplane.conftest import KAFKA_TEST_OVERRIDES


def main() -> None:
    delay = float(os.environ.get("SLOW_COMMIT_S", "5"))
    commit = StagingConsumer._commit

    async def slow_commit(self: StagingConsumer, consumer: Any, batch: Any) -> None:
        await asyncio.sleep(delay)
        await commit(self, consumer, batch)

    StagingConsumer._commit = slow_commit  # type: ignore[method-assign]

    async def run() -> None:
        config = load_config()
        stop = asyncio.Event()
        install_stop_handlers(stop)
        store = StagingStore.from_config(config)
        try:
            consumer = StagingConsumer(config, store, PipelineMetrics(), kafka_overrides=KAFKA_TEST_OVERRIDES)
            await consumer.run(stop)
        finally:
            store.close()

    asyncio.run(run())


if __name__ == "__main__":
    main()
