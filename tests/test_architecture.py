"""The shape of the package: no import cycle (any import counted), small files, a strategy readable without torch.

The import graph is read from the source with `ast`, so it sees what running code may not: imports under
`if TYPE_CHECKING:` and inside functions count, and importing `a.b.c` counts as importing the packages `a.b` and
`a` too (their `__init__` runs first).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "autocompress"
MAX_LINES = 400


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (a package is its __init__)."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _targets(name: str, path: Path, node: ast.Import | ast.ImportFrom, known: dict[str, Path]) -> list[str]:
    """The package's modules an import statement names (`from pkg import module` names the module)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:  # relative: from the module's package, one level up per extra dot
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join(package + ([base] if base else []))
    return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package's modules it imports, anywhere in its source, with their parent packages."""
    known = modules(package)
    top = package.name
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for target in _targets(name, path, node, known):
                if target != top and not target.startswith(f"{top}."):
                    continue
                while target not in known and "." in target:  # `from m import function`: the module m
                    target = target.rsplit(".", 1)[0]
                while target:  # the module and the packages above it, which run first
                    if target in known and target != name and not name.startswith(f"{target}."):
                        edges.add(target)
                    target = target.rpartition(".")[0]
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_detector_finds_a_cycle_through_a_type_only_import(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from pkg.sub.b import thing\n")
    (package / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.sub import b\n")
    (package / "sub" / "b.py").write_text("def thing():\n    from .. import a\n")
    (package / "c.py").write_text("from pkg.sub.d import x\n")
    (package / "sub" / "d.py").write_text("x = 1\n")
    assert cycles(import_graph(package)) == [["pkg.a", "pkg.sub", "pkg.sub.b"]]


def test_no_import_cycle_in_the_package():
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(component) for component in found)


def test_no_product_file_over_400_lines():
    long = {str(path.relative_to(ROOT)): n for path in PACKAGE.rglob("*.py")
            if (n := len(path.read_text().splitlines())) > MAX_LINES}  # fmt: skip
    assert not long, f"files over {MAX_LINES} lines: {long}"


def test_a_strategy_is_read_without_torch(tmp_path):
    """strategy.yaml is plain data: reading one needs pydantic and YAML, not the build stack."""
    path = tmp_path / "strategy.yaml"
    path.write_text(textwrap.dedent("""\
        schema_version: 1
        seed: 3
        prune: {importance: l2, ratios: {stem.0: 0.25}, skip: [stage2.1]}
        quantize: {calibration: minmax, precisions: {stem.0: int8, fc: fp32}}
        distill: {steps: 25, loss: kl, temperature: 4.0, alpha: 0.7, lr: 0.001, hidden_weight: 0.0}
        """))
    script = textwrap.dedent(f"""\
        import sys
        from pathlib import Path
        from autocompress.spaces.strategy import Strategy
        strategy = Strategy.load(Path({str(path)!r}))
        assert strategy.prune.skip == ["stage2.1"] and strategy.quantize.precisions["stem.0"] == "int8"
        assert strategy.to_yaml() and strategy.summary()["distill.steps"] == 25
        heavy = sorted(name for name in ("torch", "torch_pruning", "optuna", "onnx", "onnxruntime", "numpy")
                       if name in sys.modules)
        assert not heavy, heavy
        """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]


# Optuna parameter names by prefix, and the one module (the step's) that may spell them
PARAMETER_OWNERS = {
    "prune/": "autocompress/compress/prune.py",
    "heads/": "autocompress/compress/prune.py",
    "skip/": "autocompress/compress/prune.py",
    "precision/": "autocompress/compress/quantize.py",
    "quantize/": "autocompress/compress/quantize.py",
    "distill/": "autocompress/compress/distill.py",
}
PARAMETER_NAME = re.compile(r"(?<![\w/.])(" + "|".join(map(re.escape, PARAMETER_OWNERS)) + ")")


def _strings(tree: ast.AST) -> list[tuple[int, str]]:
    """Every string literal (f-strings' literal parts included), docstrings left out."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    strings = [node for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)]
    return [(node.lineno, node.value) for node in strings if id(node) not in docstrings]


def parameter_literals(paths: list[Path], root: Path = ROOT) -> list[str]:
    """`file:line: literal` for each Optuna parameter name spelled outside its step's module."""
    found = []
    for path in paths:
        relative = path.relative_to(root).as_posix()
        for line, text in _strings(ast.parse(path.read_text())):
            for match in PARAMETER_NAME.finditer(text):
                if PARAMETER_OWNERS[match.group(1)] != relative:
                    found.append(f"{relative}:{line}: {text!r}")
    return found


def test_the_parameter_name_check_finds_a_name_spelled_elsewhere(tmp_path):
    module = tmp_path / "autocompress" / "search" / "stage.py"
    module.parent.mkdir(parents=True)
    module.write_text('"""Docstrings may say `distill/steps`."""\nKEY = "distill/steps"\nNAME = f"skip/{1}"\n')
    owner = tmp_path / "autocompress" / "compress" / "distill.py"
    owner.parent.mkdir(parents=True)
    owner.write_text('KEY = "distill/steps"\n')
    assert parameter_literals([module, owner], root=tmp_path) == [
        "autocompress/search/stage.py:2: 'distill/steps'",
        "autocompress/search/stage.py:3: 'skip/'",
    ]


def test_optuna_parameter_names_are_spelled_by_their_steps_only():
    """A stage reaches a trial's parameters through the knob objects of the step that owns them."""
    paths = sorted(PACKAGE.rglob("*.py")) + sorted((ROOT / "experiments").rglob("*.py"))
    found = parameter_literals(paths)
    assert not found, "parameter names outside their step's module:\n" + "\n".join(found)
