"""A search is a declared sequence of stages behind one protocol (search/stage.py, search/plan.py): the sequence is
consistent (each stage's needs come from earlier stages), README lists it in the declared order, the loop refuses
a stage out of order, and the set-up claim runs the once-per-study stages' set-up in one worker only."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import optuna
import pytest

from autocompress.config import SearchSettings
from autocompress.search.plan import SEARCH, SetUpClaim
from autocompress.search.stage import BaseStage, SearchContext, run_stages

README = Path(__file__).resolve().parent.parent / "README.md"


def _context(study: optuna.Study, storage: Any, plan: list) -> SearchContext:
    """A context with only what the stages below read (the study, its storage, the plan)."""
    return SearchContext(task=None, profile=None, settings=SearchSettings(), study_name=study.study_name,  # type: ignore[arg-type]
                         space=None, storage=storage, study=study, tracker=None, started=0.0, opened_with=0,  # type: ignore[arg-type]
                         plan=plan)  # fmt: skip


def test_each_stage_needs_only_what_an_earlier_stage_adds():
    added: set[str] = set()
    for stage in SEARCH:
        assert set(stage.needs) <= added, (stage.name, set(stage.needs) - added)
        added |= set(stage.adds)
    names = [stage.name for stage in SEARCH]
    assert len(set(names)) == len(names)
    claim = names.index(SetUpClaim.name)
    assert all(names.index(stage.name) > claim for stage in SEARCH if stage.once_per_study)


def test_readme_lists_the_stages_in_the_declared_order():
    text = README.read_text()
    listed = text[text.index("<!-- stages:") : text.index("<!-- end of stages -->")]
    assert re.findall(r"^- \*\*(.+?)\*\*", listed, flags=re.MULTILINE) == [stage.name for stage in SEARCH]


class _Recorder(BaseStage):
    def __init__(self, name: str, log: list[str], needs: tuple[str, ...] = (), adds: tuple[str, ...] = (),
                 once: bool = False) -> None:  # fmt: skip
        self.name, self.log, self.needs, self.adds, self.once_per_study = name, log, needs, adds, once

    def set_up(self, context: SearchContext) -> None:
        self.log.append(f"set up {self.name}")

    def run(self, context: SearchContext) -> None:
        self.log.append(f"run {self.name}")


def test_a_stage_whose_needs_no_earlier_stage_adds_is_refused():
    log: list[str] = []
    study = optuna.create_study()
    plan = [_Recorder("first", log), _Recorder("second", log, needs=("table",))]
    with pytest.raises(RuntimeError, match="stage 'second' needs table"):
        run_stages(plan, _context(study, None, plan))
    assert log == ["run first"]


def test_the_set_up_of_once_per_study_stages_runs_in_one_worker_only(tmp_path):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'studies.db'}")
    study = optuna.create_study(study_name="staged", storage=storage)
    log: list[str] = []
    plan = [SetUpClaim(), _Recorder("table", log, needs=("setup",), adds=("table",), once=True),
            _Recorder("trials", log, needs=("table",))]  # fmt: skip
    first, second = _context(study, storage, plan), _context(study, storage, plan)
    run_stages(plan, first)
    assert first.setup == "ran" and log == ["set up table", "run table", "run trials"]
    log.clear()
    run_stages(plan, second)  # another worker, or the next invocation: set up already
    assert second.setup == "done" and log == ["run table", "run trials"]
