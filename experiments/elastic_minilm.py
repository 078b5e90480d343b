"""MiniLM: sub-networks extracted from one elastic model (issue 27) vs today's per-candidate prune + distill.

Issue 27 asks whether one elastic MiniLM, distilled once per study, gives sub-networks that keep fidelity >= 0.99
where today's trials (prune, then a few hundred distillation steps) cannot. The space: each layer's FFN keeps
1, 0.875, 0.75 or 0.5 of its 1,536 channels, each layer's attention 12, 11 or 10 heads (the search allows at most
2 of 12 heads and 25% of the FFN); no depth. The elastic model is reordered (l2, taylor or obs, all compared at
FFN 75% before training), then trained for `--budget-s` seconds on the example's train split (sandwich: largest,
smallest, `--random-configs` random; progressive shrinking) with the distillation MiniLM's trials use: cosine to
the teacher's embedding + `--hidden-weight` x the six layers' hidden states.

For each configuration (full; FFN 87.5%, 75%, 50%; FFN 75% + one head fewer per layer) it prints the validation
fidelity (mean cosine to the fp32 model's embeddings, 300 sentences; worst sentence after the slash) of:
- `ordered`: the reordered prefix, before training;
- `elastic`: extracted after training, in torch, and `ort` the same exported (project's export) in ONNX Runtime fp32
  (for the `--ort` configurations: fp32 ORT gave the torch numbers to 4 digits);
- `+refit`: the extracted sub-network with the layers reading pruned channels re-fitted to the original's outputs
  (reconstruct.py, least squares, the candidate-level step today's `obs` pruning ends with: about a minute, no
  training; for the `--refit` configurations).
Then, for FFN 75%, today's path: torch-pruning (l2; obs + re-fit, the search's importance for MiniLM), then
`distill` for `--today-steps` steps with the same loss and lr (no warmup: distill.py has none).

    HF_HUB_OFFLINE=1 nice -n 10 python -m experiments.elastic_minilm --budget-s 540 [--lr 5e-5] [--threads 1]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from autocompress.compress.distill import DistillSettings, distill
from autocompress.compress.elastic import ElasticImportance, ElasticModel
from autocompress.compress.elastic_space import ElasticConfig, ElasticSpace
from autocompress.compress.elastic_train import ElasticProgress, ElasticSettings, train_elastic
from autocompress.compress.export import export_onnx
from autocompress.compress.prune import PruneSettings, parameter_count, prune
from autocompress.compress.reconstruct import reconstruct
from autocompress.examples import minilm
from autocompress.task import Task

FFN_FRACTIONS = (1.0, 0.875, 0.75, 0.5)
HEAD_FRACTIONS = (1.0, 11 / 12, 10 / 12)


def machine() -> str:
    """CPU model, the vector extensions that matter for int8/fp32 GEMMs, cores, load, torch threads."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    wanted = [flag for flag in flags if flag in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    threads = f"torch {torch.__version__} with {torch.get_num_threads()} thread(s)"
    return (f"{model}, flags {' '.join(wanted) or 'none of avx2/avx512/vnni'}, {os.cpu_count()} cores, load "
            f"{load:.1f}, {threads}, Python {platform.python_version()}")  # fmt: skip


class Validation:
    """The validation sentences and their fp32 references: fidelity in torch and in ONNX Runtime."""

    def __init__(self, task: Task) -> None:
        self.ids = [ids for ids, _ in task.data.validation]
        self.references = torch.cat([reference for _, reference in task.data.validation])
        self.task = task

    def _score(self, embeddings: torch.Tensor) -> str:
        cosines = F.cosine_similarity(embeddings.double(), self.references.double(), dim=-1)
        return f"{float(cosines.mean()):.4f}/{float(cosines.min()):.3f}"

    def torch(self, model: nn.Module) -> str:
        return self._score(minilm.embed(model.eval(), self.ids))

    def onnxruntime(self, model: nn.Module, threads: int) -> str:
        import onnxruntime as ort

        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "model.onnx"
            export_onnx(model.eval(), self.task.example_input, path, self.task.dynamic_axes)
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            rows = [session.run(None, {"input": ids.numpy()})[0] for ids in self.ids]
        return self._score(torch.from_numpy(np.concatenate(rows)))


def configurations(space: ElasticSpace) -> dict[str, ElasticConfig]:
    def ffn(fraction: float, heads: int = 12) -> ElasticConfig:
        return ElasticConfig({dim.name: dim.nearest(fraction) if dim.kind == "channels" else heads
                              for dim in space.dims})  # fmt: skip

    return {"full": space.full(), "FFN 87.5%": ffn(0.875), "FFN 75%": ffn(0.75), "FFN 50%": ffn(0.5),
            "FFN 75% + 11 heads": ffn(0.75, 11)}  # fmt: skip


def today(
    task: Task, importance: str, steps: int, settings: DistillSettings, validation: Validation
) -> tuple[str, str]:
    """A trial's candidate at FFN 75%: torch-pruning (obs: least-damage channels, re-fitted), then `distill`;
    its fidelity before and after distillation."""
    space = ElasticSpace.from_model(task.model, task.example_input, task.prune_hints, (1.0, 0.75), depth=False)
    ratios = {dim.name: 0.25 for dim in space.dims if dim.kind == "channels"}
    pruned = prune(task.model, task.example_input, PruneSettings(importance=importance, ratios=ratios,
                   reconstruct=importance == "obs"), hints=task.prune_hints, data=task.data.train)  # fmt: skip
    before = validation.torch(pruned)
    steps_settings = settings.model_copy(update={"steps": steps})
    distill(pruned, task.model, task.data.train, steps_settings, seed=0, hidden_layers=task.distill_layers)
    return before, validation.torch(pruned)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-s", type=float, default=900.0)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--warmup", type=float, default=0.1, help="share of the budget the lr warms up over")
    parser.add_argument("--hidden-weight", type=float, default=1.0)
    parser.add_argument("--random-configs", type=int, default=2)
    parser.add_argument("--shrink-fraction", type=float, default=0.5)
    parser.add_argument("--importance", choices=["l2", "taylor", "obs"], default="obs")
    parser.add_argument("--compare", nargs="*", default=["l2", "taylor"], help="other orders scored at FFN 75%%")
    parser.add_argument("--ort", nargs="*", default=["FFN 75%"], help="configurations also scored in ORT fp32")
    parser.add_argument("--refit", nargs="*", default=["FFN 75%"], help="configurations also re-fitted")
    parser.add_argument("--today-steps", type=int, default=100, help="MiniLM's space: 50 or 100 after pruning")
    parser.add_argument("--no-today", action="store_true")
    parser.add_argument("--checkpoint", type=Path, default=None, help="resumable; a finished one is reused")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"machine: {machine()}\ncommand: {' '.join(sys.argv)} (commit {commit})", flush=True)
    task = minilm.load_task()
    validation = Validation(task)
    space = ElasticSpace.from_model(task.model, task.example_input, task.prune_hints, fractions=FFN_FRACTIONS,
                                    head_fractions=HEAD_FRACTIONS, depth=False)  # fmt: skip
    configs = configurations(space)
    print(f"space: {len(space.dims)} dims (FFN widths {space.dims[1].widths}, heads {space.dims[0].widths}); train "
          f"split {len(task.data.train)} batches of <= {minilm.TRAIN_BATCH_SIZE} sentences", flush=True)  # fmt: skip

    for other in args.compare:
        ordered = ElasticModel.build(task.model, task.example_input, space, task.prune_hints, importance=other,
                                     data=task.data.train)  # fmt: skip
        print(f"order {other}: FFN 75% {validation.torch(ordered.extract(configs['FFN 75%']))}", flush=True)
    started = time.perf_counter()
    importance: ElasticImportance = args.importance
    elastic = ElasticModel.build(task.model, task.example_input, space, task.prune_hints, importance=importance,
                                 data=task.data.train)  # fmt: skip
    print(f"order {importance}: built in {time.perf_counter() - started:.0f} s", flush=True)
    ordered = {name: validation.torch(elastic.extract(config)) for name, config in configs.items()}
    print(f"order {importance}: FFN 75% {ordered['FFN 75%']}", flush=True)

    def report(progress: ElasticProgress) -> None:
        if progress.step % 50 == 0:
            print(f"  step {progress.step}: loss {progress.loss:.4f} (largest {progress.largest_loss:.4f}, "
                  f"smallest {progress.smallest_loss:.4f}), level {progress.level}, {progress.elapsed_s:.0f} s",
                  flush=True)  # fmt: skip

    settings = ElasticSettings(budget_s=args.budget_s, lr=args.lr, loss="cosine", alpha=1.0,
                               hidden_weight=args.hidden_weight, random_configs=args.random_configs,
                               shrink_fraction=args.shrink_fraction, warmup=args.warmup,
                               importance=importance)  # fmt: skip
    run = train_elastic(elastic, task.model, task.data.train, settings, seed=args.seed, callback=report,
                        checkpoint=args.checkpoint, hidden_layers=task.distill_layers)  # fmt: skip
    print(f"elastic training: {run.steps} steps in {run.elapsed_s:.0f} s ({run.elapsed_s / max(1, run.steps):.2f} "
          f"s/step, {2 + args.random_configs} sub-networks of {minilm.TRAIN_BATCH_SIZE} sentences each), lr "
          f"{args.lr:g} (warmup {args.warmup:g}), hidden weight {args.hidden_weight:g}", flush=True)  # fmt: skip

    print(f"\n{'configuration':<20} {'params':>9} {'ordered':>13} {'elastic':>13} {'ort':>13} {'+refit':>13} "
          f"{'refit_s':>7}")  # fmt: skip
    for name, config in configs.items():
        extracted = elastic.extract(config)
        in_ort = validation.onnxruntime(extracted, args.threads) if name in args.ort else "-"
        started, refitted = time.perf_counter(), "-"
        if name in args.refit and name != "full":
            refitted = validation.torch(reconstruct(elastic.extract(config), task.model, task.data.train))
        seconds = time.perf_counter() - started
        print(f"{name:<20} {parameter_count(extracted):>9} {ordered[name]:>13} {validation.torch(extracted):>13} "
              f"{in_ort:>13} {refitted:>13} {seconds:>7.0f}", flush=True)  # fmt: skip
    print(f"(original: {parameter_count(task.model)} parameters; fidelity mean/min over "
          f"{len(validation.ids)} validation sentences)")  # fmt: skip
    if args.no_today:
        return
    distilling = DistillSettings(loss="cosine", alpha=1.0, lr=args.lr, hidden_weight=args.hidden_weight)
    print(f"\ntoday, FFN 75% (distill: cosine + {args.hidden_weight:g} x hidden states, lr {args.lr:g}):")
    for prune_by in ("l2", "obs"):
        started = time.perf_counter()
        before, after = today(task, prune_by, args.today_steps, distilling, validation)
        seconds = time.perf_counter() - started
        label = f"{prune_by}{' + re-fit' if prune_by == 'obs' else ''}"
        print(f"  {label:<14} {before} -> {after} after {args.today_steps} steps ({seconds:.0f} s in all)", flush=True)


if __name__ == "__main__":
    main()
