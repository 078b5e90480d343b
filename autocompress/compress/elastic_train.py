"""Training the elastic model once per study: the sandwich rule with progressive shrinking, distilled from the
original, checkpointed so an interrupted study resumes where it stopped, and keyed so a study reuses it.

Why this recipe: every step trains the largest sub-network, the smallest allowed one and a few random ones on the
same batch, gradients summed (the sandwich rule of Yu & Huang's slimmable networks, used by Once-for-all): the two
ends bound every width in between, so all of them improve together. Progressive shrinking (Once-for-all, DynaBERT)
opens the narrower widths and the skipped blocks gradually over the first `shrink_fraction` of training, so the
shared weights are not pulled towards the smallest sub-network before the large ones have settled. The loss is the
project's distillation loss against the original model (distill.py), whatever the task's outputs are, plus, with
`hidden_weight > 0`, distill.py's hidden-state loss on the task's `distill_layers` (DynaBERT's width-adaptive
stage distils hidden states as well as outputs: an embedding alone is a thin signal for a 6-layer encoder); a
sub-network matches the layers it keeps (not those of its skipped blocks).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import pickle
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autocompress.compress.distill import (
    distillation_loss,
    hidden_state_loss,
    train_batch_norm,
)
from autocompress.compress.elastic import ElasticModel
from autocompress.compress.elastic_space import ElasticConfig, ElasticSpace
from autocompress.compress.teacher import teacher_outputs
from autocompress.errors import ConfigError
from autocompress.signals import raise_if_interrupted
from autocompress.spaces.sections import ElasticSettings
from autocompress.task import Batches

log = logging.getLogger(__name__)
ELASTIC_VERSION = 2  # bump when a change to reordering or training makes earlier elastic weights stale


@dataclass(frozen=True)
class ElasticProgress:
    """What the per-step callback hears: for a progress bar now, MLflow later."""

    step: int
    steps: int | None
    loss: float  # mean over the step's sub-networks
    largest_loss: float
    smallest_loss: float
    level: int  # progressive shrinking: widths open so far (space.levels when all are)
    elapsed_s: float
    left_s: float


@dataclass(frozen=True)
class ElasticRun:
    """What a call of train_elastic did: steps done in all (and where it resumed from), seconds in all, its key."""

    key: str
    steps: int
    resumed_at: int
    elapsed_s: float


def elastic_key(
    base_fingerprint: str, space: ElasticSpace, settings: ElasticSettings, seed: int, hidden_layers: Sequence[str] = ()
) -> str:
    """A stable key of trained elastic weights: the base model (fingerprint.model_fingerprint), the space, the
    training settings and seed, the layers whose hidden states are matched, and this module's version; 16 hex
    digits."""
    described = {"version": ELASTIC_VERSION, "base": base_fingerprint, "space": space.describe(),
                 "settings": settings.model_dump(mode="json"), "seed": seed,
                 "hidden_layers": list(hidden_layers)}  # fmt: skip
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:16]


class BatchStream:
    """Endless passes over the train batches, resumable at (pass, position): a list is visited in a seeded order
    per pass; a loader is re-iterated with torch's RNG as it was when that pass began (its shuffle draws from it),
    and fast-forwarded, so a resumed run sees the batches an uninterrupted one would."""

    def __init__(self, train: Batches, seed: int, state: dict[str, Any] | None = None) -> None:
        self.train, self.seed = train, seed
        self.epoch, self.position = (state["epoch"], state["position"]) if state else (0, 0)
        self.epoch_rng: torch.Tensor | None = state["epoch_rng"] if state else None
        self._batches: Any = None

    def state(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position, "epoch_rng": self.epoch_rng}

    def _open(self) -> None:
        if isinstance(self.train, Sequence):
            order = list(range(len(self.train)))
            random.Random(self.seed * 1_000_003 + self.epoch).shuffle(order)
            self._batches = iter(order[self.position :])
            return
        if self.epoch_rng is None:  # a new pass: remember the RNG its shuffle will draw from
            self.epoch_rng = torch.get_rng_state()
            self._batches = iter(self.train)
            return
        now = torch.get_rng_state()  # resumed mid-pass: replay the pass's draws, skip what was seen, carry on
        torch.set_rng_state(self.epoch_rng)
        self._batches = iter(self.train)
        for _ in range(self.position):
            next(self._batches, None)
        torch.set_rng_state(now)

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        for _ in range(2):
            if self._batches is None:
                self._open()
            batch = next(self._batches, None)
            if batch is not None:
                self.position += 1
                return self.train[batch] if isinstance(self.train, Sequence) else batch
            self._batches, self.epoch, self.position, self.epoch_rng = None, self.epoch + 1, 0, None
        raise ConfigError("elastic training: the train split yields no batches")


def shrink_level(progress: float, space: ElasticSpace, shrink_fraction: float) -> int:
    """Progressive shrinking: level 1 (the second-widest widths) from the start, every level once `progress`
    reaches `shrink_fraction`."""
    if space.levels == 0 or shrink_fraction == 0:
        return space.levels
    return min(space.levels, 1 + int(progress / shrink_fraction * space.levels))


def sandwich(space: ElasticSpace, level: int, rng: random.Random, random_configs: int) -> list[ElasticConfig]:
    """The step's sub-networks: the largest, the smallest allowed, and `random_configs` drawn among those allowed."""
    return [space.full(), space.smallest(level, rng), *(space.sample(rng, level) for _ in range(random_configs))]


def kept_layers(layers: Sequence[str], skip: Sequence[str]) -> list[str]:
    """The layers a sub-network still runs: those not in (nor inside) one of its skipped blocks."""
    return [name for name in layers if not any(name == block or name.startswith(f"{block}.") for block in skip)]


@contextmanager
def capture_outputs(model: nn.Module, names: Sequence[str]) -> Iterator[dict[str, torch.Tensor]]:
    """The outputs of the named modules (first element of tuple outputs), by name, during forward passes; by name
    rather than in call order, so a sub-network that runs fewer layers is paired with the right teacher layers."""
    outputs: dict[str, torch.Tensor] = {}

    def keeper(name: str) -> Callable[[nn.Module, object, object], None]:
        def keep(_module: nn.Module, _inputs: object, output: object) -> None:
            outputs[name] = output[0] if isinstance(output, (tuple, list)) else output  # type: ignore[assignment]

        return keep

    hooks = [model.get_submodule(name).register_forward_hook(keeper(name)) for name in names]
    try:
        yield outputs
    finally:
        for hook in hooks:
            hook.remove()


def learning_rate(settings: ElasticSettings, progress: float) -> float:
    """Linear warmup over the first `warmup` of the run's progress, then cosine decay to 0 at its end."""
    if progress < settings.warmup:
        return settings.lr * progress / settings.warmup
    rest = (progress - settings.warmup) / (1.0 - settings.warmup)
    return settings.lr * 0.5 * (1.0 + math.cos(math.pi * rest))


def _progress(step: int, elapsed: float, settings: ElasticSettings) -> float:
    by_steps = step / settings.steps if settings.steps else 0.0
    by_time = elapsed / settings.budget_s if settings.budget_s else 0.0
    return min(1.0, max(by_steps, by_time))


def _save(path: Path, state: dict[str, Any]) -> None:
    """Atomically: a run killed while writing leaves the previous checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.partial")
    torch.save(state, partial)
    os.replace(partial, path)


def _load(path: Path | None, key: str) -> dict[str, Any] | None:
    if path is None or not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as error:
        log.warning("elastic checkpoint %s is unreadable (%s): training from the start", path, error)
        return None
    if state.get("key") != key:
        log.warning("elastic checkpoint %s is of another model, space or settings: training from the start", path)
        return None
    return state


def finished_state(path: Path, key: str) -> dict[str, Any] | None:
    """The checkpoint at `path` if it holds the finished training of `key` (else None, quietly when absent)."""
    state = _load(path, key)
    return state if state is not None and state.get("done") else None


def train_elastic(
    elastic: ElasticModel,
    teacher: nn.Module,
    train: Batches,
    settings: ElasticSettings,
    seed: int = 0,
    callback: Callable[[ElasticProgress], None] | None = None,
    checkpoint: Path | None = None,
    checkpoint_every: int = 50,
    hidden_layers: Sequence[str] = (),
) -> ElasticRun:
    """Train `elastic.model` in place by distillation from `teacher` (the original, unreordered model), with the
    sandwich rule and progressive shrinking; leaves it in eval mode (extract sub-networks with calibration
    batches: its batch norm statistics fit none of them).

    With `checkpoint`, the model, optimizer, step, seconds, data position and RNG states are written there every
    `checkpoint_every` steps, at the end, and when training stops on an exception between steps (Ctrl-C, or a
    callback raising); a later call with the same key resumes, and one finding the training done returns at once.

    With `settings.hidden_weight > 0`, each sub-network also matches the teacher's outputs of `hidden_layers`
    (modules whose width no dimension changes, e.g. a transformer's layers: the residual stream) that it keeps;
    the teacher then runs on every step (once, for all the step's sub-networks).
    """
    from autocompress.fingerprint import model_fingerprint

    layers = tuple(hidden_layers) if settings.hidden_weight > 0 else ()
    key = elastic_key(model_fingerprint(teacher), elastic.space, settings, seed, layers)
    model, space = elastic.model, elastic.space
    train_batch_norm(model).requires_grad_(True)  # batch statistics, dropout off (see distill.py)
    teacher.eval()
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=1e-4)
    rng = random.Random(seed)
    state = _load(checkpoint, key)
    step, elapsed_before = 0, 0.0
    if state is None:
        torch.manual_seed(seed)
        stream = BatchStream(train, seed)
    else:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, elapsed_before = state["step"], state["elapsed_s"]
        rng.setstate(state["rng_configs"])
        stream = BatchStream(train, seed, state["stream"])
        if state["done"]:
            model.eval()
            return ElasticRun(key, step, step, elapsed_before)
        torch.set_rng_state(state["rng_torch"])
    resumed_at, started = step, time.perf_counter()
    remembered = teacher_outputs(teacher)
    distill = settings.distill

    def elapsed() -> float:
        return elapsed_before + time.perf_counter() - started

    def snapshot(done: bool, resume_point: dict[str, Any]) -> dict[str, Any]:
        return {"key": key, "step": step, "elapsed_s": elapsed(), "model": model.state_dict(), "done": done,
                "optimizer": optimizer.state_dict()} | resume_point  # fmt: skip

    def resume_point() -> dict[str, Any]:
        return {"stream": stream.state(), "rng_torch": torch.get_rng_state(), "rng_configs": rng.getstate()}

    point, consistent = resume_point(), True
    try:
        while _progress(step, elapsed(), settings) < 1.0:
            raise_if_interrupted()
            progress = _progress(step, elapsed(), settings)
            level = shrink_level(progress, space, settings.shrink_fraction)
            inputs, labels = next(stream)
            if layers:  # hidden states are not remembered: the teacher runs
                with torch.no_grad(), capture_outputs(teacher, layers) as teacher_hidden:
                    teacher_out = teacher(inputs)
            else:
                teacher_out, teacher_hidden = remembered.outputs(inputs), {}
            configs = sandwich(space, level, rng, settings.random_configs)
            optimizer.zero_grad(set_to_none=True)
            losses = []
            for config in configs:
                kept = kept_layers(layers, config.skip)
                with elastic.configured(config) as sub, capture_outputs(sub, kept) as hidden:
                    loss = distillation_loss(sub(inputs), teacher_out, labels, distill)
                    if kept:
                        matched = [teacher_hidden[name] for name in kept]
                        loss = loss + settings.hidden_weight * hidden_state_loss([hidden[n] for n in kept], matched)
                (loss / len(configs)).backward()
                losses.append(loss.item())
            for group in optimizer.param_groups:  # over the run's progress (steps or seconds)
                group["lr"] = learning_rate(settings, progress)
            consistent = False
            optimizer.step()
            step += 1
            point, consistent = resume_point(), True
            if checkpoint is not None and step % checkpoint_every == 0:
                _save(checkpoint, snapshot(False, point))
            if callback is not None:
                callback(_report(step, settings, losses, level, elapsed(), elapsed() - elapsed_before, resumed_at))
    except BaseException:
        if checkpoint is not None and consistent and step > resumed_at:
            _save(checkpoint, snapshot(False, point))
            log.info("elastic training stopped at step %d; checkpoint at %s", step, checkpoint)
        raise
    if checkpoint is not None:
        _save(checkpoint, snapshot(True, point))
    model.eval()
    return ElasticRun(key, step, resumed_at, elapsed())


def _report(
    step: int, settings: ElasticSettings, losses: list[float], level: int, elapsed: float, session: float, first: int
) -> ElasticProgress:
    """Seconds left: the budget's remainder, or the remaining steps at this session's pace (whichever is less)."""
    left = [settings.budget_s - elapsed] if settings.budget_s else []
    if settings.steps:
        left.append((settings.steps - step) * session / max(1, step - first))
    return ElasticProgress(step, settings.steps, sum(losses) / len(losses), losses[0], losses[1], level, elapsed,
                           max(0.0, min(left)))  # fmt: skip
