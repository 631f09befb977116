"""``p2phpo/core`` stays sans-IO (docs/architecture.md): checked on the source of every module.

Every module under ``p2phpo/core`` and every ``p2phpo`` module it imports,
directly or through another, is parsed; none may import a clock, a socket,
an event loop, the file system, the OS, logging, the runtime, the UI, the
CLI or the training code, open a file, print, or draw from a global random
generator (a ``random.Random`` or numpy ``Generator`` passed in is fine).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "p2phpo" / "core"

BANNED_MODULES = {
    "os", "sys", "time", "datetime", "socket", "selectors", "select", "ssl", "asyncio", "uvloop",
    "threading", "multiprocessing", "subprocess", "signal", "logging", "pathlib", "shutil",
    "tempfile", "io", "glob", "secrets", "uuid", "rich", "typer", "jax", "optax",
}
BANNED_PACKAGES = ("p2phpo.runtime", "p2phpo.ui", "p2phpo.cli", "p2phpo.commands", "p2phpo.train",
                   "p2phpo.storage", "p2phpo.keys", "p2phpo.export", "simulations")
BANNED_CALLS = {"open", "print", "input", "breakpoint"}
RNG_TYPES = {"Random", "Generator"}  # classes for annotations and for rngs passed in


def _module_path(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for p in (base.with_suffix(".py"), base / "__init__.py"):
        if p.exists():
            return p
    return None


def _imports(tree: ast.AST, module: str) -> list[str]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import
                pkg = module.rsplit(".", node.level)[0]
                out.append(f"{pkg}.{node.module}" if node.module else pkg)
            elif node.module:
                out.append(node.module)
                out += [f"{node.module}.{a.name}" for a in node.names]
    return out


def _problems(path: Path, module: str) -> tuple[list[str], list[str]]:
    """(what is wrong in this file, the p2phpo modules it imports)."""
    tree = ast.parse(path.read_text(), str(path))
    bad, inner = [], []
    for name in _imports(tree, module):
        top = name.split(".")[0]
        if top in BANNED_MODULES:
            bad.append(f"imports {name}")
        if name == "p2phpo" or any(name == p or name.startswith(p + ".") for p in BANNED_PACKAGES):
            bad.append(f"imports {name}")
        if top in ("p2phpo", "simulations") and _module_path(name) is not None:
            inner.append(name)
        if name.startswith("random.") and name.split(".")[1] not in RNG_TYPES:
            bad.append(f"imports {name} (global RNG)")
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in BANNED_CALLS:
            bad.append(f"calls {node.func.id}() at line {node.lineno}")
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id == "random" and node.attr not in RNG_TYPES:
                bad.append(f"uses random.{node.attr} at line {node.lineno} (global RNG)")
        if isinstance(node, ast.Attribute) and node.attr not in RNG_TYPES:
            v = node.value
            if isinstance(v, ast.Attribute) and v.attr == "random" and isinstance(v.value, ast.Name) \
                    and v.value.id in ("np", "numpy"):
                bad.append(f"uses numpy.random.{node.attr} at line {node.lineno} (global RNG)")
    return [f"{module}: {b}" for b in bad], inner


def _closure() -> dict[str, list[str]]:
    """Every module reachable from p2phpo/core -> its problems."""
    todo = sorted(f"p2phpo.core.{p.stem}" if p.stem != "__init__" else "p2phpo.core"
                  for p in CORE.glob("*.py"))
    seen: dict[str, list[str]] = {}
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        path = _module_path(module)
        if path is None:
            continue
        seen[module], inner = _problems(path, module)
        todo += [m for m in inner if m not in seen]
    return seen


def test_core_and_everything_it_imports_is_sans_io() -> None:
    found = _closure()
    assert "p2phpo.core.driver" in found and "p2phpo.core.gossip" in found
    problems = [p for ps in found.values() for p in ps]
    assert problems == []


@pytest.mark.parametrize("source, expected", [
    ("import time\n", "imports time"),
    ("from asyncio import sleep\n", "imports asyncio"),
    ("import random\nx = random.random()\n", "global RNG"),
    ("from random import choice\n", "global RNG"),
    ("import numpy as np\nx = np.random.rand(3)\n", "numpy.random.rand"),
    ("f = open('x')\n", "calls open()"),
    ("from p2phpo.runtime.udp import run\n", "imports p2phpo.runtime.udp"),
    ("from p2phpo.ui import render\n", "imports p2phpo.ui"),
])
def test_the_check_catches_what_it_bans(tmp_path: Path, source: str, expected: str) -> None:
    path = tmp_path / "bad.py"
    path.write_text(source)
    bad, _ = _problems(path, "p2phpo.core.bad")
    assert any(expected in b for b in bad), bad


def test_an_rng_passed_in_is_allowed(tmp_path: Path) -> None:
    path = tmp_path / "ok.py"
    path.write_text("import random\nimport numpy as np\n"
                    "def f(rng: random.Random, g: np.random.Generator) -> float:\n"
                    "    return rng.random() + g.random()\n")
    assert _problems(path, "p2phpo.core.ok")[0] == []


def _core_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in CORE.glob("*.py"):
        module = f"p2phpo.core.{path.stem}"
        names = _imports(ast.parse(path.read_text()), module)  # TYPE_CHECKING ones too
        graph[module] = {n for n in names if n.startswith("p2phpo.core.") and _module_path(n)
                         and n != module}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_core_modules_import_each_other_without_a_loop() -> None:
    graph = _core_graph()
    assert "p2phpo.core.gossip_sync" in graph["p2phpo.core.gossip"]
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_loop_check_finds_a_loop() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
