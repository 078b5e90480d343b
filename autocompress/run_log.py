"""What a command says, and where: autocompress's own warnings on the screen, everything else in a log file.

Each command that works (search, export, apply, sensitivity) writes one log file under the home,
`logs/<command>-<date>-<time>-<pid>.log`, created on its first line: autocompress at INFO, and the warnings of the
libraries it drives (torch, onnx, ONNX Runtime's quantizer, NNCF, MLflow, TensorFlow, Optuna, Python warnings). The
screen gets autocompress's warnings only; `--verbose` adds its INFO lines and the libraries' warnings. A bug (an
exception that is no user mistake and no failure a trial may have) leaves its traceback there, and the command
says one line naming the file.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
import sys
import traceback
import warnings
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from autocompress.home import home

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
CONSOLE_FORMAT = "%(levelname)s %(name)s: %(message)s"
OWN = "autocompress"
_state: dict[str, Any] = {"path": None, "console": None, "verbose": False}


class _LazyFile(logging.FileHandler):
    """A file handler that creates the file (and its folder) on its first record: a command refused at once
    leaves no empty log behind."""

    def _open(self):  # noqa: ANN202 - logging's own signature
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()


class _LevelFilter(logging.Filter):
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
    screen (stderr) what `_LevelFilter` lets through. Python warnings become records of `py.warnings` (in the
    file; on the screen with --verbose)."""
    path = new_log_path(command)
    _state["path"] = path
    file_handler = _LazyFile(path, delay=True, encoding="utf-8")
    file_handler.setFormatter(logging.Formatter(FORMAT))
    file_handler.addFilter(_LevelFilter(logging.INFO, logging.WARNING))
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter(CONSOLE_FORMAT))
    console.addFilter(_LevelFilter(logging.INFO if verbose else logging.WARNING,
                                     logging.WARNING if verbose else None))  # fmt: skip
    _state["console"] = console
    _state["verbose"] = verbose
    logging.basicConfig(level=logging.WARNING, handlers=[file_handler, console], force=True)
    logging.getLogger(OWN).setLevel(logging.INFO)  # the libraries' INFO lines say nothing a user needs
    warnings.resetwarnings()
    warnings.simplefilter("default")  # once per place, into the log file
    warnings.simplefilter("ignore", ResourceWarning)  # files the libraries leave to the garbage collector
    logging.captureWarnings(False)  # a second command in one process (tests) captures them afresh
    logging.captureWarnings(True)
    warnings.showwarning = _once_per_place(warnings.showwarning)
    return path


def _once_per_place(show: Callable[..., None]) -> Callable[..., None]:
    """Python forgets which warnings it showed whenever a library enters `warnings.catch_warnings()` (mlflow does
    once per trial, so its pandas FutureWarning filled the log once per trial): remember them here instead."""
    shown: set[tuple[type[Warning], str, str, int]] = set()

    def showwarning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
        place = (category, str(message), filename, lineno)
        if place not in shown:
            shown.add(place)
            show(message, category, filename, lineno, file, line)

    return showwarning


def library_loggers_to_root() -> list[str]:
    """Libraries that print their records with handlers of their own (NNCF to stdout, torch to stderr) send them
    through the root logger instead, like every other library: to the log file. Returns their names."""
    rerouted = []
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if not isinstance(logger, logging.Logger) or name == OWN or name.startswith(OWN + "."):
            continue
        streams = [h for h in logger.handlers
                   if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]  # fmt: skip
        if streams:
            for handler in streams:
                logger.removeHandler(handler)
            logger.propagate = True
            rerouted.append(name)
    return rerouted


def protect_screen(packages: Iterable[str] = ()) -> None:
    """Before the work starts: what the libraries print goes to the log file, not to the screen (unless
    --verbose). In a real terminal session, file descriptor 2 itself is pointed at the log file first: C/C++
    libraries (TensorFlow's absl, LiteRT, ONNX Runtime) write there directly; Python's own stderr, which
    autocompress's messages and the progress bar use, keeps the screen through a copy of the descriptor. Then
    `packages` (the runtime's builders: NNCF, LiteRT's converter...) are imported, so that their loggers exist, and
    every library logger with a console handler of its own is sent through the root logger (to the file)."""
    if _state["verbose"] or _state["path"] is None:
        return
    _divert_descriptor(_state["path"])
    for package in packages:
        with contextlib.suppress(ImportError):
            importlib.import_module(package)
    library_loggers_to_root()


def _divert_descriptor(path: Path) -> None:
    """File descriptor 2 to `path`; sys.stderr (and the console handler) to a copy of the screen's descriptor."""
    try:
        if sys.stderr.fileno() != 2:
            return
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return  # not a process's real stderr (a test runner's capture): nothing to divert
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    screen = os.fdopen(os.dup(2), "w", buffering=1, encoding=sys.stderr.encoding or "utf-8", errors="replace")
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(target, 2)
    os.close(target)
    sys.stderr = screen
    if _state["console"] is not None:
        _state["console"].setStream(screen)


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
