"""The one-click baselines of the benchmark: what a user tries first, each runtime's quantizer with its defaults.

Every builder takes (task, profile, workdir, seed) and returns the path of an artifact in the device's runtime
format; the benchmark measures it with `measure_artifact` against fp32, like any search candidate. The
quantizers are called directly with their stock settings (not through autocompress's per-layer builders), so
these points are what the runtime's own documentation gives a user in one call.

- onnxruntime: `ort-dynamic-int8` (quantize_dynamic, defaults: int8 weights, activations quantized at run
  time), `ort-dynamic-pc-rr` (the same per-channel with reduce_range: ORT's advice for transformers on CPUs
  without VNNI), `ort-dynamic-pc` (per-channel only, for CPUs with VNNI), `ort-static-int8` (quantize_static,
  defaults: QDQ, int8, MinMax, every supported op) and `ort-static-pc-rr` (per-channel, reduce_range),
  calibrated with one feed per calibration batch.
- openvino: `nncf-int8` (convert_model of the fp32 ONNX, nncf.quantize with defaults, IR kept at fp32); for
  transformers `nncf-transformer` (model_type=TRANSFORMER on the ov.Model) and `nncf-transformer-sq` (plus
  SmoothQuant alpha 0.5 on MatMul), the recipes NNCF documents for BERT-like models; on a CPU with bf16 each
  also as `<name>-bf16`, the same IR computing what it leaves in float in bf16, as OpenVINO runs it by default.
- tflite: ai-edge-quantizer's stock recipes on the litert-torch conversion: `aeq-dynamic-wi8`
  (dynamic_wi8_afp32) and `aeq-static-wi8-ai8` (static_wi8_ai8, calibrated on the calibration split, with the
  model's input and output left float32: the stock recipe makes them int8, which the evaluator does not feed).
- every runtime: `prune-30` / `prune-50`, uniform structured pruning of every group (l2), fp32, distilled with
  the search's largest step count and its fixed distillation settings (the uniform baselines it enqueues); and
  `prune-50-int8`: the same 50% pruned model, then the runtime's best int8 recipe for the model (the first
  that applies above: what a practitioner would try next, the two one-click steps chained).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from onnxruntime.quantization import CalibrationDataReader
from torch import nn

from autocompress.compress.distill import distill
from autocompress.compress.export import export_onnx
from autocompress.compress.pipeline import build
from autocompress.compress.prune import prune
from autocompress.hardware.locks import compute_slot
from autocompress.hardware.profile import HardwareProfile
from autocompress.spaces.space import SearchSpace
from autocompress.spaces.strategy import Strategy
from autocompress.task import Task

Builder = Callable[[Task, HardwareProfile, Path, int], Path]
Quantizer = Callable[[nn.Module, Task, Path], Path]  # (model, task for inputs/calibration, workdir) -> artifact


def export_float_onnx(model: nn.Module, task: Task, path: Path) -> Path:
    """A model as fp32 ONNX, with the task's dynamic axes (e.g. a sentence's length)."""
    export_onnx(model, task.example_input, path, task.dynamic_axes)
    return path


def calibration_inputs(task: Task) -> list[np.ndarray]:
    """One array per calibration batch, as the loader gives them (shapes may differ: never concatenated)."""
    return [inputs.numpy() for inputs, _labels in task.data.calibration]


# --- onnxruntime ---------------------------------------------------------------------------------------------


def ort_dynamic_int8(model: nn.Module, task: Task, workdir: Path, **options: bool) -> Path:
    from onnxruntime.quantization import quantize_dynamic

    source = export_float_onnx(model, task, workdir / "float.onnx")
    target = workdir / "model.onnx"
    with contextlib.redirect_stdout(io.StringIO()):
        quantize_dynamic(str(source), str(target), **options)
    return target


def ort_dynamic_recommended(model: nn.Module, task: Task, workdir: Path) -> Path:
    """ORT's documented advice for transformers on CPUs without VNNI: per-channel weights, reduce_range."""
    return ort_dynamic_int8(model, task, workdir, per_channel=True, reduce_range=True)


def ort_dynamic_per_channel(model: nn.Module, task: Task, workdir: Path) -> Path:
    """The same on CPUs with VNNI, where reduce_range only costs precision (no u8s8 saturation to avoid)."""
    return ort_dynamic_int8(model, task, workdir, per_channel=True)


class _Feeds(CalibrationDataReader):
    """onnxruntime CalibrationDataReader over one {input_name: batch} per calibration batch."""

    def __init__(self, input_name: str, batches: list[np.ndarray]) -> None:
        self._feeds = [{input_name: batch} for batch in batches]
        self._iterator: Iterator[dict[str, np.ndarray]] = iter(self._feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iterator, None)

    def rewind(self) -> None:
        self._iterator = iter(self._feeds)


def ort_static_int8(model: nn.Module, task: Task, workdir: Path, **options: Any) -> Path:
    import onnx
    from onnxruntime.quantization import quantize_static

    source = export_float_onnx(model, task, workdir / "float.onnx")
    input_name = onnx.load(str(source), load_external_data=False).graph.input[0].name
    reader = _Feeds(input_name, calibration_inputs(task))
    target = workdir / "model.onnx"
    with contextlib.redirect_stdout(io.StringIO()):
        quantize_static(str(source), str(target), reader, **options)
    return target


def ort_static_u8s8(model: nn.Module, task: Task, workdir: Path) -> Path:
    """ORT's data type for x86-64 CPUs: uint8 activations with int8 per-channel weights (U8S8, the kernels' fast
    path), reduce_range where the CPU has no VNNI. quantize_static's default, S8S8, runs digits' CNN at 0.5-0.8x
    fp32 on an AVX-512 EPYC against 2.2-2.6x for U8S8 (same rounds)."""
    from onnxruntime.quantization import QuantType

    from autocompress.runtimes.onnxruntime_options import has_vnni

    return ort_static_int8(model, task, workdir, per_channel=True, reduce_range=not has_vnni(),
                           activation_type=QuantType.QUInt8)  # fmt: skip


def ort_static_recommended(model: nn.Module, task: Task, workdir: Path) -> Path:
    """ORT's documented advice for CNNs on CPUs without VNNI: QDQ with per-channel weights, reduce_range."""
    return ort_static_int8(model, task, workdir, per_channel=True, reduce_range=True)


# --- openvino --------------------------------------------------------------------------------------------------


def nncf_int8(
    model: nn.Module, task: Task, workdir: Path, transformer: bool = False, alpha: float | None = None
) -> Path:
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters

    converted = ov.convert_model(str(export_float_onnx(model, task, workdir / "float.onnx")))
    advanced = None
    if alpha is not None:
        advanced = AdvancedQuantizationParameters(smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=alpha))
    with contextlib.redirect_stdout(io.StringIO()):
        quantized = nncf.quantize(converted, nncf.Dataset(calibration_inputs(task)), advanced_parameters=advanced,
                                  model_type=nncf.ModelType.TRANSFORMER if transformer else None)  # fmt: skip
    target = workdir / "model.xml"
    ov.save_model(quantized, target, compress_to_fp16=False)
    return target


def under_bf16_compute(quantizer: Quantizer) -> Quantizer:
    """The same recipe as a user who sets nothing runs it on a CPU with bf16: OpenVINO computes what the recipe
    leaves in float in bf16 there (the IR says so, as autocompress's artifacts do, so the timing compiles it so)."""

    def build(model: nn.Module, task: Task, workdir: Path) -> Path:
        import openvino as ov

        from autocompress.evaluators.device.openvino_session import HINTS, PRECISION_RT_INFO

        target = quantizer(model, task, workdir)
        ir = ov.Core().read_model(str(target))
        ir.set_rt_info(HINTS["bf16"], PRECISION_RT_INFO)
        stamped = workdir / "bf16" / target.name
        stamped.parent.mkdir(exist_ok=True)
        ov.save_model(ir, stamped, compress_to_fp16=False)
        return stamped

    return build


def nncf_transformer(model: nn.Module, task: Task, workdir: Path) -> Path:
    """NNCF's preset for BERT-like models, on the ov.Model (so SmoothQuant applies)."""
    return nncf_int8(model, task, workdir, transformer=True)


def nncf_transformer_smooth(model: nn.Module, task: Task, workdir: Path) -> Path:
    return nncf_int8(model, task, workdir, transformer=True, alpha=0.5)


# --- tflite ----------------------------------------------------------------------------------------------------


def _aeq(model: nn.Module, task: Task, workdir: Path, recipe_name: str, float_io: bool = False) -> Path:
    from ai_edge_quantizer import qtyping, quantizer, recipe

    from autocompress.compress.quantize_tflite import calibration_data, convert

    source = workdir / "float.tflite"
    convert(model, task.example_input, source)
    qt = quantizer.Quantizer(str(source), getattr(recipe, recipe_name)())
    if float_io:  # the model's inputs and outputs stay float32 (later entries of a recipe win)
        for io_op in (qtyping.TFLOperationName.INPUT, qtyping.TFLOperationName.OUTPUT):
            qt.update_quantization_recipe(".*", io_op, algorithm_key=quantizer.AlgorithmName.NO_QUANTIZE)
    result = None
    if qt.need_calibration:
        with contextlib.redirect_stderr(io.StringIO()):  # the calibrator's progress bar
            result = qt.calibrate(calibration_data(source, task.data.calibration))
    target = workdir / "model.tflite"
    with contextlib.redirect_stdout(io.StringIO()):  # a size summary
        qt.quantize(result).export_model(str(target), overwrite=True)
    return target


def aeq_dynamic_wi8(model: nn.Module, task: Task, workdir: Path) -> Path:
    return _aeq(model, task, workdir, "dynamic_wi8_afp32")


def aeq_static_wi8_ai8(model: nn.Module, task: Task, workdir: Path) -> Path:
    # The stock recipe also quantizes the model's input and output tensors (int8 I/O, as TFLite's full-integer
    # models have); the evaluator feeds and scores float32, like every other artifact, so they stay float here.
    return _aeq(model, task, workdir, "static_wi8_ai8", float_io=True)


# --- every runtime ---------------------------------------------------------------------------------------------


def uniform_prune_strategy(task: Task, profile: HardwareProfile, ratio: float, seed: int) -> Strategy:
    """Every prunable group at `ratio`, fp32, as the search's own uniform candidates (re-fitted where the space
    re-fits, else distilled for its largest step count with its fixed distillation settings)."""
    space = SearchSpace.for_task(task, profile)
    return space.strategy(space.uniform(ratio, "fp32", max(space.distill.distill_steps)), seed)


def pruned(ratio: float) -> Builder:
    def builder(task: Task, profile: HardwareProfile, workdir: Path, seed: int) -> Path:
        return build(task, uniform_prune_strategy(task, profile, ratio, seed), profile, workdir).path

    return builder


def pruned_then(quantizer: Quantizer, ratio: float = 0.5) -> Builder:
    """Uniform pruning (as `pruned`), then a runtime's one-click quantizer on the pruned model."""

    def builder(task: Task, profile: HardwareProfile, workdir: Path, seed: int) -> Path:
        strategy = uniform_prune_strategy(task, profile, ratio, seed)
        torch.manual_seed(seed)
        student = prune(
            task.model, task.example_input, strategy.prune, profile.channel_round_to, task.prune_hints, task.data.train
        )
        student = distill(student, task.model, task.data.train, strategy.distill, seed, task.distill_layers)
        return quantizer(student, task, workdir)

    return builder


def on_original(quantizer: Quantizer) -> Builder:
    def builder(task: Task, profile: HardwareProfile, workdir: Path, seed: int) -> Path:
        return quantizer(task.model, task, workdir)

    return builder


def is_transformer(task: Task) -> bool:
    """Linear layers on sequences (MatMul layers): the recipes for BERT-like models apply."""
    from autocompress.spaces.graph import quant_layers

    return any(layer.kind == "MatMul" for layer in quant_layers(task.model, task.example_input))


# runtime -> name -> (quantizer, for transformers only); the first of a runtime that applies is its best int8 recipe
RUNTIME_QUANTIZERS: dict[str, dict[str, tuple[Quantizer, bool]]] = {
    "onnxruntime": {
        "ort-dynamic-pc-rr": (ort_dynamic_recommended, True),
        "ort-dynamic-pc": (ort_dynamic_per_channel, True),
        "ort-static-u8s8": (ort_static_u8s8, False),
        "ort-static-pc-rr": (ort_static_recommended, False),
        "ort-dynamic-int8": (ort_dynamic_int8, False),
        "ort-static-int8": (ort_static_int8, False),
    },
    "openvino": {
        "nncf-transformer-sq": (nncf_transformer_smooth, True),
        "nncf-transformer": (nncf_transformer, True),
        "nncf-int8": (nncf_int8, False),
    },
    "tflite": {"aeq-static-wi8-ai8": (aeq_static_wi8_ai8, False), "aeq-dynamic-wi8": (aeq_dynamic_wi8, False)},
}
LABELS = {
    "ort-dynamic-int8": "onnxruntime quantize_dynamic, defaults",
    "ort-dynamic-pc-rr": "onnxruntime quantize_dynamic, per-channel, reduce_range (ORT's advice without VNNI)",
    "ort-dynamic-pc": "onnxruntime quantize_dynamic, per-channel (with VNNI, reduce_range is not needed)",
    "ort-static-int8": "onnxruntime quantize_static, defaults (QDQ, int8, MinMax), calibration split",
    "ort-static-u8s8": "onnxruntime quantize_static, uint8 activations, per-channel int8 weights (U8S8, ORT's x86-64 "
    "choice), reduce_range without VNNI, calibration split",
    "ort-static-pc-rr": "onnxruntime quantize_static, per-channel, reduce_range, calibration split",
    "nncf-int8": "nncf.quantize, defaults, calibration split",
    "nncf-transformer": "nncf.quantize(ov_model, model_type=TRANSFORMER), calibration split",
    "nncf-transformer-sq": "nncf.quantize(ov_model, TRANSFORMER, SmoothQuant matmul alpha 0.5), calibration split",
    "aeq-dynamic-wi8": "ai-edge-quantizer recipe dynamic_wi8_afp32",
    "aeq-static-wi8-ai8": "ai-edge-quantizer recipe static_wi8_ai8 (float32 model I/O), calibration split",
    "prune-30": "uniform structured pruning 30% (l2), fp32, distilled",
    "prune-50": "uniform structured pruning 50% (l2), fp32, distilled",
    "prune-50-int8": "uniform structured pruning 50% (l2), distilled, then the runtime's best int8 recipe",
}
LABELS |= {f"{name}-bf16": f"{LABELS[name]}; bf16 compute (OpenVINO's default on this CPU)"
           for name in RUNTIME_QUANTIZERS["openvino"]}  # fmt: skip


def one_click_methods(profile: HardwareProfile, task: Task) -> dict[str, Builder]:
    """The recipes of a device's runtime that apply to the model, then the pruning baselines (alone and chained
    with the runtime's best int8 recipe for the model).

    Each builds under this machine's compute slot, so it never runs while a measurement is being timed."""

    def guarded(builder: Builder) -> Builder:
        def run(task: Task, profile: HardwareProfile, workdir: Path, seed: int) -> Path:
            with compute_slot():
                return builder(task, profile, workdir, seed)

        return run

    transformer = is_transformer(task)
    quantizers = {
        name: quantizer
        for name, (quantizer, for_transformers) in RUNTIME_QUANTIZERS.get(profile.record.name, {}).items()
        if transformer or not for_transformers
    }
    if "bf16" in profile.record.runtime_precisions(profile):  # each recipe also as it runs by default here
        quantizers |= {f"{name}-bf16": under_bf16_compute(quantizer) for name, quantizer in quantizers.items()}
    methods: dict[str, Builder] = {name: guarded(on_original(q)) for name, q in quantizers.items()}
    methods |= {"prune-30": pruned(0.3), "prune-50": pruned(0.5)}
    if quantizers:
        methods["prune-50-int8"] = guarded(pruned_then(next(iter(quantizers.values()))))
    return methods
