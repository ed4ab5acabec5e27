"""Every entry point the docs, the manifests and the code's own docstrings name still exists.

Operators and manifests start callq by these names (``celery -A worker``, ``python -m
producer``, ``uvicorn callbacks.app:app``). A module moved without its thin entry point behind
it breaks a deployment without any test of the product failing: the layering change once
removed ``callbacks.app`` while two docstrings still named it.
"""

from __future__ import annotations

import importlib
import re
from importlib.util import find_spec
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [
    ROOT / "README.md",
    ROOT / "docker-compose.yml",
    ROOT / "Makefile",
    *sorted((ROOT / "docs").glob("*.md")),
    *sorted((ROOT / "deploy").rglob("*.y*ml")),
    *sorted((ROOT / "deploy").rglob("*.md")),
    *sorted(
        p
        for d in ("callq", "callbacks", "worker", "producer", "devstack")
        for p in (ROOT / d).rglob("*.py")
    ),
]
ASGI = re.compile(r"\b(?:uvicorn|gunicorn)\b[^\n`]*?\b([a-z_][a-z0-9_.]*):([a-z_][a-z0-9_]*)")
MODULE = re.compile(r"python -m ([a-z_][a-z0-9_.]*)")
CELERY_APP = re.compile(r"celery -A ([a-z_][a-z0-9_.]*)")


def named(pattern: re.Pattern[str]) -> set[tuple[str, ...]]:
    found: set[tuple[str, ...]] = set()
    for path in SOURCES:
        found |= {m.groups() for m in pattern.finditer(path.read_text(encoding="utf-8"))}
    return found


def test_given_the_docs_and_manifests_then_they_name_the_entry_points_checked_here() -> None:
    assert ("callbacks.app", "app") in named(ASGI)
    assert ("producer",) in named(MODULE) and ("worker",) in named(CELERY_APP)


@pytest.mark.parametrize(("module", "attr"), sorted(named(ASGI)))
def test_given_an_asgi_path_named_in_the_docs_when_imported_then_it_is_an_app(
    module: str, attr: str
) -> None:
    app = getattr(importlib.import_module(module), attr)
    assert callable(app), f"{module}:{attr} is not an ASGI app"


@pytest.mark.parametrize(("module",), sorted(named(MODULE)))
def test_given_a_module_run_with_python_m_in_the_docs_then_it_is_runnable(module: str) -> None:
    spec = find_spec(module)
    assert spec is not None, f"python -m {module}: no such module"
    if spec.submodule_search_locations is not None:  # a package runs its __main__
        assert find_spec(f"{module}.__main__") is not None, f"python -m {module}: no __main__"


@pytest.mark.parametrize(("module",), sorted(named(CELERY_APP)))
def test_given_a_celery_app_named_in_the_docs_when_imported_then_it_has_the_tasks(
    module: str,
) -> None:
    from celery import Celery

    app = importlib.import_module(module).app
    assert isinstance(app, Celery)
    app.loader.import_default_modules()
    assert "callq.place_call" in app.tasks or any(n.endswith("place_call") for n in app.tasks)
