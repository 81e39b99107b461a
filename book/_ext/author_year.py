"""Author-year labels in the bibliography, matching the author-year citations in the text.

The text cites with sphinxcontrib-bibtex's ``author_year`` style ("Goodfellow et al., 2015"); pybtex's
built-in label styles would label the same entry "[GSS15]". This registers the formatting style
``author_year_labels`` (pybtex's ``unsrt``, sorted by author, year and title, with labels "Kim, 2020",
"Kolter and Madry, 2018", "Goodfellow et al., 2015"; a letter tells apart equal labels), which
_config.yml selects with ``bibtex_default_style``.
"""
from __future__ import annotations

from collections import Counter

from pybtex.plugin import register_plugin
from pybtex.richtext import Text
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle


def _surname(person) -> str:
    return Text.from_latex(" ".join(person.prelast_names + person.last_names)).render_as("text")


def author_year(entry) -> str:
    people = entry.persons.get("author") or entry.persons.get("editor") or []
    names = [_surname(p) for p in people]
    if len(names) > 2:
        who = f"{names[0]} et al."
    elif names:
        who = " and ".join(names)
    else:
        who = entry.fields.get("title", entry.key)
    return f"{who}, {entry.fields.get('year', 'n.d.')}"


class AuthorYearLabels(BaseLabelStyle):
    def format_labels(self, sorted_entries):
        labels = [author_year(e) for e in sorted_entries]
        repeated, seen = {k for k, n in Counter(labels).items() if n > 1}, Counter()
        for label in labels:
            if label in repeated:
                seen[label] += 1
                label = f"{label}{'abcdefghijklmnopqrstuvwxyz'[seen[label] - 1]}"
            yield label


class AuthorYearStyle(UnsrtStyle):
    default_label_style = "author_year_labels"
    default_sorting_style = "author_year_title"


register_plugin("pybtex.style.labels", "author_year_labels", AuthorYearLabels)
register_plugin("pybtex.style.formatting", "author_year_labels", AuthorYearStyle)


def setup(app):
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
