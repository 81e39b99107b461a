"""A cache of trained models, so chapters share models instead of retraining them.

A model is stored under ``<cache dir>/<name>-<budget>-<hash of config>.pt`` holding
``{"state_dict", "meta"}``, where ``meta`` has the name, budget, config and training history.
The cache folder is ``$ADVLIB_CACHE``, else ``~/.cache/advlib/models``.

Files are written atomically (a temporary file in the same folder, then ``os.replace``) and read with
``torch.load(..., weights_only=True)``; a file that cannot be read raises :class:`CheckpointError`
naming it. Taught in chapter 00.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from . import budget as _budget


class CheckpointError(RuntimeError):
    """A checkpoint file is corrupt, truncated, or does not fit the model."""


def cache_dir() -> Path:
    """``$ADVLIB_CACHE`` or ``~/.cache/advlib/models`` (``$XDG_CACHE_HOME`` respected)."""
    if os.environ.get("ADVLIB_CACHE"):
        return Path(os.environ["ADVLIB_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "advlib" / "models"


def key(name: str, config: dict, budget: str | None = None) -> str:
    """``<name>-<budget>-<12 hex digits of the config's SHA-256>``."""
    if not name or not all(c.isalnum() or c in "_-." for c in name):
        raise ValueError(f"name must be a non-empty string of letters, digits, '_', '-', '.'; got {name!r}")
    budget = _budget.current() if budget is None else budget
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return f"{name}-{budget}-{hashlib.sha256(blob).hexdigest()[:12]}"


def path_for(name: str, config: dict, budget: str | None = None) -> Path:
    """Where the model ``name`` trained with ``config`` at ``budget`` is (or would be) stored."""
    return cache_dir() / f"{key(name, config, budget)}.pt"


def save(model: nn.Module, path: str | os.PathLike, meta: dict | None = None) -> Path:
    """Write ``{"state_dict", "meta"}`` to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save({"state_dict": state, "meta": meta or {}}, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def load(model: nn.Module, path: str | os.PathLike) -> dict:
    """Load the weights at ``path`` into ``model`` (``weights_only=True``); return the stored meta."""
    path = Path(path)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(e).__name__}: {e}). "
                              f"It is corrupt or truncated: delete it and the model will be retrained.") from e
    if not isinstance(blob, dict) or "state_dict" not in blob:
        raise CheckpointError(f"checkpoint {path} has no 'state_dict'; it was not written by advlib.cache. "
                              f"Delete it and the model will be retrained.")
    try:
        model.load_state_dict(blob["state_dict"])
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint {path} does not fit {type(model).__name__}: {e}") from e
    return blob.get("meta", {})


def _jsonable(obj: Any) -> Any:
    """History tables and numpy scalars as plain lists/floats, so ``weights_only`` loads them."""
    import pandas as pd

    if isinstance(obj, pd.DataFrame):
        return {c: [_jsonable(v) for v in obj[c].tolist()] for c in obj.columns}
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item"):
        return obj.item()
    return obj


def load_or_train(name: str, build: Callable[[], nn.Module], train: Callable[[nn.Module], Any],
                  config: dict, budget: str | None = None, retrain: bool = False,
                  device: torch.device | str | None = None, verbose: bool = True) -> nn.Module:
    """The model ``name`` with ``config``: loaded from the cache if there, else built, trained by
    ``train(model)`` (whose return value, e.g. a history table, is kept in the meta) and saved.

    The returned model is in eval mode, on ``device`` (default: :func:`advlib.utils.get_device`), and
    carries ``model.meta`` (name, budget, config, history, ...).
    """
    from .utils import get_device

    device = get_device() if device is None else device
    budget = _budget.current() if budget is None else budget
    path = path_for(name, config, budget)
    model = build().to(device)
    if path.exists() and not retrain:
        meta = load(model, path)
        if verbose:
            print(f"loaded {name} ({budget}) from {path}")
    else:
        if verbose:
            print(f"training {name} ({budget}); will cache at {path}")
        result = train(model)
        meta = {"name": name, "budget": budget, "config": _jsonable(config), "history": _jsonable(result)}
        save(model, path, meta)
    model.meta = meta
    return model.eval()
