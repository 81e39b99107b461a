"""Sphinx extension for the book's "Paper vs this book" page (book/paper_vs_book.md).

``.. paper-vs-book::`` writes one table of every chapter's paper-vs-ours rows, read from the
results files the chapters write beside their notebooks when executed at the ``book`` budget
(``notebooks/<chapter>.results.json``, see :mod:`advlib.results`). Each row links to its chapter.
"""
from __future__ import annotations

import re
from pathlib import Path

from docutils import nodes
from sphinx import addnodes
from sphinx.util.docutils import SphinxDirective

NOTEBOOKS = "notebooks"
COLUMNS = [("chapter", 12), ("claim", 28), ("paper", 26), ("this book", 28), ("budget", 6)]


def chapter_titles(srcdir: Path) -> dict[str, str]:
    """The sidebar title of each notebook in _toc.yml, by file stem ("10 · Training against ...")."""
    toc = (srcdir / "_toc.yml").read_text(encoding="utf-8")
    pairs = re.findall(r"-\s*file:\s*notebooks/(\S+)\s*\n\s*title:\s*\"([^\"]+)\"", toc)
    return dict(pairs)


def _cell(content) -> nodes.entry:
    entry = nodes.entry()
    entry += content if isinstance(content, nodes.Node) else nodes.paragraph(text=str(content))
    return entry


class PaperVsBook(SphinxDirective):
    has_content = False

    def run(self):
        from advlib.results import SUFFIX, load_results

        srcdir = Path(self.env.srcdir)
        folder = srcdir / NOTEBOOKS
        for path in folder.glob(f"*{SUFFIX}"):
            self.env.note_dependency(str(path))
        results = load_results(folder)
        titles = chapter_titles(srcdir)
        table = nodes.table(classes=["paper-vs-book"])
        group = nodes.tgroup(cols=len(COLUMNS))
        table += group
        for _, width in COLUMNS:
            group += nodes.colspec(colwidth=width)
        head = nodes.thead()
        row = nodes.row()
        for name, _ in COLUMNS:
            row += _cell(name)
        head += row
        group += head
        body = nodes.tbody()
        for rec in results.itertuples(index=False):
            row = nodes.row()
            link = addnodes.pending_xref("", refdomain="std", reftype="doc", refexplicit=True,
                                         reftarget=f"/{NOTEBOOKS}/{rec.chapter}", refdoc=self.env.docname)
            link += nodes.inline(text=titles.get(rec.chapter, rec.chapter))
            para = nodes.paragraph()
            para += link
            for content in (para, rec.claim, rec.paper, rec.ours, rec.budget):
                row += _cell(content)
            body += row
        group += body
        chapters = results.chapter.nunique() if len(results) else 0
        summary = nodes.paragraph(text=f"{len(results)} rows from {chapters} chapter(s), "
                                       "each computed at the book budget.")
        return [summary, table]


def _always_reread(app, env, added, changed, removed):
    """The page that shows the table is re-read on every build: a chapter may have written, or
    rewritten, its results since the last one."""
    return [doc for doc in env.found_docs if doc.endswith("paper_vs_book")]


def setup(app):
    app.add_directive("paper-vs-book", PaperVsBook)
    app.connect("env-get-outdated", _always_reread)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
