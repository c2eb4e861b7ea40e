"""An inference worker process that dies like the OOM killer kills it: the real worker and the real (tiny)
model, except that a batch holding ``POISON_MARKER`` makes the process SIGKILL itself (no cleanup, no
exception: what a container killed for memory on one huge text looks like from the outside).

Run as ``python -m tests.dataplane.poison_worker MODEL_DIR`` with SENTIMENT_* settings in the environment;
``POISON_MARKER``, ``CLAIM_SIZE`` and ``MAX_ATTEMPTS`` set the twist. Exits 0 once the backlog is empty
(after ``IDLE_EXIT_S`` idle seconds, 0.2 by default; ``never``: only on SIGTERM). ``WORKER_MODE=fused`` runs
the fused worker instead (it consumes the topic itself; ``CLAIM_SIZE`` is then its Kafka batch size too)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from sentiment_workers.adapters.mongo import StagingStore
from sentiment_workers.adapters.mysql import Warehouse
from sentiment_workers.fused import FusedWorker
from sentiment_workers.inference import InferenceWorker
from sentiment_workers.metrics import PipelineMetrics
from sentiment_workers.model import load_classifier
from sentiment_workers.runner import install_stop_handlers, load_config


def main() -> None:
    marker = os.environ["POISON_MARKER"]
    config = load_config()
    classifier = load_classifier(sys.argv[1], "torch", batch_size=16, max_length=64, threads=1)
    predict = classifier.predict

    def dying_predict(texts: Sequence[str]) -> Any:
        if any(marker in t for t in texts):
            os.kill(os.getpid(), signal.SIGKILL)
        return predict(texts)

    classifier.predict = dying_predict  # type: ignore[method-assign]

    idle = os.environ.get("IDLE_EXIT_S", "0.2")

    async def run() -> None:
        stop = asyncio.Event()
        install_stop_handlers(stop)
        store = StagingStore.from_config(config)
        warehouse = await Warehouse.connect(config)
        size = int(os.environ.get("CLAIM_SIZE", "16"))
        attempts = int(os.environ.get("MAX_ATTEMPTS", "3"))
        worker: InferenceWorker | FusedWorker
        try:
            if os.environ.get("WORKER_MODE") == "fused":
                worker = FusedWorker(
                    config,
                    store,
                    warehouse,
                    classifier,
                    PipelineMetrics(),
                    batch_size=size,
                    max_attempts=attempts,
                    kafka_overrides={"session_timeout_ms": 1500, "heartbeat_interval_ms": 500},
                )
            else:
                worker = InferenceWorker(
                    config,
                    store,
                    warehouse,
                    classifier,
                    PipelineMetrics(),
                    claim_size=size,
                    max_attempts=attempts,
                )
            await worker.run(stop, exit_when_idle=None if idle == "never" else float(idle))
        finally:
            store.close()
            await warehouse.close()

    asyncio.run(run())


if __name__ == "__main__":
    main()
