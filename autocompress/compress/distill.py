"""Knowledge distillation: the pruned student learns from the original model's outputs (and hidden states)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from autocompress.spaces.strategy import DistillSettings
from autocompress.task import Batches


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
    """Mean over the matched layers of the MSE between student and teacher hidden states."""
    return torch.stack([F.mse_loss(s, t) for s, t in zip(student, teacher, strict=True)]).mean()


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
    student.train()
    optimizer = torch.optim.AdamW(student.parameters(), lr=settings.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings.steps)
    batches = itertools.chain.from_iterable(itertools.repeat(train))
    layers = hidden_layers if settings.hidden_weight > 0 else ()
    with _capture(teacher, layers) as teacher_hidden, _capture(student, layers) as student_hidden:
        for inputs, labels in itertools.islice(batches, settings.steps):
            teacher_hidden.clear()
            student_hidden.clear()
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
