"""A sensitivity table as files a person reads: Markdown, CSV, JSON, and a plot of cost against saving."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from autocompress.search.sensitivity import Choice, Sensitivity


def markdown(table: Sensitivity, metric_name: str, bound: float, title: str) -> str:
    lines = [
        f"# Sensitivity: {title}",
        "",
        f"Each choice alone (no fine-tuning), measured on the device: {metric_name} of the artifact in the runtime "
        f"(baseline {table.baseline_metric:.4f}; the bound allows a drop of {bound:.4f}), and its speedup over the "
        f"baseline, all choices timed together with it in {table.rounds} interleaved rounds. "
        f"Measured in {table.seconds:.0f} s."
        + (
            f" {table.unmeasured} more choices were left out: the table's share of the time budget ran out first."
            if table.unmeasured
            else ""
        ),
        "",
        f"| unit | choice | {metric_name} | drop | speedup [95% CI] | latency saved | size MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in sorted(table.rows, key=lambda r: (r.kind, r.unit, str(r.value))):
        choice = Choice(row.kind, row.unit, row.value).label.split(": ", 1)[1]
        lines.append(
            f"| {row.unit} | {choice} | {row.metric:.4f} | {row.drop:+.4f} | {row.speedup:.3f}x "
            f"[{row.speedup_ci[0]:.3f}, {row.speedup_ci[1]:.3f}] | {row.saving:+.1%} | {row.size_bytes / 1e6:.2f} |"
        )
    return "\n".join(lines) + "\n"


def plot(table: Sensitivity, bound: float, path: Path, title: str) -> None:
    """Metric drop against latency saved, one point per choice: the solver wants the lower right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 6))
    for index, kind in enumerate(dict.fromkeys(row.kind for row in table.rows)):  # in the table's order
        rows = [row for row in table.rows if row.kind == kind]
        if rows:
            ax.scatter([r.saving * 100 for r in rows], [r.drop for r in rows], s=30, color=f"C{index}", label=kind)
            for row in rows:
                label = Choice(row.kind, row.unit, row.value).label
                ax.annotate(label, (row.saving * 100, row.drop), fontsize=6, alpha=0.8, xytext=(3, 2),
                            textcoords="offset points")  # fmt: skip
    ax.axhline(bound, color="grey", linestyle="--", linewidth=1, label=f"allowed drop {bound:.4f}")
    ax.axvline(0, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("latency saved, % of the baseline (paired; right is faster)")
    ax.set_ylabel("metric drop (lower is better)")
    ax.set_title(f"sensitivity: {title}", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(table: Sensitivity, out: Path, metric_name: str, bound: float, title: str) -> list[Path]:
    """sensitivity.{md,csv,json,png} under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"sensitivity.{suffix}" for suffix in ("md", "csv", "json", "png")]
    paths[0].write_text(markdown(table, metric_name, bound, title))
    with paths[1].open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["kind", "unit", "value", metric_name, "drop", "speedup", "ci_low", "ci_high", "size_bytes"])
        for row in table.rows:
            writer.writerow([row.kind, row.unit, row.value, row.metric, row.drop, row.speedup, *row.speedup_ci,
                             row.size_bytes])  # fmt: skip
    paths[2].write_text(json.dumps(table.as_dict(), indent=2))
    plot(table, bound, paths[3], title)
    return paths
