"""What a command says, and where: autocompress's own warnings on the screen, everything else in a log file.

Each command that works (search, export, apply, sensitivity) writes one log file under the home,
`logs/<command>-<date>-<time>-<pid>.log`, created on its first line: autocompress at INFO, and the warnings of the
libraries it drives (torch, onnx, ONNX Runtime's quantizer, NNCF, MLflow, TensorFlow, Optuna, Python warnings). The
screen gets autocompress's warnings only; `--verbose` adds its INFO lines and the libraries' warnings. A bug (an
exception that is no user mistake and no failure a trial may have) leaves its traceback there, and the command
says one line naming the file.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
import warnings
from datetime import datetime
from pathlib import Path

from autocompress.home import home

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
CONSOLE_FORMAT = "%(levelname)s %(name)s: %(message)s"
OWN = "autocompress"
_state: dict[str, Path | None] = {"path": None}


class _LazyFile(logging.FileHandler):
    """A file handler that creates the file (and its folder) on its first record: a command refused at once
    leaves no empty log behind."""

    def _open(self):  # noqa: ANN202 - logging's own signature
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()


class _ConsoleFilter(logging.Filter):
    """autocompress's records from `own_level` up; the libraries' from `others_level` up (None: never)."""

    def __init__(self, own_level: int, others_level: int | None) -> None:
        super().__init__()
        self.own_level = own_level
        self.others_level = others_level

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == OWN or record.name.startswith(OWN + "."):
            return record.levelno >= self.own_level
        return self.others_level is not None and record.levelno >= self.others_level


def new_log_path(command: str) -> Path:
    """The file this invocation logs to (not created yet)."""
    return home() / "logs" / f"{command}-{datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}.log"


def log_path() -> Path | None:
    """This invocation's log file, once `setup` has named it."""
    return _state["path"]


def setup(command: str, verbose: bool) -> Path:
    """Route every record: the file gets autocompress's from INFO up and the libraries' from WARNING up; the
    screen (stderr) what `_ConsoleFilter` lets through. Python warnings become records of `py.warnings` (in the
    file; on the screen with --verbose)."""
    path = new_log_path(command)
    _state["path"] = path
    file_handler = _LazyFile(path, delay=True, encoding="utf-8")
    file_handler.setFormatter(logging.Formatter(FORMAT))
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter(CONSOLE_FORMAT))
    console.addFilter(_ConsoleFilter(logging.INFO if verbose else logging.WARNING,
                                     logging.WARNING if verbose else None))  # fmt: skip
    logging.basicConfig(level=logging.WARNING, handlers=[file_handler, console], force=True)
    logging.getLogger(OWN).setLevel(logging.INFO)  # the libraries' INFO lines say nothing a user needs
    warnings.resetwarnings()
    warnings.simplefilter("default")  # once per place, into the log file
    logging.captureWarnings(True)
    return path


def record_bug(error: BaseException) -> Path:
    """Append the traceback of `error` (its causes included) to this invocation's log file; returns the file."""
    path = _state["path"] or new_log_path("autocompress")
    _state["path"] = path
    path.parent.mkdir(parents=True, exist_ok=True)
    for handler in logging.getLogger().handlers:
        handler.flush()
    with path.open("a", encoding="utf-8") as file:
        file.write(f"{datetime.now():%Y-%m-%d %H:%M:%S} the command stopped on this error:\n")
        file.write("".join(traceback.format_exception(error)))
    return path
