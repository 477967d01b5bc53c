"""The sans-IO core and the exceptions import no I/O library and nothing above them.

A ``sys.modules`` check cannot work here (``trio_ws/__init__.py`` loads the I/O
layer first), so the source is parsed instead.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "trio_ws"
PURE_MODULES = [
    *sorted((PACKAGE / "protocol").glob("*.py")),
    PACKAGE / "exceptions.py",
    PACKAGE / "_url.py",
]
FORBIDDEN = {"trio", "anyio", "asyncio", "socket", "ssl", "selectors", "threading", "time"}
# Modules of ours that sit above the core.
ABOVE_THE_CORE = {"client", "server", "connection", "_streams"}


def imported_modules(path: Path) -> list[tuple[str, int]]:
    """Every absolute module an import in ``path`` names, resolved for ``from .x``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join((*base, node.module)) if node.module else ".".join(base)
            else:
                module = node.module or ""
            found.append((module, node.lineno))
    return found


@pytest.mark.parametrize("path", PURE_MODULES, ids=lambda p: p.name)
def test_pure_module_imports_no_io(path: Path) -> None:
    for module, line in imported_modules(path):
        top = module.split(".")[0]
        assert top not in FORBIDDEN, f"{path.name}:{line} imports {module}"
        if top == "trio_ws":
            parts = module.split(".")
            assert len(parts) < 2 or parts[1] not in ABOVE_THE_CORE, (
                f"{path.name}:{line} imports {module}, which sits above the core"
            )


def test_the_checker_sees_relative_imports() -> None:
    modules = {m for m, _ in imported_modules(PACKAGE / "protocol" / "machine.py")}
    assert "trio_ws.exceptions" in modules
    assert "trio_ws.protocol.frames" in modules
