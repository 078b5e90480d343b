"""The machine-wide timing lock: one timing at a time, no building during one, timers not starved by builders."""

from __future__ import annotations

import threading
import time

import pytest

from autocompress.hardware.locks import compute_slot, timing_lock


@pytest.fixture(autouse=True)
def _own_lock_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOCOMPRESS_LOCK_DIR", str(tmp_path))  # other test processes keep timing undisturbed


def _in_thread(work) -> tuple[threading.Thread, list[float]]:
    entered: list[float] = []

    def run() -> None:
        with work():
            entered.append(time.monotonic())

    thread = threading.Thread(target=run)
    thread.start()
    return thread, entered


def test_builds_wait_for_a_timing_and_timings_for_builds():
    with timing_lock():
        builder, entered = _in_thread(compute_slot)
        builder.join(timeout=0.5)
        assert builder.is_alive() and not entered  # no building while this machine times
    builder.join(timeout=5)
    assert entered
    with compute_slot():
        timer, timed = _in_thread(timing_lock)
        timer.join(timeout=0.5)
        assert timer.is_alive() and not timed  # no timing while something builds
    timer.join(timeout=5)
    assert timed


def test_builders_share_the_machine():
    with compute_slot():
        other, entered = _in_thread(compute_slot)
        other.join(timeout=5)
        assert entered  # two builds run side by side


def test_a_waiting_timer_goes_before_builders_that_arrive_later():
    with compute_slot():
        timer, timed = _in_thread(timing_lock)
        time.sleep(0.3)  # the timer is queued behind the running build
        late_builder, built = _in_thread(compute_slot)
        late_builder.join(timeout=0.5)
        assert late_builder.is_alive() and not built  # it queues behind the timer, not beside the first build
    timer.join(timeout=5)
    late_builder.join(timeout=5)
    assert timed and built and timed[0] <= built[0]


def test_the_wait_is_measured():
    def hold() -> None:
        with timing_lock():
            time.sleep(0.6)

    holder = threading.Thread(target=hold)
    holder.start()
    time.sleep(0.1)
    with timing_lock() as waited:
        assert waited.seconds >= 0.3
    holder.join()


def test_workers_on_one_machine_share_its_cores_for_building(tmp_path, monkeypatch):
    """Each registered search process counts; a dead one's registration is dropped; cores are divided."""
    import os
    import subprocess
    import sys

    from autocompress.hardware.locks import build_threads, local_workers, registered_worker

    monkeypatch.setenv("AUTOCOMPRESS_LOCK_DIR", str(tmp_path))
    holder = ("import sys, time; from autocompress.hardware.locks import registered_worker\n"
              "with registered_worker():\n    print('in', flush=True); time.sleep(60)")  # fmt: skip
    other = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "AUTOCOMPRESS_LOCK_DIR": str(tmp_path)})  # fmt: skip
    try:
        assert other.stdout is not None and other.stdout.readline().strip() == "in"
        with registered_worker():
            assert local_workers() == 2
            assert build_threads() == max(1, (os.cpu_count() or 1) // 2)
    finally:
        other.kill()
        other.wait()
    assert local_workers() == 1  # the killed worker's registration is stale: removed
    assert not list(tmp_path.glob("worker-*.lock"))
    assert build_threads() == (os.cpu_count() or 1)


def test_build_threads_can_be_fixed_by_the_user(tmp_path, monkeypatch):
    """AUTOCOMPRESS_BUILD_THREADS wins over the automatic share; a value that is not a positive count is ignored."""
    import os

    from autocompress.hardware.locks import build_threads

    monkeypatch.setenv("AUTOCOMPRESS_LOCK_DIR", str(tmp_path))
    monkeypatch.setenv("AUTOCOMPRESS_BUILD_THREADS", "7")
    assert build_threads() == 7
    for ignored in ("0", "many", ""):
        monkeypatch.setenv("AUTOCOMPRESS_BUILD_THREADS", ignored)
        assert build_threads() == (os.cpu_count() or 1)
