r"""A chapter's self-checks in one ledger: each lesson's value, its threshold, the margin, and whether
it is checked at the budget that ran.

A chapter asserts what it teaches. A lesson that needs the ``book`` budget to show (a robust model
reaching some accuracy) is *not checked* at ``smoke``, and the ledger says so, instead of being given
a threshold that cannot fail there; what a smoke run can show (shapes, bounds, invariants, code paths)
is checked at every budget. The threshold sits beside its check, in the chapter's own cell::

    ledger = Ledger("07")
    ledger.check("robust MNIST: worst-case accuracy", worst, at_least=0.85, budgets=("book", "paper"))
    ledger.check("attacks stay in the eps-ball", max_dist, at_most=0.3 + 1e-6)   # every budget
    ledger.finish()   # prints the table; fails the cell on any FAIL

The margin is ``value - threshold`` for ``at_least`` and ``threshold - value`` for ``at_most``
(positive: passed with room; for both bounds, the smaller of the two).

Taught in :ref:`ch-pgd-training`.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from . import budget as _budget

HEADER = "Lesson ledger"
NOT_CHECKED = "not checked at this budget"


class Ledger:
    """The self-checks of one chapter at one budget (default ``$ADVLIB_BUDGET``).
    """

    def __init__(self, chapter: str, budget: str | None = None) -> None:
        self.chapter = str(chapter)
        self.budget = _budget.resolve(budget)
        self.rows: list[dict] = []

    def check(self, lesson: str, value: float | bool, *, at_least: float | None = None,
              at_most: float | None = None, budgets: Sequence[str] = _budget.BUDGETS) -> bool:
        """Record one lesson: ``value`` must be ``>= at_least`` and/or ``<= at_most`` (a bool value:
        give neither; True passes). ``budgets``: where the lesson is meaningful; elsewhere it is
        recorded as not checked. Returns whether it passed (True when not checked).
        """
        if not lesson or any(r["lesson"] == lesson for r in self.rows):
            raise ValueError(f"lesson must be a new, non-empty name, got {lesson!r}")
        unknown = set(budgets) - set(_budget.BUDGETS)
        if unknown or not budgets:
            raise ValueError(f"budgets must name some of {_budget.BUDGETS}, got {budgets!r}")
        is_bool = isinstance(value, (bool, np.bool_))
        if is_bool and (at_least is not None or at_most is not None):
            raise ValueError(f"lesson {lesson!r}: a True/False value takes no at_least or at_most")
        if not is_bool and at_least is None and at_most is None:
            raise ValueError(f"lesson {lesson!r}: give at_least, at_most or both (the threshold beside its check)")
        value = bool(value) if is_bool else float(value)
        margins = []
        if at_least is not None:
            margins.append(value - float(at_least))
        if at_most is not None:
            margins.append(float(at_most) - value)
        margin = min(margins) if margins else None
        threshold = " and ".join(([f">= {at_least:g}"] if at_least is not None else [])
                                 + ([f"<= {at_most:g}"] if at_most is not None else [])) or "True"
        if self.budget not in budgets:
            status = NOT_CHECKED
        elif is_bool:
            status = "PASS" if value else "FAIL"
        else:
            status = "PASS" if (not math.isnan(margin) and margin >= 0) else "FAIL"
        self.rows.append({"lesson": lesson, "value": value, "threshold": threshold, "margin": margin,
                          "status": status, "checked at": ", ".join(budgets)})
        return status != "FAIL"

    def table(self) -> pd.DataFrame:
        """One row per lesson: value, threshold, margin, status and the budgets it is checked at."""
        return pd.DataFrame(self.rows, columns=["lesson", "value", "threshold", "margin", "status", "checked at"])

    def __str__(self) -> str:
        t = self.table()
        counts = t.status.value_counts().to_dict()
        summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
        with pd.option_context("display.max_colwidth", 80, "display.width", 200):
            body = t.to_string(index=False, float_format=lambda v: f"{v:.4g}")
        return f"{HEADER}: chapter {self.chapter} at {self.budget} ({summary})\n{body}"

    def finish(self) -> pd.DataFrame:
        """Print the ledger and raise ``AssertionError`` naming every lesson that failed."""
        if not self.rows:
            raise ValueError("the ledger is empty: record the chapter's lessons with check() first")
        print(self)
        failed = [r["lesson"] for r in self.rows if r["status"] == "FAIL"]
        if failed:
            raise AssertionError(f"{len(failed)} lesson(s) failed at {self.budget}: {failed}")
        return self.table()
