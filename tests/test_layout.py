"""The layering of docs/design.md §2: a part imports only the parts below it, never one beside it or above."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: each part and its layer, lowest first; parts of one layer do not import each other
LAYERS: dict[str, int] = {
    "actors.runtime": 0,
    "actors.cpu": 1,
    "actors.messages": 2,
    "actors.kernel": 3,
    "actors.android": 4, "actors.load": 4, "actors.harness": 4, "actors.device": 4,
    "actors.checks": 5,
    "policies": 6,
    "exitstorm.schema": 7, "exitstorm.lifecycle": 7,
    "exitstorm.outputs": 8,
    "exitstorm.lab": 9,
    "exitstorm.runs": 10,
    "exitstorm.realkernel": 11,
    "exitstorm.cli": 12, "exitstorm.__main__": 13,
}


def part(module: str) -> str | None:
    """The part a dotted module belongs to (its longest prefix in LAYERS)."""
    parts = module.split(".")
    for k in range(len(parts), 0, -1):
        if ".".join(parts[:k]) in LAYERS:
            return ".".join(parts[:k])
    return None


def imports(path: Path) -> list[str]:
    """The first-party modules ``path`` imports at run time (not those under ``if TYPE_CHECKING:``)."""
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and getattr(node.test, "id", None) == "TYPE_CHECKING" for n in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names]
    return found


def test_every_module_belongs_to_a_part() -> None:
    modules = [p for top in ("actors", "policies", "exitstorm") for p in (ROOT / top).rglob("*.py")]
    loose = [str(p.relative_to(ROOT)) for p in modules
             if p.name != "__init__.py" or p.parent.name not in ("actors", "exitstorm")
             if part(".".join(p.relative_to(ROOT).with_suffix("").parts)) is None]
    assert loose == []


def test_no_part_imports_one_beside_it_or_above_it() -> None:
    wrong = []
    for top in ("actors", "policies", "exitstorm"):
        for path in (ROOT / top).rglob("*.py"):
            here = part(".".join(path.relative_to(ROOT).with_suffix("").parts))
            if here is None:
                continue
            for module in imports(path):
                there = part(module)
                if there is not None and there != here and LAYERS[there] >= LAYERS[here]:
                    wrong.append(f"{path.relative_to(ROOT)} imports {module}")
    assert wrong == []
