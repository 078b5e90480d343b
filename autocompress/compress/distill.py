"""Knowledge distillation: the compressed student learns from the original model's outputs (and hidden states).

Its knobs and the step (its settings, DistillSettings, are plain data in spaces/sections.py). It runs only where
something was pruned: an unpruned model (quantized or not) has nothing to recover before export, since
quantization comes after it, and fine-tuning it only drifts from the original (measured: MiniLM with nothing
pruned lost fidelity 1.0 -> 0.96 through distillation alone). Knobs (Optuna parameter names):
`distill/steps_after_pruning` (a candidate whose pruning re-fitting does not repair always gets some) or
`distill/steps` (0 included, for re-fitted candidates), and, when steps > 0, `distill/loss`, `distill/temperature`
(kl), `distill/alpha`, `distill/lr`, `distill/hidden_weight`.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from autocompress.compress.teacher import teacher_outputs
from autocompress.signals import raise_if_interrupted
from autocompress.spaces.knobs import Categorical, FloatRange, Knob, Term
from autocompress.spaces.sections import DistillLoss, DistillSettings
from autocompress.spaces.vocabulary import NonNegativeRange, PositiveRange, ShareRange
from autocompress.task import Batches

if TYPE_CHECKING:
    import optuna

    from autocompress.spaces.strategy import Strategy


@dataclass(frozen=True)
class DistillKnobs:
    """The distillation part of a search space; what it offers depends on what the other steps changed."""

    distill_steps: Annotated[tuple[Annotated[int, Field(ge=0)], ...], Field(min_length=1)] = (0, 25, 50, 100, 200, 400)
    temperature: PositiveRange = (1.0, 8.0)
    alpha: ShareRange = (0.0, 1.0)
    lr: PositiveRange = (1e-4, 1e-2)
    distill_losses: Annotated[tuple[DistillLoss, ...], Field(min_length=1)] = ("kl",)
    hidden_weight: NonNegativeRange | None = None  # searched when the task names layers to match
    finetune_after_pruning: bool = True

    @property
    def after_pruning(self) -> Categorical:
        """`distill/steps_after_pruning`: the steps of a candidate whose pruning re-fitting does not repair, which
        always gets some (`finetune_after_pruning`): pruning with no recovery is nearly always useless and would
        waste trials the sampler has to unlearn. Promotion and the depth step set it to the most."""
        return Categorical(name="distill/steps_after_pruning", choices=tuple(s for s in self.distill_steps if s > 0))

    @property
    def plain_steps(self) -> Categorical:
        """`distill/steps`: the steps of a pruned candidate that re-fitting repaired (0 included)."""
        return Categorical(name="distill/steps", choices=tuple(self.distill_steps), neutral=0)

    def steps_knob(self, recover: bool) -> Categorical:
        """The steps knob a pruned candidate is asked: after pruning when it needs recovery (and some are > 0)."""
        if recover and self.finetune_after_pruning and any(step > 0 for step in self.distill_steps):
            return self.after_pruning
        return self.plain_steps

    def steps_knobs(self) -> tuple[Categorical, Categorical]:
        return self.plain_steps, self.after_pruning

    def _loss(self) -> Categorical:
        return Categorical(name="distill/loss", choices=tuple(self.distill_losses))

    def _temperature(self) -> FloatRange:
        return FloatRange(name="distill/temperature", low=self.temperature[0], high=self.temperature[1])

    def _alpha(self) -> FloatRange:
        return FloatRange(name="distill/alpha", low=self.alpha[0], high=self.alpha[1])

    def _lr(self) -> FloatRange:
        return FloatRange(name="distill/lr", low=self.lr[0], high=self.lr[1], log=True)

    def _hidden_weight(self) -> FloatRange | None:
        if not self.hidden_weight:
            return None
        return FloatRange(name="distill/hidden_weight", low=self.hidden_weight[0], high=self.hidden_weight[1])

    def knobs(self) -> list[Knob]:
        hidden = self._hidden_weight()
        return [*self.steps_knobs(), self._loss(), self._temperature(), self._alpha(), self._lr(),
                *([hidden] if hidden else [])]  # fmt: skip

    def terms(self, strategy: Strategy) -> list[Term]:
        return []  # distillation is not credited in the additive estimate

    def suggest(self, trial: optuna.Trial, recover: bool, pruned: bool) -> DistillSettings:
        """`pruned`: something was pruned (else no knob: nothing to distil); `recover`: re-fitting does not
        repair it (skipped blocks, or pruning without re-fitting), so it always gets some steps."""
        if not pruned:
            return DistillSettings()
        steps = self.steps_knob(recover).suggest(trial)
        if steps == 0:
            return DistillSettings()
        loss = self._loss().suggest(trial)
        hidden = self._hidden_weight()
        return DistillSettings(
            steps=steps,
            loss=loss,
            temperature=self._temperature().suggest(trial) if loss == "kl" else 1.0,
            alpha=self._alpha().suggest(trial),
            lr=self._lr().suggest(trial),
            hidden_weight=hidden.suggest(trial) if hidden else 0.0,
        )

    def uniform(self, steps: int, recover: bool, pruned: bool) -> dict[str, Any]:
        """The fixed distillation of the hand-made candidates: teacher weight 0.7, T = 4, lr 1e-3 (within range);
        none where nothing was pruned."""
        if not pruned:
            return {}
        knob = self.steps_knob(recover)
        if steps == 0:
            return knob.param(0)
        loss = self.distill_losses[0]
        params = knob.param(steps) | self._loss().param(loss) | self._alpha().param(0.7)
        params |= self._lr().param(min(max(1e-3, self.lr[0]), self.lr[1]))
        if loss == "kl":
            params |= self._temperature().param(4.0)
        hidden = self._hidden_weight()
        if hidden:
            params |= hidden.param(hidden.low)
        return params


def _cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (1.0 - F.cosine_similarity(a, b, dim=-1)).mean()


def distillation_loss(
    student_out: torch.Tensor, teacher_out: torch.Tensor, labels: torch.Tensor, settings: DistillSettings
) -> torch.Tensor:
    """alpha * (loss to the teacher) + (1 - alpha) * (loss to the labels).

    kl: T^2 * KL(teacher_T || student_T) on softened logits (Hinton et al.), cross-entropy on integer labels;
    mse / cosine: distance between embeddings, the labels being target embeddings (float).
    """
    if settings.loss == "kl":
        soft = F.kl_div(
            F.log_softmax(student_out / settings.temperature, dim=-1),
            F.log_softmax(teacher_out / settings.temperature, dim=-1),
            log_target=True,
            reduction="batchmean",
        ) * (settings.temperature**2)
    elif settings.loss == "mse":
        soft = F.mse_loss(student_out, teacher_out)
    else:
        soft = _cosine_distance(student_out, teacher_out)
    if labels.dtype in (torch.int64, torch.int32):
        hard = F.cross_entropy(student_out, labels)
    elif settings.loss == "cosine":
        hard = _cosine_distance(student_out, labels)
    else:
        hard = F.mse_loss(student_out, labels)
    return settings.alpha * soft + (1.0 - settings.alpha) * hard


def hidden_state_loss(student: list[torch.Tensor], teacher: list[torch.Tensor]) -> torch.Tensor:
    """Mean over the matched layers of the MSE between student and teacher hidden states, each relative to the
    teacher's mean square: layers whose activations are large (a transformer's later layers) do not drown the
    others, and the weight means the same for any model."""
    terms = [
        F.mse_loss(s, t) / t.detach().pow(2).mean().clamp_min(1e-12) for s, t in zip(student, teacher, strict=True)
    ]
    return torch.stack(terms).mean()


@contextmanager
def _capture(model: nn.Module, names: Sequence[str]) -> Iterator[list[torch.Tensor]]:
    """Collect the outputs of the named modules (first element of tuple outputs) during forward passes."""
    outputs: list[torch.Tensor] = []
    modules = dict(model.named_modules())

    def keep(_module: nn.Module, _inputs: object, output: object) -> None:
        outputs.append(output[0] if isinstance(output, (tuple, list)) else output)  # type: ignore[arg-type]

    hooks = [modules[name].register_forward_hook(keep) for name in names if name in modules]
    try:
        yield outputs
    finally:
        for hook in hooks:
            hook.remove()


def _passes(train: Batches, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless passes over the train batches. A list is visited in a new seeded order each pass: tasks often
    build lists in a meaningful order (MiniLM's are sorted by sentence length), and a short distillation would
    otherwise see only its head (the shortest sentences). A loader keeps its own order (its shuffle, if any,
    draws from torch's RNG, seeded before this)."""
    if not isinstance(train, Sequence):
        yield from itertools.chain.from_iterable(itertools.repeat(train))
        return
    order, generator = list(range(len(train))), random.Random(seed)
    while order:
        generator.shuffle(order)
        yield from (train[index] for index in order)


def train_batch_norm(model: nn.Module) -> nn.Module:
    """Train mode for batch norm (batch statistics) only, eval mode for everything else: no dropout, the target
    being the teacher's exact function, not a regulariser. Not "train, then nn.Dropout modules eval": HF's BERT
    attention reads its own module's `training` for the dropout on attention probabilities (p = 0.1 in MiniLM),
    so that left it on, and even the full network missed its teacher (cosine distance 0.017 on the first step)."""
    model.eval()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.train()
    return model


def distill(
    student: nn.Module,
    teacher: nn.Module,
    train: Batches,
    settings: DistillSettings,
    seed: int,
    hidden_layers: Sequence[str] = (),
) -> nn.Module:
    """Fine-tune `student` in place for `settings.steps` batches (cycling the loader); returns it in eval mode.

    With `hidden_weight > 0`, the student also matches the teacher's outputs of `hidden_layers` (MSE), modules
    whose width pruning keeps (e.g. a transformer's residual stream): a far richer signal than the output alone.
    """
    if settings.steps == 0:
        return student.eval()
    torch.manual_seed(seed)
    teacher.eval()
    train_batch_norm(student)
    optimizer = torch.optim.AdamW(student.parameters(), lr=settings.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings.steps)
    batches = _passes(train, seed)
    layers = hidden_layers if settings.hidden_weight > 0 else ()
    remembered = None if layers else teacher_outputs(teacher)  # hidden states need the teacher's forward pass
    with _capture(teacher, layers) as teacher_hidden, _capture(student, layers) as student_hidden:
        for inputs, labels in itertools.islice(batches, settings.steps):
            raise_if_interrupted()
            teacher_hidden.clear()
            student_hidden.clear()
            if remembered is not None:
                teacher_out = remembered.outputs(inputs)
            else:
                with torch.no_grad():
                    teacher_out = teacher(inputs)
            loss = distillation_loss(student(inputs), teacher_out, labels, settings)
            if layers:
                loss = loss + settings.hidden_weight * hidden_state_loss(student_hidden, teacher_hidden)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    return student.eval()
