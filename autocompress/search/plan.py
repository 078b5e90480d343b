"""A search, as a declared sequence of stages (what a stage is: search/stage.py). The order, in one place:

    set-up claim -> baseline -> elastic model -> sensitivity table -> warm starts and seeds -> sampled trials ->
    promotion -> depth refinement -> polish -> confirmation -> export

The set-up claim runs the set-up of the stages marked once per study (the baseline's measurement, the table, the
warm starts and seeds) in whichever worker claims it; then every worker runs each stage. Promotion and depth
refinement act between trials (the trial loop calls them after each trial). Each stage says what it needs from
the context, what it adds, and under which study attribute its result is cached. A new stage is a class here and
one entry in SEARCH (README's "How it works" lists the same names in the same order; a test checks it).
"""

from __future__ import annotations

import logging
import time

from autocompress.search.baseline import measure_baseline, name_objectives
from autocompress.search.candidates import STARTUP_ATTR, first_candidates, sensitivity_table, worker_sampler
from autocompress.search.claim import SETUP_DONE_ATTR, once_per_study
from autocompress.search.confirm import CONFIRMATION_ATTR, confirm
from autocompress.search.elastic_stage import ELASTIC_ATTR, train_once
from autocompress.search.export import NoImprovement, export_best
from autocompress.search.housekeeping import KeepArtifacts
from autocompress.search.morning_report import METRIC_NAME_ATTR
from autocompress.search.polish import polish
from autocompress.search.refine import REFINED_ATTR, PromoteProbes, SkipFromIncumbent
from autocompress.search.registry import register_and_say
from autocompress.search.results import BASELINE_ATTR, allowed_drop, objective_names
from autocompress.search.sensitivity import SENSITIVITY_ATTR
from autocompress.search.stage import BaseStage, Callback, SearchContext, Stage, run_stages
from autocompress.search.trial_lines import TrialLines
from autocompress.search.trials import all_failed, run_trials

log = logging.getLogger(__name__)


class SetUpClaim(BaseStage):
    """Runs the once-per-study stages' set-up in one worker (an atomic claim in the storage); the others wait."""

    name = "set-up claim"
    adds = ("setup",)
    cache_key = SETUP_DONE_ATTR

    def run(self, context: SearchContext) -> None:
        def set_up() -> None:
            context.setup = "ran"
            context.added.add("setup")
            run_stages([stage for stage in context.plan if stage.once_per_study], context, phase="set_up")

        context.setup = once_per_study(context.study, context.storage, set_up)


class Baseline(BaseStage):
    """The uncompressed model, exported like a candidate: measured once per study, its file kept by each worker,
    timed beside every candidate."""

    name = "baseline"
    needs = ("setup",)
    adds = ("baseline", "baseline_path")
    cache_key = BASELINE_ATTR
    once_per_study = True

    def set_up(self, context: SearchContext) -> None:
        context.study.set_user_attr(METRIC_NAME_ATTR, context.task.metric_name)
        name_objectives(context.study, objective_names(context.task.metric_name, context.settings))
        context.baseline, context.baseline_path = measure_baseline(context.task, context.profile, context.study)

    def run(self, context: SearchContext) -> None:
        context.baseline, context.baseline_path = measure_baseline(context.task, context.profile, context.study)
        if notice := context.task.data.carving_notice():  # once the search is under way (not before a refusal)
            log.warning(notice)
        baseline = context.baseline
        context.tracker.log(context.tracker.parent_id or "", metrics={
            "baseline_metric": baseline["metric"], "baseline_latency_ms": baseline["latency_ms"],
            "baseline_size_bytes": float(baseline["size_bytes"])})  # fmt: skip


class ElasticTraining(BaseStage):
    """With `elastic` settings: the elastic model, trained once for every trial and every device (keyed under the
    home: a second study of the same model finds it), in the worker that claims the set-up; the others load it
    (search/elastic_stage.py). Without them, nothing."""

    name = "elastic model"
    needs = ("setup",)
    cache_key = ELASTIC_ATTR
    once_per_study = True

    def set_up(self, context: SearchContext) -> None:
        if context.settings.elastic is not None:
            context.study.set_user_attr(ELASTIC_ATTR, train_once(context))

    def run(self, context: SearchContext) -> None:
        if context.settings.elastic is not None and context.setup != "ran":  # resumed, or another worker's set-up
            context.study.set_user_attr(ELASTIC_ATTR, train_once(context))


class SensitivityTable(BaseStage):
    """Each single choice alone, measured on the device (search/sensitivity.py); random search stays plain."""

    name = "sensitivity table"
    needs = ("baseline", "baseline_path")
    adds = ("table",)
    cache_key = SENSITIVITY_ATTR
    once_per_study = True

    def set_up(self, context: SearchContext) -> None:
        self.run(context)  # measured and stored now, read back by every later invocation

    def run(self, context: SearchContext) -> None:
        settings = context.settings
        context.table = (
            sensitivity_table(context.study, context.task, context.profile, context.space, context.baseline,
                              context.baseline_path, settings, context.tracker)  # fmt: skip
            if settings.sampler == "tpe" and settings.sensitivity
            else None
        )


class FirstCandidates(BaseStage):
    """Warm starts (hand-made and one-click recipes) and the table's seeds, queued once per study; each worker's
    sampler starts modelling after them (search/candidates.py)."""

    name = "warm starts and seeds"
    needs = ("setup", "baseline", "table")
    cache_key = STARTUP_ATTR
    once_per_study = True

    def set_up(self, context: SearchContext) -> None:
        if context.settings.sampler == "tpe":
            first_candidates(context.study, context.space, context.settings, context.table, context.baseline["metric"])

    def run(self, context: SearchContext) -> None:
        worker_sampler(context.study, context.settings, context.setup, context.settings.seed + context.opened_with)


class SampledTrials(BaseStage):
    """The trial loop (search/trials.py) until the budget; the stages after it that act between trials are its
    callbacks."""

    name = "sampled trials"
    needs = ("baseline", "baseline_path", "table")
    adds = ("objective", "ran")

    def run(self, context: SearchContext) -> None:
        later = [hook for stage in context.plan if (hook := stage.between_trials(context)) is not None]
        run_trials(context, later)


class Promotion(BaseStage):
    """A pruned probe distilled briefly that lands near the bound and beats the best is queued again with the full
    distillation budget (search/refine.py)."""

    name = "promotion"

    def between_trials(self, context: SearchContext) -> Callback | None:
        return PromoteProbes(context.space, context.settings) if context.settings.sampler == "tpe" else None


class DepthRefinement(BaseStage):
    """Once the first candidates are measured, the best is queued again with the cheapest blocks skipped, once per
    study (search/refine.py)."""

    name = "depth refinement"
    needs = ("table",)
    cache_key = REFINED_ATTR

    def between_trials(self, context: SearchContext) -> Callback | None:
        if context.settings.sampler != "tpe":
            return None
        trials = context.settings.trials

        def left() -> int | None:  # what this invocation's budget has left (None: only time bounds it)
            return None if trials is None else trials - len(context.ran)

        return SkipFromIncumbent(context.space, context.table, left)


class Polish(BaseStage):
    """After the budget (its deadline lifted), one candidate distilled `--polish-steps` (search/polish.py)."""

    name = "polish"
    needs = ("objective", "baseline")

    def run(self, context: SearchContext) -> None:
        settings, objective = context.settings, context.objective
        if not settings.polish_steps or settings.sampler != "tpe" or objective is None:
            return
        objective.deadline = None
        keep = KeepArtifacts(context.tracker, context.study_name, settings.confirm)
        polish(context.study, objective, settings.polish_steps, allowed_drop(settings, context.baseline["metric"]),
               context.space.distill, callbacks=[keep, TrialLines(context.task.metric_name)])  # fmt: skip


class Confirmation(BaseStage):
    """The top candidates re-timed together, scored on validation and once on test, the winner timed again in
    fresh windows (search/confirm.py)."""

    name = "confirmation"
    needs = ("ran",)
    adds = ("confirmed", "confirm_s", "wall_s")
    cache_key = CONFIRMATION_ATTR

    def run(self, context: SearchContext) -> None:
        settings, started = context.settings, time.monotonic()
        if settings.confirm:
            context.confirmed = confirm(context.study, context.task, context.profile, settings.confirm,
                                        attempts=settings.confirm_windows, settings=settings)  # fmt: skip
        context.confirm_s = time.monotonic() - started
        context.wall_s = time.monotonic() - context.started


class Export(BaseStage):
    """With `--out`: the confirmed winner's strategy.yaml, artifact and reports, registered in MLflow."""

    name = "export"
    needs = ("confirmed", "ran")
    adds = ("exported", "export_note", "registered")

    def run(self, context: SearchContext) -> None:
        if context.out is None or all_failed(context.study, context.ran):
            return
        try:
            context.exported = export_best(context.study, context.profile, context.out, lambda: context.task,
                                           context.confirmed, context.task.metric_name)  # fmt: skip
        except NoImprovement as nothing:
            context.export_note = str(nothing)
            return
        if context.register:
            context.registered = register_and_say(context.settings.tracking_uri, context.study_name, context.exported)


SEARCH: tuple[Stage, ...] = (
    SetUpClaim(),
    Baseline(),
    ElasticTraining(),
    SensitivityTable(),
    FirstCandidates(),
    SampledTrials(),
    Promotion(),
    DepthRefinement(),
    Polish(),
    Confirmation(),
    Export(),
)
