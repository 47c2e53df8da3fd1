"""The package's layering: no import runs back up. Read from the source (nothing is imported): every
``import dama.X`` between dama's packages and top-level modules, those inside functions included, forms a
graph without cycles, so each part can be read, tested and reused knowing only what lies below it."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "dama"


def _module(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _unit(module: str) -> str:
    """The layer a module belongs to: dama.X (a subpackage or a top-level module)."""
    return ".".join(module.split(".")[:2])


def import_graph() -> dict[str, set[str]]:
    """dama.X -> the other dama.Y it imports anywhere in its files."""
    graph: dict[str, set[str]] = defaultdict(set)
    for path in SRC.rglob("*.py"):
        me = _unit(_module(path))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets = [node.module]
            else:
                continue
            for t in targets:
                if t.startswith("dama.") and _unit(t) != me:
                    graph[me].add(_unit(t))
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state, stack = [], {}, []

    def visit(v: str) -> None:
        state[v] = "open"
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if state.get(w) == "open":
                found.append(stack[stack.index(w):] + [w])
            elif w not in state:
                visit(w)
        stack.pop()
        state[v] = "done"

    for v in sorted(graph):
        if v not in state:
            visit(v)
    return found


def test_no_import_cycles_between_dama_packages():
    graph = import_graph()
    assert {"dama.data", "dama.models", "dama.train", "dama.bench", "dama.cli"} <= set(graph)  # it read them
    assert cycles(graph) == []


def test_only_the_cli_imports_the_cli_and_the_bench():
    graph = import_graph()
    for top in ("dama.cli", "dama.bench"):
        users = sorted(u for u, ts in graph.items() if top in ts and u not in ("dama.cli", "dama.__main__"))
        assert users == [], f"{top} is imported by {users}"


def test_the_check_sees_a_cycle():
    assert cycles({"dama.a": {"dama.b"}, "dama.b": {"dama.a"}}) == [["dama.a", "dama.b", "dama.a"]]
