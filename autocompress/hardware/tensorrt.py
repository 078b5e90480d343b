"""ONNX Runtime's TensorRT execution provider: the options each artifact is loaded with.

A profile's TensorRT options are written once for every artifact of a search; used as they are, three of them
would make measurements silently wrong:

- **Engine cache.** TensorRT's engine cache is keyed by the model's file name and graph, and every artifact is a
  `model.onnx`; one cache folder for the whole search can serve a candidate the engine built for another (ORT
  documents that a cache must be removed when the model changes). Each artifact gets its own folder, named by
  the artifact's content and the shapes it is built for, under the profile's `trt_engine_cache_path` (off where
  the profile leaves the cache off).
- **int8.** `trt_int8_enable` on an artifact without Q/DQ nodes (the baseline, an fp32 or fp16 candidate) asks
  TensorRT for implicit int8 with no calibration table: it may quantize layers the strategy kept in float, or
  refuse. The flag is set only on artifacts whose graph has QuantizeLinear/DequantizeLinear nodes (explicit
  quantization: TensorRT then follows exactly the strategy's int8 layers).
- **Shapes.** An input with a dynamic axis (the batch, a sentence's length) without an optimization profile
  makes TensorRT build an engine for each new shape it meets, inside the scoring loop or the timed rounds. The
  profile covers the shapes the measurement uses: from the smallest to the largest batch scored, optimised for
  the timed sample's.

`reduce_range` (7-bit weights for CPUs whose int8 products can saturate) never applies to TensorRT
(runtimes/onnxruntime.py). Everything here is a pure function of the artifact, the profile's options and the
shapes, tested without a GPU (tests/test_onnxruntime_gpu.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import onnx

TENSORRT = "TensorrtExecutionProvider"
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
DEFAULT_CACHE = ".trt-cache"
Shape = Sequence[int]


def provider_entry(options: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(name, settings) of the first provider, if it is TensorRT."""
    providers = list(options.get("providers", ["CPUExecutionProvider"]))
    first = providers[0] if providers else "CPUExecutionProvider"
    name, settings = (first, {}) if isinstance(first, str) else (first[0], dict(first[1]))
    return (name, settings) if name == TENSORRT else None


def has_qdq(model: onnx.ModelProto) -> bool:
    """Explicitly quantized: the graph (or a subgraph function) holds Q/DQ nodes."""
    nodes = [*model.graph.node, *(node for function in model.functions for node in function.node)]
    return any(node.op_type in QDQ_OPS for node in nodes)


def graph_input(model: onnx.ModelProto) -> str:
    """The name of the model's data input (initializers listed as inputs by old exporters left out)."""
    weights = {init.name for init in model.graph.initializer}
    return next(value.name for value in model.graph.input if value.name not in weights)


def shape_profile(name: str, shapes: Sequence[Shape], timed: Shape) -> dict[str, str]:
    """TensorRT's optimization profile over `shapes`: each axis from its smallest to its largest size, optimised
    for the `timed` shape (`input:1x1x8x8`, ORT's format)."""
    every = [tuple(shape) for shape in (*shapes, timed)]
    if len({len(shape) for shape in every}) != 1:
        raise ValueError(f"inputs of different ranks: {sorted(set(every))}")
    low = [min(sizes) for sizes in zip(*every, strict=True)]
    high = [max(sizes) for sizes in zip(*every, strict=True)]

    def text(shape: Shape) -> str:
        return f"{name}:{'x'.join(str(size) for size in shape)}"

    return {"trt_profile_min_shapes": text(low), "trt_profile_max_shapes": text(high),
            "trt_profile_opt_shapes": text(timed)}  # fmt: skip


def cache_folder(root: str, artifact: bytes, settings: Mapping[str, Any]) -> str:
    """The engine cache of one artifact built with one set of TensorRT settings: `root/<digest>`."""
    digest = hashlib.sha256(artifact)
    digest.update(repr(sorted(settings.items())).encode())
    return f"{root.rstrip('/')}/{digest.hexdigest()[:24]}"


def tensorrt_settings(
    settings: Mapping[str, Any], model: onnx.ModelProto, content: bytes, shapes: Sequence[Shape], timed: Shape
) -> dict[str, Any]:
    """The profile's TensorRT settings for one artifact: int8 only if it is explicitly quantized, an optimization
    profile for the shapes used, its own engine cache folder (if the profile caches engines)."""
    built = {key: value for key, value in settings.items() if not key.startswith("trt_profile_")}
    built["trt_int8_enable"] = bool(settings.get("trt_int8_enable", False)) and has_qdq(model)
    built.pop("trt_int8_calibration_table_name", None)  # explicit Q/DQ: the graph carries its scales
    built |= shape_profile(graph_input(model), shapes, timed)
    if built.get("trt_engine_cache_enable"):
        root = str(settings.get("trt_engine_cache_path") or DEFAULT_CACHE)
        built["trt_engine_cache_path"] = cache_folder(root, content, {k: v for k, v in built.items()
                                                                      if k != "trt_engine_cache_path"})  # fmt: skip
    else:
        built.pop("trt_engine_cache_path", None)  # no cache: no folder shared by every artifact either
    return built


def artifact_options(options: Mapping[str, Any], artifact: Path, shapes: Sequence[Shape], timed: Shape) -> dict:
    """The runtime options `artifact` is loaded with: the profile's `options`, with TensorRT's settings made for
    this artifact and these shapes (unchanged when TensorRT is not the first provider)."""
    entry = provider_entry(options)
    if entry is None:
        return dict(options)
    name, settings = entry
    content = artifact.read_bytes()
    model = onnx.load_model_from_string(content)
    first = [name, tensorrt_settings(settings, model, content, shapes, timed)]
    return {**options, "providers": [first, *list(options["providers"])[1:]]}
