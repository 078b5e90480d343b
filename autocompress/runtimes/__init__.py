"""The runtimes autocompress builds for and measures with: one record per module (see base.py).

Built-in runtimes are the modules of this package; a profile may also name any importable module that defines
`RUNTIME` (e.g. `runtime: my_runtime`, a module beside the profile, or `runtime: mypackage.runtime`), which is how
a new runtime is added without touching autocompress itself.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from autocompress.errors import DeviceError
from autocompress.runtimes.base import Runtime

NOT_RUNTIMES = {"base", "onnxruntime_options"}  # modules of the package that hold no record


@cache
def builtin_runtimes() -> dict[str, Runtime]:
    """The records of this package's runtime modules, by name (their imports are light: builders load on use)."""
    found = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name not in NOT_RUNTIMES:
            runtime = importlib.import_module(f"{__name__}.{info.name}").RUNTIME
            found[runtime.name] = runtime
    return found


@contextmanager
def importable_from(folder: Path | None) -> Iterator[None]:
    """`folder` on sys.path only while a user's module is imported from it."""
    if folder is None or str(folder) in sys.path:
        yield
        return
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        sys.path.remove(str(folder))


def get_runtime(reference: str, base_dir: Path | None = None) -> Runtime:
    """A built-in runtime by name, or the `RUNTIME` of an importable module; unknown is one line."""
    builtin = builtin_runtimes()
    if reference in builtin:
        return builtin[reference]
    if "." not in reference and not (base_dir and (base_dir / f"{reference}.py").exists()):
        raise DeviceError(
            f"unknown runtime '{reference}': built in are {', '.join(sorted(builtin))}, "
            "or name a module that defines RUNTIME"
        )
    try:
        with importable_from(base_dir):
            module = importlib.import_module(reference)
    except ImportError as error:
        raise DeviceError(f"runtime module '{reference}' cannot be imported: {error}") from None
    runtime = getattr(module, "RUNTIME", None)
    if not isinstance(runtime, Runtime):
        raise DeviceError(f"runtime module '{reference}' defines no RUNTIME = Runtime(...)")
    return runtime


__all__ = ["Runtime", "builtin_runtimes", "get_runtime", "importable_from"]
