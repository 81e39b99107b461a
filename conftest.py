"""pytest's defaults for this repository: ``pytest`` alone is the quick run.

Before any test or notebook kernel starts (kernels inherit this process's environment):
- ``ADVLIB_BUDGET`` defaults to ``smoke`` (the library's own default, outside pytest, is ``book``);
- ``ADVLIB_DATA`` defaults to ``../shared/data`` beside the repository, when that folder exists.
A value already set in the environment always wins.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import MutableMapping

ROOT = Path(__file__).resolve().parent


def quick_run_defaults(environ: MutableMapping[str, str], root: Path = ROOT) -> dict[str, str]:
    """Fill in ``ADVLIB_BUDGET`` and ``ADVLIB_DATA`` in ``environ`` where unset; return what was set."""
    chosen: dict[str, str] = {}
    if not environ.get("ADVLIB_BUDGET", "").strip():
        chosen["ADVLIB_BUDGET"] = "smoke"
    shared = (root / ".." / "shared" / "data").resolve()
    if not environ.get("ADVLIB_DATA", "").strip() and shared.is_dir():
        chosen["ADVLIB_DATA"] = str(shared)
    environ.update(chosen)
    return chosen


quick_run_defaults(os.environ)
