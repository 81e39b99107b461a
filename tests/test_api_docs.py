"""The API reference (book/api.md) documents every public advlib name: each must have a docstring."""
import importlib
import inspect
import json
import re
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


CHAPTER_LINK = re.compile(r"Taught in :ref:`([a-z0-9-]+)`(?:(?:, | and ):ref:`([a-z0-9-]+)`)*\.$")


LABEL = re.compile(r"^\(([a-z0-9-]+)\)=\s*$", flags=re.M)


def chapter_labels() -> set[str]:
    """The MyST labels ``(name)=`` that the chapters' markdown cells and the book's appendix pages
    (``book/*.md``, e.g. ``app-scaling``) define."""
    labels = set()
    for _, path in api_reference.chapters(str(ROOT)):
        for cell in json.loads(Path(path).read_text())["cells"]:
            if cell["cell_type"] == "markdown":
                labels |= set(LABEL.findall("".join(cell["source"])))
    for page in sorted((ROOT / "book").glob("*.md")):
        labels |= set(LABEL.findall(page.read_text(encoding="utf-8")))
    return labels


def test_every_public_name_ends_with_a_link_to_its_chapter():
    labels = chapter_labels()
    assert {"ch-preliminaries", "ch-gan", "ch-aae", "app-scaling"} <= labels, labels
    bad = []
    for module_name, module, names in documented():
        for name in names:
            last = (inspect.getdoc(getattr(module, name)) or "").strip().split("\n")[-1]
            found = re.findall(r":ref:`([a-z0-9-]+)`", last)
            if not CHAPTER_LINK.fullmatch(last) or not found or not set(found) <= labels:
                bad.append(f"{module_name}.{name}: {last!r}")
    assert not bad, "docstrings that do not end with 'Taught in :ref:`<chapter label>`.':\n" + "\n".join(bad)


def test_every_training_loop_says_it_leaves_eval_mode():
    import advlib
    loops = [advlib.train.fit, *(getattr(m, n) for m in (advlib.gan, advlib.aae) for n in dir(m) if n.startswith("train_"))]
    quiet = [f.__name__ for f in loops if "eval mode" not in " ".join(inspect.getdoc(f).split())]
    assert not quiet, f"training loops whose docstring does not say they leave the model in eval mode: {quiet}"


def test_the_reference_covers_the_book_modules():
    modules = {name for name, _, _ in documented()}
    for name in ["advlib.data", "advlib.models", "advlib.attacks", "advlib.train", "advlib.evaluate",
                 "advlib.budget", "advlib.cache", "advlib.zoo", "advlib.gan", "advlib.aae", "advlib.loops", "advlib.plots",
                 "advlib.utils"]:
        assert name in modules


def test_every_chapter_uses_some_documented_name():
    for docname, path in api_reference.chapters(str(ROOT)):
        assert api_reference.notebook_uses(path), f"{docname}: no advlib name found in its code"


def _docstrings():
    """(where, docstring) for every documented module, public name and public method."""
    for module_name, module, names in documented():
        yield module_name, inspect.getdoc(module) or ""
        for name in names:
            obj = getattr(module, name)
            yield f"{module_name}.{name}", inspect.getdoc(obj) or ""
            if inspect.isclass(obj):
                for attr, member in vars(obj).items():
                    if not attr.startswith("_") and callable(member) and inspect.getdoc(member):
                        yield f"{module_name}.{name}.{attr}", inspect.getdoc(member)


def test_every_docstring_is_valid_restructuredtext():
    """The book is built with warnings as errors: a docstring docutils cannot parse cleanly (an
    unpaired ``*`` or backquote, a bad indent) fails the build. Parse each one as Sphinx does, after
    napoleon, with Sphinx's own roles stubbed, and collect every warning."""
    from docutils import nodes
    from docutils.core import publish_doctree
    from docutils.parsers.rst import roles
    from sphinx.ext.napoleon import Config
    from sphinx.ext.napoleon.docstring import GoogleDocstring, NumpyDocstring

    def any_role(name, rawtext, text, lineno, inliner, options=None, content=None):
        return [nodes.literal(rawtext, text)], []

    for role in ("ref", "func", "class", "mod", "meth", "attr", "data", "obj", "exc", "math", "cite",
                 "doc", "numref", "eq", "py:func", "py:class"):
        roles.register_local_role(role, any_role)
    config = Config(napoleon_use_param=True, napoleon_use_rtype=True)
    bad = []
    for where, doc in _docstrings():
        text = str(GoogleDocstring(str(NumpyDocstring(doc, config)), config))
        settings = {"report_level": 2, "halt_level": 5, "warning_stream": False}
        tree = publish_doctree(text, settings_overrides=settings)
        bad += [f"{where}: {m.astext()}" for m in tree.findall(nodes.system_message) if m["level"] >= 2]
    assert not bad, "docstrings that would fail the book build:\n" + "\n".join(bad)
