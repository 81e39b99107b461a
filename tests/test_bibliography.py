"""The book's bibliography (book/references.bib): every entry can be found by a reader, through a DOI or a
URL (an arXiv eprint counts: the page prints its link), and every entry is cited somewhere in the book."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIB = ROOT / "book" / "references.bib"


def entries() -> dict[str, str]:
    text = BIB.read_text(encoding="utf-8")
    found = {}
    for match in re.finditer(r"@\w+\{([^,\s]+),(.*?)\n\}", text, flags=re.S):
        found[match.group(1)] = match.group(2)
    return found


def test_the_bibliography_parses():
    assert len(entries()) == BIB.read_text(encoding="utf-8").count("\n@") + BIB.read_text().startswith("@")


def test_every_entry_has_a_doi_or_a_url():
    fields = re.compile(r"^\s*(doi|url|eprint)\s*=", flags=re.M | re.I)
    missing = [key for key, body in entries().items() if not fields.search(body)]
    assert not missing, f"entries without a doi, url or eprint: {missing}"


def test_every_entry_is_cited():
    sources = [p.read_text(encoding="utf-8") for p in (ROOT / "notebooks").glob("*.ipynb")]
    sources += [p.read_text(encoding="utf-8") for p in (ROOT / "book").glob("*.md")]
    sources += [p.read_text(encoding="utf-8") for p in (ROOT / "advlib").rglob("*.py")]
    text = "\n".join(sources)
    uncited = [key for key in entries() if key not in text]
    assert not uncited, f"entries cited nowhere in the book: {uncited}"
