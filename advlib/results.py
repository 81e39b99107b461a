"""Paper against this book: the rows each chapter compares with its papers, saved beside the chapter.

Each chapter ends with a table of what its papers report beside what the chapter measured. A chapter
builds that table with :func:`paper_vs_ours`, which shows it and writes the same rows to a results
file beside the notebook: ``<chapter>.results.json`` when run at the ``book`` budget (the committed
outputs), ``<chapter>.<budget>.results.json`` at ``smoke`` or ``paper``, so that a quick run never
overwrites the book's numbers. The book's "Paper vs this book" page assembles every chapter's
``book`` rows into one table (:func:`load_results`), each row with its verdict against the paper's
number (:func:`verdict`).

A row is ``{"claim": ..., "paper": ..., "ours": ...}``: ``claim`` says what is compared, ``paper``
what the paper reports (with its setting), ``ours`` what this run measured. ``ours`` may be an
:class:`advlib.evaluate.Accuracy`, whose n and 95% interval then go into the file beside its text.

Taught in :ref:`app-paper-vs-book`.
"""
from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Iterable, Mapping

import pandas as pd

from . import budget as _budget
from .evaluate import Accuracy
from .utils import atomic_write

ROW_KEYS = ("claim", "paper", "ours")
SUFFIX = ".results.json"
_CHAPTER = re.compile(r"[0-9]{2}_[a-z0-9_]+")


def results_path(chapter: str, budget: str | None = None, folder: str | os.PathLike = ".") -> Path:
    """Where chapter ``chapter`` (the notebook's file stem, e.g. ``"10_large_perturbations"``) keeps
    its rows at ``budget`` (default: the active one): ``<chapter>.results.json`` at ``book``,
    ``<chapter>.<budget>.results.json`` otherwise, in ``folder``.
    """
    if not isinstance(chapter, str) or not _CHAPTER.fullmatch(chapter):
        raise ValueError(f"chapter must be a notebook's file stem such as '10_large_perturbations', got {chapter!r}")
    name = _budget.resolve(budget)
    stem = chapter if name == "book" else f"{chapter}.{name}"
    return Path(folder) / f"{stem}{SUFFIX}"


def _record(i: int, row: Mapping[str, object]) -> dict:
    if not isinstance(row, Mapping) or set(row) != set(ROW_KEYS):
        keys = sorted(row) if isinstance(row, Mapping) else type(row).__name__
        raise ValueError(f"rows[{i}] must have exactly the keys {ROW_KEYS}, got {keys}")
    claim, paper, ours = row["claim"], row["paper"], row["ours"]
    for key, value in (("claim", claim), ("paper", paper)):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"rows[{i}][{key!r}] must be a non-empty string, got {value!r}")
    record = {"claim": claim, "paper": paper}
    if isinstance(ours, Accuracy):
        if ours.n < 1 or not all(math.isfinite(v) for v in (float(ours), ours.low, ours.high)):
            raise ValueError(f"rows[{i}]['ours'] must be an Accuracy of n >= 1 examples (finite, with an "
                             f"interval), got {ours!r}")
        record.update(ours=str(ours), accuracy=float(ours), n=ours.n, ci_low=ours.low, ci_high=ours.high)
    elif isinstance(ours, str) and ours.strip():
        record["ours"] = ours
    else:
        raise ValueError(f"rows[{i}]['ours'] must be an Accuracy or a non-empty string, got {ours!r}")
    return record


def paper_vs_ours(chapter: str, rows: Iterable[Mapping[str, object]], *, budget: str | None = None,
                  folder: str | os.PathLike = ".") -> pd.DataFrame:
    """Write a chapter's paper-vs-ours ``rows`` to :func:`results_path` (atomically, as strict JSON) and
    return them as a table indexed by claim, with the columns ``paper`` and ``this book (<budget>)``.
    An ``ours`` that is an :class:`~advlib.evaluate.Accuracy` must count ``n >= 1`` examples.

    ``budget`` (default: the active one) is the budget the numbers were computed at; ``folder``
    (default: the working folder, the notebook's own when it runs) is where the file goes.
    """
    name = _budget.resolve(budget)
    path = results_path(chapter, name, folder)
    records = [_record(i, row) for i, row in enumerate(rows)]
    if not records:
        raise ValueError("rows must hold at least one row")
    claims = [r["claim"] for r in records]
    if len(set(claims)) != len(claims):
        raise ValueError(f"rows must have distinct claims, got {claims}")
    text = json.dumps({"chapter": chapter, "budget": name, "rows": records}, indent=1, ensure_ascii=False,
                      allow_nan=False)  # strict JSON: no NaN or Infinity
    atomic_write(path, lambda tmp: tmp.write_text(text + "\n", encoding="utf-8"))
    table = pd.DataFrame(records, columns=list(ROW_KEYS)).set_index("claim")
    return table.rename(columns={"ours": f"this book ({name})"})


def _read(path: Path, chapter: str) -> dict:
    """The saved object of the book's results file ``path`` of ``chapter``; a ``ValueError`` naming the
    file and what is wrong unless it is UTF-8 JSON of ``{"chapter", "budget": "book", "rows"}`` whose
    rows each have ``claim``, ``paper`` and ``ours``."""
    again = f"run {chapter} again at the book budget to rewrite it (results.paper_vs_ours)"
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text ({e}); {again}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); it may be truncated: {again}") from None
    if not isinstance(saved, dict):
        raise ValueError(f"{path} must hold a JSON object with 'chapter', 'budget' and 'rows', "
                         f"got a {type(saved).__name__}; {again}")
    if saved.get("chapter") != chapter or saved.get("budget") != "book":
        raise ValueError(f"{path} must hold chapter {chapter!r} at the book budget, "
                         f"got chapter {saved.get('chapter')!r} at {saved.get('budget')!r}")
    rows = saved.get("rows")
    if not isinstance(rows, list):
        got = "none" if rows is None else f"a {type(rows).__name__}"
        raise ValueError(f"{path} must hold 'rows', a list of rows, got {got}; {again}")
    for i, row in enumerate(rows):
        missing = sorted(set(ROW_KEYS) - set(row)) if isinstance(row, dict) else list(ROW_KEYS)
        if missing:
            raise ValueError(f"{path}: rows[{i}] lacks the keys {missing}; every row must have {ROW_KEYS}")
    return saved


def load_results(folder: str | os.PathLike) -> pd.DataFrame:
    """Every chapter's ``book`` rows in ``folder``, one table with the columns chapter, claim, paper,
    ours, n, ci_low, ci_high and budget (n and the interval empty where ``ours`` is not an accuracy),
    in chapter order.

    A ``folder`` that does not exist is a ``FileNotFoundError``; a results file that is not UTF-8
    JSON of the chapter's book rows, each with ``claim``, ``paper`` and ``ours``, a ``ValueError``
    naming the file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"the results folder {folder} does not exist (or is not a folder); "
                                f"give the folder of the notebooks and their *{SUFFIX} files")
    frames = []
    for path in sorted(folder.glob(f"*{SUFFIX}")):
        chapter = path.name[: -len(SUFFIX)]
        if not _CHAPTER.fullmatch(chapter):  # <chapter>.<budget>.results.json: not the book's
            continue
        saved = _read(path, chapter)
        frame = pd.DataFrame(saved["rows"])
        frame.insert(0, "chapter", chapter)
        frame["budget"] = saved["budget"]
        frames.append(frame)
    columns = ["chapter", "claim", "paper", "ours", "n", "ci_low", "ci_high", "budget"]
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True).reindex(columns=columns)


# ------------------------------------------------------------------ verdicts: does a row reproduce?
VERDICTS = ("reproduces", "below", "above", "not comparable")

_NUMBER = r"\d+(?:\.\d+)?"
# a range written "97-98%", "97% - 98%", "97 to 98%"
_RANGE = re.compile(rf"(?<![\w.])({_NUMBER})\s*%?\s*(?:-|–|to)\s*({_NUMBER})\s*%")
# one percentage, with its reported uncertainty if any: "98.10%", "1.90% +- 0.10", "1.9% ± 0.1%"
_PERCENT = re.compile(rf"(?<![\w.])({_NUMBER})\s*%(?:\s*(?:±|\+/-|\+-)\s*({_NUMBER})\s*%?)?")
# an accuracy as advlib.evaluate.Accuracy writes it: "91.0% [89.1, 92.6], n=1000"
_INTERVAL = re.compile(rf"(?<![\w.])({_NUMBER})\s*%\s*\[({_NUMBER}),\s*({_NUMBER})\],\s*n\s*=\s*\d")
_NOT_REPORTED = re.compile(r"\bnot (?:reported|measured|in the)\b", flags=re.I)
_APPROXIMATE = re.compile(r"\b(?:about|approximately|roughly|around|nearly|almost)\b|~|≈", flags=re.I)
_HERE = re.compile(r"\bhere\b", flags=re.I)
_SETTING = re.compile(r"\b([A-Za-z][A-Za-z_]*)\s*=\s*(\d[\w.+\-/]*)")


def _half_unit(written: str) -> float:
    """Half a unit of the last digit of a number as written: 0.5 for "98", 0.005 for "89.62"."""
    decimals = len(written.partition(".")[2])
    return 0.5 * 10.0 ** -decimals


def _setting_value(written: str) -> float | str:
    written = written.rstrip(".")
    try:
        top, _, bottom = written.partition("/")
        return float(top) / float(bottom) if bottom else float(written)
    except (ValueError, ZeroDivisionError):
        return written.lower()


def _same_setting(a: float | str, b: float | str) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9)
    return a == b


def _fmt(value: float) -> str:
    """A percentage with two decimals, or as many more (up to four) as it needs: "98.00", "0.7815"."""
    for decimals in (2, 3, 4):
        if abs(round(value, decimals) - value) < 1e-9:
            return f"{value:.{decimals}f}"
    return f"{value:.2f}"


def _paper_numbers(paper: str) -> list[tuple[float, float, bool]]:
    """The percentages written in ``paper`` as ``(low, high, is_error)`` in percent: a range as it is,
    a number widened by its reported uncertainty, else by half a unit of its last written digit
    (``98%`` stands for 97.5 to 98.5). An accuracy restated as its error (``98.10% (error 1.90%)``)
    is one number, kept in the unit the claim speaks of."""
    numbers = []
    for m in _RANGE.finditer(paper):
        low, high = sorted((float(m.group(1)), float(m.group(2))))
        numbers.append((low, high, False, m.start()))
    rest = _RANGE.sub(lambda m: " " * len(m.group(0)), paper)
    for m in _PERCENT.finditer(rest):
        value = float(m.group(1))
        spread = float(m.group(2)) if m.group(2) else _half_unit(m.group(1))
        is_error = bool(re.search(r"\berror\s*$", rest[max(0, m.start() - 12): m.start()], flags=re.I))
        numbers.append((value - spread, value + spread, is_error, m.start()))
    numbers.sort(key=lambda n: n[3])
    return [n[:3] for n in numbers]


def verdict(row: Mapping[str, object]) -> tuple[str, str]:
    """Whether a paper-vs-ours row reproduces the paper's number: ``(label, reason)``, ``label`` one of
    ``VERDICTS``. ``row`` has ``claim``, ``paper`` and ``ours`` (strings, as in
    :func:`load_results`) and, where ``ours`` is an accuracy, ``ci_low`` and ``ci_high``.

    Comparable rows are those where ours has one 95% interval (``ci_low``, ``ci_high``, or else the
    single ``"x% [low, high], n=N"`` its text shows) and the paper's cell holds one percentage (an
    accuracy restated as its error, ``98.10% (error 1.90%)``, counts once; a range ``a-b%`` counts as
    one). The paper's number is widened by the uncertainty it reports (``± u``), or else by half a
    unit of its last written digit (``98%`` stands for 97.5% to 98.5%). Then the label is
    ``"reproduces"`` if that overlaps our interval, ``"below"`` if our interval lies entirely below
    it, ``"above"`` if entirely above, and ``reason`` gives both ranges in percent.

    Otherwise the label is ``"not comparable"`` and ``reason`` the first that applies: ``"not
    reported in the paper"`` (its cell says *not reported*, *not measured* or *not in the ...*),
    ``"no interval on ours"``, ``"several intervals on ours"``, ``"paper gives no percentage"``,
    ``"paper's number is approximate"`` (*about*, *nearly*, ...), ``"paper gives several numbers"``,
    or ``"different setting (...)"``: the paper's cell says what differs *here*, or sets a parameter
    (``xi = 1e-6``) to another value than the claim does (``xi=0.001``).
    """
    try:
        claim, paper, ours = row["claim"], row["paper"], row["ours"]
    except (KeyError, TypeError):
        raise ValueError(f"row must have the keys {ROW_KEYS}, got {row!r}") from None
    for key, value in (("claim", claim), ("paper", paper), ("ours", ours)):
        if not isinstance(value, str):
            raise ValueError(f"row[{key!r}] must be a string, got {value!r}")
    not_comparable = VERDICTS[3]
    if _NOT_REPORTED.search(paper):
        return not_comparable, "not reported in the paper"

    bounds = [row.get(k) if hasattr(row, "get") else None for k in ("ci_low", "ci_high")]
    if all(isinstance(b, (int, float)) and math.isfinite(b) for b in bounds):
        low, high = 100 * float(bounds[0]), 100 * float(bounds[1])
    else:
        found = _INTERVAL.findall(ours)
        if not found:
            return not_comparable, "no interval on ours"
        if len(found) > 1:
            return not_comparable, "several intervals on ours"
        (_, lo, hi), = found
        low, high = max(float(lo) - _half_unit(lo), 0.0), min(float(hi) + _half_unit(hi), 100.0)
    if low > high:
        raise ValueError(f"row's interval on ours must have ci_low <= ci_high, got {bounds}")

    numbers = _paper_numbers(paper)
    if not numbers:
        return not_comparable, "paper gives no percentage"
    if _APPROXIMATE.search(paper):
        return not_comparable, "paper's number is approximate"
    if len(numbers) == 2:  # an accuracy and its error: the same number twice
        (l1, h1, e1), (l2, h2, e2) = numbers
        if e1 != e2 and l1 + l2 <= 100 <= h1 + h2:
            want_error = bool(re.search(r"\berror\b", claim, flags=re.I))
            kept = numbers[0] if e1 == want_error else numbers[1]
            spread = max(h1 - l1, h2 - l2) / 2  # an uncertainty reported on either applies to both
            middle = (kept[0] + kept[1]) / 2
            numbers = [(middle - spread, middle + spread, kept[2])]
    if len(numbers) > 1:
        return not_comparable, "paper gives several numbers"

    if _HERE.search(paper):
        clause = paper
        while re.search(r"\([^()]*\)", clause):
            clause = re.sub(r"\s*\([^()]*\)", "", clause)
        clause = _PERCENT.sub("", _RANGE.sub("", clause), count=1).strip(" ,;:")
        return not_comparable, f"different setting ({clause})" if clause else "different setting"
    claimed = {name.lower(): (name, value) for name, value in _SETTING.findall(claim)}
    for name, value in _SETTING.findall(paper):
        if name.lower() in claimed:
            other_name, other = claimed[name.lower()]
            if not _same_setting(_setting_value(value), _setting_value(other)):
                return not_comparable, (f"different setting ({name} = {value.rstrip('.')} in the paper, "
                                        f"{other_name} = {other.rstrip('.')} here)")

    (paper_low, paper_high, _), = numbers
    paper_low, paper_high = max(paper_low, 0.0), min(paper_high, 100.0)
    reason = f"paper {_fmt(paper_low)}–{_fmt(paper_high)}%, ours {_fmt(low)}–{_fmt(high)}%"
    if high < paper_low:
        return VERDICTS[1], reason
    if low > paper_high:
        return VERDICTS[2], reason
    return VERDICTS[0], reason
