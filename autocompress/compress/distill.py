"""Knowledge distillation: the pruned student learns from the original model's softened outputs."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from autocompress.spaces.strategy import DistillSettings
from autocompress.task import Batches


def distillation_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, settings: DistillSettings
) -> torch.Tensor:
    """alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * hard-label loss (Hinton et al.)."""
    temperature = settings.temperature
    soft = F.kl_div(
        F.log_softmax(student_logits / temperature, dim=-1),
        F.log_softmax(teacher_logits / temperature, dim=-1),
        log_target=True,
        reduction="batchmean",
    ) * (temperature**2)
    if labels.dtype in (torch.int64, torch.int32):
        hard = F.cross_entropy(student_logits, labels)
    else:
        hard = F.mse_loss(student_logits, labels)
    return settings.alpha * soft + (1.0 - settings.alpha) * hard


def distill(student: nn.Module, teacher: nn.Module, train: Batches, settings: DistillSettings, seed: int) -> nn.Module:
    """Fine-tune `student` in place for `settings.steps` batches (cycling the loader); returns it in eval mode."""
    if settings.steps == 0:
        return student.eval()
    torch.manual_seed(seed)
    teacher.eval()
    student.train()
    optimizer = torch.optim.AdamW(student.parameters(), lr=settings.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings.steps)
    batches = itertools.chain.from_iterable(itertools.repeat(train))
    for inputs, labels in itertools.islice(batches, settings.steps):
        with torch.no_grad():
            teacher_logits = teacher(inputs)
        loss = distillation_loss(student(inputs), teacher_logits, labels, settings)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    return student.eval()
