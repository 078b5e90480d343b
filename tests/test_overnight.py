"""The nightly recipe in examples/overnight, run as cron or the systemd timer would run it (with a short budget)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from optuna.trial import TrialState

from tests.helpers import load_study, user_config

pytestmark = pytest.mark.e2e
OVERNIGHT = Path(__file__).resolve().parent.parent / "examples" / "overnight"


def test_the_nightly_script_searches_for_its_time_and_writes_the_morning_report(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",  # the `autocompress` of this environment
        "AUTOCOMPRESS_DIR": str(tmp_path),
        "NIGHTLY_TARGET": str(user_config()),
        "NIGHTLY_TIMEOUT": "6",
        "NIGHTLY_STUDY": "tiny-nightly",
        "NIGHTLY_FLAGS": "--no-sensitivity",
    }
    night = subprocess.run([str(OVERNIGHT / "nightly.sh")], env=env, capture_output=True, text=True, timeout=900)
    assert night.returncode == 0, night.stderr[-2000:]
    study = load_study("tiny-nightly")
    assert any(trial.state == TrialState.COMPLETE for trial in study.trials)
    page = tmp_path / "reports" / f"tiny-nightly-{date.today():%Y-%m-%d}.html"
    assert page.exists(), night.stderr[-2000:]
    assert page.read_text().count("<tr") >= 1 + len(study.trials)


def test_the_timer_and_the_crontab_start_the_same_script() -> None:
    service = (OVERNIGHT / "autocompress-nightly.service").read_text()
    timer = (OVERNIGHT / "autocompress-nightly.timer").read_text()
    (cron_line,) = [line for line in (OVERNIGHT / "crontab").read_text().splitlines() if line and line[0] != "#"]
    assert "ExecStart=/opt/autocompress/examples/overnight/nightly.sh" in service
    assert "OnCalendar=*-*-* 20:00:00" in timer and "Persistent=true" in timer
    fields = cron_line.split()
    assert fields[:5] == ["0", "20", "*", "*", "*"] and fields[6].endswith("examples/overnight/nightly.sh")
    assert os.access(OVERNIGHT / "nightly.sh", os.X_OK)
