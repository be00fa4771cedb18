"""Arrows point one way (docs/architecture.md): a module imports only from lower layers (or its own
package); ``ingest`` is pure and imports only the foundation."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"

#: Layer of each top-level part of the package, bottom first.
LAYERS = {
    # foundation: plain records and helpers with no I/O of their own
    "records": 0, "errors": 0, "ids": 0, "metrics": 0, "timeutil": 0, "backoff": 0, "redact": 0, "config": 0, "logs": 0, "": 0,
    "storage": 1,
    "saas": 2,
    "sync": 3,
    "ingest": 4,
    "service": 5,
    "web": 6,
    "simulator": 6,
    "cli": 7,
    "__main__": 8,
}  # fmt: skip


def part(module: str) -> str:
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else ""


def imports() -> list[tuple[str, str, int]]:
    """(importing module, imported juhe_sync module, line) for every import in the package."""
    found = []
    for path in (SRC / "juhe_sync").rglob("*.py"):
        module = ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("juhe_sync"):
                targets = [node.module]
                if node.module in ("juhe_sync", "juhe_sync.storage", "juhe_sync.ingest", "juhe_sync.saas"):
                    targets = [f"{node.module}.{a.name}" for a in node.names]
                found += [(module, t, node.lineno) for t in targets]
            elif isinstance(node, ast.Import):
                found += [(module, a.name, node.lineno) for a in node.names if a.name.startswith("juhe_sync")]
    return found


def test_every_part_has_a_layer() -> None:
    parts = {part(m) for m, _, _ in imports()} | {part(t) for _, t, _ in imports()}
    # "juhe_sync.__version__" and the like name the package itself
    parts = {p if (SRC / "juhe_sync" / p).exists() or (SRC / "juhe_sync" / f"{p}.py").exists() else "" for p in parts}
    assert parts <= set(LAYERS), parts - set(LAYERS)


def test_imports_point_down() -> None:
    wrong = []
    for module, target, line in imports():
        source, dest = part(module), part(target)
        if dest not in LAYERS:  # juhe_sync.__version__
            dest = ""
        if source == dest:
            continue
        if LAYERS[dest] > LAYERS[source] or (LAYERS[dest] == LAYERS[source] and LAYERS[source] > 0):
            wrong.append(f"{module}:{line} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_ingest_is_pure() -> None:
    """Parsing and normalising import only the foundation: no storage, no network."""
    wrong = [f"{m}:{line} imports {t}" for m, t, line in imports()
             if part(m) == "ingest" and part(t) != "ingest" and LAYERS.get(part(t), 0) > 0]  # fmt: skip
    assert not wrong, "\n".join(wrong)


def test_the_foundation_imports_only_itself() -> None:
    wrong = [f"{m}:{line} imports {t}" for m, t, line in imports()
             if LAYERS.get(part(m)) == 0 and LAYERS.get(part(t), 0) > 0]  # fmt: skip
    assert not wrong, "\n".join(wrong)


def test_no_module_is_over_400_lines() -> None:
    long = {
        str(p.relative_to(SRC)): n
        for p in (SRC / "juhe_sync").rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > 400
    }
    assert not long, long
