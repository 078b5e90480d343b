"""The elastic stage's work: train the study's elastic model once (compress/elastic_store.py), with a progress
bar (or, off a terminal, a line each tenth), its own MLflow run with the loss curves, and the study attribute that
says which weights the trials extract from. Interrupted, it leaves a checkpoint the next invocation resumes; found
trained (another study, another device, an earlier invocation), it costs a load.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from autocompress.compress import elastic_store
from autocompress.compress.elastic_train import ElasticProgress

if TYPE_CHECKING:
    from autocompress.search.stage import SearchContext

log = logging.getLogger(__name__)
ELASTIC_ATTR = "elastic"
LOG_EVERY = 10  # steps between the loss points of the MLflow run


class _Reporter:
    """The per-step callback: the bar (or a log line each tenth of the run), and the MLflow curves."""

    def __init__(self, context: SearchContext, run_id: str | None) -> None:
        self.context, self.run_id = context, run_id
        self.tenth = -1
        terminal = context.console is not None and context.console.is_terminal
        columns = (SpinnerColumn(), TextColumn("[bold]elastic model"), BarColumn(), TimeElapsedColumn(),
                   TextColumn("{task.fields[status]}"))  # fmt: skip
        self.bar = Progress(*columns, console=context.console) if terminal else None
        self.task_id = self.bar.add_task("elastic", total=1.0, status="") if self.bar else None

    def __call__(self, progress: ElasticProgress) -> None:
        done = progress.elapsed_s / (progress.elapsed_s + progress.left_s) if progress.left_s else 1.0
        status = f"step {progress.step}  loss {progress.loss:.4f}  {progress.left_s / 60:.1f} min left"
        if self.bar is not None:
            self.bar.update(self.task_id, completed=done, status=status)  # type: ignore[arg-type]
        elif int(done * 10) > self.tenth:
            self.tenth = int(done * 10)
            log.warning("elastic model: %d%%, %s", 10 * self.tenth, status)
        if self.run_id is not None and progress.step % LOG_EVERY == 0:
            self.context.tracker.log_step(self.run_id, progress.step, {
                "loss": progress.loss, "largest_loss": progress.largest_loss,
                "smallest_loss": progress.smallest_loss, "level": float(progress.level)})  # fmt: skip


def train_once(context: SearchContext) -> dict[str, Any]:
    """Train (or resume, or find) the elastic model; what the study keeps about it."""
    settings = context.settings.elastic
    assert settings is not None
    key = elastic_store.key_of(context.task, settings)
    trained_before = elastic_store.is_trained(key)
    run_id = None
    if not trained_before:
        run_id = context.tracker.start_child("elastic-training", {"elastic_key": key})
        context.tracker.log(run_id, params={f"elastic.{k}": v for k, v in settings.model_dump().items()})
    reporter = _Reporter(context, run_id)
    started, status = time.monotonic(), "FAILED"
    try:
        if reporter.bar is not None:
            reporter.bar.start()
        run = elastic_store.train(context.task, settings, reporter)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        if reporter.bar is not None:
            reporter.bar.stop()
        if run_id is not None:
            context.tracker.end_trial(run_id, status)
    if run_id is not None:
        context.tracker.log(run_id, metrics={"steps": run.steps, "train_s": run.elapsed_s,
                                             "this_invocation_s": time.monotonic() - started})  # fmt: skip
        log.warning("elastic model %s trained: %d steps in %.0f s", key, run.steps, run.elapsed_s)
    else:
        log.warning("elastic model %s found trained (%d steps, %.0f s): not trained again", key, run.steps,
                    run.elapsed_s)  # fmt: skip
    return {"key": key, "steps": run.steps, "resumed_at": run.resumed_at, "train_s": run.elapsed_s,
            "trained_here": not trained_before}
