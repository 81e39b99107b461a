"""Compute budgets: ``smoke`` (CI, seconds), ``book`` (the committed outputs, a 2-core CPU) and
``paper`` (the paper's own settings, for a GPU).

The budget comes from the environment variable ``ADVLIB_BUDGET`` (default ``book``). A chapter reads
all its sizes from one cell::

    cfg = advlib.budget.pick(smoke=dict(epochs=1, n_train=2000),
                             book=dict(epochs=3, n_train=60000),
                             paper=dict(epochs=100, n_train=60000))
    cfg.epochs
"""
from __future__ import annotations

import os
from typing import Any

BUDGETS = ("smoke", "book", "paper")
DEFAULT = "book"


class Config(dict):
    """A dict whose keys also read as attributes (``cfg.epochs``).

    Taught in :ref:`ch-preliminaries`.
    """

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(f"this budget's config has no key {key!r}; keys: {sorted(self)}") from None


def current() -> str:
    """The active budget name, from ``ADVLIB_BUDGET`` (default ``book``).

    Taught in :ref:`ch-preliminaries`.
    """
    name = os.environ.get("ADVLIB_BUDGET", DEFAULT).strip().lower() or DEFAULT
    if name not in BUDGETS:
        raise ValueError(f"ADVLIB_BUDGET must be one of {BUDGETS}, got {name!r}")
    return name


def resolve(budget: str | None = None) -> str:
    """``budget`` if it is one of ``BUDGETS``, or the active budget (``$ADVLIB_BUDGET``) when it
    is ``None``; anything else is a ``ValueError`` naming ``budget``. Every function of ``advlib`` that
    takes a budget resolves it here.

    Taught in :ref:`ch-preliminaries`.
    """
    name = current() if budget is None else budget
    if name not in BUDGETS:
        raise ValueError(f"budget must be one of {BUDGETS}, got {name!r}")
    return name


def pick(budget: str | None = None, **options: dict) -> Config:
    """Return the options for the active budget (or ``budget``) as a :class:`Config`.

    Every keyword must be a budget name; the active one must be given. Extra keys are not merged:
    each budget lists all its settings, so a reader sees them side by side.

    Taught in :ref:`ch-preliminaries`.
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
