"""MiniLM: how far distillation on more text lifts re-fitted FFN pruning, on top of NNCF's TRANSFORMER preset.

Past the 0.99 bound, re-fitted pruning alone tops out at FFN 18.75% (experiments/minilm_refit.py). This asks
whether training recovers the rest: every sentence of every stdlib docstring (~9x the example's train split),
minus any that contains or is contained in a validation or calibration sentence, distilled with the search's own
`distill` (cosine to the teacher's embedding + the six hidden states), then the preset; fidelity in the runtime
on the validation sentences, speedups paired against fp32 in one window with the preset alone beside them.

    HF_HUB_OFFLINE=1 python -m experiments.minilm_distill --out O [--ratios 0.25 0.375] [--steps 2000]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
from pathlib import Path

import torch

from autocompress.compress.distill import DistillSettings, distill
from autocompress.compress.pipeline import build
from autocompress.compress.prune import PruneKnobs, prune
from autocompress.evaluators.measure import CONFIRM_POLICY, measure_artifact, time_together
from autocompress.examples import minilm
from autocompress.hardware import get_profile
from autocompress.spaces.strategy import Strategy
from autocompress.task import Task
from experiments.benchmark_methods import nncf_transformer

SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+")
BATCH_SIZE = 32


def docstring_sentences(excluded: set[str], min_chars: int = 20, max_chars: int = 300) -> list[str]:
    """Every mostly-alphabetic sentence of every stdlib docstring, none overlapping an excluded sentence."""
    found: set[str] = set()
    for docstring in minilm.stdlib_docstrings():
        for paragraph in docstring.split("\n\n"):
            for sentence in SENTENCE_BREAK.split(" ".join(paragraph.split())):
                letters = sum(char.isalpha() for char in sentence)
                if min_chars <= len(sentence) <= max_chars and letters > 0.6 * len(sentence):
                    found.add(sentence)
    return sorted(s for s in found if not any(e in s or s in e for e in excluded))


def train_batches(teacher: torch.nn.Module, sentences: list[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Equal-length batches (no padding, as the example's) in a fixed shuffled order, so lengths mix."""
    tokenizer = minilm.load_tokenizer()
    ids = [
        torch.tensor([tokenizer(s, truncation=True, max_length=minilm.TIMING_LENGTH)["input_ids"]]) for s in sentences
    ]
    batches = minilm._length_buckets(ids, minilm.embed(teacher, ids), BATCH_SIZE)
    random.Random(0).shuffle(batches)
    return batches


def torch_fidelity(model: torch.nn.Module, task: Task) -> float:
    """Mean cosine to the references in torch: what training moves, before int8 adds its own error."""
    with torch.no_grad():
        cosines = [torch.cosine_similarity(model(ids), ref, dim=-1).item() for ids, ref in task.data.validation]
    return sum(cosines) / len(cosines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.25, 0.375])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--hidden-weight", type=float, default=1.0)
    args = parser.parse_args()
    task, profile, work = minilm.load_task(), get_profile("openvino-cpu"), args.out / "artifacts"
    reference = minilm._reference(task.model)
    excluded = {*reference["validation"]["sentences"], *reference["calibration"]["sentences"]}  # type: ignore[misc]
    sentences = docstring_sentences(excluded)
    batches = train_batches(task.model, sentences)
    print(f"{len(sentences)} training sentences ({len(task.data.train)} batches in the example's split)", flush=True)
    settings = DistillSettings(steps=args.steps, loss="cosine", alpha=1.0, lr=args.lr, hidden_weight=args.hidden_weight)
    knobs = PruneKnobs.for_model(task.model, task.example_input, task.prune_hints, granularity="family")
    artifacts = {"fp32": build(task, Strategy(), profile, work / "fp32").path}
    artifacts["preset"] = nncf_transformer(task.model, task, work / "preset")
    rows: dict[str, dict[str, float]] = {"preset": {}}
    for ratio in args.ratios:
        torch.manual_seed(0)
        pruned = knobs.settings({unit: ratio for unit in knobs.ratio_units()}, {})
        student = prune(task.model, task.example_input, pruned, hints=task.prune_hints, data=task.data.train)
        before = torch_fidelity(student.eval(), task)
        artifacts[f"FFN {ratio:g}, re-fit"] = nncf_transformer(student, task, work / f"refit-{ratio:g}")
        started = time.perf_counter()
        distill(student, task.model, batches, settings, seed=0, hidden_layers=task.distill_layers)
        seconds = time.perf_counter() - started
        after = torch_fidelity(student, task)
        print(f"FFN {ratio:g}: torch fidelity {before:.4f} -> {after:.4f} in {seconds:.0f} s", flush=True)
        rows[f"FFN {ratio:g}, re-fit"] = {"torch_fidelity": before}
        rows[f"FFN {ratio:g}, re-fit + distilled"] = {"torch_fidelity": after, "distill_s": seconds}
        artifacts[f"FFN {ratio:g}, re-fit + distilled"] = nncf_transformer(student, task, work / f"kd-{ratio:g}")
    for name, path in list(artifacts.items())[1:]:
        measured = measure_artifact(path, task, profile)
        rows[name].update(fidelity=measured.metric, min_fidelity=measured.extras["min_fidelity"])
    timing = time_together(artifacts["fp32"], list(artifacts.values())[1:], task, profile, CONFIRM_POLICY)
    for name, speedup in zip(list(artifacts)[1:], timing.speedups[1:], strict=True):
        rows[name].update(speedup.as_dict() if speedup else {})
    preset = rows["preset"]["speedup"]
    lines = [
        "| artifact (+ preset) | torch fidelity | fidelity (min) | vs fp32 [95% CI] | vs the preset |",
        "|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        torch_cell = f"{row['torch_fidelity']:.4f}" if "torch_fidelity" in row else "-"
        measured = f"{row['fidelity']:.4f} ({row['min_fidelity']:.4f})"
        paired = f"{row['speedup']:.2f}x [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"
        lines.append(f"| {name} | {torch_cell} | {measured} | {paired} | {row['speedup'] / preset:.2f}x |")
    args.out.mkdir(parents=True, exist_ok=True)
    header = f"{len(sentences)} sentences, {args.steps} steps, lr {args.lr:g}, hidden weight {args.hidden_weight:g}\n\n"
    (args.out / "minilm-distill-openvino-cpu.md").write_text(header + "\n".join(lines) + "\n")
    record = {**vars(args), "out": str(args.out), "sentences": len(sentences), "rows": rows}
    (args.out / "minilm-distill-openvino-cpu.json").write_text(json.dumps(record, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
