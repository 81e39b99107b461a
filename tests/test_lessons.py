"""The lesson ledger: statuses and margins, lessons not checked at a budget, and the committed
chapters' ledgers (every lesson listed, none failed)."""
import json
import re
from pathlib import Path

import pytest

from advlib.lessons import HEADER, NOT_CHECKED, Ledger

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))
# the chapters whose self-checks go through a Ledger; each chapter pass adds its chapter here
ADOPTED: set[str] = {"00", "01", "04", "05"}


def test_statuses_margins_and_budgets():
    led = Ledger("07", budget="smoke")
    assert led.check("in the ball", 0.29, at_most=0.3)
    assert not led.check("robust enough", 0.2, at_least=0.5)  # checked at every budget: a FAIL
    assert led.check("robust at book", 0.2, at_least=0.5, budgets=("book", "paper"))  # not checked here
    assert led.check("both bounds", 0.5, at_least=0.4, at_most=0.55)
    assert led.check("an invariant", True)
    t = led.table().set_index("lesson")
    assert list(t.status) == ["PASS", "FAIL", NOT_CHECKED, "PASS", "PASS"]
    assert t.loc["in the ball", "margin"] == pytest.approx(0.01)
    assert t.loc["robust enough", "margin"] == pytest.approx(-0.3)
    assert t.loc["both bounds", "margin"] == pytest.approx(0.05)
    assert t.loc["both bounds", "threshold"] == ">= 0.4 and <= 0.55"
    with pytest.raises(AssertionError, match=r"1 lesson\(s\) failed at smoke: \['robust enough'\]"):
        led.finish()


def test_nan_fails_and_bad_checks_are_refused():
    led = Ledger("09", budget="book")
    assert not led.check("a NaN value", float("nan"), at_least=0.0)
    with pytest.raises(ValueError, match="give at_least, at_most or both"):
        led.check("no threshold", 0.5)
    with pytest.raises(ValueError, match="lesson must be a new, non-empty name"):
        led.check("a NaN value", 1.0, at_least=0.0)
    with pytest.raises(ValueError, match="budgets must name some of"):
        led.check("typo", 1.0, at_least=0.0, budgets=("bok",))
    with pytest.raises(ValueError, match="takes no at_least"):
        led.check("bool with bound", True, at_least=1)
    with pytest.raises(ValueError, match="the ledger is empty"):
        Ledger("00", budget="book").finish()


def test_the_printed_ledger_lists_every_lesson(capsys):
    led = Ledger("08", budget="book")
    led.check("first lesson", 0.9, at_least=0.8)
    led.check("second lesson", 3, at_most=5)
    led.finish()
    out = capsys.readouterr().out
    assert out.startswith(f"{HEADER}: chapter 08 at book (2 PASS)")
    assert "first lesson" in out and "second lesson" in out


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem[:2])
def test_committed_chapter_ledgers_list_every_lesson_and_show_no_fail(path):
    chapter = path.stem[:2]
    nb = json.loads(path.read_text())
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    if chapter not in ADOPTED:
        assert "Ledger(" not in code, f"chapter {chapter} uses a Ledger: add it to ADOPTED"
        pytest.skip(f"chapter {chapter} has not moved its self-checks to a Ledger yet")
    lessons = set(re.findall(r"\.check\(\s*f?[\"']([^\"']+)[\"']", code))
    texts = ["".join(o.get("text", "")) for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    ledgers = [t for t in texts if t.startswith(HEADER)]
    assert ledgers, f"chapter {chapter}: no printed ledger in the committed outputs"
    printed = "\n".join(ledgers)
    assert "at book" in printed and "FAIL" not in printed
    missing = [name for name in lessons if "{" not in name and name not in printed]
    assert not missing, f"chapter {chapter}: lessons checked in code but absent from the ledger: {missing}"
