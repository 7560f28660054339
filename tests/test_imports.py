"""Module boundaries of src/genosae: no private names imported across modules, no API in CLI modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "genosae"


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _imports(path: Path, root: Path) -> list[tuple[int, str, str]]:
    """``(line, module, name)`` of every ``from module import name`` (relative imports resolved)."""
    here = _module_name(path, root)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            out += [(node.lineno, module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            out += [(node.lineno, alias.name, "") for alias in node.names]
    return out


def private_imports(root: Path = SRC) -> list[str]:
    """Every ``from x import _y`` (``_y`` not a dunder, ``x`` another module, not ``__future__``)
    and every import of a CLI module (``*._cli``, ``_cli_core``) outside ``genosae.cli``."""
    bad = []
    for path in sorted(root.rglob("*.py")):
        here = _module_name(path, root)
        for line, module, name in _imports(path, root):
            where = f"{path.relative_to(root.parent)}:{line}"
            if module == "__future__" or module == here:
                continue
            if name and _is_private(name):
                bad.append(f"{where}: from {module} import {name}")
            last = module.rpartition(".")[2]
            if last in {"_cli", "_cli_core"} and here != "genosae.cli":
                bad.append(f"{where}: imports the CLI module {module}")
    return bad


def test_no_module_imports_a_private_name_of_another():
    assert private_imports() == []


def test_the_check_catches_what_it_forbids(tmp_path):
    pkg = tmp_path / "genosae"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "a.py").write_text("from __future__ import annotations\n_x = 1\n__all__ = []\n")
    (pkg / "sub" / "b.py").write_text(
        "from genosae.sub.a import __all__\nfrom genosae.sub.a import _x\nfrom .a import _x as y\n"
        "from genosae.sub._cli import add_commands\n")
    found = private_imports(pkg)
    assert [f.split(": ", 1)[1] for f in found] == [
        "from genosae.sub.a import _x", "from genosae.sub.a import _x",
        "imports the CLI module genosae.sub._cli"]


@pytest.mark.parametrize("package", ["genome", "model", "sae", "features", "tracks", "biomarkers", "report"])
def test_subpackages_export_their_api(package):
    import importlib

    module = importlib.import_module(f"genosae.{package}")
    names = getattr(module, "__all__", None)
    assert names, f"genosae.{package} has no __all__"
    missing = [n for n in names if not hasattr(module, n)]
    assert missing == []
