"""Sphinx extension for the book's "Paper vs this book" page (book/paper_vs_book.md).

``.. paper-vs-book-summary::`` writes, per chapter, how many of its paper-vs-ours rows reproduce the
paper's number within our 95% interval, fall below it, exceed it, or are not comparable, with the
totals; ``.. paper-vs-book::`` writes every row with its verdict (:func:`advlib.results.verdict`).
Both read the results files the chapters write beside their notebooks when executed at the ``book``
budget (``notebooks/<chapter>.results.json``, see :mod:`advlib.results`). Each row links to its chapter.
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
from docutils import nodes
from sphinx import addnodes
from sphinx.util.docutils import SphinxDirective

NOTEBOOKS = "notebooks"
COLUMNS = [("chapter", 12), ("claim", 24), ("paper", 22), ("this book", 24), ("verdict", 18), ("budget", 6)]
TOTAL = "all chapters"


def chapter_titles(srcdir: Path) -> dict[str, str]:
    """The sidebar title of each notebook in _toc.yml, by file stem ("10 · Training against ...")."""
    toc = (srcdir / "_toc.yml").read_text(encoding="utf-8")
    pairs = re.findall(r"-\s*file:\s*notebooks/(\S+)\s*\n\s*title:\s*\"([^\"]+)\"", toc)
    return dict(pairs)


def with_verdicts(results: pd.DataFrame) -> pd.DataFrame:
    """``results`` (from :func:`advlib.results.load_results`) with two more columns, ``verdict`` (one
    of :data:`advlib.results.VERDICTS`) and ``reason``."""
    from advlib.results import verdict

    out = results.copy()
    pairs = [verdict(row) for row in results.to_dict("records")]
    out["verdict"] = [label for label, _ in pairs]
    out["reason"] = [reason for _, reason in pairs]
    return out


def summary(results: pd.DataFrame) -> pd.DataFrame:
    """How many rows of each chapter have each verdict: one row per chapter, in chapter order, then
    the totals (index ``TOTAL``); the columns ``rows`` and each of :data:`advlib.results.VERDICTS`."""
    from advlib.results import VERDICTS

    judged = with_verdicts(results)
    counts = pd.crosstab(judged.chapter, judged.verdict) if len(judged) else pd.DataFrame()
    counts = counts.reindex(columns=list(VERDICTS), fill_value=0)
    counts = counts.reindex(sorted(judged.chapter.unique()), fill_value=0).astype(int)
    counts.insert(0, "rows", counts.sum(axis=1))
    counts.loc[TOTAL] = counts.sum(axis=0)
    counts.index.name, counts.columns.name = "chapter", None
    return counts


def _cell(content) -> nodes.entry:
    entry = nodes.entry()
    entry += content if isinstance(content, nodes.Node) else nodes.paragraph(text=str(content))
    return entry


def _table(columns: list[tuple[str, int]], rows: list[list], classes: list[str]) -> nodes.table:
    table = nodes.table(classes=classes)
    group = nodes.tgroup(cols=len(columns))
    table += group
    for _, width in columns:
        group += nodes.colspec(colwidth=width)
    head = nodes.thead()
    row = nodes.row()
    for name, _ in columns:
        row += _cell(name)
    head += row
    group += head
    body = nodes.tbody()
    for cells in rows:
        row = nodes.row()
        for content in cells:
            row += _cell(content)
        body += row
    group += body
    return table


class _Directive(SphinxDirective):
    has_content = False

    def results(self) -> pd.DataFrame:
        from advlib.results import SUFFIX, load_results

        folder = Path(self.env.srcdir) / NOTEBOOKS
        for path in folder.glob(f"*{SUFFIX}"):
            self.env.note_dependency(str(path))
        return load_results(folder)

    def chapter_link(self, chapter: str, titles: dict[str, str]) -> nodes.paragraph:
        link = addnodes.pending_xref("", refdomain="std", reftype="doc", refexplicit=True,
                                     reftarget=f"/{NOTEBOOKS}/{chapter}", refdoc=self.env.docname)
        link += nodes.inline(text=titles.get(chapter, chapter))
        para = nodes.paragraph()
        para += link
        return para


class PaperVsBookSummary(_Directive):
    def run(self):
        from advlib.results import VERDICTS

        counts = summary(self.results())
        titles = chapter_titles(Path(self.env.srcdir))
        rows = []
        for chapter, rec in counts.iterrows():
            first = nodes.paragraph(text=TOTAL) if chapter == TOTAL else self.chapter_link(chapter, titles)
            rows.append([first, rec["rows"], *(rec[v] for v in VERDICTS)])
        total = counts.loc[TOTAL]
        chapters = len(counts) - 1
        text = (f"{total['rows']} rows from {chapters} chapter(s): {total['reproduces']} reproduce the "
                f"paper's number within our 95% interval, {total['below']} lie below it, "
                f"{total['above']} above it, and {total['not comparable']} are not comparable.")
        columns = [("chapter", 30), ("rows", 8)] + [(v, 12) for v in VERDICTS]
        return [nodes.paragraph(text=text), _table(columns, rows, ["paper-vs-book-summary"])]


class PaperVsBook(_Directive):
    def run(self):
        results = with_verdicts(self.results())
        titles = chapter_titles(Path(self.env.srcdir))
        rows = [[self.chapter_link(rec.chapter, titles), rec.claim, rec.paper, rec.ours,
                 f"{rec.verdict}: {rec.reason}", rec.budget]
                for rec in results.itertuples(index=False)]
        return [_table(COLUMNS, rows, ["paper-vs-book"])]


def _always_reread(app, env, added, changed, removed):
    """The page that shows the tables is re-read on every build: a chapter may have written, or
    rewritten, its results since the last one."""
    return [doc for doc in env.found_docs if doc.endswith("paper_vs_book")]


def setup(app):
    app.add_directive("paper-vs-book-summary", PaperVsBookSummary)
    app.add_directive("paper-vs-book", PaperVsBook)
    app.connect("env-get-outdated", _always_reread)
    return {"version": "1.1", "parallel_read_safe": True, "parallel_write_safe": True}
