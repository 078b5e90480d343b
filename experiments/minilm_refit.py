"""MiniLM: re-fitted pruning (obs + reconstruct) on top of a runtime's best int8 recipe, against the recipe alone.

Uniform FFN ratios and head counts, pruned with the search's own pruning (compress/reconstruct.py), then the
recipe (NNCF TRANSFORMER on openvino-cpu, ORT dynamic per-channel on cpu); fidelity measured in the runtime on
the validation sentences, speedups paired against fp32 in one interleaved window (the confirmation policy).

    HF_HUB_OFFLINE=1 python -m experiments.minilm_refit --device openvino-cpu --out /tmp/refit
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from autocompress.compress.pipeline import build
from autocompress.compress.prune import PruneKnobs, prune
from autocompress.evaluators.measure import CONFIRM_POLICY, measure_artifact, time_together
from autocompress.examples import minilm
from autocompress.hardware import get_profile
from autocompress.spaces.strategy import Strategy
from experiments.benchmark_methods import nncf_transformer, ort_dynamic_per_channel

PRUNINGS = ((0.125, 0), (0.1875, 0), (0.25, 0), (0.375, 0), (0.125, 1))  # (FFN ratio, heads removed per layer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="openvino-cpu", choices=("openvino-cpu", "cpu"))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    quantizer = nncf_transformer if args.device == "openvino-cpu" else ort_dynamic_per_channel
    profile, task, work = get_profile(args.device), minilm.load_task(), args.out / "artifacts"
    knobs = PruneKnobs.for_model(task.model, task.example_input, task.prune_hints, granularity="family")
    artifacts = {"fp32": build(task, Strategy(), profile, work / "fp32").path}
    artifacts["recipe"] = quantizer(task.model, task, work / "recipe")
    for ffn, heads in PRUNINGS:
        settings = knobs.settings({u: ffn for u in knobs.ratio_units()}, {u: heads for u in knobs.head_units()})
        torch.manual_seed(0)
        student = prune(task.model, task.example_input, settings, hints=task.prune_hints, data=task.data.train)
        artifacts[f"ffn {ffn:g} + {heads} heads"] = quantizer(student, task, work / f"ffn{ffn:g}-h{heads}")
    fidelity = {name: measure_artifact(path, task, profile) for name, path in artifacts.items()}
    timing = time_together(artifacts["fp32"], list(artifacts.values())[1:], task, profile, CONFIRM_POLICY)
    rows = []
    for (name, measured), speedup in zip(list(fidelity.items())[1:], timing.speedups[1:], strict=True):
        rows.append({"artifact": name, "fidelity": measured.metric, "min_fidelity": measured.extras["min_fidelity"],
                     **(speedup.as_dict() if speedup else {})})  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"minilm-refit-{args.device}.json").write_text(json.dumps(rows, indent=2))
    lines = ["| artifact | fidelity (min) | paired speedup over fp32 [95% CI] |", "|---|---|---|"]
    lines += [f"| {r['artifact']} | {r['fidelity']:.4f} ({r['min_fidelity']:.4f}) | {r['speedup']:.2f}x "
              f"[{r['ci_low']:.2f}, {r['ci_high']:.2f}] |" for r in rows]  # fmt: skip
    (args.out / f"minilm-refit-{args.device}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
