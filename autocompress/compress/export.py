"""ONNX export with stable layer names, so a strategy's per-layer choices find their nodes in the graph."""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import re
import time
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import onnx
import torch
from torch import nn

from autocompress.bugs import raised_in_our_code
from autocompress.compress.onnx_registry import reuse_torchlib_table
from autocompress.errors import CandidateRefused
from autocompress.spaces.graph import layer_names
from autocompress.task import BATCH_AXIS, DynamicAxes

log = logging.getLogger(__name__)
# torch.onnx warns once per export that torchvision operators are not registered; irrelevant here
logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
LAYER_OPS = ("Conv", "Gemm", "MatMul")
ANSI_ESCAPES = re.compile(r"\x1b\[[0-9;]*m")  # the exporter colours its messages for terminals


def _scope_layer(node: onnx.NodeProto, layer_names: set[str]) -> str | None:
    """The deepest torch module scope of a node that is a known layer (fallback when weights were renamed)."""
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            scopes = [scope.strip(" '\"") for scope in prop.value.strip("[]").split(",")]
            matches = [scope for scope in scopes if scope in layer_names]
            return matches[-1] if matches else None
    return None


def name_layers(model: onnx.ModelProto, layer_names: set[str]) -> dict[str, str]:
    """Rename Conv/Gemm/MatMul nodes to their torch module names; returns {layer: op_type} of what was found."""
    found: dict[str, str] = {}
    for node in model.graph.node:
        if node.op_type not in LAYER_OPS or len(node.input) < 2:
            continue
        weight = node.input[1]
        layer = weight.removesuffix(".weight") if weight.endswith(".weight") else None
        if layer not in layer_names:
            layer = _scope_layer(node, layer_names)
        if layer is not None and layer not in found:
            node.name = layer
            found[layer] = node.op_type
    return found


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter talks a lot (warnings, and whole graphs logged through torch's own handlers when a model
    cannot be traced); a failure becomes one CandidateRefused line, so none of that reaches the user."""
    logging.disable(logging.WARNING)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)


def fingerprint(model: nn.Module, example_input: torch.Tensor, dynamic_axes: DynamicAxes | None) -> str:
    """The same modules with the same weights and the same inputs export to the same graph."""
    digest = hashlib.sha256(repr((type(model).__qualname__, tuple(example_input.shape), str(example_input.dtype),
                                  sorted((dynamic_axes or BATCH_AXIS).items()))).encode())  # fmt: skip
    for name, module in model.named_modules():
        digest.update(f"{name}:{type(module).__qualname__};".encode())
    for name, tensor in model.state_dict().items():
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


_recent: OrderedDict[str, tuple[bytes, dict[str, str]]] = OrderedDict()  # fingerprint -> (serialized graph, layers)
RECENT_EXPORTS = 4
_exporting = [0.0]  # seconds this process has spent in export_onnx (a build reads the difference)


def export_seconds() -> float:
    """Seconds spent exporting so far in this process: where a trial's time goes is logged per stage."""
    return _exporting[0]


def export_onnx(
    model: nn.Module, example_input: torch.Tensor, path: Path, dynamic_axes: DynamicAxes | None = None
) -> dict[str, str]:
    """Export with dynamic axes: the batch by default (accuracy runs batched, latency at the profile's batch
    size), plus e.g. the sequence length of a text model. The exporter takes seconds even for a small CNN, so the
    last few exports are kept: the same model with the same weights (the baseline, candidates that only change
    precisions, a sensitivity analysis) is exported once per process."""
    started = time.perf_counter()
    try:
        return _export(model, example_input, path, dynamic_axes)
    finally:
        _exporting[0] += time.perf_counter() - started


def _export(
    model: nn.Module, example_input: torch.Tensor, path: Path, dynamic_axes: DynamicAxes | None
) -> dict[str, str]:
    model = model.eval()
    key = fingerprint(model, example_input, dynamic_axes)
    if key in _recent:
        _recent.move_to_end(key)
        serialized, found = _recent[key]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(serialized)
        return dict(found)
    axes = {
        axis: torch.export.Dim(name, min=low, max=high)
        for axis, (name, low, high) in (dynamic_axes or BATCH_AXIS).items()
    }
    reuse_torchlib_table()  # about half a second saved per export after the first
    try:
        with _quiet_exporter():
            program = torch.onnx.export(
                model,
                (example_input,),
                dynamo=True,
                input_names=["input"],
                output_names=["output"],
                dynamic_shapes=(axes,),
                verbose=False,
            )
    except Exception as error:  # the exporter raises many types; all mean "this candidate cannot be exported"
        if raised_in_our_code(error):  # the user's forward or our callback: a bug, not a refusal
            raise
        message = ANSI_ESCAPES.sub("", str(error)).strip().splitlines() or [""]
        raise CandidateRefused(f"ONNX export failed: {type(error).__name__}: {message[0][:200]}") from error
    onnx_model = program.model_proto
    found = name_layers(onnx_model, set(layer_names(model)))
    serialized = onnx_model.SerializeToString()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(serialized)
    _recent[key] = (serialized, dict(found))
    while len(_recent) > RECENT_EXPORTS:
        _recent.popitem(last=False)
    return found
