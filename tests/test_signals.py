"""Ctrl-C must end a command even when Python swallows the KeyboardInterrupt (CI saw one lost in a weakref
callback while the digits example trained: the search then ran to its end and exited 0)."""

import os
import signal
import subprocess
import sys
from types import SimpleNamespace

import pytest

from autocompress.signals import interrupts_as_keyboard, raise_if_interrupted


class SignalsWhileCollected:
    """Sends SIGINT from a finaliser: the handler's KeyboardInterrupt is raised inside `__del__`, where Python
    only prints it, as in torch's weakref callbacks."""

    def __del__(self) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(10_000):  # the handler runs between these bytecodes, still inside the finaliser
            pass


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_ctrl_c_swallowed_in_a_finaliser_is_raised_at_the_next_checkpoint():
    steps_after = []
    with pytest.raises(KeyboardInterrupt), interrupts_as_keyboard():
        SignalsWhileCollected()  # collected at once; its KeyboardInterrupt is swallowed
        steps_after.append("went on")  # what Python does after swallowing it
        raise_if_interrupted()  # a training step's checkpoint
        steps_after.append("trained on past the checkpoint")
    assert steps_after == ["went on"]
    raise_if_interrupted()  # the command's block is over: the interrupt is not raised twice


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_ctrl_c_swallowed_and_never_checked_still_ends_the_block():
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN where the suite runs as a background job (nohup, `cmd &`)
    with pytest.raises(KeyboardInterrupt), interrupts_as_keyboard(), interrupts_as_keyboard():  # CLI, driver
        SignalsWhileCollected()
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored to what they were


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_ends_a_command_as_ctrl_c_does(signum: signal.Signals):
    """What a service manager or `kill` sends takes Ctrl-C's path (the e2e test interrupts a search with SIGINT)."""
    after = []
    with pytest.raises(KeyboardInterrupt), interrupts_as_keyboard():
        os.kill(os.getpid(), signum)
        for _ in range(1_000_000):  # the handler runs between bytecodes
            pass
        after.append("went on")
    assert after == []
    raise_if_interrupted()  # raised once, not again after the block


def test_without_a_signal_the_block_ends_normally():
    with interrupts_as_keyboard():
        raise_if_interrupted()


def test_a_swallowed_ctrl_c_is_not_printed_as_a_traceback():
    """Python reports an exception raised in a finaliser through `sys.unraisablehook` ("Exception ignored in ...",
    with a traceback): the CLI's one-line message must be all a user sees (CI saw the report before it)."""
    script = (
        f"import sys; sys.path[:0] = [{os.path.dirname(__file__)!r}]\n"
        "from test_signals import SignalsWhileCollected\n"
        "from autocompress.signals import interrupts_as_keyboard\n"
        "try:\n"
        "    with interrupts_as_keyboard():\n"
        "        SignalsWhileCollected()\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stderr == "interrupted\n", result.stderr


def test_other_unraisable_errors_are_still_reported():
    reported = []
    previous, sys.unraisablehook = sys.unraisablehook, reported.append
    try:
        with interrupts_as_keyboard():
            sys.unraisablehook(SimpleNamespace(exc_value=ValueError("a real bug in a finaliser")))
    finally:
        sys.unraisablehook = previous
    assert [str(item.exc_value) for item in reported] == ["a real bug in a finaliser"]
