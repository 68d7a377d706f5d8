"""dmtrec's packages form layers that import downwards only (DESIGN.md, "Package layout").

Every import statement in dmtrec/ is read with ``ast`` (module level and inside functions alike,
so a lazy import cannot hide an upward dependency) and mapped to the package it names.
"""

from __future__ import annotations

import ast
from pathlib import Path

from common import REPO

# Bottom to top. A module may import its own package and any package listed before it.
LAYERS = [
    "threads",
    "core",
    "geometry",
    "io",
    "render",
    "metrics",
    "datasets",
    "assets",
    "systems",
    "runs",
    "commands",
    "cli",
]
PACKAGE_ROOT = REPO / "dmtrec"


def _package_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "dmtrec":
        return None
    return parts[1] if len(parts) > 1 else ""


def _imports(path: Path) -> list[tuple[int, str]]:
    """``(line, absolute module name)`` of every dmtrec import in ``path``."""
    module = ".".join(path.relative_to(REPO).with_suffix("").parts)
    package_parts = module.split(".")[:-1] if path.name != "__init__.py" else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[: len(package_parts) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((node.lineno, name))
    return [(line, name) for line, name in found if name.split(".")[0] == "dmtrec"]


def _layer_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE_ROOT)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def test_every_package_has_a_layer():
    packages = {p.name for p in PACKAGE_ROOT.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    modules = {p.stem for p in PACKAGE_ROOT.glob("*.py") if p.name != "__init__.py"}
    assert packages | modules <= set(LAYERS), sorted((packages | modules) - set(LAYERS))


def test_no_upward_import():
    violations = []
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        if path.parent == PACKAGE_ROOT and path.name == "__init__.py":
            continue
        own = _layer_of(path)
        for line, name in _imports(path):
            target = _package_of(name)
            if not target or target == own:
                continue
            if target not in LAYERS or LAYERS.index(target) > LAYERS.index(own):
                violations.append(f"{path.relative_to(REPO)}:{line}: {own} imports {name}")
    assert not violations, "\n".join(violations)


def test_the_checker_sees_relative_and_lazy_imports(tmp_path):
    # The checker itself: a relative import two levels up and an import inside a function.
    probe = PACKAGE_ROOT / "geometry" / "normals.py"
    names = {name for _, name in _imports(probe)}
    assert "dmtrec.core.mesh" in names
    source = PACKAGE_ROOT / "render" / "light.py"
    assert any(name.startswith("dmtrec.render") for _, name in _imports(source))
