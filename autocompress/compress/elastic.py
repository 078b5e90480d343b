"""The elastic model: one set of weights that runs, and yields, every sub-network of an ElasticSpace.

Why (issue 27, "train once, search many"): a pruned candidate of a real model loses accuracy a trial's few hundred
distillation steps cannot recover; Once-for-all (Cai et al. 2020) and DynaBERT (Hou et al. 2020) instead train one
network whose every width is a prefix, and candidates are extracted, not trained. Three operations:

- `ElasticModel.build` reorders each channel group (network rewiring) so the most important channels, or heads,
  come first; the permutation is applied to every layer of the group at once, so the model computes the same
  function.
- `configured(config)` runs a sub-network with the suffix of each group zeroed where it is read: at the inputs of
  the conv/linear layers consuming the group (for heads, the attention output projection's slice of the head, i.e.
  its context; for an FFN, the intermediate after the activation). Every other layer of a group acts per channel,
  so this is exactly removing the channels, and one set of weights trains all widths.
- `extract(config)` prunes the same suffix physically with torch-pruning (explicit indices, the same group that
  gave the masks), so the extracted model has smaller layers and the masked model's outputs.

Batch norm trains on batch statistics (as Once-for-all): frozen running statistics were measured to wreck the model
(digits: one AdamW step at lr 1e-3 took the full network's loss from 0.01 to 46), since nothing absorbs the change
of scale that updating every weight at once makes. The running statistics the shared model ends with belong to no
sub-network, so `extract(config, calibration)` re-measures them for the one extracted (`recalibrate_batch_norm`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch_pruning as tp
from torch import nn

from autocompress.compress.distill import DistillSettings, distillation_loss, train_batch_norm
from autocompress.compress.elastic_space import IN_FNS, OUT_FNS, ElasticConfig, ElasticDim, ElasticSpace
from autocompress.compress.prune import SkippedBlock
from autocompress.spaces.graph import dependency_graph
from autocompress.spaces.sections import ElasticImportance
from autocompress.task import Batches, PruneHints

_Readers = list[tuple[nn.Module, torch.Tensor]]


class ElasticModel:
    """A reordered copy of a model with its space; `model` holds the shared weights (the original architecture)."""

    def __init__(
        self, model: nn.Module, example_input: torch.Tensor, space: ElasticSpace, hints: PruneHints | None = None
    ) -> None:
        self.model = model
        self.example_input = example_input
        self.space = space
        self.hints = hints
        self._graph = dependency_graph(model, example_input)
        self._readers: dict[tuple[str, int], _Readers] = {}
        self._active = False

    @classmethod
    def build(
        cls,
        model: nn.Module,
        example_input: torch.Tensor,
        space: ElasticSpace,
        hints: PruneHints | None = None,
        importance: ElasticImportance = "l2",
        data: Batches | None = None,
        batches: int = 4,
    ) -> ElasticModel:
        """A copy of `model`, each dimension reordered by importance (most important first). `taylor` ranks by
        |weight x gradient| of the task loss over `batches` train batches of `data`; `obs` by the order Optimal
        Brain Surgeon removes the channels a Linear layer reads (reconstruct.py, on the train batches of `data`)."""
        elastic = copy.deepcopy(model).eval()
        reorder(elastic, example_input, space, importance, data, batches)
        return cls(elastic, example_input, space, hints)

    @classmethod
    def from_state(
        cls,
        model: nn.Module,
        example_input: torch.Tensor,
        space: ElasticSpace,
        state: dict[str, torch.Tensor],
        hints: PruneHints | None = None,
    ) -> ElasticModel:
        """The elastic model from saved weights (the reordering is in them: same shapes as the original)."""
        elastic = copy.deepcopy(model).eval()
        elastic.load_state_dict(state)
        return cls(elastic, example_input, space, hints)

    def _group(self, dim: ElasticDim, graph: tp.DependencyGraph, model: nn.Module, idxs: Sequence[int]) -> tp.Group:
        root = model.get_submodule(dim.name)
        return graph.get_pruning_group(root, graph.get_pruner_of_module(root).prune_out_channels, list(idxs))

    def readers(self, dim: ElasticDim, width: int) -> _Readers:
        """The conv/linear layers reading the channels a width drops, with those input channels (their own
        indices: a flatten before a Linear expands one channel into many)."""
        key = (dim.name, width)
        if key not in self._readers:
            group = self._group(dim, self._graph, self.model, suffix(dim, width))
            self._readers[key] = [
                (item.dep.target.module, torch.tensor(sorted(item.idxs), dtype=torch.long))
                for item in group
                if item.dep.pruning_fn in IN_FNS
            ]
        return self._readers[key]

    def input_masks(self, config: ElasticConfig) -> dict[nn.Module, torch.Tensor]:
        """Per reading layer, 1 for each input channel kept and 0 for each dropped."""
        masks: dict[nn.Module, torch.Tensor] = {}
        for dim in self.space.dims:
            width = config.width(dim)
            if width >= dim.size:
                continue
            for module, idxs in self.readers(dim, width):
                channels = module.in_features if isinstance(module, nn.Linear) else module.in_channels
                masks.setdefault(module, torch.ones(channels))[idxs] = 0.0
        return masks

    @contextmanager
    def configured(self, config: ElasticConfig) -> Iterator[nn.Module]:
        """The shared model running as the sub-network `config` (dropped channels zeroed where they are read,
        skipped blocks passing their input on) until the context ends."""
        self.space.check(config)
        if self._active:
            raise RuntimeError("an elastic model runs one configuration at a time")
        hooks = [module.register_forward_pre_hook(_masking(mask)) for module, mask in self.input_masks(config).items()]
        swapped = []
        for block in config.skip:
            parent, _, child = block.rpartition(".")
            owner = self.model.get_submodule(parent)
            swapped.append((owner, child, owner.get_submodule(child)))
            owner.register_module(child, SkippedBlock())
        self._active = True
        try:
            yield self.model
        finally:
            self._active = False
            for owner, child, module in swapped:
                owner.register_module(child, module)
            for hook in hooks:
                hook.remove()

    def extract(self, config: ElasticConfig, calibration: Batches | None = None, batches: int = 8) -> nn.Module:
        """The sub-network as a model of its own, physically smaller (torch-pruning removes each dimension's
        suffix), in eval mode; the shared weights are not touched. With `calibration` (train batches), its batch
        norm statistics are re-measured over `batches` of them: what a trained elastic model needs."""
        self.space.check(config)
        if self._active:
            raise RuntimeError("extract outside `configured`: the copy would carry its masks")
        extracted = copy.deepcopy(self.model).eval()
        graph = dependency_graph(extracted, self.example_input)
        for dim in self.space.dims:
            width = config.width(dim)
            if width < dim.size:
                self._group(dim, graph, extracted, suffix(dim, width)).prune()
        if self.hints is not None and self.hints.after_prune is not None:
            self.hints.after_prune(extracted)
        for block in config.skip:
            parent, _, child = block.rpartition(".")
            extracted.get_submodule(parent).register_module(child, SkippedBlock())
        if calibration is not None:
            recalibrate_batch_norm(extracted, calibration, batches)
        return extracted.eval()

    def extraction_error(self, config: ElasticConfig, inputs: torch.Tensor | None = None) -> float:
        """Largest absolute difference between the masked and the extracted sub-network's outputs: ~0 unless the
        model reads a group's channels somewhere other than its conv/linear layers."""
        inputs = self.example_input if inputs is None else inputs
        self.model.eval()
        extracted = self.extract(config)  # torch-pruning traces with autograd: outside no_grad
        with torch.no_grad(), self.configured(config) as masked:
            expected = masked(inputs)
        with torch.no_grad():
            return float((extracted(inputs) - expected).abs().max())

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()


@torch.no_grad()
def recalibrate_batch_norm(model: nn.Module, data: Batches, batches: int = 8) -> None:
    """Re-measure every batch norm's running statistics as the plain average over `batches` batches (dropout off);
    the model is left in eval mode. Nothing to do without batch norm."""
    norms = [module for module in model.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average
    train_batch_norm(model)
    try:
        for index, (inputs, _labels) in enumerate(data):
            if index >= batches:
                break
            model(inputs)
    finally:
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum
        model.eval()


def suffix(dim: ElasticDim, width: int) -> list[int]:
    """The channel indices a width drops: everything after the first `width` units."""
    return list(range(width * dim.unit, dim.channels))


def _masking(mask: torch.Tensor):  # noqa: ANN202 (a forward pre-hook)
    def hook(module: nn.Module, inputs: tuple) -> tuple:
        first = inputs[0]
        if isinstance(module, nn.Linear):
            shaped = mask.to(first.dtype)
        else:  # conv: channels first, after the batch axis when there is one
            spatial = first.dim() - (2 if first.dim() == module.weight.dim() else 1)
            shaped = mask.to(first.dtype).view(-1, *([1] * spatial))
        return (first * shaped, *inputs[1:])

    return hook


def reorder(
    model: nn.Module,
    example_input: torch.Tensor,
    space: ElasticSpace,
    importance: ElasticImportance = "l2",
    data: Batches | None = None,
    batches: int = 4,
) -> None:
    """Permute, in place, each dimension's channels (heads: whole heads) into descending importance. Every score
    is taken before anything moves, so no dimension's ranking sees another half-permuted.

    `obs` suits a model distilled from itself, where `taylor` does not: the gradient of a loss to the model's own
    outputs is zero, so every Taylor score is too. OBS ranks by the output damage that removing channels does, a
    nested order (each channel removed after those before it), which is what a prefix of widths needs."""
    graph = dependency_graph(model, example_input)
    if importance == "taylor":
        _task_gradients(model, data, batches)
    scorer = _scorer(model, importance, data)
    orders = []
    for dim in space.dims:
        root = model.get_submodule(dim.name)
        full = graph.get_pruning_group(root, graph.get_pruner_of_module(root).prune_out_channels, range(dim.channels))
        scores = scorer(full)
        if scores is None:
            continue
        scores = scores.view(dim.size, dim.unit).sum(dim=1)  # heads: one score per head
        units = torch.argsort(-scores, stable=True)
        order = (units[:, None] * dim.unit + torch.arange(dim.unit)).reshape(-1)
        orders.append((root, dim.channels, order))
    if importance == "taylor":
        model.zero_grad(set_to_none=True)
    for root, channels, order in orders:
        group = graph.get_pruning_group(root, graph.get_pruner_of_module(root).prune_out_channels, range(channels))
        permute_group(group, order)


def _scorer(model: nn.Module, importance: ElasticImportance, data: Batches | None) -> tp.importance.Importance:
    if importance == "taylor":
        return tp.importance.GroupTaylorImportance()
    if importance == "obs":
        from autocompress.compress.reconstruct import ObsImportance

        if data is None:
            raise ValueError("obs importance needs training batches")
        return ObsImportance(model, model, data, skipped=False)
    return tp.importance.GroupMagnitudeImportance(p=1 if importance == "l1" else 2)


def _task_gradients(model: nn.Module, data: Batches | None, batches: int) -> None:
    """Gradients of the task loss (cross-entropy on integer labels, MSE on float targets) over a few batches."""
    if data is None:
        raise ValueError("taylor importance needs training batches")
    model.zero_grad(set_to_none=True)
    hard = DistillSettings(alpha=0.0, loss="mse")
    for index, (inputs, labels) in enumerate(data):
        if index >= batches:
            break
        outputs = model(inputs)
        distillation_loss(outputs, outputs.detach(), labels, hard).backward()


@torch.no_grad()
def permute_group(group: tp.Group, order: torch.Tensor) -> None:
    """Move the group's root channel order[i] to position i in every layer of the group (outputs of producers,
    inputs of readers, batch-norm parameters and statistics), keeping each layer's other channels in place."""
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order))
    done = set()
    for item in group:
        module = item.dep.target.module
        if not isinstance(module, nn.Module) or not any(True for _ in module.parameters(recurse=False)):
            continue
        if any(root is None for root in item.root_idxs):
            raise RuntimeError(f"torch-pruning lost the root indices of {module}: cannot reorder it")
        axis = 1 if item.dep.pruning_fn in IN_FNS else 0
        pairs = sorted(zip(item.root_idxs, item.idxs, strict=True), key=lambda pair: (int(rank[pair[0]]), pair[1]))
        positions = torch.tensor(sorted(local for _, local in pairs))
        source = torch.tensor([local for _, local in pairs])
        key = (id(module), axis, tuple(positions.tolist()))
        if key in done:
            continue
        done.add(key)
        if axis == 0 and not (item.dep.pruning_fn in OUT_FNS or isinstance(module, nn.modules.batchnorm._BatchNorm)):
            raise RuntimeError(f"cannot reorder {type(module).__name__} in a channel group")
        tensors = [module.weight] if axis == 1 else [getattr(module, name, None) for name in _PER_CHANNEL]
        for tensor in tensors:
            if tensor is not None:
                tensor.data.index_copy_(axis, positions, tensor.data.index_select(axis, source))


_PER_CHANNEL = ("weight", "bias", "running_mean", "running_var")
