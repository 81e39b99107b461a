"""Paper against this book: the rows each chapter compares with its papers, saved beside the chapter.

Each chapter ends with a table of what its papers report beside what the chapter measured. A chapter
builds that table with :func:`paper_vs_ours`, which shows it and writes the same rows to a results
file beside the notebook: ``<chapter>.results.json`` when run at the ``book`` budget (the committed
outputs), ``<chapter>.<budget>.results.json`` at ``smoke`` or ``paper``, so that a quick run never
overwrites the book's numbers. The book's "Paper vs this book" page assembles every chapter's
``book`` rows into one table (:func:`load_results`).

A row is ``{"claim": ..., "paper": ..., "ours": ...}``: ``claim`` says what is compared, ``paper``
what the paper reports (with its setting), ``ours`` what this run measured. ``ours`` may be an
:class:`advlib.evaluate.Accuracy`, whose n and 95% interval then go into the file beside its text.

Taught in :ref:`app-paper-vs-book`.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Iterable, Mapping

import pandas as pd

from . import budget as _budget
from .evaluate import Accuracy

ROW_KEYS = ("claim", "paper", "ours")
SUFFIX = ".results.json"
_CHAPTER = re.compile(r"[0-9]{2}_[a-z0-9_]+")


def results_path(chapter: str, budget: str | None = None, folder: str | os.PathLike = ".") -> Path:
    """Where chapter ``chapter`` (the notebook's file stem, e.g. ``"10_large_perturbations"``) keeps
    its rows at ``budget`` (default: the active one): ``<chapter>.results.json`` at ``book``,
    ``<chapter>.<budget>.results.json`` otherwise, in ``folder``.

    Taught in :ref:`app-paper-vs-book`.
    """
    if not isinstance(chapter, str) or not _CHAPTER.fullmatch(chapter):
        raise ValueError(f"chapter must be a notebook's file stem such as '10_large_perturbations', got {chapter!r}")
    name = _budget.current() if budget is None else budget
    if name not in _budget.BUDGETS:
        raise ValueError(f"budget must be one of {_budget.BUDGETS}, got {name!r}")
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
        record.update(ours=str(ours), accuracy=float(ours), n=ours.n, ci_low=ours.low, ci_high=ours.high)
    elif isinstance(ours, str) and ours.strip():
        record["ours"] = ours
    else:
        raise ValueError(f"rows[{i}]['ours'] must be an Accuracy or a non-empty string, got {ours!r}")
    return record


def paper_vs_ours(chapter: str, rows: Iterable[Mapping[str, object]], *, budget: str | None = None,
                  folder: str | os.PathLike = ".") -> pd.DataFrame:
    """Write a chapter's paper-vs-ours ``rows`` to :func:`results_path` (atomically) and return them
    as a table indexed by claim, with the columns ``paper`` and ``this book (<budget>)``.

    ``budget`` (default: the active one) is the budget the numbers were computed at; ``folder``
    (default: the working folder, the notebook's own when it runs) is where the file goes.

    Taught in :ref:`app-paper-vs-book`.
    """
    name = _budget.current() if budget is None else budget
    path = results_path(chapter, name, folder)
    records = [_record(i, row) for i, row in enumerate(rows)]
    if not records:
        raise ValueError("rows must hold at least one row")
    claims = [r["claim"] for r in records]
    if len(set(claims)) != len(claims):
        raise ValueError(f"rows must have distinct claims, got {claims}")
    text = json.dumps({"chapter": chapter, "budget": name, "rows": records}, indent=1, ensure_ascii=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text + "\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    table = pd.DataFrame(records, columns=list(ROW_KEYS)).set_index("claim")
    return table.rename(columns={"ours": f"this book ({name})"})


def load_results(folder: str | os.PathLike) -> pd.DataFrame:
    """Every chapter's ``book`` rows in ``folder``, one table with the columns chapter, claim, paper,
    ours, n, ci_low, ci_high and budget (n and the interval empty where ``ours`` is not an accuracy),
    in chapter order.

    Taught in :ref:`app-paper-vs-book`.
    """
    frames = []
    for path in sorted(Path(folder).glob(f"*{SUFFIX}")):
        chapter = path.name[: -len(SUFFIX)]
        if not _CHAPTER.fullmatch(chapter):  # <chapter>.<budget>.results.json: not the book's
            continue
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("chapter") != chapter or saved.get("budget") != "book":
            raise ValueError(f"{path} must hold chapter {chapter!r} at the book budget, "
                             f"got chapter {saved.get('chapter')!r} at {saved.get('budget')!r}")
        frame = pd.DataFrame(saved["rows"])
        frame.insert(0, "chapter", chapter)
        frame["budget"] = saved["budget"]
        frames.append(frame)
    columns = ["chapter", "claim", "paper", "ours", "n", "ci_low", "ci_high", "budget"]
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True).reindex(columns=columns)
