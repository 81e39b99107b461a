"""Every chapter that has taken on the reader's layer ends with its takeaways.

A chapter in ADOPTED has exactly one ``{admonition} Takeaways`` (class ``tip``) in a markdown cell
after its last code cell and before nothing but its references; it has at least one bullet per bullet
of the chapter's "What you will learn" list (the first cell), and every bullet gives a number (the
number the chapter computed, read from its outputs). A chapter not in ADOPTED is skipped unless it
already has such an admonition, which then fails until it is added.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
# the chapters (two-digit numbers) whose pass has added takeaways; each chapter pass adds its own
ADOPTED = {"00", "01", "04", "05"}
OPEN = re.compile(r"^(`{3,}|:{3,})\{admonition\}\s+Takeaways\s*$", re.M)


def bullets(text: str) -> list[str]:
    """The top-level bullets of a markdown list, each with its continuation lines."""
    found = []
    for line in text.splitlines():
        if line.startswith("- "):
            found.append(line[2:])
        elif found and line.startswith("  ") and line.strip():
            found[-1] += " " + line.strip()
    return found


def learn_bullets(cells: list[dict]) -> list[str]:
    first = "".join(cells[0]["source"])
    section = first.split("**What you will learn**", 1)[1].split("\n\n", 1)[0]
    return bullets(section)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_takeaways_close_the_chapter(path):
    cells = json.loads(path.read_text())["cells"]
    found = [i for i, c in enumerate(cells) if c["cell_type"] == "markdown" and OPEN.search("".join(c["source"]))]
    if path.name[:2] not in ADOPTED:
        assert not found, f"{path.name} has takeaways: add it to ADOPTED"
        pytest.skip("this chapter's pass has not added takeaways yet")
    assert len(found) == 1, f"{path.name}: one Takeaways admonition, found {len(found)}"
    (i,) = found
    text = "".join(cells[i]["source"])
    assert re.search(r"^:class: tip\s*$", text, re.M), "the takeaways carry :class: tip"
    last_code = max(j for j, c in enumerate(cells) if c["cell_type"] == "code")
    assert i > last_code, "the takeaways come after the chapter's last code cell"
    for c in cells[i + 1:]:
        assert "".join(c["source"]).lstrip().startswith("## References"), \
            "only the references may follow the takeaways"
    body = text.split("\n", 1)[1].rsplit("\n", 1)[0]
    taken, learnt = bullets(body), learn_bullets(cells)
    assert len(taken) >= len(learnt), f"{len(taken)} takeaways for {len(learnt)} 'What you will learn' bullets"
    unnumbered = [b[:60] for b in taken if not re.search(r"\d", b)]
    assert not unnumbered, f"takeaways without the chapter's number: {unnumbered}"


def test_learn_bullets_are_read():
    cells = [{"source": ["**What you will learn**\n", "- one;\n", "  more of one\n", "- two.\n", "\n", "Next."]}]
    assert learn_bullets(cells) == ["one; more of one", "two."]
