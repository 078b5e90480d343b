"""The `minilm` example's data: the first sentences of Python's own standard-library docstrings (read with `ast`,
so no module is imported and nothing runs), filtered to plain English, deduplicated and split by a hash of their
text, so a sentence stays in its split whatever else the stdlib of another Python version contains; tokenized at
their real lengths, with the fp32 model's embeddings as references (computed once, cached under the home)."""

from __future__ import annotations

import ast
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

import torch

from autocompress.errors import ConfigError
from autocompress.examples.minilm_model import EMBEDDING_DIM, SentenceEmbedder, embed, load_tokenizer
from autocompress.home import home
from autocompress.task import DataSplits

log = logging.getLogger(__name__)

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
