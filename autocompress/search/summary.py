"""The lines a search or an export ends with: both splits' metrics and the speedup over both baselines, with the
interval over windows, the threads and whether the figure is noisy."""

from __future__ import annotations

import optuna

from autocompress.search.confirm import Confirmed, winner
from autocompress.search.results import BASELINE_ATTR, METRICS_ATTR, fastest_feasible


def summary_lines(study: optuna.Study, confirmed: list[Confirmed], device: str, metric: str = "metric") -> list[str]:
    """What the user reads first; a noisy figure says so and is not offered as a headline."""
    estimate = fastest_feasible(study)
    if estimate is None:
        return ["no feasible compressed trial yet: run more trials or relax --max-drop"]
    best = winner(confirmed)
    if best is None:
        m = estimate.user_attrs[METRICS_ATTR]
        if not confirmed:
            note = "not confirmed (--confirm 0)"
        elif any(item.beats_baseline and item.test_within_bound is False for item in confirmed):
            note = "the candidates faster than the baseline drop past the bound on the held-out test split"
        else:
            note = "no candidate beats the baseline when re-timed"
        return [f"{device}: fastest feasible trial {estimate.number} at {m['speedup']:.2f}x in the search; {note}"]
    m = study.trials[best.trial].user_attrs[METRICS_ATTR]
    baseline = study.user_attrs[BASELINE_ATTR]
    validation = best.metric if best.metric is not None else m["metric"]
    lines = [f"{device}: best trial {best.trial}: {metric} validation {validation:.4f} (drop "
             f"{baseline['metric'] - validation:+.4f})" + _test(best, baseline)]  # fmt: skip
    final = best.final
    if final is None:
        lines.append(f"  speedup {best.speedup:.2f}x [{best.ci_low:.2f}, {best.ci_high:.2f}] over fp32 in one window "
                     f"({best.rounds} paired rounds); size {m['size_mb']:.2f} MB")  # fmt: skip
        return lines
    default = "the runtime's default (fp32 here)" if final.default_is_fp32 else "the runtime's default"
    spread = f"{final.windows} windows {final.gap_s:.0f} s apart" if final.windows > 1 else "1 window"
    if final.left_out:
        spread += f" ({final.left_out} more left out: never in the undisturbed state)"
    headline = (f"  speedup {final.default.speedup:.2f}x [{final.default.ci_low:.2f}, {final.default.ci_high:.2f}] "
                f"over {default}")  # fmt: skip
    if not final.default_is_fp32:
        headline += f"; {final.fp32.speedup:.2f}x [{final.fp32.ci_low:.2f}, {final.fp32.ci_high:.2f}] over fp32"
    lines.append(headline)
    lines.append(f"  ({final.latency_ms:.3f} vs {final.default_latency_ms:.3f} ms; {spread}, {final.threads} threads, "
                 f"{final.settled_share:.0%} of their rounds undisturbed; selection window {best.speedup:.2f}x, "
                 f"search estimate {best.search_speedup:.2f}x); size {m['size_mb']:.2f} MB")  # fmt: skip
    if final.noisy:
        lines.append("  NOISY: the machine was disturbed in most windows; this figure is not a headline: re-time it "
                     "with `autocompress export` on a quieter machine")  # fmt: skip
    return lines


def _test(best: Confirmed, baseline: dict) -> str:
    if best.test_metric is None:
        return ""
    verdict = "" if best.test_within_bound is None else (", within the bound" if best.test_within_bound else
                                                          ", PAST the bound")  # fmt: skip
    reference = baseline.get("test_metric")
    drop = f" (drop {best.test_drop:+.4f}{verdict})" if best.test_drop is not None and reference is not None else ""
    return f", test {best.test_metric:.4f}{drop}"
