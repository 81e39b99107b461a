"""Exercises and their solutions follow the book's convention (book/exercises.md).

The markdown cells of every committed chapter are read for `sphinx-exercise` directives: an exercise is
```{exercise} with a `:label:` (or the gated ```{exercise-start}), a solution ```{solution} <label> or the
gated ```{solution-start} <label> ... ```{solution-end} around code cells. Directives shown inside a
literal code block (as the convention page shows them) are not directives and are skipped. Checked:
- every exercise has a label `ex-<chapter>-<n>`, and labels are unique across the book;
- every solution names an exercise of its own chapter, and every exercise has exactly one solution;
- every solution carries `:class: dropdown` (collapsed until clicked);
- gated solutions open and close in pairs, in order;
- a chapter in ADOPTED has at least three exercises; a chapter not in ADOPTED is skipped, unless it
  already has exercise directives, which then fails until it is added to ADOPTED.
The convention page's own worked example is checked the same way.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "book" / "exercises.md"

# The chapters (two-digit numbers) that have taken on exercises; each chapter pass adds its own.
ADOPTED: set[str] = {"00", "01", "04", "05"}
MIN_EXERCISES = 3

EXERCISE = {"exercise", "exercise-start"}
SOLUTION = {"solution", "solution-start"}
OURS = EXERCISE | SOLUTION | {"exercise-end", "solution-end"}
# directives whose body is text to show, not markdown: a directive inside them is not one
LITERAL = {"code", "code-block", "code-cell", "sourcecode", "literalinclude", "math", "raw", "eval-rst"}
FENCE = re.compile(r"^\s*(`{3,}|~{3,}|:{3,})\s*(.*?)\s*$")
OPTION = re.compile(r"^\s*:([\w-]+):\s*(.*?)\s*$")


@dataclass
class Directive:
    name: str
    argument: str
    options: dict
    where: str  # "cell 12, line 3": for the messages

    @property
    def classes(self) -> list[str]:
        return str(self.options.get("class", "")).split()


def directives(text: str, where: str = "") -> list[Directive]:
    """The sphinx-exercise directives of a markdown text, in order, skipping literal blocks."""
    lines = text.splitlines()
    found, stack = [], []  # stack of open fences: (character, length, literal?)
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, info = m.groups()
        char, length = fence[0], len(fence)
        if stack and stack[-1][2]:  # inside a literal block only its closing fence counts
            if char == stack[-1][0] and length >= stack[-1][1] and not info:
                stack.pop()
            i += 1
            continue
        if not info and stack and char == stack[-1][0] and length >= stack[-1][1]:
            stack.pop()
            i += 1
            continue
        d = re.match(r"^\{([\w:-]+)\}\s*(.*)$", info)
        name = d.group(1).split(":")[-1] if d else ""
        stack.append((char, length, not d or name in LITERAL))
        i += 1
        if name not in OURS:
            continue
        options = {}
        if i < len(lines) and lines[i].strip() == "---":  # options as a YAML block
            end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "---"), None)
            if end is not None:
                options = yaml.safe_load("\n".join(lines[i + 1:end])) or {}
                i = end + 1
        else:
            while i < len(lines) and (o := OPTION.match(lines[i])):
                options[o.group(1)] = o.group(2)
                i += 1
        found.append(Directive(name, d.group(2).strip(), options, f"{where}line {i}".strip()))
    return found


@dataclass
class Exercises:
    exercises: list[Directive] = field(default_factory=list)
    solutions: list[Directive] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        return [str(e.options.get("label", "")) for e in self.exercises]


def check(cells: list[str], chapter: str, name: str) -> Exercises:
    """The exercises and solutions of one chapter (its markdown cells) and what breaks the convention."""
    out = Exercises()
    open_gate = None  # the solution-start waiting for its solution-end
    for n, text in enumerate(cells):
        for d in directives(text, f"cell {n}, " if len(cells) > 1 else ""):
            if d.name in EXERCISE:
                out.exercises.append(d)
            elif d.name in SOLUTION:
                out.solutions.append(d)
            if d.name == "solution-start":
                if open_gate:
                    out.problems.append(f"{name}: solution-start at {d.where} inside the gated solution "
                                        f"opened at {open_gate.where}")
                open_gate = d
            elif d.name == "solution-end":
                if not open_gate:
                    out.problems.append(f"{name}: solution-end at {d.where} with no solution-start before it")
                open_gate = None
    if open_gate:
        out.problems.append(f"{name}: solution-start at {open_gate.where} has no solution-end")

    pattern = re.compile(rf"ex-{re.escape(chapter)}-[1-9]\d*")
    for e, label in zip(out.exercises, out.labels):
        if not label:
            out.problems.append(f"{name}: the exercise at {e.where} has no :label:")
        elif not pattern.fullmatch(label):
            out.problems.append(f"{name}: exercise label {label!r} is not ex-{chapter}-<n>")
    for label in sorted({x for x in out.labels if out.labels.count(x) > 1}):
        out.problems.append(f"{name}: exercise label {label!r} used more than once")
    labels = set(out.labels) - {""}
    for s in out.solutions:
        if s.argument not in labels:
            out.problems.append(f"{name}: the solution at {s.where} names {s.argument!r}, "
                                "which is no exercise of this chapter")
        if "dropdown" not in s.classes:
            out.problems.append(f"{name}: the solution to {s.argument!r} at {s.where} lacks :class: dropdown")
    targets = [s.argument for s in out.solutions]
    for label in sorted(labels):
        if targets.count(label) != 1:
            out.problems.append(f"{name}: exercise {label!r} has {targets.count(label)} solutions, not one")
    return out


def _notebook_cells(path: Path) -> list[str]:
    nb = json.loads(path.read_text())
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown"]


NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
CHAPTERS = {p.name[:2]: p for p in NOTEBOOKS}


def _page() -> Exercises:
    return check([PAGE.read_text()], "example", PAGE.name)


def test_there_are_chapters():
    assert len(CHAPTERS) == len(NOTEBOOKS) >= 1, "no chapter notebooks, or two with the same number"
    assert ADOPTED <= set(CHAPTERS), f"ADOPTED names chapters that do not exist: {ADOPTED - set(CHAPTERS)}"


@pytest.mark.parametrize("chapter", sorted(CHAPTERS))
def test_chapter_exercises(chapter):
    path = CHAPTERS[chapter]
    found = check(_notebook_cells(path), chapter, path.name)
    if chapter not in ADOPTED:
        assert not (found.exercises or found.solutions), (
            f"{path.name} has {len(found.exercises)} exercise and {len(found.solutions)} solution directives "
            f"but chapter {chapter} is not in ADOPTED: add it to ADOPTED in tests/test_exercises.py")
        pytest.skip(f"chapter {chapter} has not taken on exercises yet (not in ADOPTED)")
    assert not found.problems, "\n".join(found.problems)
    assert len(found.exercises) >= MIN_EXERCISES, (
        f"{path.name}: {len(found.exercises)} exercises, a chapter needs at least {MIN_EXERCISES}")


def test_labels_unique_across_the_book():
    seen: dict[str, list[str]] = {}
    for chapter, path in CHAPTERS.items():
        for label in check(_notebook_cells(path), chapter, path.name).labels:
            seen.setdefault(label, []).append(path.name)
    for label in _page().labels:
        seen.setdefault(label, []).append(PAGE.name)
    twice = {label: where for label, where in seen.items() if label and len(where) > 1}
    assert not twice, f"exercise labels used more than once: {twice}"


def test_convention_page_example():
    found = _page()
    assert not found.problems, "\n".join(found.problems)
    assert len(found.exercises) == 1 and len(found.solutions) == 1, (
        f"{PAGE.name}: {len(found.exercises)} exercises and {len(found.solutions)} solutions, "
        "the worked example should be one of each")
    assert found.solutions[0].name == "solution" and "dropdown" in found.solutions[0].classes


def test_convention_page_in_front_matter():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    first = toc["parts"][0]
    files = [c["file"] for c in first["chapters"]]
    assert "book/exercises" in files, f"book/exercises is not in {first['caption']!r}: {files}"


# The checker itself, on made-up chapters: the checks above mostly skip until chapters adopt exercises.

GOOD = [
    "## Exercises\n\n```{exercise} A title\n:label: ex-04-1\n\nText.\n```\n\n"
    "```{solution} ex-04-1\n:class: dropdown\n\nProse.\n```",
    "````{note}\n```{exercise}\n---\nlabel: ex-04-2\n---\nInside a note.\n```\n````",
    "```{solution-start} ex-04-2\n:class: dropdown\n```\n\nCode follows.",
    "Code above.\n\n```{solution-end}\n```",
    "Shown, not run:\n\n````md\n```{exercise}\n:label: ex-04-9\n```\n```{solution} ex-04-7\n```\n````",
    ":::{exercise}\n:label: ex-04-3\nColon fence.\n:::\n\n:::{solution} ex-04-3\n:class: dropdown\n:::",
]


def test_checker_accepts_the_convention():
    found = check(GOOD, "04", "good")
    assert found.problems == []
    assert found.labels == ["ex-04-1", "ex-04-2", "ex-04-3"]
    assert [s.name for s in found.solutions] == ["solution", "solution-start", "solution"]


@pytest.mark.parametrize("cells, expected", [
    (["```{exercise}\n:label: ex-04-1\n```"], "has 0 solutions"),
    (["```{exercise}\n:label: ex-04-1\n```\n```{solution} ex-04-1\n:class: dropdown\n```\n"
      "```{solution} ex-04-1\n:class: dropdown\n```"], "has 2 solutions"),
    (["```{exercise}\n:label: ex-04-1\n```\n```{solution} ex-04-1\n```"], "lacks :class: dropdown"),
    (["```{exercise}\n:label: ex-04-1\n```\n```{solution} ex-04-1\n:class: tip\n```"], "lacks :class: dropdown"),
    (["```{exercise}\n:label: ex-04-1\n```", "```{solution} ex-05-1\n:class: dropdown\n```"],
     "no exercise of this chapter"),
    (["```{exercise}\nNo label.\n```"], "has no :label:"),
    (["```{exercise}\n:label: ex-05-1\n```\n```{solution} ex-05-1\n:class: dropdown\n```"],
     "is not ex-04-<n>"),
    (["```{exercise}\n:label: ex-04-1\n```", "```{exercise}\n:label: ex-04-1\n```"], "used more than once"),
    (["```{exercise}\n:label: ex-04-1\n```", "```{solution-start} ex-04-1\n:class: dropdown\n```"],
     "has no solution-end"),
    (["```{exercise}\n:label: ex-04-1\n```", "```{solution-end}\n```"], "no solution-start before it"),
])
def test_checker_rejects(cells, expected):
    problems = check(cells, "04", "bad").problems
    assert any(expected in p for p in problems), problems
