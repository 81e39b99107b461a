"""A cache of trained models, so chapters share models instead of retraining them.

A model is stored under ``<cache dir>/<name>-<budget>-<hash of config>.pt`` holding
``{"state_dict", "meta", "sha256"}``, where ``meta`` has the name, budget, config and training history
and ``sha256`` is a checksum of both. The cache folder is ``$ADVLIB_CACHE``, else
``~/.cache/advlib/models``; it is checked to be writable *before* a model is trained, and a model
trained but not saved is never lost (it is written to the temporary folder instead, with a warning).

The hash of the config is exact: the config may hold only JSON values (numbers, strings, booleans,
None, lists, dicts with string keys), numpy scalars, and numpy arrays or tensors (hashed by their
dtype, shape and every byte); anything else (a function, an object) is a ``ValueError``.

Files are written atomically (a temporary file ``<file name><8 characters>.tmp`` in the same folder,
then ``os.replace``) and read with ``torch.load(..., weights_only=True)``; a file that cannot be read,
or whose checksum does not match, raises :class:`CheckpointError` naming it. The temporary files of
saves that were killed are removed by the next save of the same file, once they are an hour old
(:func:`save`). Taught in chapter 00.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
import numpy as np
from torch import nn

from . import budget as _budget
from . import distributed
from .utils import atomic_write

ENV_VAR = "ADVLIB_CACHE"
STALE_TEMP_S = 3600  # seconds; a temporary file of a save left unmodified this long is a killed save's


class CheckpointError(RuntimeError):
    """A checkpoint file is corrupt, truncated, or does not fit the model.
    """


def cache_dir() -> Path:
    """``$ADVLIB_CACHE`` or ``~/.cache/advlib/models`` (``$XDG_CACHE_HOME`` respected).
    """
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "advlib" / "models"


def _check_writable(folder: str | os.PathLike) -> Path:
    """Create ``folder`` if needed and write a probe file in it; raise ``PermissionError`` naming the
    folder and ``$ADVLIB_CACHE`` if that fails (run before training, so no training time is lost)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise PermissionError(f"the model cache folder {folder} cannot be written ({type(e).__name__}: {e}); "
                              f"point the environment variable {ENV_VAR} at a writable folder") from e
    return folder


def tensor_bytes(t: torch.Tensor) -> bytes:
    """The raw bytes of ``t`` (any dtype, any device), in row-major order: what a digest of a tensor hashes.
    """
    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def exact(obj: Any, where: str = "config") -> Any:
    """``obj`` as plain JSON that determines it exactly (JSON values are kept as they are, so their
    keys do not change); arrays and tensors become their dtype, shape and SHA-256. Raises
    ``ValueError`` naming ``where`` for anything whose text would not be exact or stable. Cache keys
    (models and evaluations) hash this.
    """
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        bad = [k for k in obj if not isinstance(k, str)]
        if bad:
            raise ValueError(f"{where} keys must be strings, got {bad[0]!r}")
        return {k: exact(v, f"{where}[{k!r}]") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [exact(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, torch.Tensor):
        return {"__tensor__": [str(obj.dtype), list(obj.shape), hashlib.sha256(tensor_bytes(obj)).hexdigest()]}
    if isinstance(obj, np.ndarray) and not obj.dtype.hasobject:
        digest = hashlib.sha256(np.ascontiguousarray(obj).tobytes()).hexdigest()
        return {"__ndarray__": [str(obj.dtype), list(obj.shape), digest]}
    raise ValueError(f"{where} has type {type(obj).__name__}; a cache config may hold only numbers, strings, "
                     f"booleans, None, lists, dicts, arrays and tensors, so that its key is exact and the same "
                     f"in every run (put the settings a function uses in the config instead)")


def key(name: str, config: dict, budget: str | None = None) -> str:
    """``<name>-<budget>-<12 hex digits of the config's SHA-256>`` (see the module doc for what a
    config may hold). ``budget`` must be one of ``advlib.budget.BUDGETS`` (smoke, book, paper).
    """
    if not name or not all(c.isalnum() or c in "_-." for c in name):
        raise ValueError(f"name must be a non-empty string of letters, digits, '_', '-', '.'; got {name!r}")
    budget = _budget.resolve(budget)
    blob = json.dumps(exact(config), sort_keys=True).encode()
    return f"{name}-{budget}-{hashlib.sha256(blob).hexdigest()[:12]}"


def path_for(name: str, config: dict, budget: str | None = None) -> Path:
    """Where the model ``name`` trained with ``config`` at ``budget`` is (or would be) stored.
    """
    return cache_dir() / f"{key(name, config, budget)}.pt"


def _checksum(state_dict: dict[str, torch.Tensor], meta: dict) -> str:
    """SHA-256 of every tensor's name, dtype, shape and bytes, and of ``meta`` (as sorted JSON)."""
    h = hashlib.sha256()
    for k in sorted(state_dict):
        v = state_dict[k]
        h.update(f"{k}|{v.dtype}|{tuple(v.shape)}|".encode())
        h.update(tensor_bytes(v))
    h.update(json.dumps(meta, sort_keys=True, default=repr).encode())
    return h.hexdigest()


def save(model: nn.Module, path: str | os.PathLike, meta: dict | None = None) -> Path:
    """Write ``{"state_dict", "meta", "sha256"}`` to ``path`` atomically: to a temporary file
    ``<path><8 characters>.tmp`` beside it, then renamed to ``path``.

    After a successful save, the temporary files of ``path`` that earlier saves left behind (a killed
    process never removes its own) are removed, if they were last modified over ``STALE_TEMP_S``
    (an hour) ago. A younger one may be another process's save of ``path`` in progress and is left alone;
    only a writer stalled for an hour loses its temporary file, and its rename then fails with
    ``FileNotFoundError`` (``path`` is never half-written).
    """
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    meta = meta or {}
    return atomic_save({"state_dict": state, "meta": meta, "sha256": _checksum(state, meta)}, path)


def _remove_stale_temps(path: Path) -> None:
    """Remove the temporary files of ``path`` (as :func:`save` names them) last modified over
    ``STALE_TEMP_S`` seconds ago; errors (a file already gone, a folder not listable) are ignored."""
    name = re.compile(re.escape(path.name) + r"[a-z0-9_]{8}\.tmp")  # tempfile.mkstemp's 8 characters
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return
    for entry in entries:
        try:
            if name.fullmatch(entry.name) and time.time() - entry.stat().st_mtime > STALE_TEMP_S:
                os.remove(entry.path)
        except OSError:
            pass


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj, path)`` atomically: written to a temporary file ``<path><8 characters>.tmp``
    in the same folder, then moved over ``path`` with ``os.replace``, so a reader never sees a torn
    file (the folder is created). After it, the stale temporary files of ``path`` are removed (see
    :func:`save`). Every file ``advlib`` writes with ``torch.save`` goes through here.
    """
    path = atomic_write(path, lambda tmp: torch.save(obj, tmp))
    _remove_stale_temps(path)
    return path


def load(model: nn.Module, path: str | os.PathLike) -> dict:
    """Load the weights at ``path`` into ``model`` (``weights_only=True``); return the stored meta.

    The stored checksum is verified first (files written before checksums were stored have none and
    are loaded as they are).
    """
    path = Path(path)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(e).__name__}: {e}). "
                              f"It is corrupt or truncated: delete it and the model will be retrained.") from e
    if not (isinstance(blob, dict) and isinstance(blob.get("state_dict"), dict)
            and all(isinstance(v, torch.Tensor) for v in blob["state_dict"].values())):
        raise CheckpointError(f"checkpoint {path} has no 'state_dict' of tensors; it was not written by advlib.cache. "
                              f"Delete it and the model will be retrained.")
    if "sha256" in blob and blob["sha256"] != _checksum(blob["state_dict"], blob.get("meta", {})):
        raise CheckpointError(f"checkpoint {path} does not match its checksum: it is corrupt. "
                              f"Delete it and the model will be retrained.")
    try:
        model.load_state_dict(blob["state_dict"])
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint {path} does not fit {type(model).__name__}: {e}") from e
    return blob.get("meta", {})


def _jsonable(obj: Any) -> Any:
    """History tables, arrays, tensors, numpy scalars and subclasses of the built-in numbers (an
    :class:`~advlib.evaluate.Accuracy` in a record) as plain lists/numbers, so ``weights_only`` loads
    them."""
    import pandas as pd

    if isinstance(obj, pd.DataFrame):
        return {c: [_jsonable(v) for v in obj[c].tolist()] for c in obj.columns}
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):  # numpy scalars and arrays, tensors
        return obj.tolist()
    for plain in (bool, int, float, str):  # bool first; a subclass would need its class to load
        if isinstance(obj, plain):
            return plain(obj)
    return obj


def machine_record(device: torch.device | str | None = None) -> dict:
    """Where a model is trained, as stored with it: the CPU's model name, whether bfloat16 is native
    there (AVX512-BF16 / AMX: the fast CPU kind, else AVX2-only), its thread count, the device used
    and, on a GPU, its name.
    """
    from .utils import bf16_is_native, cpu_name, get_device

    device = torch.device(get_device() if device is None else device)
    record = {"cpu": cpu_name(), "cpu_bf16_native": bf16_is_native("cpu"), "threads": torch.get_num_threads(),
              "device": str(device), "torch": str(torch.__version__)}
    if device.type == "cuda":
        record["gpu"] = torch.cuda.get_device_name(device)
    return record


def load_or_train(name: str, build: Callable[[], nn.Module], train: Callable[[nn.Module], Any],
                  config: dict, budget: str | None = None, retrain: bool = False,
                  device: torch.device | str | None = None, verbose: bool = True) -> nn.Module:
    """The model ``name`` with ``config``: loaded from the cache if there, else built, trained by
    ``train(model)`` and saved. ``train`` returns the history table, or a dict with the history
    under ``"history"`` and other records beside it; ``model.meta["history"]`` is then the table and
    each other record is ``model.meta[key]`` (a file cached when such a dict was kept whole loads
    the same way).

    The returned model is in eval mode, on ``device`` (default: :func:`advlib.utils.get_device`), and
    carries ``model.meta`` (name, budget, config, history, and ``machine``, the :func:`machine_record` of
    where it was trained, so that a training time can be read with the kind of CPU or GPU that gave
    it; models cached before it was recorded have none). The cache folder is checked to be
    writable before training (``PermissionError`` naming ``$ADVLIB_CACHE`` if not); if saving still
    fails, the model is written to the temporary folder instead and returned, with a warning saying where.

    Under ``torchrun`` (:mod:`advlib.distributed`) every rank trains (``train`` is collective, e.g.
    :func:`advlib.train.fit`), rank 0 alone checks the folder, prints and writes the file, and the
    other ranks wait for it and then load it, so that every rank returns the cached model. On several
    machines the cache folder must be one they share.
    """
    from .utils import get_device

    device = get_device() if device is None else device
    budget = _budget.resolve(budget)
    path = path_for(name, config, budget)
    parallel = distributed.init()  # under torchrun: every rank trains, rank 0 alone writes
    main = distributed.is_main()
    model = build().to(device)
    if distributed.broadcast_object(path.exists() and not retrain):  # rank 0's answer
        meta = _spread_history(_load_on_every_rank(model, path))
        if verbose and main:
            print(f"loaded {name} ({budget}), cache key {path.stem}")
    else:
        if main:
            _check_writable(path.parent)
        if verbose and main:
            print(f"training {name} ({budget}); it will be cached as {path.stem} "
                  f"(in ${ENV_VAR} or the default cache folder)")
        meta = _spread_history({"name": name, "budget": budget, "config": _jsonable(config),
                                "history": _jsonable(train(model)), "machine": machine_record(device)})
        saved = _save_somewhere(model, path, meta) if main else None
        if parallel:  # the others wait for rank 0's file, then load it: every rank has what is cached
            saved, meta = distributed.broadcast_object((saved, meta))
            if not main and saved is not None:
                _load_on_every_rank(model, saved)
    model.meta = meta
    return model.eval()


def _spread_history(meta: dict) -> dict:
    """``meta`` with a history given as ``{"history": table, key: record, ...}`` spread out: the table
    as ``meta["history"]``, each record as ``meta[key]``."""
    hist = meta.get("history")
    if isinstance(hist, dict) and "history" in hist:
        meta = {**meta, **{k: v for k, v in hist.items() if k != "history"}, "history": hist["history"]}
    return meta


def _load_on_every_rank(model: nn.Module, path: Path) -> dict:
    """:func:`load`, with an error that says why a rank other than 0 may not see rank 0's file."""
    try:
        return load(model, path)
    except FileNotFoundError:
        if distributed.world_size() == 1:
            raise
        raise FileNotFoundError(f"rank {distributed.rank()} cannot see the checkpoint {path} that rank 0 has; "
                                f"on several machines, point {ENV_VAR} at a folder they all share") from None


def _save_somewhere(model: nn.Module, path: Path, meta: dict) -> Path | None:
    """:func:`save` to ``path``; if that fails, to the temporary folder, warning where (or that the
    trained model, returned to the caller, could not be saved at all). Returns where it was saved."""
    try:
        return save(model, path, meta)
    except OSError as e:
        error = f"{type(e).__name__}: {e}"
    fallback = Path(tempfile.gettempdir()) / "advlib-unsaved" / path.name
    saved = None
    try:
        saved = save(model, fallback, meta)
        where = f"it was saved at {fallback} instead; move it to {path} to use it from the cache"
    except OSError as e:
        where = f"nor at {fallback} ({type(e).__name__}: {e}); the returned model is the only copy"
    warnings.warn(f"the trained model could not be saved at {path} ({error}); {where}. Check {ENV_VAR}.",
                  RuntimeWarning, stacklevel=3)
    return saved
