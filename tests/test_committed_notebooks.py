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


def shows_a_figure(source: str) -> bool:
    """Whether a code cell calls ``plt.show()`` itself, outside any function it defines (a widget's
    callback draws only when the reader moves it)."""
    import ast
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "book" / "_ext"))
    api_reference = pytest.importorskip("api_reference")  # needs Sphinx, which the book's requirements bring
    try:
        tree = ast.parse(api_reference.python_source(source))
    except SyntaxError:
        return False
    inside = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            inside |= {id(n) for n in ast.walk(node)}
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "show"
               and isinstance(n.func.value, ast.Name) and n.func.value.id == "plt" and id(n) not in inside
               for n in ast.walk(tree))


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_every_figure_was_kept(path):
    """A cell that shows a figure (``plt.show()``) holds an image in its committed outputs: a chapter
    executed with a non-interactive backend (``MPLBACKEND=Agg``) would keep none, and its page would
    be text only."""
    nb = json.loads(path.read_text())
    empty = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code" and shows_a_figure("".join(c["source"]))
             and not any(k.startswith("image/") for o in c.get("outputs", []) for k in o.get("data", {}))]
    assert not empty, f"{path.name}: cells {empty} show a figure but hold no image (executed with MPLBACKEND=Agg?)"
