"""Where MiniLM's speedup tops out on this machine, and why: per-operator time of fp32 and of each runtime's best
documented int8 recipe, and paired speedups, at the example's timing input (1 x 64 tokens).

    python -m experiments.minilm_ceiling [--home H] [--out experiments/results]

- ONNX Runtime (cpu profile): fp32 against `quantize_dynamic(per_channel=True, reduce_range=True)`, per op type
  from ORT's own profiler.
- OpenVINO (openvino-cpu profile): fp32 IR against `nncf.quantize(ov_model, model_type=TRANSFORMER)` (with and
  without SmoothQuant), per layer type and kernel from OpenVINO's PERF_COUNT.

From the profiles: the Linear layers' share of fp32 time, how much faster int8 runs them, the bound if they took
no time at all (Amdahl), and how much of their work pruning would have to remove for the issue's targets. Every
profile and every timing runs under this machine's timing lock; speedups are autocompress's paired,
interleaved measurement (undisturbed rounds, 95% interval).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from autocompress.hardware.locks import compute_slot, timing_lock

TARGETS = {"cpu": 2.75, "openvino-cpu": 3.2}  # issue 10's MiniLM targets over fp32 (1.25x its one-click table)
PAST_ONE_CLICK = 1.25  # ... and what they stand for: 1.25x the best one-click recipe measured on this machine
PROFILED_CALLS = 200
CHUNK = 20


def _interleaved(calls: dict[str, Callable[[], None]]) -> None:
    """Profiled calls in alternating chunks, so that the machine's drift (10-30% here) hits every model alike."""
    for _ in range(PROFILED_CALLS // CHUNK):
        for call in calls.values():
            for _ in range(CHUNK):
                call()


def _ort_profiles(paths: dict[str, Path], inputs: np.ndarray, threads: int, workdir: Path) -> dict[str, Counter]:
    """Microseconds per call by op type, from ONNX Runtime's profiler."""
    import onnxruntime as ort

    sessions = {}
    for name, path in paths.items():
        options = ort.SessionOptions()
        options.enable_profiling, options.intra_op_num_threads = True, threads
        options.profile_file_prefix = str(workdir / f"profile-{name}")
        sessions[name] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {next(iter(sessions.values())).get_inputs()[0].name: inputs}
    _interleaved({name: (lambda s=session: s.run(None, feed)) for name, session in sessions.items()})
    profiles = {}
    for name, session in sessions.items():
        profiles[name] = Counter()
        for event in json.loads(Path(session.end_profiling()).read_text()):
            if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
                profiles[name][event["args"]["op_name"]] += event["dur"] / PROFILED_CALLS
    return profiles


def _ov_profiles(compiled: dict, inputs: np.ndarray) -> dict[str, Counter]:
    """Microseconds per call by (layer type, kernel), from OpenVINO's PERF_COUNT."""
    requests = {name: model.create_infer_request() for name, model in compiled.items()}
    profiles: dict[str, Counter] = {name: Counter() for name in compiled}

    def call(name: str) -> None:
        requests[name].infer([inputs])
        for layer in requests[name].profiling_info:
            kind = f"{layer.node_type} [{layer.exec_type}]"
            profiles[name][kind] += layer.real_time.total_seconds() * 1e6 / PROFILED_CALLS

    _interleaved({name: (lambda n=name: call(n)) for name in compiled})
    return profiles


def _target(device: str, paired: dict[str, dict]) -> float:
    """The issue's figure, or 1.25x the best documented recipe measured here if that is higher (a CPU with VNNI
    makes int8 faster than on the machine the issue's table came from)."""
    best = max((p["speedup"] for p in paired.values()), default=1.0)
    return round(max(TARGETS[device], PAST_ONE_CLICK * best), 2)


def _linear_us(profile: Counter, names: tuple[str, ...]) -> float:
    return sum(us for kind, us in profile.items() if kind.split(" [")[0] in names)


def _bounds(fp32: Counter, int8: Counter, fp32_linear: tuple[str, ...], int8_linear: tuple[str, ...], target: float):
    """Amdahl on the profiles: what the Linear layers cost, what int8 saves on them, what is left to prune."""
    total, linear = sum(fp32.values()), _linear_us(fp32, fp32_linear)
    rest = total - linear
    int8_linear_us = _linear_us(int8, int8_linear)
    faster = linear / int8_linear_us if int8_linear_us else float("inf")
    best_linear = min(linear, int8_linear_us) if int8_linear_us else linear  # the faster of fp32 and int8 per call
    needed = total / target - rest  # Linear time per call that would reach the target
    return {
        "fp32_us": round(total, 1),
        "int8_profile_speedup": round(total / sum(int8.values()), 2),  # a cross-check of the paired figure
        "linear_share": round(linear / total, 3),
        "int8_linear_speedup": round(faster, 2),
        "bound_if_linears_were_free": round(total / rest, 2),
        "target": target,
        # None: not even Linear layers that took no time would reach the target
        "linear_work_to_remove_for_target": round(max(0.0, 1 - needed / best_linear), 3) if needed > 0 else None,
    }


def _paired(calls: dict[str, Callable[[], object]]) -> dict[str, dict]:
    from autocompress.evaluators.device.latency import TimingPolicy, measure_interleaved

    names = list(calls)
    result = measure_interleaved([calls[name] for name in names], TimingPolicy(time_cap_s=20.0, min_rounds=20))
    paired = {}
    for name, stats in zip(names[1:], result.speedups[1:], strict=True):
        assert stats is not None
        paired[name] = {"speedup": round(stats.speedup, 3), "ci": [round(stats.ci_low, 3), round(stats.ci_high, 3)],
                        "rounds": stats.rounds, "settled_share": round(stats.settled_share, 2)}  # fmt: skip
    return paired


def onnxruntime_part(task, workdir: Path, threads: int) -> dict:
    import onnxruntime as ort

    from experiments.benchmark_methods import export_float_onnx, ort_dynamic_recommended

    with compute_slot():
        fp32 = export_float_onnx(task.model, task, workdir / "fp32.onnx")
        (workdir / "int8").mkdir(exist_ok=True)
        int8 = ort_dynamic_recommended(task.model, task, workdir / "int8")
    inputs = task.example_input.numpy()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    sessions = {name: ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                for name, path in {"fp32": fp32, "ort-dynamic-pc-rr": int8}.items()}  # fmt: skip
    feed = {sessions["fp32"].get_inputs()[0].name: inputs}
    with timing_lock():
        profiles = _ort_profiles({"fp32": fp32, "int8": int8}, inputs, threads, workdir)
        paired = _paired({name: (lambda s=session: s.run(None, feed)) for name, session in sessions.items()})
    # fp32 Linear layers run as MatMul (attention's two products are FusedMatMul / a small MatMul: counted in
    # both); int8 ones as DynamicQuantizeMatMul / MatMulIntegerToFloat
    bounds = _bounds(profiles["fp32"], profiles["int8"], ("MatMul",),
                     ("DynamicQuantizeMatMul", "MatMulIntegerToFloat", "MatMul"), _target("cpu", paired))  # fmt: skip
    return {"paired": paired, "bounds": bounds, "profiles": {k: dict(v.most_common(8)) for k, v in profiles.items()}}


def openvino_part(task, workdir: Path, threads: int) -> dict:
    import openvino as ov

    from experiments.benchmark_methods import export_float_onnx, nncf_transformer, nncf_transformer_smooth

    with compute_slot():
        float_model = ov.convert_model(str(export_float_onnx(task.model, task, workdir / "ov-float.onnx")))
        ov.save_model(float_model, workdir / "fp32.xml", compress_to_fp16=False)
        paths = {"fp32": workdir / "fp32.xml"}
        quantizers = {"nncf-transformer": nncf_transformer, "nncf-transformer-sq": nncf_transformer_smooth}
        for name, quantizer in quantizers.items():
            (workdir / name).mkdir(exist_ok=True)
            paths[name] = quantizer(task.model, task, workdir / name)
    core = ov.Core()
    settings = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
    profiled = {name: core.compile_model(str(paths[source]), "CPU", settings | {"PERF_COUNT": "YES"})
                for name, source in (("fp32", "fp32"), ("int8", "nncf-transformer"))}  # fmt: skip
    compiled = {name: core.compile_model(str(path), "CPU", settings) for name, path in paths.items()}
    inputs = task.example_input.numpy()
    requests = {name: model.create_infer_request() for name, model in compiled.items()}
    with timing_lock():
        profiles = _ov_profiles(profiled, inputs)
        paired = _paired({name: (lambda r=request: r.infer([inputs])) for name, request in requests.items()})
    linear = ("FullyConnected", "FullyConnectedQuantizedLegacy")
    bounds = _bounds(profiles["fp32"], profiles["int8"], linear, linear, _target("openvino-cpu", paired))
    return {"paired": paired, "bounds": bounds, "profiles": {k: dict(v.most_common(8)) for k, v in profiles.items()}}


def markdown(results: dict) -> str:
    lines = [
        f"# MiniLM: the measured ceiling on this machine ({', '.join(results['machine'].get('isa', []))})",
        "",
        f"- machine: {results['machine']}",
        f"- command: `{results['command']}`",
        f"- timing input 1 x 64 tokens; {results['threads']} threads",
        "",
    ]
    for device, part in results["devices"].items():
        bounds = part["bounds"]
        lines += [
            f"## {device}",
            "",
            "| artifact | paired speedup over fp32 [95% CI] | settled rounds |",
            "|---|---|---|",
        ]
        lines += [f"| {name} | {p['speedup']:.2f}x [{p['ci'][0]:.2f}, {p['ci'][1]:.2f}] | {p['rounds']} "
                  f"({p['settled_share']:.0%}) |" for name, p in part["paired"].items()]  # fmt: skip
        remove = bounds["linear_work_to_remove_for_target"]
        lines += ["", f"- fp32: {bounds['fp32_us'] / 1000:.2f} ms of operator time per call; the Linear layers are "
                  f"{bounds['linear_share']:.0%} of it.",
                  f"- int8 runs the Linear layers {bounds['int8_linear_speedup']:.2f}x as fast as fp32 "
                  f"(the whole profile: {bounds['int8_profile_speedup']:.2f}x).",
                  f"- If the Linear layers took no time at all: {bounds['bound_if_linears_were_free']:.2f}x.",
                  f"- For the target {bounds['target']}x (the issue's, or {PAST_ONE_CLICK}x the best recipe above if "
                  "higher), pruning would have to remove "
                  + (f"{remove:.0%} of the Linear layers' work (on top of the faster of int8 and fp32)."
                     if remove is not None else "more than all of the Linear layers' work: out of reach."),
                  "", "Operator time per call (µs), top 8:", ""]  # fmt: skip
        for name, profile in part["profiles"].items():
            lines.append(f"- {name}: " + ", ".join(f"{kind} {us:.0f}" for kind, us in profile.items()))
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=None, help="AUTOCOMPRESS_HOME (the example's cache)")
    parser.add_argument("--out", type=Path, default=Path("experiments/results"))
    parser.add_argument("--workdir", type=Path, default=None, help="for the artifacts (default: a temporary folder)")
    args = parser.parse_args(argv)
    if args.home is not None:
        os.environ["AUTOCOMPRESS_HOME"] = str(args.home.resolve())
    from autocompress.config import ExperimentConfig
    from autocompress.hardware.availability import usable_profile
    from autocompress.runtimes.onnxruntime_options import has_vnni
    from autocompress.tasks import load_task
    from experiments.machine import machine_info

    task = load_task(ExperimentConfig(example="minilm", device="cpu"))
    threads = usable_profile("cpu").threads
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="minilm-ceiling-"))
    devices = {}
    for device, part in {"cpu": onnxruntime_part, "openvino-cpu": openvino_part}.items():
        (workdir / device).mkdir(parents=True, exist_ok=True)
        devices[device] = part(task, workdir / device, threads)
    results = {"machine": machine_info(), "threads": threads, "devices": devices,
               "command": "python -m experiments.minilm_ceiling " + " ".join(argv or sys.argv[1:])}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    name = "minilm-ceiling-" + ("vnni" if has_vnni() else "no-vnni")  # int8's speed depends on it: keep both
    (args.out / f"{name}.json").write_text(json.dumps(results, indent=2))
    (args.out / f"{name}.md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
