"""The package's imports flow one way (STYLE.md): every import of ``reckd`` and ``data_prep`` — at the
top of a module or inside a function — goes from a higher layer to a lower one or stays in its own
layer, and no chain of imports leads back to where it started.

Layers, low → high: data_prep (by stage: plumbing < sources < parse < canonical < splits < api/cli) <
reckd.errors < reckd.data < reckd.models < reckd.losses < reckd.train <
the experiment drivers (reckd.vision, reckd.report, reckd.baselines) < reckd.cli. ``reckd/__init__.py``
(the version) and ``reckd/__main__.py`` are exempt.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("data_prep", "reckd")
LAYERS = [  # (module prefix, layer); the longest matching prefix wins
    # data_prep, cut by stage: shared plumbing < sources < parse < canonical < splits < its API and CLI
    ("data_prep.errors", 0.0), ("data_prep.atomic", 0.0), ("data_prep.folder", 0.0), ("data_prep.paths", 0.0),
    ("data_prep.datasets", 0.0), ("data_prep.table", 0.0),
    ("data_prep.sources", 0.1), ("data_prep.parse", 0.2), ("data_prep.canonical", 0.3), ("data_prep.synth", 0.3),
    ("data_prep.config", 0.4), ("data_prep.assign", 0.4), ("data_prep.genres", 0.4),
    ("data_prep.fingerprint", 0.4), ("data_prep.manifest", 0.4), ("data_prep.split", 0.4),
    ("data_prep", 0.5),  # the package's __init__, api, cli, __main__
    ("reckd.errors", 1),
    ("reckd.data", 2),
    ("reckd.models", 3),
    ("reckd.losses", 4),
    ("reckd.train", 5),
    ("reckd.vision", 6), ("reckd.report", 6), ("reckd.baselines", 6),
    ("reckd.cli", 7),
]
EXEMPT = {"reckd", "reckd.__main__"}


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path) -> dict[str, Path]:
    return {module_name(root, p): p for package in PACKAGES for p in sorted((root / package).rglob("*.py"))}


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules that ``name`` imports anywhere in its file (functions included): ``import a.b``
    gives ``a.b``; ``from a import b`` gives ``a.b`` when that is a module, else ``a``; relative
    imports are resolved against the module's package."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # ``import a.b.c`` of a non-module attribute → its module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def layer(name: str) -> float:
    matches = [(len(prefix), level) for prefix, level in LAYERS if name == prefix or name.startswith(prefix + ".")]
    if not matches:
        raise AssertionError(f"{name}: no layer; add it to LAYERS in {Path(__file__).name}")
    return max(matches)[1]


def graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Each module of the packages under ``root`` → the project modules it imports."""
    found = modules(root)
    known = set(found)
    return {name: imports(name, path, known) for name, path in found.items()}


def upward(edges: dict[str, set[str]]) -> list[str]:
    return [f"{source} ({layer(source)}) imports {target} ({layer(target)})"
            for source, targets in sorted(edges.items()) if source not in EXEMPT
            for target in sorted(targets) if target not in EXEMPT and layer(target) > layer(source)]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_the_walker_finds_upward_imports_and_cycles(tmp_path):
    files = {
        "data_prep/__init__.py": "",
        "data_prep/paths.py": "from . import atomic\n",  # relative, same layer
        "data_prep/atomic.py": "def f():\n    from data_prep.paths import x\n",  # a cycle through a function
        "reckd/__init__.py": "",
        "reckd/models/__init__.py": "",
        "reckd/models/net.py": "import torch\nfrom reckd.losses.base import Dims\n",  # upward
        "reckd/losses/__init__.py": "from reckd.losses import base\n",
        "reckd/losses/base.py": "from ..models.net import Net\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    edges = graph(tmp_path)
    assert edges["reckd.losses"] == {"reckd.losses.base"} and edges["reckd.losses.base"] == {"reckd.models.net"}
    assert upward(edges) == ["reckd.models.net (3) imports reckd.losses.base (4)"]
    assert cycles(edges) == [["data_prep.atomic", "data_prep.paths"], ["reckd.losses.base", "reckd.models.net"]]


def test_every_module_has_a_layer():
    for name in graph():
        if name not in EXEMPT:
            layer(name)


def test_imports_go_from_higher_layers_to_lower_ones():
    found = upward(graph())
    assert not found, "imports from a lower layer up to a higher one:\n" + "\n".join(found)


def test_no_import_cycle():
    edges = {name: targets - EXEMPT for name, targets in graph().items() if name not in EXEMPT}
    found = cycles(edges)
    assert not found, "import cycles:\n" + "\n".join(" → ".join(c) for c in found)
