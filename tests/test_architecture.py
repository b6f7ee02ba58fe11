"""The house, drawn from its imports: no import loop (lazy and type-checking imports count too) and
no arrow from the core (``sleepd``) up to the workers, except the daemon and CLI that start them."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("sleepd", "workers")
#: the entry points that start workers or run them in-process: the only core modules allowed above them
LAUNCHERS = frozenset({"sleepd.daemon", "sleepd.cli", "sleepd.bench"})


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(name: str, modules: set[str]) -> str | None:
    """The longest of our modules that ``name`` names (``sleepd.ledger.Ledger`` -> ``sleepd.ledger``)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    """Each of our modules -> the modules of ours it imports, anywhere in its body."""
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    modules = {_module(p) for p in files}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for path in files:
        here = _module(path)
        package = here if path.name == "__init__.py" else here.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                names = [f"{base}.{a.name}" for a in node.names] + [base]
            for name in names:
                target = _resolve(name, modules)
                if target is not None and target != here and not here.startswith(target + "."):
                    graph[here].add(target)
    return graph


def test_no_import_loops() -> None:
    graph = import_graph()
    loops = []
    while True:  # report every loop, not only the first: drop one edge of each found and look again
        try:
            TopologicalSorter(graph).prepare()
            break
        except CycleError as exc:
            loop = exc.args[1]
            loops.append(" -> ".join(reversed(loop)))
            graph[loop[1]].discard(loop[0])
    assert loops == [], f"import loops: {loops}"


def test_core_does_not_import_the_workers() -> None:
    upward = sorted((a, b) for a, targets in import_graph().items() for b in targets
                    if a.startswith("sleepd") and b.startswith("workers")
                    and not any(a == m or a.startswith(m + ".") for m in LAUNCHERS))
    assert upward == [], f"core modules importing workers: {upward}"


#: the most lines a module may have (STYLE.md: small modules, split along a real seam past this)
MAX_MODULE_LINES = 400


def test_no_module_is_over_the_line_limit() -> None:
    sizes = {str(p.relative_to(ROOT)): len(p.read_text(encoding="utf-8").splitlines())
             for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    too_long = sorted((path, n) for path, n in sizes.items() if n > MAX_MODULE_LINES)
    assert too_long == [], f"modules over {MAX_MODULE_LINES} lines (split them by concern): {too_long}"
