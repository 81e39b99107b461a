"""Small shared helpers: the device, seeding, and argument validation.

The device is chosen once, here: CUDA when it is present, else the CPU. Nothing in ``advlib`` calls
``.cuda()``; everything moves tensors with ``.to(get_device())`` or to the device of the model.
"""
from __future__ import annotations

import contextlib
import itertools
import os
import platform
import random
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

_DEVICE: torch.device | None = None


def launched() -> bool:
    """Whether this process was started by ``torchrun`` (or another launcher) as one of several: the
    environment variable ``WORLD_SIZE`` is above 1.
    """
    value = os.environ.get("WORLD_SIZE", "1").strip() or "1"
    try:
        return int(value) > 1
    except ValueError:
        raise ValueError(f"the environment variable WORLD_SIZE must be a whole number of processes, "
                         f"got {value!r}") from None


def get_device() -> torch.device:
    """The device every chapter uses: ``cuda`` when available, else ``cpu``. Under ``torchrun`` with
    several processes, each process of a node takes its own GPU, ``cuda:LOCAL_RANK``
    (:mod:`advlib.distributed`).

    Set ``ADVLIB_DEVICE`` to override the choice: ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (any case);
    a ``ValueError`` naming it if it is none of these or that device is not available here.
    """
    global _DEVICE
    if _DEVICE is None:
        wanted = os.environ.get("ADVLIB_DEVICE", "").strip()
        if wanted:
            allowed = "'cpu', 'cuda', 'cuda:N' or 'mps' (or unset: CUDA when available, else the CPU)"
            try:
                device = torch.device(wanted.lower())
            except RuntimeError:
                device = None
            if device is None or device.type not in ("cpu", "cuda", "mps"):
                raise ValueError(f"ADVLIB_DEVICE must be {allowed}, got {wanted!r}")
            if device.type == "cuda" and not torch.cuda.is_available():
                raise ValueError(f"ADVLIB_DEVICE={wanted!r} but CUDA is not available on this machine; "
                                 f"set ADVLIB_DEVICE=cpu or unset it")
            if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
                raise ValueError(f"ADVLIB_DEVICE={wanted!r} but this machine has {torch.cuda.device_count()} "
                                 f"CUDA device(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}")
            if device.type == "mps" and not torch.backends.mps.is_available():
                raise ValueError(f"ADVLIB_DEVICE={wanted!r} but MPS is not available on this machine; "
                                 f"set ADVLIB_DEVICE=cpu or unset it")
            _DEVICE = device
        elif torch.cuda.is_available() and launched():
            _DEVICE = torch.device("cuda", int(os.environ.get("LOCAL_RANK") or 0))
        else:
            _DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return _DEVICE


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), else what ``platform`` knows.
    """
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def bf16_is_native(device: torch.device | str | None = None) -> bool:
    """Whether ``device`` computes in bfloat16 natively (a CUDA GPU with bf16, or a CPU with AVX512-BF16 /
    AMX). Elsewhere bf16 autocast is emulated: on an AVX2-only CPU a PGD training step of the MNIST CNN
    took 13x longer in bf16 than in float32 (4.0 s vs 0.31 s, chapter 07).
    """
    device = torch.device(device) if device is not None else get_device()
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


AMP_ENV = "ADVLIB_AMP"
_AMP_SWITCH = {"0": False, "off": False, "false": False, "1": True, "on": True, "true": True, "auto": "auto"}


def resolve_amp(amp: bool | str, device: torch.device | str | None = None) -> bool:
    """Whether to run in bfloat16 autocast: ``amp`` as a bool, ``"auto"`` = :func:`bf16_is_native`.

    The environment variable ``ADVLIB_AMP`` overrides ``amp`` everywhere it is resolved (every
    training loop, recipe and attack that takes ``amp``): ``0`` forces float32, ``1`` forces bf16
    autocast, ``auto`` means bf16 only where it is native. With it one machine runs the tests as both
    kinds of CPU would (see the README, "Tests and machines").
    """
    if isinstance(amp, str):
        if amp != "auto":
            raise ValueError(f"amp must be True, False or 'auto', got {amp!r}")
    elif not isinstance(amp, (bool, np.bool_)):
        raise ValueError(f"amp must be True, False or 'auto', got {amp!r}")
    forced = os.environ.get(AMP_ENV, "").strip().lower()
    if forced:
        if forced not in _AMP_SWITCH:
            raise ValueError(f"{AMP_ENV} must be one of 0, 1, auto (or unset), got {forced!r}")
        amp = _AMP_SWITCH[forced]
    if amp == "auto":
        return bf16_is_native(device)
    return bool(amp)


_ANNOUNCED: set[str] = set()


def announce_compute_path(device: torch.device | str, amp: bool) -> str | None:
    """Print, once per process and device type, which arithmetic training takes here and what that
    means for time: bfloat16 where it is native (a GPU with bf16, or a CPU with AVX512-BF16 / AMX),
    float32 elsewhere, where robust training takes several times longer than on a CPU with native
    bf16 (the chapters state their training times with the CPU kind that gave them). Returns the
    message, or ``None`` when it was already printed.
    """
    device = torch.device(device)
    if device.type in _ANNOUNCED:
        return None
    _ANNOUNCED.add(device.type)
    native = bf16_is_native(device)
    where = "this GPU" if device.type == "cuda" else "this CPU" if device.type == "cpu" else str(device)
    if native:
        kind = "" if device.type != "cpu" else " (AVX512-BF16 or AMX)"
        msg = (f"advlib: {where} computes bfloat16 natively{kind}; this training runs in "
               f"{'bf16 autocast' if amp else 'float32 (amp off)'}")
    else:
        kind = " (AVX2-only: no AVX512-BF16)" if device.type == "cpu" else ""
        if amp:  # forced on (ADVLIB_AMP=1 or amp=True): emulated
            msg = (f"advlib: {where} has no native bfloat16{kind}, but bf16 autocast was asked for: it is emulated "
                   "here and much slower than float32")
        else:
            msg = (f"advlib: {where} has no native bfloat16{kind}, so training runs in float32; robust training "
                   "takes several times longer than on a CPU with native bf16")
    print(msg)
    return msg


def bf16_autocast(device: torch.device | str, enabled: bool) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to bfloat16 on ``device`` when ``enabled`` (see :func:`resolve_amp`), else a no-op.
    """
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


def show_progress(progress: bool | None = None) -> bool:
    """Whether to draw tqdm progress bars: ``progress`` if given, else on unless ``$ADVLIB_PROGRESS``
    is ``0``, ``false``, ``no`` or ``off`` (in any case, spaces around ignored); unset, empty or any
    other value means on.
    """
    if progress is not None:
        return bool(progress)
    return os.environ.get("ADVLIB_PROGRESS", "1").strip().lower() not in ("0", "false", "no", "off")


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (all devices) and return a CPU ``torch.Generator`` seeded alike.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def new_generator(seed: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``seed``: the one kind of generator ``advlib`` makes.

    Draw from it with :func:`draw`, which puts the numbers on any device afterwards; a CPU generator
    gives the same numbers on every machine, CUDA or not, so a seeded attack or diagnostic is
    reproducible across devices.
    """
    return torch.Generator().manual_seed(check_int(seed, "seed"))


def draw(sampler: Callable[..., torch.Tensor], *args, generator: torch.Generator | None = None,
         device: torch.device | str | None = None, **kwargs) -> torch.Tensor:
    """``sampler(*args, **kwargs)`` (``torch.rand``, ``torch.randn``, ``torch.randint``, ...) drawn
    correctly for any device: with a ``generator``, on the generator's own device (where torch
    requires it), then moved to ``device``; without one, directly on ``device`` from torch's global
    stream. ``kwargs`` (e.g. ``dtype``) go to the sampler. Every seeded random draw in ``advlib``
    goes through here.

    Example: ``u = draw(torch.rand, x.shape, generator=g, device=x.device)``
    """
    if generator is None:
        return sampler(*args, device=device, **kwargs)
    return sampler(*args, generator=generator, device=generator.device, **kwargs).to(device)


def model_device(model: nn.Module) -> torch.device:
    """The device of a model's first parameter or buffer (CPU for a model with neither).
    """
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in eval mode, and restore each one's own mode on exit.

    Restoring module by module (rather than ``model.train(was_training)``) keeps mixed modes
    intact, e.g. a model whose batch-norm layers were frozen on purpose.
    """
    with _modes_restored(model):
        model.eval()
        yield model


@contextlib.contextmanager
def _modes_restored(model: nn.Module) -> Iterator[nn.Module]:
    """Restore each submodule's own mode on exit, whatever the block set."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


def batch_norm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The batch-norm layers of ``model`` that track running statistics (those that
    :func:`freeze_batch_norm_stats` freezes and :func:`advlib.train.recompute_batch_norm` recomputes).
    """
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


@contextlib.contextmanager
def freeze_batch_norm_stats(model: nn.Module) -> Iterator[nn.Module]:
    """Forward passes inside leave every batch-norm layer's running statistics as they are.

    Each batch-norm layer that tracks running statistics stops tracking them for the duration
    (``track_running_stats=False``, restored on exit even after an error): in train mode it still
    normalises with the statistics of the batch it sees, but ``running_mean``, ``running_var`` and
    ``num_batches_tracked`` are not updated; in eval mode it normalises with the running statistics,
    as always. The modes are not touched. This is the reference VAT code's
    ``update_batch_stats=False``: the passes on perturbed inputs (and VAT's pass on unlabelled
    inputs) use batch statistics but do not move the statistics used at test time.

    Example: ``with freeze_batch_norm_stats(model): logits = model(x + r)``
    """
    frozen = batch_norm_layers(model)
    for m in frozen:
        m.track_running_stats = False
    try:
        yield model
    finally:
        for m in frozen:
            m.track_running_stats = True


@contextlib.contextmanager
def train_mode_frozen_stats(model: nn.Module) -> Iterator[nn.Module]:
    """Every submodule in train mode with the batch-norm running statistics frozen
    (:func:`freeze_batch_norm_stats`), each submodule's own mode restored on exit: batch norm
    normalises every pass with the statistics of the batch it sees and updates nothing. This is the
    reference VAT code's ``forward_no_update_batch_stat``
    (:func:`advlib.attacks.vat_perturbation` with ``mode="train"``).

    Example: ``with train_mode_frozen_stats(model): logits = model(x)``
    """
    with _modes_restored(model), freeze_batch_norm_stats(model):
        model.train()
        yield model


def check_images(x: torch.Tensor, name: str = "x", bounds: tuple[float, float] | None = (0.0, 1.0), *,
                 finite: bool = True) -> None:
    """Raise ``ValueError`` unless ``x`` is a non-empty floating tensor with a batch dimension, inside
    ``bounds`` and (when ``finite``) free of NaN and infinities.
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor (pixels in [0, 1]), got dtype {x.dtype}")
    if x.dim() < 2:
        raise ValueError(f"{name} must have a batch dimension first, e.g. (N, C, H, W); got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(x.shape)})")
    if finite and not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if bounds is not None:
        lo, hi = bounds
        if x.min().item() < lo or x.max().item() > hi:
            raise ValueError(
                f"{name} must lie in [{lo}, {hi}] (pixels in [0, 1]; models normalise inside); "
                f"got values in [{x.min().item():.4g}, {x.max().item():.4g}]"
            )


def check_labels(y: torch.Tensor, n: int, name: str = "y", num_classes: int | None = None) -> None:
    """Raise ``ValueError`` unless ``y`` is a ``torch.long`` tensor of shape ``(n,)`` with values in
    range (cross-entropy takes no other integer dtype).
    """
    if not isinstance(y, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of class indices, got {type(y).__name__}")
    if y.dtype != torch.int64:
        raise ValueError(f"{name} must hold integer class indices as torch.long (int64), got dtype {y.dtype}; "
                         "convert them with .long() if they are whole numbers")
    if tuple(y.shape) != (n,):
        raise ValueError(f"{name} must have shape ({n},) to match the batch, got {tuple(y.shape)}")
    if y.min().item() < 0 or (num_classes is not None and y.max().item() >= num_classes):
        hi = "num_classes-1" if num_classes is None else str(num_classes - 1)
        raise ValueError(f"{name} must hold class indices in [0, {hi}], got values in "
                         f"[{y.min().item()}, {y.max().item()}]")


def check_model_input(model: nn.Module, x: torch.Tensor, name: str = "x") -> None:
    """Raise ``ValueError`` unless ``x`` is on the device of ``model`` and has the dtype of its
    floating parameters (a model with neither parameters nor buffers takes anything).
    """
    has_state = next(itertools.chain(model.parameters(), model.buffers()), None) is not None
    device = model_device(model)
    if has_state and x.device != device:
        raise ValueError(f"{name} is on {x.device} but the model is on {device}; move one of them, "
                         f"e.g. {name}.to('{device}')")
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
    if dtype is not None and x.dtype != dtype:
        raise ValueError(f"{name} is {x.dtype} but the model's parameters are {dtype}; convert one of them, "
                         f"e.g. {name}.to({dtype})")


def check_nonnegative(value: float, name: str) -> float:
    """Return ``float(value)`` if it is a finite number ``>= 0``, else raise ``ValueError`` naming ``name``.
    """
    return _check_number(value, name, strict=False)


def check_positive(value: float, name: str) -> float:
    """Return ``float(value)`` if it is a finite number ``> 0``, else raise ``ValueError`` naming ``name``
    (for ``>= 0``, :func:`check_nonnegative`).
    """
    return _check_number(value, name, strict=True)


def _check_number(value: float, name: str, strict: bool) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not np.isfinite(v) or v < 0 or (v == 0 and strict):
        raise ValueError(f"{name} must be a finite number {'> 0' if strict else '>= 0'}, got {value!r}")
    return v


def check_int(value: int, name: str, *, minimum: int = 0) -> int:
    """Return ``value`` if it is an integer ``>= minimum``, else raise ``ValueError``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Write a file so that a reader never sees it half-written: ``write(tmp)`` writes a temporary file
    ``<name><8 characters>.tmp`` in the same folder (created if needed), which then replaces ``path``
    in one step (``os.replace``); if ``write`` fails, ``path`` is left as it was and the temporary
    file is removed. Every file advlib writes goes through here (models, results, downloads).

    Example: ``atomic_write(path, lambda tmp: tmp.write_text(text))``
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path
