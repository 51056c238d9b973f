"""Dependencies point one way (serving -> models -> retrieval; serving -> retrieval), checked two ways: by the
import statements in the source, and by what importing each package actually loads in a fresh interpreter."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APPLICATIONS = {"cli", "bench", "stack"}  # top-level packages that use the library packages; nothing imports them
FORBIDDEN = {
    "retrieval": {"torch", "fastapi", "starlette", "uvicorn", "models", "serving", *APPLICATIONS},
    "models": {"fastapi", "starlette", "uvicorn", "redis", "serving", *APPLICATIONS},
    "serving": APPLICATIONS,
    "loadtest": {"torch", "models", "serving", "retrieval", "cli", "bench"},
}


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_source_imports_point_one_way(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_roots(path) & FORBIDDEN[package])
        for path in sorted((ROOT / package).rglob("*.py"))
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def loaded_after_import(statement: str) -> set[str]:
    code = f"import sys, json; {statement}; print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout))


def test_importing_retrieval_loads_no_torch_or_web_stack() -> None:
    loaded = loaded_after_import(
        "import retrieval, retrieval.events, retrieval.store, retrieval.hashing, retrieval.store.base"
    )
    assert not loaded & {"torch", "fastapi", "starlette", "models", "serving"}


def test_cli_entry_point_is_light() -> None:
    """`longrank --help` must not pay for torch or faiss: verbs import their modules only when run."""
    loaded = loaded_after_import("import cli.main")
    assert not loaded & {"torch", "faiss", "fastapi"}
