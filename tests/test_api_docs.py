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


def test_module_docstrings_link_chapters_that_exist():
    labels = chapter_labels()
    assert {"ch-preliminaries", "ch-gan", "ch-aae", "app-scaling"} <= labels, labels
    bad = [f"{name}: {label}" for name, module, _ in documented()
           for label in re.findall(r":ref:`([a-z0-9-]+)`", inspect.getdoc(module) or "") if label not in labels]
    assert not bad, f"module docstrings linking a label no chapter or page defines: {bad}"


def committed_uses() -> dict[str, set[str]]:
    return {doc: api_reference.notebook_uses(path) for doc, path in api_reference.chapters(str(ROOT))}


def test_every_public_name_is_in_a_chapter_or_says_why_not():
    """Each entry's chapters are computed (directly used, or reached through the library); a name no
    chapter reaches must say why in NOT_IN_A_CHAPTER, and an entry there that a chapter does reach
    is stale."""
    reached = api_reference.reach(committed_uses())
    names = {f"{m}.{n}" for m, _, in_module in documented() for n in in_module}
    assert set(reached) == names
    unexplained = sorted(n for n, (docs, _) in reached.items() if not docs and n not in api_reference.NOT_IN_A_CHAPTER)
    assert not unexplained, f"public names that no chapter uses or reaches, and no reason why: {unexplained}"
    stale = sorted(n for n in api_reference.NOT_IN_A_CHAPTER if n not in reached or reached[n][0])
    assert not stale, f"NOT_IN_A_CHAPTER lists names that are not documented or that a chapter reaches: {stale}"


def test_the_chapter_footer_links_the_chapters_and_the_callers():
    reached = {"advlib.a.used": (["notebooks/04_fgsm", "notebooks/07_pgd"], []),
               "advlib.a.inner": (["notebooks/07_pgd"], ["advlib.attacks.pgd"]),
               "advlib.results.verdict": ([], [])}
    assert api_reference.chapter_footer("advlib.a.used", reached) == (
        "*Used in chapters* :doc:`04 </notebooks/04_fgsm>`, :doc:`07 </notebooks/07_pgd>`.")
    assert api_reference.chapter_footer("advlib.a.inner", reached) == (
        "*Used in chapter* :doc:`07 </notebooks/07_pgd>` *through* :py:obj:`attacks.pgd <advlib.attacks.pgd>`.")
    assert api_reference.chapter_footer("advlib.results.verdict", reached).startswith("*In no chapter:* computed by")


def test_a_name_used_only_inside_the_library_reaches_the_chapters_of_its_callers():
    reached = api_reference.reach(committed_uses())
    docs, via = reached["advlib.attacks.project"]  # called by attacks.pgd, never by a chapter's code
    assert via and "advlib.attacks.pgd" in via and "notebooks/07_pgd_adversarial_training" in docs
    docs, via = reached["advlib.attacks.pgd"]
    assert not via and "notebooks/07_pgd_adversarial_training" in docs


def test_no_docstring_names_its_chapter_by_hand():
    """The chapters of an entry are computed at build time; a hand-written footer could be wrong."""
    by_hand = [f"{m}.{n}" for m, module, names in documented() for n in names
               if "Taught in" in (inspect.getdoc(getattr(module, n)) or "")]
    assert not by_hand, f"docstrings that name their chapter by hand: {by_hand}"


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
