"""MiniLM FFN 25% (OBS + re-fit): does a trial's 100-step distillation lower fidelity for want of a warmup?

    HF_HUB_OFFLINE=1 python -m experiments.minilm_distill_warmup

Prunes once, then distils copies for 100 steps (the most a MiniLM trial takes) at two learning rates, with the
schedule distill.py uses (cosine, no warmup) and with a linear warmup over 10% or 30% of the steps; fidelity in
torch on the validation sentences. Result: experiments/results/elastic-minilm.md.
"""

from __future__ import annotations

import copy
import math
import time

import torch

import autocompress.compress.distill as distill_module
from autocompress.compress.distill import DistillSettings, distill
from autocompress.compress.prune import PruneKnobs, prune
from autocompress.examples import minilm
from experiments.minilm_distill import torch_fidelity


def warm(share: float):
    """A linear warmup over `share` of the steps, then cosine decay: in place of distill.py's cosine."""

    def make(optimizer, T_max):
        warmup = max(1, int(share * T_max))
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: (
                (step + 1) / warmup
                if step < warmup
                else 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, T_max - warmup)))
            ),
        )

    return make


def main() -> None:
    torch.set_num_threads(2)
    task = minilm.load_task()
    knobs = PruneKnobs.for_model(task.model, task.example_input, task.prune_hints, granularity="family")
    settings = knobs.settings({u: 0.25 for u in knobs.ratio_units()}, {u: 0 for u in knobs.head_units()})
    settings = settings.model_copy(update={"importance": "obs", "reconstruct": True})
    torch.manual_seed(0)
    start = time.time()
    pruned = prune(task.model, task.example_input, settings, hints=task.prune_hints, data=task.data.train)
    print(
        f"pruned FFN 25% obs+refit in {time.time() - start:.0f} s: fidelity {torch_fidelity(pruned, task):.4f}",
        flush=True,
    )
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR
    for lr in (5e-5, 2e-4):
        for share in (0.0, 0.1, 0.3):
            distill_module.torch.optim.lr_scheduler.CosineAnnealingLR = cosine if share == 0 else warm(share)
            student = copy.deepcopy(pruned)
            start = time.time()
            distill(
                student,
                task.model,
                task.data.train,
                DistillSettings(steps=100, loss="cosine", alpha=1.0, lr=lr, hidden_weight=1.0),
                seed=0,
                hidden_layers=task.distill_layers,
            )
            took = time.time() - start
            print(
                f"lr {lr:g} warmup {share:.0%}: fidelity {torch_fidelity(student, task):.4f} ({took:.0f} s)",
                flush=True,
            )
    torch.optim.lr_scheduler.CosineAnnealingLR = cosine


if __name__ == "__main__":
    main()
