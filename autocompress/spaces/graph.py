"""What in a model can vary: prunable channel groups (torch-pruning's dependency graph) and quantizable layers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch_pruning as tp
from torch import nn

if TYPE_CHECKING:
    from autocompress.task import PruneHints

PRUNABLE_TYPES = (nn.Conv2d, nn.Linear)
LAYER_TYPES = (nn.Conv1d, nn.Conv2d, nn.Linear)  # modules with weights whose precision a strategy chooses


@dataclass(frozen=True)
class PruneGroup:
    """Channels that must be removed together (e.g. every conv feeding one residual sum), named by its root."""

    name: str
    channels: int
    layers: tuple[str, ...]
    heads: int = 0  # > 0: an attention group, pruned by whole heads (ratio = heads removed / heads)


@dataclass(frozen=True)
class QuantLayer:
    """A layer whose precision the strategy chooses; `kind` is the ONNX op it exports to (a LayerKind)."""

    name: str
    kind: str


def _run_hooked(model: nn.Module, example_input: torch.Tensor, hooks: list) -> object:
    """Run the model once with the forward hooks that record what a function needs, then remove them."""
    try:
        with torch.no_grad():
            return model(example_input)
    finally:
        for hook in hooks:
            hook.remove()


def output_layers(model: nn.Module, example_input: torch.Tensor) -> list[nn.Module]:
    """Layers whose output is the model's output: pruning them would change what the model predicts."""
    produced: dict[int, nn.Module] = {}
    hooks = [
        module.register_forward_hook(lambda mod, _inp, out: produced.__setitem__(id(out), mod))
        for module in model.modules()
        if isinstance(module, PRUNABLE_TYPES)
    ]
    output = _run_hooked(model, example_input, hooks)
    outputs = output if isinstance(output, (tuple, list)) else [output]
    return [produced[id(out)] for out in outputs if id(out) in produced]


def dependency_graph(model: nn.Module, example_input: torch.Tensor) -> tp.DependencyGraph:
    return tp.DependencyGraph().build_dependency(model, example_inputs=example_input)


def fixed_width_layers(model: nn.Module, example_input: torch.Tensor, hints: PruneHints | None) -> list[nn.Module]:
    """Layers whose output channels must stay: the model's output layers and those the task names."""
    modules = dict(model.named_modules())
    kept = [modules[name] for name in (hints.keep_width if hints else ()) if name in modules]
    return output_layers(model, example_input) + kept


def prune_groups(model: nn.Module, example_input: torch.Tensor, hints: PruneHints | None = None) -> list[PruneGroup]:
    """Every coupled channel group whose root is a conv or linear layer, fixed-width layers excluded.

    A group holding a layer of `hints.num_heads` is an attention group: it is pruned by whole heads.
    """
    names = {module: name for name, module in model.named_modules()}
    num_heads = dict(hints.num_heads) if hints else {}
    graph = dependency_graph(model, example_input)
    groups = []
    ignored = fixed_width_layers(model, example_input, hints)
    for group in graph.get_all_groups(ignored_layers=ignored, root_module_types=list(PRUNABLE_TYPES)):
        root = group[0].dep.target.module
        members = sorted(
            {names[item.dep.target.module] for item in group if isinstance(item.dep.target.module, PRUNABLE_TYPES)}
        )
        heads = max((num_heads.get(member, 0) for member in members), default=0)
        groups.append(PruneGroup(name=names[root], channels=len(group[0].idxs), layers=tuple(members), heads=heads))
    return sorted(groups, key=lambda group: group.name)


def skippable_blocks(model: nn.Module, example_input: torch.Tensor) -> list[str]:
    """Blocks that can be skipped whole (depth pruning): an element of a Sequential or ModuleList (a repeated
    block) holding at least two weight layers, whose output has its input's shape, e.g. a residual block with an
    identity shortcut or a transformer layer. Skipped, it passes its input on; the metric says what that costs."""
    containers = (nn.Sequential, nn.ModuleList)
    members = {
        f"{parent}.{child}" if parent else child: module
        for parent, container in model.named_modules()
        if isinstance(container, containers)
        for child, module in container.named_children()
    }
    candidates = {
        name: module
        for name, module in members.items()
        if sum(isinstance(layer, LAYER_TYPES) for layer in module.modules()) >= 2
    }
    same_shape: set[str] = set()

    def record(name: str, inputs: tuple, output: object) -> None:
        first = inputs[0] if inputs else None
        if isinstance(first, torch.Tensor) and isinstance(output, torch.Tensor) and first.shape == output.shape:
            same_shape.add(name)

    hooks = [
        module.register_forward_hook(lambda _mod, inputs, output, name=name: record(name, inputs, output))
        for name, module in candidates.items()
    ]
    _run_hooked(model, example_input, hooks)
    found = sorted(same_shape)
    return [name for name in found if not any(name.startswith(f"{outer}.") for outer in found)]  # outermost only


def layer_names(model: nn.Module) -> list[str]:
    """Conv and Linear layers by module name, in module order."""
    return [name for name, module in model.named_modules() if isinstance(module, LAYER_TYPES)]


def quant_layers(model: nn.Module, example_input: torch.Tensor) -> list[QuantLayer]:
    """Conv and Linear layers with the ONNX op each exports to: Conv; Gemm for a Linear applied to 2-D inputs;
    MatMul for one applied to larger ones (every projection of a transformer). Found by running the model once."""
    kinds: dict[str, str] = {}
    names = {module: name for name, module in model.named_modules()}

    def record(module: nn.Module, inputs: tuple, _output: object) -> None:
        if isinstance(module, nn.Linear):
            kinds.setdefault(names[module], "Gemm" if inputs[0].dim() == 2 else "MatMul")
        else:
            kinds.setdefault(names[module], "Conv")

    hooks = [module.register_forward_hook(record) for module in model.modules() if isinstance(module, LAYER_TYPES)]
    _run_hooked(model, example_input, hooks)
    # a layer the example input never reaches keeps the kind its type suggests
    return [
        QuantLayer(name, kinds.get(name, "Gemm" if isinstance(module, nn.Linear) else "Conv"))
        for name, module in model.named_modules()
        if isinstance(module, LAYER_TYPES)
    ]
