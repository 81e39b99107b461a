"""Compute budgets: ``smoke`` (CI, seconds), ``book`` (the committed outputs, a 2-core CPU) and
``paper`` (the paper's own settings, for a GPU).

The budget comes from the environment variable ``ADVLIB_BUDGET`` (default ``book``). A chapter reads
all its sizes from one place: its settings module in ``advlib.settings``, in one line::

    cfg = advlib.budget.chapter("targeted_attacks")
    cfg.pgd_steps

or, in a chapter whose pass has not moved them there yet, a table in its setup cell::

    cfg = advlib.budget.pick(smoke=dict(epochs=1, n_train=2000),
                             book=dict(epochs=3, n_train=60000),
                             paper=dict(epochs=100, n_train=60000))
"""
from __future__ import annotations

import importlib
import os
import pkgutil
from typing import Any

BUDGETS = ("smoke", "book", "paper")
DEFAULT = "book"


class Config(dict):
    """A dict whose keys also read as attributes (``cfg.epochs``).
    """

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(f"this budget's config has no key {key!r}; keys: {sorted(self)}") from None


def current() -> str:
    """The active budget name, from ``ADVLIB_BUDGET`` (default ``book``).
    """
    name = os.environ.get("ADVLIB_BUDGET", DEFAULT).strip().lower() or DEFAULT
    if name not in BUDGETS:
        raise ValueError(f"ADVLIB_BUDGET must be one of {BUDGETS}, got {name!r}")
    return name


def resolve(budget: str | None = None) -> str:
    """``budget`` if it is one of ``BUDGETS``, or the active budget (``$ADVLIB_BUDGET``) when it
    is ``None``; anything else is a ``ValueError`` naming ``budget``. Every function of ``advlib`` that
    takes a budget resolves it here.
    """
    name = current() if budget is None else budget
    if name not in BUDGETS:
        raise ValueError(f"budget must be one of {BUDGETS}, got {name!r}")
    return name


def pick(budget: str | None = None, **options: dict) -> Config:
    """Return the options for the active budget (or ``budget``) as a :class:`Config`.

    Every keyword must be a budget name; the active one must be given. Extra keys are not merged:
    each budget lists all its settings, so a reader sees them side by side.
    """
    unknown = set(options) - set(BUDGETS)
    if unknown:
        raise ValueError(f"unknown budget(s) {sorted(unknown)}; allowed: {BUDGETS}")
    name = resolve(budget)
    if name not in options:
        raise ValueError(f"no settings given for the active budget {name!r} (given: {sorted(options)})")
    cfg = Config(options[name])
    cfg["budget"] = name
    return cfg


def chapter_names() -> list[str]:
    """The chapters whose settings live in ``advlib.settings`` (module names, e.g. ``"targeted_attacks"``).
    """
    from . import settings

    return sorted(m.name for m in pkgutil.iter_modules(settings.__path__) if not m.name.startswith("_"))


def _chapter_module(name: str):
    names = chapter_names()
    if name not in names:
        raise ValueError(f"chapter must be one of {names}, got {name!r}")
    settings = getattr(importlib.import_module(f"advlib.settings.{name}"), "SETTINGS", None)
    if not isinstance(settings, dict):
        raise ValueError(f"advlib.settings.{name} must define SETTINGS, a dict of (smoke, book, paper) rows")
    uneven = sorted(k for k, row in settings.items() if not isinstance(row, tuple) or len(row) != len(BUDGETS))
    if uneven:
        raise ValueError(f"advlib.settings.{name}: every setting must be a tuple of one value per budget "
                         f"{BUDGETS}, not so: {uneven}")
    return {b: {k: row[i] for k, row in settings.items()} for i, b in enumerate(BUDGETS)}


def chapter(name: str, budget: str | None = None) -> Config:
    """The settings of chapter ``name`` (a module of ``advlib.settings``) for the active budget (or
    ``budget``), as :func:`pick` gives them: a :class:`Config` with ``budget`` added.

    Example: ``cfg = chapter("targeted_attacks")``
    """
    tables = _chapter_module(name)
    return pick(budget, **{b: dict(t) for b, t in tables.items()})


def chapter_table(name: str):
    """Chapter ``name``'s settings side by side, one row a setting and one column a budget (a pandas
    DataFrame), for a reader who wants to see what ``smoke`` leaves out.
    """
    import pandas as pd

    tables = _chapter_module(name)
    return pd.DataFrame({b: {k: repr(v) if isinstance(v, list) else v for k, v in t.items()}
                         for b, t in tables.items()})
