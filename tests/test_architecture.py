"""docs/architecture.md stays true: it names every app under webvirt/, and the apps import only what
its table says they may."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"


def apps() -> set[str]:
    return {p.name for p in (ROOT / "webvirt").iterdir() if p.is_dir() and (p / "__init__.py").exists()}


def table() -> dict[str, set[str]]:
    """The doc's app table: app -> the apps it may import."""
    rows = re.findall(r"^\| `(\w+)` \| .* \| (.*) \|$", DOC.read_text(), flags=re.MULTILINE)
    return {app: set(re.findall(r"`(\w+)`", allowed)) for app, allowed in rows}


def imported_apps(app: str) -> dict[str, set[str]]:
    """The other apps each module of `app` imports (anywhere in the file, lazily too): module -> apps."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / "webvirt" / app).rglob("*.py"):
        if "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else (
                [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            for name in names:
                parts = name.split(".")
                if len(parts) > 1 and parts[0] == "webvirt" and parts[1] in apps() and parts[1] != app:
                    found.setdefault(str(path.relative_to(ROOT)), set()).add(parts[1])
    return found


def test_the_document_names_every_app_and_no_other() -> None:
    assert set(table()) == apps(), "docs/architecture.md's app table must list exactly the apps in webvirt/"


def test_each_app_imports_only_what_the_document_allows() -> None:
    allowed = table()
    wrong = {module: sorted(used - allowed[app]) for app in apps()
             for module, used in imported_apps(app).items() if used - allowed[app]}
    assert wrong == {}, f"imports the architecture does not allow (fix the code or the document): {wrong}"
