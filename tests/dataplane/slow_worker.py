"""An inference worker process for the crash tests: the real worker and the real (tiny) model, slowed down
so that a SIGKILL lands while a batch is leased, and between the MySQL commit and marking the batch done.

Run as ``python -m tests.dataplane.slow_worker MODEL_DIR`` with SENTIMENT_* settings in the environment;
``SLOW_PREDICT_S`` and ``SLOW_MARK_DONE_S`` set the delays. ``WORKER_MODE=fused`` runs the fused worker
(it consumes the topic itself), whose batch completion is slowed instead of the mark-done step."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from sentiment_workers.adapters.mongo import StagingStore
from sentiment_workers.fused import run_fused
from sentiment_workers.inference import run_inference
from sentiment_workers.metrics import PipelineMetrics
from sentiment_workers.model import load_classifier
from sentiment_workers.runner import install_stop_handlers, load_config


def main() -> None:
    predict_delay = float(os.environ.get("SLOW_PREDICT_S", "0.2"))
    mark_done_delay = float(os.environ.get("SLOW_MARK_DONE_S", "1.0"))
    config = load_config()
    classifier = load_classifier(sys.argv[1], "torch", batch_size=16, max_length=64, threads=1)
    predict = classifier.predict

    def slow_predict(texts: Sequence[str]) -> Any:
        time.sleep(predict_delay)
        return predict(texts)

    classifier.predict = slow_predict  # type: ignore[method-assign]
    mark_done = StagingStore.mark_done

    async def slow_mark_done(self: StagingStore, results: Any) -> None:
        await asyncio.sleep(mark_done_delay)  # the window between the MySQL commit and Mongo
        await mark_done(self, results)

    StagingStore.mark_done = slow_mark_done  # type: ignore[method-assign]
    complete_batch = StagingStore.complete_batch

    async def slow_complete_batch(self: StagingStore, token: str, results: Any) -> bool:
        await asyncio.sleep(mark_done_delay)  # the same window, for a fused batch
        return await complete_batch(self, token, results)

    StagingStore.complete_batch = slow_complete_batch  # type: ignore[method-assign]

    async def run() -> None:
        stop = asyncio.Event()
        install_stop_handlers(stop)
        if os.environ.get("WORKER_MODE") == "fused":
            overrides = {"session_timeout_ms": 1500, "heartbeat_interval_ms": 500}
            await run_fused(config, stop, PipelineMetrics(), classifier, kafka_overrides=overrides)
        else:
            await run_inference(config, stop, PipelineMetrics(), classifier)

    asyncio.run(run())


if __name__ == "__main__":
    main()
