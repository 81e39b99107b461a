"""Sphinx extension for the book's API reference (book/api.md).

- ``.. advlib-api::`` writes one section per public module of ``advlib``, found by walking the package
  (so a new or split module appears by itself): the module's docstring, a summary table and every
  public name (``__all__``, or the functions and classes a module defines without a leading ``_``).
  A module whose public names are all re-exported by its package (``advlib.models.mnist``) is
  documented there instead.
- ``.. advlib-chapter-index::`` lists, for each chapter, the API entries its code uses, read from the
  committed notebooks: their imports, the ``advlib`` names their code cells call or refer to, and the
  dotted ``advlib.`` names their text shows as code.
- Each chapter gets, after its introduction, a note linking the API entries its code uses.
- Each docstring's "chapter 04" becomes a link to that chapter, and each entry ends with the chapters
  that use it, computed (:func:`reach`): the chapters whose code uses it directly, else the chapters
  that reach it through the library (the documented functions whose code calls it, following
  undocumented helpers), else the reason it is in no chapter (``NOT_IN_A_CHAPTER``). No docstring
  names its chapter by hand, so none can name the wrong one.
"""
from __future__ import annotations

import ast
import functools
import importlib
import inspect
import json
import pkgutil
import re
import sys
import textwrap
from pathlib import Path

from docutils import nodes
from docutils.statemachine import StringList
from sphinx import addnodes
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

PACKAGE = "advlib"
NOTEBOOKS = "notebooks"


# ------------------------------------------------------------------------------------- the package
def public_names(module) -> list[str]:
    if hasattr(module, "__all__"):
        return [n for n in module.__all__ if not inspect.ismodule(getattr(module, n)) and n != "__version__"]
    names = []
    for name, obj in vars(module).items():
        if name.startswith("_") or not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        if getattr(obj, "__module__", None) == module.__name__:
            names.append(name)
    return names


@functools.lru_cache(maxsize=None)
def api_modules() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(module name, public names) for every documented module, in the package's order."""
    package = importlib.import_module(PACKAGE)
    found = [PACKAGE] + sorted(m.name for m in pkgutil.walk_packages(package.__path__, PACKAGE + ".")
                               if not any(part.startswith("_") for part in m.name.split(".")))
    modules = []
    for name in found:
        module = importlib.import_module(name)
        names = public_names(module) if name != PACKAGE else []
        parent_name = name.rpartition(".")[0]
        if parent_name and parent_name != PACKAGE:
            # names that the package re-exports are documented with the package
            parent = importlib.import_module(parent_name)
            exported = {id(getattr(parent, n)) for n in getattr(parent, "__all__", [])}
            names = [n for n in names if id(getattr(module, n)) not in exported]
        if name == PACKAGE or names:
            modules.append((name, tuple(names)))
    return tuple(modules)


@functools.lru_cache(maxsize=None)
def documented_objects() -> dict[int, str]:
    """id(object) -> the qualified name it is documented under."""
    out = {}
    for module_name, names in api_modules():
        module = importlib.import_module(module_name)
        for name in names:
            out.setdefault(id(getattr(module, name)), f"{module_name}.{name}")
    return out


def resolve(dotted: str) -> str | None:
    """The documented name of ``advlib.x.y`` (an alias such as ``advlib.get_device`` included)."""
    parts = dotted.split(".")
    if parts[0] != PACKAGE:
        return None
    obj = importlib.import_module(PACKAGE)
    for part in parts[1:]:
        if not hasattr(obj, part):
            break
        obj = getattr(obj, part)
        obj = getattr(obj, "alias_of", obj)  # an old name (advlib._aliases) counts as its new one
        if id(obj) in documented_objects():
            return documented_objects()[id(obj)]
    return None


# ------------------------------------------------------------------ names no chapter reaches, and why
NOT_IN_A_CHAPTER = {
    # the evidence layer (issue: one headline evaluation, paired tests, seeds, the lesson ledger); the
    # chapter passes adopt it as they re-execute each chapter
    **{f"advlib.{name}": "the evidence layer, which the chapters adopt as they are re-executed" for name in (
        "stats.ClusteredInterval", "stats.clustered_interval", "zoo.over_seeds", "zoo.trades_mnist", "zoo.trades_cifar")},
    "advlib.results.load_results": "read by the book's paper-vs-ours page (book/_ext/paper_vs_book.py)",
    "advlib.results.verdict": "computed by the book's paper-vs-ours page (book/_ext/paper_vs_book.py)",
    "advlib.distributed.close": "ends a data-parallel run under torchrun (benchmarks/distributed.py)",
}


def _library_refs(obj, documented: dict[int, str], seen: set[int]) -> set[str]:
    """The documented names ``obj``'s source refers to, following the undocumented advlib functions
    and classes it calls (a recipe's private helpers) into their source."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(obj)))
    except (TypeError, OSError, SyntaxError):
        return set()
    module = sys.modules.get(getattr(obj, "__module__", None) or "")
    if module is None:
        return set()
    found, namespace = set(), dict(vars(module))
    for node in ast.walk(tree):  # imports inside a function body
        if isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), module.__package__ or "")
            for a in node.names:
                try:
                    namespace[a.asname or a.name] = getattr(importlib.import_module(base), a.name)
                except (ImportError, AttributeError):
                    pass
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            chain = [node.id]
        elif isinstance(node, ast.Attribute):
            parts, inner = [], node
            while isinstance(inner, ast.Attribute):
                parts.append(inner.attr)
                inner = inner.value
            if not isinstance(inner, ast.Name):
                continue
            chain = [inner.id, *reversed(parts)]
        else:
            continue
        if chain[0] not in namespace:
            continue
        target, targets = namespace[chain[0]], [namespace[chain[0]]]
        for part in chain[1:]:
            if not hasattr(target, part):
                break
            target = getattr(target, part)
            targets.append(target)
        for t in targets:
            t = getattr(t, "alias_of", t)
            if t is obj or id(t) in seen:
                continue
            if id(t) in documented:
                found.add(documented[id(t)])
            elif ((inspect.isfunction(t) or inspect.isclass(t))
                  and (getattr(t, "__module__", None) or "").split(".")[0] == PACKAGE):
                seen.add(id(t))
                found |= _library_refs(t, documented, seen)
    return found


@functools.lru_cache(maxsize=None)
def library_refs() -> dict[str, frozenset[str]]:
    """documented name -> the documented names its code uses (see :func:`_library_refs`)."""
    documented = documented_objects()
    objects = {name: getattr(importlib.import_module(name.rpartition(".")[0]), name.rpartition(".")[2])
               for name in documented.values()}
    return {name: frozenset(_library_refs(obj, documented, {id(obj)})) for name, obj in objects.items()}


def reach(uses: dict[str, set[str]]) -> dict[str, tuple[list[str], list[str]]]:
    """documented name -> (the docnames of the chapters that use it directly, or else reach it
    through the library; the documented names it is reached through, empty when used directly),
    from ``uses``, docname -> the names that chapter's code uses."""
    refs = library_refs()
    chapters_of = {name: {doc for doc, names in uses.items() if name in names} for name in refs}
    reached = {name: set(docs) for name, docs in chapters_of.items()}
    changed = True
    while changed:  # a name's chapters include those of every documented function that uses it
        changed = False
        for caller, callees in refs.items():
            for callee in callees:
                if callee in reached and not reached[caller] <= reached[callee]:
                    reached[callee] |= reached[caller]
                    changed = True
    out = {}
    for name in refs:
        if chapters_of[name]:
            out[name] = (sorted(chapters_of[name]), [])
        else:
            via = sorted(caller for caller, callees in refs.items() if name in callees and reached[caller])
            out[name] = (sorted(reached[name]), via)
    return out


# ----------------------------------------------------------------------------- what chapters use
class _Uses(ast.NodeVisitor):
    def __init__(self):
        self.aliases: dict[str, str] = {}  # local name -> dotted advlib name
        self.dotted: set[str] = set()

    def visit_Import(self, node):
        for a in node.names:
            if a.name.split(".")[0] == PACKAGE:
                self.aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else PACKAGE
                self.dotted.add(a.name)

    def visit_ImportFrom(self, node):
        if node.module and node.module.split(".")[0] == PACKAGE and not node.level:
            for a in node.names:
                self.aliases[a.asname or a.name] = f"{node.module}.{a.name}"
                self.dotted.add(f"{node.module}.{a.name}")

    def visit_Attribute(self, node):
        chain, inner = [], node
        while isinstance(inner, ast.Attribute):
            chain.append(inner.attr)
            inner = inner.value
        if isinstance(inner, ast.Name) and inner.id in self.aliases:
            self.dotted.add(".".join([self.aliases[inner.id], *reversed(chain)]))
        self.generic_visit(node)

    def visit_Name(self, node):
        if node.id in self.aliases:
            self.dotted.add(self.aliases[node.id])


def python_source(source: str) -> str:
    """A code cell's source as Python: IPython magics and shell escapes each become a ``pass`` at
    their indentation (the tests read notebooks through this too)."""
    return "\n".join(line[:len(line) - len(line.lstrip())] + "pass" if line.lstrip().startswith(("%", "!"))
                     else line for line in source.splitlines())


def notebook_uses(path: Path) -> set[str]:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    visitor = _Uses()
    for cell in cells:
        source = "".join(cell["source"])
        if cell["cell_type"] == "code":
            try:
                visitor.visit(ast.parse(python_source(source)))
            except SyntaxError:
                pass
        elif cell["cell_type"] == "markdown":
            visitor.dotted.update(re.findall(r"`(advlib(?:\.\w+)+)", source))
    return {name for name in map(resolve, visitor.dotted) if name}


def notebook_title(path: Path) -> str:
    for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
        if cell["cell_type"] == "markdown":
            match = re.search(r"^#\s+(.+)$", "".join(cell["source"]), re.M)
            if match:
                return match.group(1).strip()
    return path.stem


def chapters(srcdir: str) -> list[tuple[str, Path]]:
    """(docname, path) of every chapter notebook that the book builds, in file order."""
    return [(f"{NOTEBOOKS}/{p.stem}", p) for p in sorted(Path(srcdir, NOTEBOOKS).glob("[0-9][0-9]_*.ipynb"))]


@functools.lru_cache(maxsize=None)
def _usage(srcdir: str, stamp: tuple) -> dict[str, set[str]]:
    return {doc: notebook_uses(path) for doc, path in chapters(srcdir)}


def usage(app) -> dict[str, set[str]]:
    """docname -> the documented names that chapter uses."""
    found = [(d, p) for d, p in chapters(app.srcdir) if d in app.env.found_docs]
    stamp = tuple((d, p.stat().st_mtime_ns) for d, p in found)
    uses = _usage(str(app.srcdir), stamp)
    return {d: uses[d] for d, _ in found}


def short(name: str) -> str:
    return name[len(PACKAGE) + 1:] if name.startswith(PACKAGE + ".") else name


def add_chapter_api_note(app, doctree) -> None:
    """At the top of each chapter, after its introduction: links to the API entries its code uses."""
    docname = app.env.docname
    names = usage(app).get(docname) if docname.startswith(NOTEBOOKS + "/") else None
    top = next(iter(doctree.findall(nodes.section)), None)
    if not names or top is None:
        return
    para = nodes.paragraph()
    para += nodes.Text("The ")
    api = addnodes.pending_xref("", refdomain="std", reftype="doc", reftarget="/book/api", refexplicit=True,
                                refdoc=docname, refwarn=True)
    api += nodes.inline(text="API reference")
    para += api
    para += nodes.Text(" of what this chapter's code uses: ")
    for i, name in enumerate(sorted(names, key=str.lower)):
        if i:
            para += nodes.Text(", ")
        ref = addnodes.pending_xref("", refdomain="py", reftype="obj", reftarget=name, refexplicit=True,
                                    refdoc=docname, refwarn=True)
        ref += nodes.literal(text=short(name))
        para += ref
    para += nodes.Text(".")
    note = nodes.admonition(classes=["seealso", "advlib-api-note"])
    note += nodes.title(text="advlib in this chapter")
    note += para
    first_subsection = next((i for i, child in enumerate(top.children) if isinstance(child, nodes.section)),
                            len(top.children))
    top.insert(first_subsection, note)
    for path in (p for d, p in chapters(app.srcdir) if d == docname):
        app.env.note_dependency(str(path))


# ------------------------------------------------------------------------------------- directives
class AdvlibApi(SphinxDirective):
    """One section per public module: docstring, summary table, entries."""

    def run(self):
        sections = []
        for module_name, names in api_modules():
            section = nodes.section(ids=[nodes.make_id(f"api {module_name}")])
            section += nodes.title(text=module_name)
            lines = [f".. automodule:: {module_name}", "   :no-members:", ""]
            if names:
                lines += [f".. currentmodule:: {module_name}", "", ".. autosummary::", "   :nosignatures:", ""]
                lines += [f"   {n}" for n in names] + [""]
                for name in names:
                    obj = getattr(importlib.import_module(module_name), name)
                    kind = "autoclass" if inspect.isclass(obj) else "autofunction" if callable(obj) else "autodata"
                    lines += [f".. {kind}:: {module_name}.{name}"]
                    if kind == "autoclass":
                        lines += ["   :members:"]
                    lines += [""]
            content = StringList(lines, source=f"<advlib-api {module_name}>")
            nested_parse_with_titles(self.state, content, section)
            sections.append(section)
        return sections


class AdvlibChapterIndex(SphinxDirective):
    """For each chapter, the API entries it uses."""

    def run(self):
        lines = []
        for docname, names in usage(self.env.app).items():
            path = Path(self.env.srcdir, docname + ".ipynb")
            self.env.note_dependency(str(path))
            if not names:
                continue
            refs = ", ".join(f":py:obj:`{short(n)} <{n}>`" for n in sorted(names, key=str.lower))
            lines += [f"* :doc:`/{docname}`", "", f"  {refs}", ""]
        node = nodes.container(classes=["advlib-chapter-index"])
        self.state.nested_parse(StringList(lines, source="<advlib-chapter-index>"), 0, node)
        return [node]


# ------------------------------------------------------------------------------------- docstrings
CHAPTER_MENTION = re.compile(r"\b([Cc]hapters?)\s+(\d\d(?:(?:,\s*|,?\s+and\s+)\d\d)*)\b")


def link_chapters(app, what, name, obj, options, lines):
    docs = {doc.split("/")[-1][:2]: doc for doc, _ in chapters(app.srcdir) if doc in app.env.found_docs}

    def link(match):
        word, numbers = match.groups()
        parts = re.split(r"(\d\d)", numbers)
        if len([p for p in parts if p.isdigit()]) == 1 and numbers in docs:
            return f":doc:`{word} {numbers} </{docs[numbers]}>`"
        return word + " " + "".join(f":doc:`{p} </{docs[p]}>`" if p in docs else p for p in parts)

    lines[:] = [CHAPTER_MENTION.sub(link, line) for line in lines]
    documented = documented_objects().get(id(obj))
    if documented == name:
        lines += ["", chapter_footer(name, reach(usage(app))), ""]


def chapter_footer(name: str, reached: dict[str, tuple[list[str], list[str]]]) -> str:
    """The last line of ``name``'s entry: the chapters that use it, or reach it through the library,
    or why no chapter does."""
    docs, via = reached[name]
    if not docs:
        return f"*In no chapter:* {NOT_IN_A_CHAPTER.get(name, 'not used by any chapter')}."
    word = "chapter" if len(docs) == 1 else "chapters"
    links = ", ".join(f":doc:`{doc.split('/')[-1][:2]} </{doc}>`" for doc in docs)
    if not via:
        return f"*Used in {word}* {links}."
    callers = ", ".join(f":py:obj:`{short(v)} <{v}>`" for v in via[:4]) + (", ..." if len(via) > 4 else "")
    return f"*Used in {word}* {links} *through* {callers}."


def import_from_source(app, config):
    # document the advlib of this checkout, whatever an editable install elsewhere points at
    root = str(Path(app.srcdir).resolve())
    if root not in sys.path:
        sys.path.insert(0, root)


def setup(app):
    app.connect("config-inited", import_from_source)
    app.add_directive("advlib-api", AdvlibApi)
    app.add_directive("advlib-chapter-index", AdvlibChapterIndex)
    app.connect("autodoc-process-docstring", link_chapters)
    app.connect("doctree-read", add_chapter_api_note)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
