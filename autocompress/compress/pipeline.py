"""Apply a Strategy end to end: prune -> distill (teacher = original) -> added steps -> export -> quantize per layer.
With an elastic model (the strategy's `elastic` section), "prune" is extracting the sub-network from it.

Pure with respect to its inputs: the same task, strategy and profile give the same artifact, which is
what lets `autocompress apply strategy.yaml` rebuild a search result without the study.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from autocompress.compress import elastic_store
from autocompress.compress.distill import DistillSettings, distill
from autocompress.compress.export import export_seconds
from autocompress.compress.prune import parameter_count, prune
from autocompress.compress.quantize import check_precisions
from autocompress.errors import ConfigError
from autocompress.hardware.locks import build_threads, compute_slot
from autocompress.hardware.profile import HardwareProfile
from autocompress.spaces.added import section_of
from autocompress.spaces.graph import quant_layers, skippable_blocks
from autocompress.spaces.strategy import Strategy
from autocompress.task import Task

log = logging.getLogger(__name__)
STAGE_SECONDS = ("prune_s", "distill_s", "export_s", "quantize_s")  # in every artifact's metadata


@dataclass(frozen=True)
class Artifact:
    """A built candidate on disk, in the device's runtime format."""

    path: Path
    format: str
    metadata: dict[str, int | float | str] = field(default_factory=dict)


def check_runtime(task: Task, profile: HardwareProfile) -> None:
    """Refuse, in one line, a device whose runtime the task cannot be exported to."""
    runtime = profile.record
    if task.runtimes is not None and runtime.name not in task.runtimes:
        raise ConfigError(
            f"task '{task.name}' cannot run on {runtime.name} (device '{profile.name}'): "
            f"it supports {', '.join(task.runtimes)}; pick a device with one of those runtimes"
        )
    varying = sorted(name for axis, (name, _, _) in task.dynamic_axes.items() if axis != 0)
    if varying and not runtime.dynamic_shapes:
        raise ConfigError(
            f"task '{task.name}' needs inputs whose {', '.join(varying)} varies, but {runtime.name} (device "
            f"'{profile.name}') runs static shapes only: pick a device whose runtime takes dynamic shapes"
        )


def check_strategy(task: Task, strategy: Strategy, profile: HardwareProfile) -> None:
    """Every layer's precision must be one the device builds for that layer's kind, and every skipped block one
    that passes its input's shape on (one line if not)."""
    check_precisions(strategy.quantize, quant_layers(task.model, task.example_input), profile)
    for module, raw in strategy.added.items():
        section_of(module, raw)  # importable, and its section valid
    if strategy.prune.skip:
        allowed = skippable_blocks(task.model, task.example_input)
        wrong = [block for block in strategy.prune.skip if block not in allowed]
        if wrong:
            raise ConfigError(
                f"strategy skips '{wrong[0]}', which is not a block that can be skipped in this model; "
                f"skippable: {', '.join(allowed) or 'none'}"
            )


def distillation(strategy: Strategy) -> DistillSettings:
    """What the build distils: nothing where nothing was pruned. The search never proposes that, but a strategy
    file may ask for it (one written before this rule, or by hand): an unpruned model has nothing to recover, as
    quantization comes after distillation, and fine-tuning it only drifts from the original."""
    if strategy.distill.steps and not strategy.prune.any:
        log.warning("the strategy distils %d steps but prunes nothing: built without distillation (an unpruned "
                    "model has nothing to recover; distilling it only drifts from the original)",
                    strategy.distill.steps)  # fmt: skip
        return DistillSettings()
    return strategy.distill


def build(task: Task, strategy: Strategy, profile: HardwareProfile, workdir: Path) -> Artifact:
    """Build the artifact a strategy describes for one device, under `workdir`; never while this machine times
    something (the machine's compute slot, hardware/locks.py)."""
    workdir.mkdir(parents=True, exist_ok=True)
    check_runtime(task, profile)
    check_strategy(task, strategy, profile)
    with compute_slot():
        torch.set_num_threads(build_threads())  # beside other workers on this machine, its share of the cores
        return _build(task, strategy, profile, workdir)


def _build(task: Task, strategy: Strategy, profile: HardwareProfile, workdir: Path) -> Artifact:
    """Each stage's seconds go into the metadata (`prune_s`, `distill_s`, `export_s`, `quantize_s`)."""
    torch.manual_seed(strategy.seed)
    started = time.perf_counter()
    if strategy.elastic is not None and strategy.prune.any:  # trained once for every candidate: extracted
        student = elastic_store.extract(task, strategy.elastic, strategy.prune)
    else:
        student = prune(
            task.model,
            task.example_input,
            strategy.prune,
            round_to=profile.channel_round_to,
            hints=task.prune_hints,
            data=task.data.train,
        )
    pruned = time.perf_counter()
    present = set(dict(student.named_modules()))
    hidden_layers = [name for name in task.distill_layers if name in present]
    student = distill(student, task.model, task.data.train, distillation(strategy), strategy.seed, hidden_layers)
    for module, raw in strategy.added.items():  # steps added from outside autocompress (counted in distill_s)
        step, settings = section_of(module, raw)
        student = step.apply(student, settings, task)
    distilled, exported_before = time.perf_counter(), export_seconds()
    # layers inside a skipped block are gone: their precision no longer applies
    quantize = strategy.quantize.model_copy(
        update={"precisions": {k: v for k, v in strategy.quantize.precisions.items() if not strategy.prune.skipped(k)}}
    )
    artifact_path = profile.record.builder(
        student, task.example_input, quantize, task.data.calibration, workdir, profile, task.dynamic_axes
    )
    export_s = export_seconds() - exported_before
    seconds = {
        "prune_s": pruned - started,
        "distill_s": distilled - pruned,
        "export_s": export_s,
        "quantize_s": time.perf_counter() - distilled - export_s,  # the runtime's builder beyond the export
    }
    return Artifact(
        path=artifact_path,
        format=profile.export_format,
        metadata={"parameters": parameter_count(student), "original_parameters": parameter_count(task.model),
                  "build_threads": torch.get_num_threads()} | seconds,  # fmt: skip
    )
