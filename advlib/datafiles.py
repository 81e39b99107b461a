"""Where advlib's data files are, and how a missing or unreadable one is reported.

The folders searched for data, in order (:func:`data_roots`): the ``root`` argument of a loader, the
environment variable ``ADVLIB_DATA``, and the cache folder ``~/.cache/advlib/data`` (or
``$XDG_CACHE_HOME/advlib/data``), into which downloads go when the machine is online
(:func:`is_online`). A dataset found nowhere raises :class:`DataNotFoundError` listing the folders
searched and the files expected (:func:`not_found`); a file that cannot be parsed raises
``ValueError`` naming it (:func:`reading`). :mod:`advlib.data` and :mod:`advlib.text` load through these.

Taught in :ref:`ch-preliminaries`.
"""
from __future__ import annotations

import contextlib
import gzip
import os
import pickle
import socket
import struct
import threading
import zipfile
import zlib
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

ENV_VAR = "ADVLIB_DATA"


class DataNotFoundError(FileNotFoundError):
    """Raised when a dataset is neither in the data root nor downloadable (offline).
    """


# --------------------------------------------------------------------------------------- roots
def default_cache_root() -> Path:
    """``$XDG_CACHE_HOME/advlib/data``, or ``~/.cache/advlib/data``.
    """
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "advlib" / "data"


def data_roots(root: str | os.PathLike | None = None) -> list[Path]:
    """The folders searched for data, in order: ``root``, ``$ADVLIB_DATA``, the cache folder.
    """
    roots = []
    if root is not None:
        roots.append(Path(root).expanduser())
    if os.environ.get(ENV_VAR):
        roots.append(Path(os.environ[ENV_VAR]).expanduser())
    roots.append(default_cache_root())
    return roots


def is_online(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    """True when a TCP connection to ``host`` opens within ``timeout`` seconds, name lookup included
    (the check runs in a daemon thread and is given up after ``timeout``, however the lookup hangs).
    """
    opened, done = [], threading.Event()

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                opened.append(True)
        except OSError:
            pass
        finally:
            done.set()

    threading.Thread(target=probe, name=f"is_online({host})", daemon=True).start()
    done.wait(timeout)
    return bool(opened)


def download_or_explain(fetch: Callable[[], object], what: str, expected: list[str], roots: list[Path]) -> None:
    """Run ``fetch()`` (a torchvision download, say); any failure becomes a :class:`DataNotFoundError`
    saying what to place where (:func:`not_found`).
    """
    try:
        fetch()
    except Exception as e:  # torchvision raises RuntimeError/URLError/OSError depending on the mirror
        raise not_found(what, expected, roots, f"(The download failed: {type(e).__name__}: {str(e).splitlines()[0]})") from e


def not_found(what: str, expected: list[str], roots: list[Path], hint: str = "") -> DataNotFoundError:
    """The :class:`DataNotFoundError` for ``what``: the folders searched, the files ``expected`` in one
    of them (relative to a data root), and a ``hint``.
    """
    tried = "\n".join(f"  - {r}" for r in roots)
    files = "\n".join(f"  <root>/{e}" for e in expected)
    return DataNotFoundError(
        f"{what} not found, and it could not be downloaded (offline, or download=False).\n"
        f"Folders searched:\n{tried}\n"
        f"Place these files in one of them, or point the environment variable {ENV_VAR} at a folder "
        f"that holds them:\n{files}\n{hint}".rstrip()
    )


# ------------------------------------------------------------------------------ reading files
@contextlib.contextmanager
def reading(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Turn a failure to read or parse ``path`` into a ``ValueError`` naming it and ``what`` it should be.

    Example: ``with reading(path, "an IDX file"): ...``
    """
    try:
        yield
    except FileNotFoundError:
        raise
    except (OSError, EOFError, ValueError, TypeError, KeyError, struct.error, zlib.error, zipfile.BadZipFile,
            pickle.UnpicklingError) as e:
        reason = f"{type(e).__name__}: {e}"
        if "allow_pickle" in reason:  # numpy's advice, which would let the file run code
            reason = "it holds pickled Python objects, which are never loaded since they can run code"
        raise ValueError(f"{path} cannot be read as {what} ({reason}); it is corrupt, truncated or not "
                         f"such a file: replace it") from e


# ------------------------------------------------------------------------------- file formats
def check_arrays(images: np.ndarray, labels: np.ndarray, image_shape: tuple[int, ...], num_classes: int,
                  images_file: str | os.PathLike, labels_file: str | os.PathLike | None = None) -> None:
    """Raise ``ValueError`` naming the file unless ``images`` is uint8 of shape ``(N, *image_shape)``
    and ``labels`` holds N integers in [0, num_classes).
    """
    labels_file = images_file if labels_file is None else labels_file
    if images.dtype != np.uint8 or images.shape[1:] != image_shape:
        raise ValueError(f"{images_file}: images must be uint8 of shape (N, {', '.join(map(str, image_shape))}), "
                         f"got {images.dtype} of shape {images.shape}")
    if not np.issubdtype(labels.dtype, np.integer) or labels.shape != (images.shape[0],):
        raise ValueError(f"{labels_file}: labels must be {images.shape[0]} integers (one per image), "
                         f"got {labels.dtype} of shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{labels_file}: labels must be class indices in [0, {num_classes - 1}], "
                         f"got values in [{labels.min()}, {labels.max()}]")


def read_idx(path: Path) -> np.ndarray:
    """The unsigned-byte array in the IDX file ``path`` (plain or ``.gz``): MNIST's format.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    with reading(path, "an IDX file"), opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"{path} is not an IDX file (too short)")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    if len(raw) < 4 + 4 * ndim:
        raise ValueError(f"{path} is truncated inside its header ({len(raw)} bytes, {ndim} dimensions)")
    shape = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path} is truncated: expected {int(np.prod(shape))} values, found {data.size}")
    return data.reshape(shape)


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles a CIFAR-10 batch without running code: the only globals admitted are the ones that
    rebuild numpy arrays (and bytes); anything else in the file is refused."""

    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
               ("numpy.core.numeric", "_frombuffer"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        old = module.replace("numpy._core", "numpy.core")
        if (old, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"it refers to {module}.{name}, which a CIFAR-10 batch never holds")
        if old.startswith("numpy.core") and hasattr(np, "_core"):  # numpy 2 moved numpy.core to numpy._core
            module = old.replace("numpy.core", "numpy._core")
        return super().find_class(module, name)


def read_cifar_batch(path: Path, num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels (N,) int64 of one pickled batch of ``cifar-10-batches-py``,
    read by an unpickler that admits only what rebuilds numpy arrays (nothing in the file can run).
    """
    with reading(path, "a CIFAR-10 batch"), open(path, "rb") as f:
        d = _CifarUnpickler(f, encoding="latin1").load()
    if not isinstance(d, dict) or not {"data", "labels"} <= set(d):
        raise ValueError(f"{path} is not a CIFAR-10 batch (a dict with 'data' and 'labels')")
    x, y = d["data"], np.asarray(d["labels"])
    if not isinstance(x, np.ndarray):
        raise ValueError(f"{path}: 'data' must be a numpy array, got {type(x).__name__}")
    check_arrays(x, y, (3 * 32 * 32,), num_classes, path)
    return x.reshape(-1, 3, 32, 32), y.astype(np.int64)


def read_cifar_npz(path: Path, num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels (N,) int64 from an npz of ``x`` (uint8 NHWC) and ``y``,
    read with ``allow_pickle=False``.
    """
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not an .npz archive; it is corrupt: replace it "
                         f"(never load it with allow_pickle=True, which would let it run code)")
    with reading(path, "a CIFAR-10 .npz (arrays x, y)"), np.load(path, allow_pickle=False) as d:
        x, y = d["x"], d["y"]
    check_arrays(x, y, (32, 32, 3), num_classes, path)
    return x.transpose(0, 3, 1, 2).copy(), y.astype(np.int64)
