"""Where a study's elastic model lives, and how a candidate gets its sub-network from it.

Trained once (the search's elastic stage, search/elastic_stage.py) into the home, under a key of the base model,
the elastic space and the settings (compress/elastic_train.py: `elastic_key`), so a second search of the same
model, on another device or in another study, finds it trained; loaded once per process; a strategy whose
`elastic` section is set extracts its sub-network from it instead of pruning and distilling (compress/pipeline.py).

The width grid is one for every device (`ROUND_TO` channels): a training serves cpu, openvino-cpu and tflite-cpu
alike, and a profile's own `channel_round_to` divides it for every built-in profile.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from autocompress.compress.elastic import ElasticModel
from autocompress.compress.elastic_space import ElasticConfig, ElasticSpace
from autocompress.compress.elastic_train import ElasticProgress, ElasticRun, elastic_key, finished_state, train_elastic
from autocompress.errors import ConfigError
from autocompress.fingerprint import model_fingerprint
from autocompress.home import home
from autocompress.spaces.sections import ElasticSettings, PruneSettings
from autocompress.task import Task

log = logging.getLogger(__name__)
ROUND_TO = 8
_LOADED: dict[str, ElasticModel] = {}  # key -> the trained elastic model, in this process


def elastic_space(task: Task, settings: ElasticSettings) -> ElasticSpace:
    return ElasticSpace.from_model(task.model, task.example_input, task.prune_hints, settings.fractions,
                                   round_to=ROUND_TO, depth=settings.depth,
                                   head_fractions=settings.head_fractions)  # fmt: skip


def hidden_layers(task: Task, settings: ElasticSettings) -> tuple[str, ...]:
    return tuple(task.distill_layers) if settings.hidden_weight > 0 else ()


def key_of(task: Task, settings: ElasticSettings, space: ElasticSpace | None = None) -> str:
    space = elastic_space(task, settings) if space is None else space
    return elastic_key(model_fingerprint(task.model), space, settings, settings.seed, hidden_layers(task, settings))


def checkpoint_path(key: str) -> Path:
    return home() / "elastic" / f"{key}.pt"


Progress = Callable[[ElasticProgress], None]


def is_trained(key: str) -> bool:
    return finished_state(checkpoint_path(key), key) is not None


def train(task: Task, settings: ElasticSettings, callback: Progress | None = None) -> ElasticRun:
    """Train (or resume, or find trained) the task's elastic model; an interruption leaves a checkpoint the
    next call resumes from."""
    space = elastic_space(task, settings)
    if not space.dims and not space.blocks:
        raise ConfigError(f"model of task '{task.name}' has no channel group or block an elastic model can shrink: "
                          "search without the elastic model (no --elastic-budget, no search.elastic)")  # fmt: skip
    key = key_of(task, settings, space)
    if (state := finished_state(checkpoint_path(key), key)) is not None:
        _LOADED.setdefault(key, ElasticModel.from_state(task.model, task.example_input, space, state["model"],
                                                        task.prune_hints))  # fmt: skip
        return ElasticRun(key, state["step"], state["step"], state["elapsed_s"])
    elastic = ElasticModel.build(task.model, task.example_input, space, task.prune_hints, settings.importance,
                                 task.data.train)  # fmt: skip
    run = train_elastic(elastic, task.model, task.data.train, settings, settings.seed, callback, checkpoint_path(key),
                        hidden_layers=hidden_layers(task, settings))  # fmt: skip
    _LOADED[key] = elastic
    return run


# (model id, settings) -> the model (kept, so its id is never reused), its elastic space and key
_KEYED: dict[tuple[int, str], tuple[nn.Module, ElasticSpace, str]] = {}


def _space_and_key(task: Task, settings: ElasticSettings) -> tuple[ElasticSpace, str]:
    """Tracing the graph and hashing the weights once per model, not in every trial's extraction."""
    memo = (id(task.model), settings.model_dump_json())
    if memo not in _KEYED or _KEYED[memo][0] is not task.model:
        space = elastic_space(task, settings)
        _KEYED[memo] = (task.model, space, key_of(task, settings, space))
    _, space, key = _KEYED[memo]
    return space, key


def trained(task: Task, settings: ElasticSettings) -> ElasticModel:
    """The task's trained elastic model (loaded once per process); one line if it was never trained here."""
    space, key = _space_and_key(task, settings)
    if key not in _LOADED:
        state = finished_state(checkpoint_path(key), key)
        if state is None:
            raise ConfigError(
                f"the strategy extracts from elastic weights {key}, which {checkpoint_path(key).parent} does not "
                f"hold trained: copy the export's elastic.pt there as {key}.pt, or run the search that trains them"
            )
        _LOADED[key] = ElasticModel.from_state(task.model, task.example_input, space, state["model"], task.prune_hints)
    return _LOADED[key]


def config_for(space: ElasticSpace, prune: PruneSettings) -> ElasticConfig:
    """The sub-network a strategy's pruning names: each dimension at the trained width nearest what its ratio
    keeps; a skipped block must be one the elastic model trained skipping."""
    wrong = [block for block in prune.skip if block not in space.blocks]
    if wrong:
        raise ConfigError(f"strategy skips '{wrong[0]}', which the elastic model was not trained to skip; "
                          f"it skips {', '.join(space.blocks) or 'none'}")  # fmt: skip
    untrained = sorted(set(name for name, ratio in prune.ratios.items() if ratio > 0) - {d.name for d in space.dims})
    if untrained:
        raise ConfigError(f"strategy prunes '{untrained[0]}', which is not an elastic dimension of this model")
    widths = {dim.name: dim.nearest(1.0 - prune.ratios.get(dim.name, 0.0)) for dim in space.dims}
    return ElasticConfig(widths, tuple(sorted(prune.skip)))


def extract(task: Task, settings: ElasticSettings, prune: PruneSettings) -> nn.Module:
    """The candidate's sub-network, physically smaller, batch norm re-measured on train batches."""
    elastic = trained(task, settings)
    return elastic.extract(config_for(elastic.space, prune), task.data.train)


def save_weights(task: Task, settings: ElasticSettings, path: Path) -> None:
    """The trained weights alone (no optimizer), where an export ships them beside its strategy."""
    key = key_of(task, settings)
    state = finished_state(checkpoint_path(key), key)
    if state is None:
        raise ConfigError(f"elastic weights {key} are not trained in {checkpoint_path(key).parent}")
    torch.save({key_name: state[key_name] for key_name in ("key", "step", "elapsed_s", "model", "done")}, path)


def install_weights(path: Path) -> str:
    """Copy shipped elastic weights (export's elastic.pt) into the home, under their key."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    target = checkpoint_path(state["key"])
    if finished_state(target, state["key"]) is None:
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, target)
        log.info("elastic weights %s installed from %s", state["key"], path)
    return state["key"]
