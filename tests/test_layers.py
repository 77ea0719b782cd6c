"""The architecture as a test: which package may import which, and no private names across modules.

Arrows go one way: flows -> (grpo_core, prm, analysis); prm -> grpo_core; analysis reads the
store (grpo_core.store) and knows nothing of torch; grpo_core imports no orchestration. Read from
the source with `ast`, so a lazy import inside a function counts as much as one at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("grpo_core", "prm", "analysis", "flows")

# package -> top-level modules (or dotted prefixes) it must never import
FORBIDDEN = {
    "grpo_core": ("prefect", "prm", "analysis", "flows"),
    "prm": ("prefect", "analysis", "flows"),
    "analysis": ("torch", "transformers", "prm", "flows", "prefect", "grpo_core.training", "grpo_core.rollout",
                 "grpo_core.policy", "grpo_core.maths"),
}


def imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(module, imported names, line) of every import statement in `path`, resolved to absolute names."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, [], node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, [alias.name for alias in node.names], node.lineno))
    return found


def sources(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_go_one_way(package):
    bad = []
    for path in sources(package):
        for module, _, line in imports(path):
            if any(module == f or module.startswith(f + ".") for f in FORBIDDEN[package]):
                bad.append(f"{path.relative_to(REPO)}:{line} imports {module}")
    assert not bad, "\n".join(bad)


def test_no_module_imports_a_private_name_of_another():
    bad = []
    for path in [p for pkg in (*PACKAGES, "tests", "bench") for p in sorted((REPO / pkg).rglob("*.py"))]:
        for module, names, line in imports(path):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private and module.split(".")[0] in (*PACKAGES, "tests"):
                bad.append(f"{path.relative_to(REPO)}:{line} imports {private} from {module}")
    assert not bad, "\n".join(bad)


def test_the_layer_test_sees_a_forbidden_import(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("def f():\n    from prefect import flow\n    from grpo_core.store.writer import _now\n")
    assert imports(path) == [("prefect", ["flow"], 2), ("grpo_core.store.writer", ["_now"], 3)]
