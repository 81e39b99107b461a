"""Every chapter opens on Colab from one setting, and installs there what it needs and nothing more.

- The Colab badge of every notebook points at the repository and branch that `_config.yml` names
  (``repository.url``, ``repository.branch``), at that notebook's own path.
- Its install line (the first code cell's ``%pip install``, run only on Colab) installs advlib from
  that same repository, with extras that `pyproject.toml` defines.
- The optional packages on the line (those advlib does not depend on: `torchattacks`, `captum`,
  `sacrebleu`, and the `imagenet` extra) are exactly those the chapter needs: imported by its own
  code, or by an advlib function its code calls (or one those call in turn).
"""
from __future__ import annotations

import ast
import importlib
import inspect
import json
import re
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "_ext"))
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
URL = CONFIG["repository"]["url"].rstrip("/")
BRANCH = CONFIG["repository"]["branch"]
# what a chapter may need beyond advlib's own dependencies, and the module that shows it is needed
OPTIONAL = {"torchattacks": "torchattacks", "captum": "captum", "sacrebleu": "sacrebleu",
            "[imagenet]": "efficientnet_lite_pytorch"}
# known gaps, each closed by its chapter's pass (which re-executes the chapter at the book budget)
KNOWN_MISSING = {"03": {"sacrebleu"}}
PIP = re.compile(r'%pip install -q "advlib(\[[a-z,]+\])? @ git\+(\S+?)"((?: [\w-]+)*)\s*$', re.M)


def cells(path: Path, kind: str) -> list[str]:
    return ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == kind]


def advlib_function_sources(path: Path) -> str:
    """The source of every advlib function or class the chapter uses (as the API reference reads it:
    its imports, aliases and dotted names), and of the functions those name in turn, in their own
    modules (three levels)."""
    import sys

    api_reference = pytest.importorskip("api_reference")  # needs Sphinx, which the book's requirements bring
    frontier = set()
    for dotted in api_reference.notebook_uses(path):
        module_name, _, name = dotted.rpartition(".")
        frontier.add((importlib.import_module(module_name), name))
    seen, sources = set(), []
    for _ in range(3):
        found = set()
        for module, name in frontier:
            obj = getattr(module, name, None)
            if (module.__name__, name) in seen or not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            seen.add((module.__name__, name))
            if not obj.__module__.startswith("advlib"):
                continue
            src = inspect.getsource(obj)
            sources.append(src)
            home = sys.modules[obj.__module__]
            for node in ast.walk(ast.parse(textwrap.dedent(src))):
                if isinstance(node, ast.Name):
                    found.add((home, node.id))
                elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                    target = getattr(home, node.value.id, None)
                    if inspect.ismodule(target):
                        found.add((target, node.attr))
        frontier = found
    return "\n".join(sources)


def imports(source: str, module: str) -> bool:
    return re.search(rf"^\s*(import {module}\b|from {module}[\s.])", source, re.M) is not None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_badge_and_install_line_come_from_the_config(path):
    owner_repo = URL.removeprefix("https://github.com/")
    badge = f"https://colab.research.google.com/github/{owner_repo}/blob/{BRANCH}/notebooks/{path.name}"
    assert badge in cells(path, "markdown")[0], f"{path.name}: the Colab badge must be {badge}"
    lines = PIP.findall(cells(path, "code")[0])
    assert len(lines) == 1, f"{path.name}: the first code cell needs one '%pip install -q \"advlib @ git+URL\"' line"
    extras, url, _ = lines[0]
    assert url == URL, f"{path.name}: installs from {url}, _config.yml names {URL}"
    defined = set(re.findall(r"^(\w+) = \[", (ROOT / "pyproject.toml").read_text().split("[project.optional-dependencies]")[1]
                             .split("\n[")[0], re.M))
    assert set(filter(None, extras.strip("[]").split(","))) <= defined


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_install_line_has_what_the_chapter_needs_and_nothing_more(path):
    code = "\n".join(cells(path, "code"))
    extras, _, packages = PIP.findall(cells(path, "code")[0])[0]
    on_line = set(packages.split()) | ({extras} if extras else set())
    reached = code + "\n" + advlib_function_sources(path)
    needed = {name for name, module in OPTIONAL.items() if imports(reached, module)}
    missing = needed - on_line - KNOWN_MISSING.get(path.name[:2], set())
    extra = on_line - needed
    assert not missing, f"{path.name}: needs {sorted(missing)} on its Colab install line"
    assert not extra, f"{path.name}: installs {sorted(extra)}, which nothing it runs imports"


def test_known_gaps_are_still_gaps():
    """An entry of KNOWN_MISSING is removed when its chapter is fixed."""
    for chapter, names in KNOWN_MISSING.items():
        (path,) = [p for p in NOTEBOOKS if p.name.startswith(chapter)]
        first = cells(path, "code")[0]
        assert not any(name in PIP.findall(first)[0][2].split() for name in names), f"{path.name}: remove it from KNOWN_MISSING"
