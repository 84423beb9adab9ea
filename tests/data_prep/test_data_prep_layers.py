"""data_prep is cut by stage, and data flows one way: a module imports only from its own stage or the ones
to its left (shared → sources → parse → canonical → splits → interface), and no imports form a cycle."""
from __future__ import annotations

import ast
from pathlib import Path

import data_prep

PACKAGE = Path(data_prep.__file__).parent
STAGES = {  # module (or package) → stage rank
    "errors": 0, "atomic": 0, "folder": 0, "paths": 0, "datasets": 0, "table": 0,
    "sources": 1, "parse": 2, "canonical": 3, "synth": 3,
    "config": 4, "assign": 4, "genres": 4, "fingerprint": 4, "manifest": 4, "split": 4,
    "api": 5, "cli": 5, "__main__": 5, "__init__": 5,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


def imports() -> dict[str, set[str]]:
    """data_prep module → the data_prep modules it imports (as dotted names below the package)."""
    found: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("data_prep"):
                base = node.module.removeprefix("data_prep").lstrip(".")
                for alias in node.names:  # `from data_prep import atomic` names a module
                    sub = f"{base}.{alias.name}" if base else alias.name
                    targets.add(sub if (PACKAGE / (sub.replace(".", "/") + ".py")).exists() else base)
            elif isinstance(node, ast.Import):
                targets |= {a.name.removeprefix("data_prep.") for a in node.names if a.name.startswith("data_prep.")}
        found[module_name(path)] = {t for t in targets if t}
    return found


def stage(module: str) -> int:
    return STAGES[module.split(".")[0]]


def test_every_module_has_a_stage():
    assert sorted(m for m in imports() if m.split(".")[0] not in STAGES) == []


def test_imports_point_left_only():
    wrong = sorted(f"{m} (stage {stage(m)}) imports {t} (stage {stage(t)})"
                   for m, targets in imports().items() if m != "__init__" for t in targets if stage(t) > stage(m))
    assert wrong == []


def test_no_import_cycle():
    graph = imports()
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        if module in path:
            raise AssertionError("import cycle: " + " → ".join(path[path.index(module):] + (module,)))
        if module in done:
            return
        for target in graph.get(module, ()):
            if target != module.rsplit(".", 1)[0]:  # a submodule's package runs first anyway
                visit(target, path + (module,))
        done.add(module)

    for module in graph:
        visit(module, ())
