"""Fine-tune the packaged MiniLM encoder as a classifier (3 sentiment labels by default, or any task's
labels) and save it as fp16 safetensors."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sentiment_workers.training.dataset import LABELS, Example
from sentiment_workers.training.settings import TrainingSettings


def base_model_dir(base_model: str) -> Path:
    """A local directory for ``base_model``: itself if it is one, else ``<package>/model`` of a package."""
    candidate = Path(base_model)
    if candidate.is_dir():
        return candidate
    from sentiment_workers.training.dataset import package_dir

    return package_dir(base_model.replace("-", "_")) / "model"


def set_seed(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def fine_tune(
    train: list[Example],
    settings: TrainingSettings,
    output_dir: Path,
    log: Callable[..., Any],
    labels: Sequence[str] = LABELS,
) -> dict[str, Any]:
    """Train on ``train``; write config (id2label: ``labels`` in order), tokenizer and fp16 safetensors to
    ``output_dir``.

    Returns a summary: steps, final loss, wall time.
    """
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        get_linear_schedule_with_warmup,
    )
    from transformers.utils import logging as hf_logging

    from sentiment_workers.model.threads import default_threads

    hf_logging.disable_progress_bar()
    set_seed(settings.seed)
    torch.set_num_threads(settings.threads or default_threads())
    base = base_model_dir(settings.base_model)
    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(
        base,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        dtype=torch.float32,
        local_files_only=True,
        # A base that is already a classifier of other labels (the shipped sentiment model) gets a new head.
        **({} if list(labels) == list(LABELS) else {"ignore_mismatched_sizes": True}),
    )
    model.train()
    label_ids = {label: i for i, label in enumerate(labels)}

    steps_per_epoch = math.ceil(len(train) / settings.batch_size)
    total_steps = max(1, math.ceil(steps_per_epoch * settings.epochs))
    no_decay = ("bias", "LayerNorm.weight")
    groups = [
        {
            "params": [p for n, p in model.named_parameters() if not any(k in n for k in no_decay)],
            "weight_decay": settings.weight_decay,
        },
        {
            "params": [p for n, p in model.named_parameters() if any(k in n for k in no_decay)],
            "weight_decay": 0.0,
        },
    ]
    optimizer = torch.optim.AdamW(groups, lr=settings.learning_rate)
    scheduler = get_linear_schedule_with_warmup(
        optimizer, int(total_steps * settings.warmup_ratio), total_steps
    )
    rng = random.Random(settings.seed)  # noqa: S311 - seeded for reproducibility
    started = time.perf_counter()
    step = 0
    running_loss = 0.0
    losses: list[float] = []
    while step < total_steps:
        order = list(range(len(train)))
        rng.shuffle(order)
        for start in range(0, len(order), settings.batch_size):
            if step >= total_steps:
                break
            batch = [train[i] for i in order[start : start + settings.batch_size]]
            encoded = tokenizer(
                [e.text for e in batch],
                truncation=True,
                max_length=settings.max_length,
                padding=True,
                return_tensors="pt",
            )
            targets = torch.tensor([label_ids[e.label] for e in batch])
            loss = model(**encoded, labels=targets).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            running_loss += loss.item()
            if step % 20 == 0 or step == total_steps:
                losses.append(round(running_loss / (20 if step % 20 == 0 else step % 20), 4))
                elapsed = time.perf_counter() - started
                log(
                    "train_progress",
                    step=step,
                    total_steps=total_steps,
                    loss=losses[-1],
                    elapsed_s=round(elapsed, 1),
                    eta_s=round(elapsed / step * (total_steps - step), 1),
                )
                running_loss = 0.0

    train_seconds = time.perf_counter() - started
    output_dir.mkdir(parents=True, exist_ok=True)
    model.eval()
    model.half().save_pretrained(output_dir, safe_serialization=True)
    tokenizer.save_pretrained(output_dir)
    return {
        "steps": step,
        "train_examples": len(train),
        "loss_every_20_steps": losses,
        "train_seconds": round(train_seconds, 1),
    }
