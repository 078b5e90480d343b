"""One static HTML page per search to read in the morning: per study (model on one device) the Pareto plot, the
confirmed best, every trial with its outcome or failure reason, and the sensitivity table when there is one.

Static on purpose: the plot is inline SVG (matplotlib, which MLflow already brings), no JavaScript, no network,
so the page opens anywhere, from a mail attachment to MLflow's artifact viewer.
"""

from __future__ import annotations

import html
import io
from collections import Counter
from datetime import datetime
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from autocompress.search.candidates import SEEDED_ATTR
from autocompress.search.confirm import CONFIRMATION_ATTR
from autocompress.search.polish import POLISH_STEPS_ATTR, POLISHED_ATTR
from autocompress.search.results import BASELINE_ATTR, METRICS_ATTR, feasible_front
from autocompress.search.run_views import run_name
from autocompress.search.sensitivity import SENSITIVITY_ATTR, Choice, Sensitivity
from autocompress.spaces.strategy import Strategy

METRIC_NAME_ATTR = "metric_name"
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; } td.text { text-align: left; }
tr.front td { background: #eef7ee; } tr.fail td { background: #fbeeee; }
.summary { font-size: 1.05em; } figure { margin: 0; }
"""


def _esc(value: object) -> str:
    return html.escape(str(value))


def _label(trial: FrozenTrial) -> str:
    if "enqueued" in trial.user_attrs:
        return f"warm start: {trial.user_attrs['enqueued']}"
    if SEEDED_ATTR in trial.user_attrs:
        return f"seeded: {trial.user_attrs[SEEDED_ATTR]}"
    if POLISHED_ATTR in trial.user_attrs:
        return f"polished: trial {trial.user_attrs[POLISHED_ATTR]}, {trial.user_attrs.get(POLISH_STEPS_ATTR)} steps"
    return "sampled"


def _summary(trial: FrozenTrial) -> str:
    raw = trial.user_attrs.get("strategy")
    if raw is None:
        return f"t{trial.number}"
    try:
        return run_name(trial.number, Strategy.model_validate(raw))
    except ValueError:
        return f"t{trial.number}"


def pareto_svg(study: optuna.Study, metric_name: str) -> str:
    """Speedup against metric for every measured trial; the feasible front joined, the baseline marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [t for t in study.get_trials(deepcopy=False) if METRICS_ATTR in t.user_attrs]
    front = sorted(feasible_front(study), key=lambda t: t.user_attrs[METRICS_ATTR]["speedup"])
    fig, ax = plt.subplots(figsize=(8, 5))
    for feasible, colour, name in ((True, "tab:blue", "within the bound"), (False, "tab:gray", "outside the bound")):
        points = [
            t.user_attrs[METRICS_ATTR] for t in measured if bool(t.user_attrs[METRICS_ATTR]["feasible"]) is feasible
        ]
        ax.scatter([p["speedup"] for p in points], [p["metric"] for p in points], c=colour, label=name, s=24)
    if front:
        points = [t.user_attrs[METRICS_ATTR] for t in front]
        ax.plot([p["speedup"] for p in points], [p["metric"] for p in points], c="tab:green", marker="o",
                label="Pareto front")  # fmt: skip
    baseline = study.user_attrs.get(BASELINE_ATTR)
    if baseline:
        ax.scatter([1.0], [baseline["metric"]], c="black", marker="*", s=120, label="baseline (fp32)")
    ax.set_xlabel("speedup over the baseline (paired)")
    ax.set_ylabel(metric_name)
    ax.set_title(study.study_name)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(fig)
    svg = buffer.getvalue()
    return svg[svg.index("<svg") :]


def _best_section(study: optuna.Study) -> str:
    confirmation = study.user_attrs.get(CONFIRMATION_ATTR)
    if not confirmation or not confirmation.get("candidates"):
        return "<p>Not confirmed yet: the search has not finished, or no candidate stayed within the bound.</p>"
    rows = []
    for item in confirmation["candidates"]:
        beats = item["ci_low"] > 1.0
        test = "" if item.get("test_metric") is None else f"{item['test_metric']:.4f}"
        if item.get("test_within_bound") is False:
            test += " (past the bound)"
        validation = "" if item.get("metric") is None else f"{item['metric']:.4f}"
        rows.append(
            f"<tr><td>{item['trial']}</td><td class=text>{_esc(_summary(study.trials[item['trial']]))}</td>"
            f"<td>{item['speedup']:.3f}x [{item['ci_low']:.3f}, {item['ci_high']:.3f}]</td>"
            f"<td>{item['search_speedup']:.3f}x</td><td>{validation}</td><td>{_esc(test)}</td>"
            f"<td>{item['latency_ms']:.4f}</td><td>{item['baseline_latency_ms']:.4f}</td><td>{item['rounds']}</td>"
            f"<td>{'yes' if beats else 'no'}</td></tr>"
        )
    chosen = next((item for item in confirmation["candidates"] if item.get("final")), None)
    if chosen is None:
        head = "<p class=summary>No candidate beats the baseline beyond its interval and holds on the test split.</p>"
    else:
        final = chosen["final"]
        default, fp32_speedup = final["default"], final["fp32"]["speedup"]
        noisy = " <b>Noisy: not a headline figure; re-time it.</b>" if final["noisy"] else ""
        head = (
            f"<p class=summary>Exported: trial {chosen['trial']}, <b>{default['speedup']:.3f}x</b> "
            f"[{default['ci_low']:.3f}, {default['ci_high']:.3f}] over the runtime's default"
            f"{' (fp32 here)' if final['default_is_fp32'] else f', {fp32_speedup:.3f}x over fp32'} on "
            f"{_esc(confirmation['device'])}, from {final['windows']} fresh windows"
            f"{_left_out(final.get('left_out', 0))}, {final['threads']} threads; "
            f"test {chosen.get('test_metric') or float('nan'):.4f} (confirmed {_esc(confirmation['at'])}).{noisy}</p>"
        )
    return head + (
        "<table id=confirmed><tr><th>trial</th><th>strategy</th><th>selection-window speedup [95% CI]</th>"
        "<th>search-time speedup</th><th>validation</th><th>test</th><th>latency ms</th><th>baseline ms</th>"
        "<th>rounds</th><th>beats baseline</th></tr>" + "".join(rows) + "</table>"
    )


def _trial_rows(study: optuna.Study) -> str:
    front = {t.number for t in feasible_front(study)}
    rows = []
    for trial in study.get_trials(deepcopy=False):
        metrics: dict[str, Any] = trial.user_attrs.get(METRICS_ATTR, {})
        css = "front" if trial.number in front else ("fail" if trial.state == TrialState.FAIL else "")
        cells = [
            str(trial.number),
            f"<td class=text>{_esc(_summary(trial))}</td>",
            f"<td class=text>{_esc(_label(trial))}</td>",
            f"{metrics['metric']:.4f}" if metrics else "",
            f"{metrics['speedup']:.3f}x" if metrics else "",
            f"{metrics['latency_ms']:.4f}" if metrics else "",
            f"{metrics['size_bytes'] / 1e6:.3f}" if "size_bytes" in metrics else "",
            ("yes" if metrics.get("feasible") else "no") if metrics else "",
            trial.state.name,
            f"<td class=text>{_esc(trial.user_attrs.get('fail_reason', ''))}</td>",
        ]
        rows.append(
            f"<tr class='{css}'>"
            + "".join(cell if cell.startswith("<td") else f"<td>{cell}</td>" for cell in cells)
            + "</tr>"
        )
    return "".join(rows)


def _sensitivity_section(study: optuna.Study) -> str:
    raw = study.user_attrs.get(SENSITIVITY_ATTR)
    if raw is None:
        return ""
    table = Sensitivity.from_dict(raw)
    rows = "".join(
        f"<tr><td class=text>{_esc(row.unit)}</td><td class=text>"
        f"{_esc(Choice(row.kind, row.unit, row.value).label.split(': ', 1)[1])}</td><td>{row.metric:.4f}</td>"
        f"<td>{row.drop:+.4f}</td><td>{row.speedup:.3f}x</td><td>{row.saving:+.1%}</td></tr>"
        for row in sorted(table.rows, key=lambda r: (r.kind, r.unit, str(r.value)))
    )
    return (
        f"<h3>Sensitivity (each choice alone, {table.rounds} interleaved rounds, {table.seconds:.0f} s)</h3>"
        "<table class=sensitivity><tr><th>unit</th><th>choice</th><th>metric</th><th>drop</th><th>speedup</th>"
        f"<th>latency saved</th></tr>{rows}</table>"
    )


def study_section(study: optuna.Study, metric_name: str = "metric") -> str:
    metric_name = study.user_attrs.get(METRIC_NAME_ATTR, metric_name)
    states = Counter(t.state.name for t in study.get_trials(deepcopy=False))
    baseline = study.user_attrs.get(BASELINE_ATTR, {})
    device = study.user_attrs.get(CONFIRMATION_ATTR, {}).get("device", "")
    counts = ", ".join(f"{count} {state.lower()}" for state, count in sorted(states.items()))
    base = f"baseline {metric_name} {baseline['metric']:.4f}, {baseline['latency_ms']:.4f} ms; " if baseline else ""
    return (
        f"<section class=study data-study='{_esc(study.study_name)}'><h2>{_esc(study.study_name)}"
        f"{' on ' + _esc(device) if device else ''}</h2><p>{base}trials: {counts or 'none'}</p>"
        f"<figure class=pareto>{pareto_svg(study, metric_name)}</figure>"
        f"{_best_section(study)}<h3>Every trial</h3><table class=trials><tr><th>trial</th><th>strategy</th>"
        f"<th>origin</th><th>{_esc(metric_name)}</th><th>speedup</th><th>latency ms</th><th>size MB</th>"
        f"<th>within bound</th><th>state</th><th>failure reason</th></tr>{_trial_rows(study)}</table>"
        f"{_sensitivity_section(study)}</section>"
    )


def render(studies: list[optuna.Study], metric_name: str = "metric") -> str:
    title = "autocompress report: " + ", ".join(study.study_name for study in studies)
    body = "".join(study_section(study, metric_name) for study in studies)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{_esc(title)}</title><style>{STYLE}</style>"
        f"</head><body><h1>{_esc(title)}</h1><p>Written {datetime.now():%Y-%m-%d %H:%M}. Green rows: the Pareto "
        f"front within the bound; red rows: failed trials.</p>{body}</body></html>"
    )


def _left_out(windows: int) -> str:
    return f" ({windows} more timed, never in the undisturbed state)" if windows else ""
