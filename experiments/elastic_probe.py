"""Digits: sub-networks extracted from one elastic model vs the same sub-networks built by today's trial path.

Issue 27 asks whether training once (an importance-ordered elastic network, sandwich rule, distilled from the
original; compress/elastic*.py) gives better candidates than pruning each one and distilling it alone. For each
uniform width (every channel group at the same keep fraction, no block skipped), this prints the validation
accuracy in torch of:
- `elastic`: extracted from the elastic model after `--budget-s` seconds of training (once, for all widths),
  batch norm recalibrated on 8 train batches;
- `ordered`: extracted from the elastic model before training (magnitude-ordered prefixes, batch norm
  recalibrated, no training);
- `today`: torch-pruning with l2 magnitude importance to the same widths, then the search's hand-made
  distillation (kl, T = 4, alpha 0.7, lr 1e-3) for `--distill-steps` steps (default: as many steps as the elastic
  training took, so each candidate sees as many batches as the elastic model did).

    python -m experiments.elastic_probe --budget-s 120 [--distill-steps N] [--fractions 1 0.75 0.5 0.25]
"""

from __future__ import annotations

import argparse
import logging
import time

import torch
from torch import nn

from autocompress.compress.distill import DistillSettings, distill
from autocompress.compress.elastic import ElasticModel
from autocompress.compress.elastic_space import ElasticConfig, ElasticSpace
from autocompress.compress.elastic_train import ElasticProgress, ElasticSettings, train_elastic
from autocompress.compress.prune import PruneSettings, parameter_count, prune
from autocompress.examples.digits import load_task
from autocompress.task import Batches


def accuracy(model: nn.Module, batches: Batches) -> float:
    model.eval()
    right = total = 0
    with torch.no_grad():
        for inputs, labels in batches:
            right += int((model(inputs).argmax(dim=-1) == labels).sum())
            total += len(labels)
    return right / total


def today(task, space: ElasticSpace, config: ElasticConfig, steps: int, seed: int) -> nn.Module:  # noqa: ANN001
    """The per-trial path: magnitude pruning to the configuration's widths, then distillation of this candidate."""
    ratios = {dim.name: 1.0 - config.width(dim) / dim.size for dim in space.dims}
    pruned = prune(task.model, task.example_input, PruneSettings(importance="l2", ratios=ratios, reconstruct=False))
    settings = DistillSettings(steps=steps, loss="kl", temperature=4.0, alpha=0.7, lr=1e-3)
    return distill(pruned, task.model, task.data.train, settings, seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-s", type=float, default=120.0)
    parser.add_argument("--distill-steps", type=int, default=None)
    parser.add_argument("--fractions", type=float, nargs="+", default=[1.0, 0.75, 0.5, 0.25])
    parser.add_argument("--random-configs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--no-depth", action="store_true", help="widths only: no block is skipped in training")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    task = load_task()
    validation = list(task.data.validation)
    print(f"original: accuracy {accuracy(task.model, validation):.4f}, {parameter_count(task.model)} parameters")

    space = ElasticSpace.from_model(task.model, task.example_input, depth=not args.no_depth)
    print(f"space: {len(space.dims)} channel groups, widths {[d.widths for d in space.dims][:2]}..., "
          f"depth-elastic blocks {list(space.blocks)}")  # fmt: skip
    elastic = ElasticModel.build(task.model, task.example_input, space)
    configs = {fraction: space.uniform(fraction) for fraction in args.fractions}
    train = task.data.train
    ordered = {fraction: accuracy(elastic.extract(config, train), validation) for fraction, config in configs.items()}

    def report(progress: ElasticProgress) -> None:
        if progress.step % 25 == 0:
            print(f"  step {progress.step}: loss {progress.loss:.3f} (largest {progress.largest_loss:.3f}, smallest "
                  f"{progress.smallest_loss:.3f}), level {progress.level}, {progress.left_s:.0f} s left")  # fmt: skip

    settings = ElasticSettings(budget_s=args.budget_s, lr=args.lr, random_configs=args.random_configs)
    run = train_elastic(elastic, task.model, task.data.train, settings, seed=args.seed, callback=report)
    print(f"elastic training: {run.steps} steps in {run.elapsed_s:.0f} s ({run.elapsed_s / run.steps:.2f} s/step, "
          f"{2 + args.random_configs} sub-networks each)")  # fmt: skip
    steps = args.distill_steps or run.steps

    print(f"\n{'keep':>5} {'params':>8} {'ordered':>8} {'elastic':>8} {'today':>8} {'today_s':>8} {'check':>6}")
    for fraction, config in configs.items():
        extracted = elastic.extract(config, train)
        started = time.perf_counter()
        baseline = today(task, space, config, steps if fraction < 1 else 0, args.seed)
        seconds = time.perf_counter() - started
        same = "ok" if parameter_count(baseline) == parameter_count(extracted) else "differ"
        print(f"{fraction:>5.2f} {parameter_count(extracted):>8} {ordered[fraction]:>8.4f} "
              f"{accuracy(extracted, validation):>8.4f} {accuracy(baseline, validation):>8.4f} {seconds:>8.1f} "
              f"{same:>6}")  # fmt: skip
    smallest = space.smallest()
    print(f"smallest (every group at its narrowest, blocks {list(smallest.skip)} skipped): "
          f"{parameter_count(elastic.extract(smallest))} parameters, accuracy "
          f"{accuracy(elastic.extract(smallest, train), validation):.4f}")  # fmt: skip
    print(f"(validation: {sum(len(labels) for _, labels in validation)} images)")


if __name__ == "__main__":
    main()
