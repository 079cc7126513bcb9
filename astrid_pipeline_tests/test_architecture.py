"""The layers hold: no Dagster under science/ or ml/, no import cycle between the package's parts."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "astrid_pipeline"


def _modules() -> dict[str, Path]:
    out = {}
    for p in PACKAGE.rglob("*.py"):
        rel = p.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _imports(path: Path, module: str) -> set[str]:
    """Every module this file imports, at any depth in the file (lazy imports included)."""
    tree = ast.parse(path.read_text())
    pkg = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found |= {f"{target}.{a.name}" for a in node.names}
    return found


def _unit(module: str) -> str:
    """The part of the package a module belongs to: science's modules and subpackages one by one, else the
    top-level child (ml, io, archives, sky, defs, ...)."""
    parts = module.split(".")
    if len(parts) >= 3 and parts[1] == "science":
        return ".".join(parts[:3])
    return ".".join(parts[:2])


def _graph():
    mods = _modules()
    edges: dict[str, set[str]] = {}
    for name, path in mods.items():
        deps = {m for m in _imports(path, name) if m in mods}
        edges[name] = deps - {name}
    return mods, edges


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(edges.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if state.get(m) is None:
                c = visit(m)
                if c:
                    return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(edges):
        if state.get(n) is None:
            c = visit(n)
            if c:
                return c
    return None


#: packages that are plain Python: arrays, tables and paths in and out, no orchestration
PLAIN_PYTHON = ("astrid_pipeline.science", "astrid_pipeline.ml", "astrid_pipeline.sky", "astrid_pipeline.io",
                "astrid_pipeline.archives", "astrid_pipeline.alerts")


def test_no_dagster_in_science_or_ml():
    mods, _ = _graph()
    bad = []
    for name, path in mods.items():
        if any(name == p or name.startswith(p + ".") for p in PLAIN_PYTHON):
            if any(m == "dagster" or m.startswith(("dagster.", "dagster_")) for m in _imports(path, name)):
                bad.append(name)
    assert not bad, f"Dagster imported by plain-Python modules: {bad}"


def test_no_import_cycle_between_modules():
    _, edges = _graph()
    # a package's __init__ re-exporting its own modules is not a cycle of the design
    cleaned = {n: {m for m in d if not n.startswith(m + ".")} for n, d in edges.items()}
    assert _cycle(cleaned) is None, f"import cycle: {' -> '.join(_cycle(cleaned))}"


def test_no_import_cycle_between_parts():
    _, edges = _graph()
    units: dict[str, set[str]] = {}
    for n, deps in edges.items():
        u = _unit(n)
        units.setdefault(u, set()).update(_unit(d) for d in deps if _unit(d) != u)
    assert _cycle(units) is None, f"the package's parts import each other: {' -> '.join(_cycle(units))}"


def test_science_code_does_not_know_the_data_layout():
    mods, _ = _graph()
    bad = [n for n, p in mods.items() if n.startswith(("astrid_pipeline.science.", "astrid_pipeline.ml."))
           and "astrid_pipeline.layout" in {m.rsplit(".", 1)[0] if m.endswith((".DataLayout", ".safe_key")) else m
                                            for m in _imports(p, n)}
           and "DataLayout" in p.read_text()]
    assert not bad, f"science code takes the DataLayout: {bad}"
