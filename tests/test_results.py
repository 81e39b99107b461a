"""advlib.results and the "Paper vs this book" page: each chapter's paper-vs-ours rows, written beside
its notebook when executed at `book`, and matching what the committed notebook shows."""
import html
import json
import re
from pathlib import Path

import pytest

from advlib import results
from advlib.evaluate import Accuracy

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"

# chapters whose committed outputs predate the results files; each joins the page when it is next
# executed at book, and must then leave this set (a test below fails while it is in both)
PENDING: set[str] = set()


def _chapters() -> list[str]:
    toc = (ROOT / "_toc.yml").read_text()
    return re.findall(r"^\s*-\s*file:\s*notebooks/(\S+)\s*$", toc, flags=re.M)


ROWS = [
    {"claim": "MNIST clean accuracy", "paper": "98%", "ours": Accuracy(291, 300)},
    {"claim": "training", "paper": "40 epochs", "ours": "1.5 epochs, 14 min"},
]


def test_paper_vs_ours_writes_the_rows_it_shows(tmp_path):
    table = results.paper_vs_ours("10_large_perturbations", ROWS, budget="book", folder=tmp_path)
    path = tmp_path / "10_large_perturbations.results.json"
    saved = json.loads(path.read_text())
    assert saved["chapter"] == "10_large_perturbations" and saved["budget"] == "book"
    first, second = saved["rows"]
    assert first["ours"] == "97.0% [94.4, 98.4], n=300" and first["n"] == 300
    assert first["ci_low"] == pytest.approx(Accuracy(291, 300).low) and first["accuracy"] == pytest.approx(0.97)
    assert second == {"claim": "training", "paper": "40 epochs", "ours": "1.5 epochs, 14 min"}
    assert list(table.columns) == ["paper", "this book (book)"]
    assert table.loc["MNIST clean accuracy", "this book (book)"] == first["ours"]
    assert not list(tmp_path.glob("*.tmp")), "the write must leave no temporary file"


def test_other_budgets_never_overwrite_the_books_rows(tmp_path):
    results.paper_vs_ours("10_large_perturbations", ROWS, budget="book", folder=tmp_path)
    before = (tmp_path / "10_large_perturbations.results.json").read_text()
    smoke = [dict(ROWS[0], ours=Accuracy(5, 10))]
    results.paper_vs_ours("10_large_perturbations", smoke, budget="smoke", folder=tmp_path)
    assert (tmp_path / "10_large_perturbations.results.json").read_text() == before
    assert (tmp_path / "10_large_perturbations.smoke.results.json").exists()
    loaded = results.load_results(tmp_path)
    assert list(loaded.claim) == [r["claim"] for r in ROWS] and set(loaded.budget) == {"book"}
    assert loaded.n.iloc[0] == 300 and loaded.n.isna().iloc[1]


def test_active_budget_is_the_default(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVLIB_BUDGET", "smoke")
    results.paper_vs_ours("04_fgsm", ROWS, folder=tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["04_fgsm.smoke.results.json"]


@pytest.mark.parametrize("chapter, rows, match", [
    ("large", ROWS, "chapter must be a notebook's file stem"),
    ("../10_x", ROWS, "chapter must be a notebook's file stem"),
    ("10_large_perturbations", [], "at least one row"),
    ("10_large_perturbations", [{"claim": "a", "paper": "b"}], r"rows\[0\] must have exactly the keys"),
    ("10_large_perturbations", [{"claim": "a", "paper": "b", "ours": 0.9}], r"rows\[0\]\['ours'\] must be"),
    ("10_large_perturbations", [{"claim": "", "paper": "b", "ours": "c"}], r"rows\[0\]\['claim'\]"),
    ("10_large_perturbations", [ROWS[1], ROWS[1]], "distinct claims"),
])
def test_bad_rows_are_refused_before_anything_is_written(tmp_path, chapter, rows, match):
    with pytest.raises(ValueError, match=match):
        results.paper_vs_ours(chapter, rows, budget="book", folder=tmp_path)
    assert not list(tmp_path.iterdir())


def test_bad_budget_is_refused(tmp_path):
    with pytest.raises(ValueError, match="budget must be one of"):
        results.paper_vs_ours("10_large_perturbations", ROWS, budget="gpu", folder=tmp_path)


def test_load_results_refuses_a_file_of_another_budget(tmp_path):
    (tmp_path / "04_fgsm.results.json").write_text(json.dumps({"chapter": "04_fgsm", "budget": "smoke",
                                                                "rows": []}))
    with pytest.raises(ValueError, match="at the book budget"):
        results.load_results(tmp_path)


# ------------------------------------------------------------------ the committed chapters and their rows
def _shown(nb: dict) -> list[str]:
    """The text of every output of every code cell, HTML entities decoded."""
    texts = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            for kind in ("text/html", "text/plain"):
                if kind in data:
                    texts.append(html.unescape("".join(data[kind])))
            if out.get("output_type") == "stream":
                texts.append("".join(out.get("text", "")))
    return texts


def test_pending_chapters_are_chapters():
    assert PENDING <= set(_chapters())


@pytest.mark.parametrize("chapter", _chapters())
def test_every_chapter_has_its_results_and_they_match_the_notebook(chapter):
    path = NOTEBOOKS / f"{chapter}.results.json"
    if chapter in PENDING:
        assert not path.exists(), f"{chapter} has its results now: remove it from PENDING"
        pytest.skip(f"{chapter}: results file not written yet (pending re-execution at book)")
    assert path.exists(), f"{chapter} wrote no {path.name}: its paper-vs-ours table must use results.paper_vs_ours"
    saved = json.loads(path.read_text())
    assert saved["budget"] == "book" and saved["chapter"] == chapter and saved["rows"]
    nb = json.loads((NOTEBOOKS / f"{chapter}.ipynb").read_text())
    # one output shows every row, as saved
    shown = [t for t in _shown(nb) if all(r["claim"] in t and r["paper"] in t and r["ours"] in t
                                          for r in saved["rows"])]
    assert shown, f"no output of {chapter}.ipynb shows all of its saved rows: {saved['rows']}"


def test_the_page_lists_every_saved_row():
    import sys
    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    import paper_vs_book
    titles = paper_vs_book.chapter_titles(ROOT)
    loaded = results.load_results(NOTEBOOKS)
    assert set(loaded.chapter) <= set(titles), "every results file belongs to a chapter in _toc.yml"
    assert len(loaded) == sum(len(json.loads(p.read_text())["rows"])
                              for p in NOTEBOOKS.glob("*.results.json")
                              if p.name.count(".") == 2)
    assert "book/paper_vs_book" in (ROOT / "_toc.yml").read_text()
