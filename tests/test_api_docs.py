"""The API reference (book/api.md) documents every public advlib name: each must have a docstring."""
import importlib
import inspect
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "_ext"))
api_reference = pytest.importorskip("api_reference")  # needs Sphinx, which the book's requirements bring


def documented():
    for module_name, names in api_reference.api_modules():
        module = importlib.import_module(module_name)
        yield module_name, module, names


def test_every_module_and_public_name_has_a_docstring():
    missing = []
    for module_name, module, names in documented():
        if not inspect.getdoc(module):
            missing.append(module_name)
        for name in names:
            obj = getattr(module, name)
            if not (inspect.getdoc(obj) or "").strip():
                missing.append(f"{module_name}.{name}")
    assert not missing, f"public names without a docstring: {missing}"


def test_the_reference_covers_the_book_modules():
    modules = {name for name, _, _ in documented()}
    for name in ["advlib.data", "advlib.models", "advlib.attacks", "advlib.train", "advlib.evaluate",
                 "advlib.budget", "advlib.cache", "advlib.zoo", "advlib.gan", "advlib.aae", "advlib.loops", "advlib.plots",
                 "advlib.utils"]:
        assert name in modules


def test_every_chapter_uses_some_documented_name():
    for docname, path in api_reference.chapters(str(ROOT)):
        assert api_reference.notebook_uses(path), f"{docname}: no advlib name found in its code"
