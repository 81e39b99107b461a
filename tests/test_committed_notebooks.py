"""The notebooks in the table of contents are committed executed at the `book` budget.

nbval re-runs every notebook at the `smoke` budget; these tests look at the *committed* outputs, which
are what the rendered book shows: every code cell ran, in order, in one kernel, with no error, and the
setup cell printed the `book` budget.
"""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _chapters() -> list[Path]:
    toc = (ROOT / "_toc.yml").read_text()
    files = re.findall(r"^\s*-\s*file:\s*(notebooks/\S+)\s*$", toc, flags=re.M)  # commented lines do not match
    return [ROOT / f"{f}.ipynb" for f in files]


CHAPTERS = _chapters()


def test_toc_lists_existing_notebooks():
    assert CHAPTERS, "the table of contents lists no notebook"
    missing = [p.name for p in CHAPTERS if not p.exists()]
    assert not missing, f"_toc.yml lists notebooks that do not exist: {missing}"


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_committed_executed_at_book_budget(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]
    counts = [c.get("execution_count") for c in code]
    assert None not in counts, f"{path.name}: {counts.count(None)} code cell(s) not executed"
    assert counts == list(range(1, len(code) + 1)), f"{path.name}: cells not run top to bottom once: {counts}"
    errors = [o.get("ename") for c in code for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert not errors, f"{path.name}: error outputs {errors}"
    first_text = "".join("".join(o.get("text", "")) for o in code[0].get("outputs", []) if o["output_type"] == "stream")
    assert "budget book" in first_text, f"{path.name}: the setup cell does not report the book budget: {first_text!r}"


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_code_fits_the_page(path):
    """The book's code column shows about 79 characters; longer lines hide behind a scroll bar. Only
    an IPython magic (the Colab install line) may be longer."""
    nb = json.loads(path.read_text())
    long = [line for c in nb["cells"] if c["cell_type"] == "code" for line in "".join(c["source"]).splitlines()
            if len(line) > 79 and not line.lstrip().startswith("%")]
    assert not long, f"{path.name}: {len(long)} code line(s) over 79 characters, e.g. {long[0]!r}"
