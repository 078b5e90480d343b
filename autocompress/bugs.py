"""Is an exception a bug? The exporter and the runtimes' quantizers raise assorted types when they refuse a
candidate, so their calls are wrapped and what they raise fails only that candidate. But the code they call
back — the user's `forward` during the export, autocompress's calibration readers — runs inside them, and a
programming error there (a TypeError, an AttributeError) is no refusal: wrapped, it would fail every candidate
alike and hide behind "export failed". It is told apart by where it was raised: a programming error whose
traceback passes through code that is neither a library nor the standard library (autocompress, the user's
modules) is a bug.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

PROGRAMMING_ERRORS: tuple[type[BaseException], ...] = (TypeError, AttributeError, NameError, KeyError, IndexError,
                                                        AssertionError, ZeroDivisionError, ImportError)  # fmt: skip
OWN = Path(__file__).resolve().parent
LIBRARIES = tuple(
    {
        str(Path(path).resolve())
        for key in ("stdlib", "platstdlib", "purelib", "platlib")
        if (path := sysconfig.get_path(key))
    }
)


def _ours(filename: str) -> bool:
    """Code of autocompress or of the user (not an installed library, not the standard library, not frozen)."""
    if filename.startswith("<"):
        return False
    path = str(Path(filename).resolve())
    return path.startswith(str(OWN)) or not path.startswith(LIBRARIES)


def _chain(error: BaseException) -> list[BaseException]:
    found: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in found:
        found.append(current)
        current = current.__cause__ or current.__context__
    return found


def raised_in_our_code(error: BaseException) -> bool:
    """A programming error in the chain of `error` raised through autocompress's or the user's code (below the
    frame that caught it)."""
    for link in _chain(error):
        if not isinstance(link, PROGRAMMING_ERRORS):
            continue
        frame = link.__traceback__.tb_next if link is error and link.__traceback__ else link.__traceback__
        while frame is not None:
            if _ours(frame.tb_frame.f_code.co_filename):
                return True
            frame = frame.tb_next
    return False
