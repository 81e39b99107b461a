r"""The skeleton every training loop shares: batches, the number of steps, the learning-rate
schedule, the finite-loss guard and the history table.

A loop built on it keeps only what is its own: its optimizers and one step that reads like the
paper. :func:`advlib.train.fit` and the loops of :mod:`advlib.gan` and :mod:`advlib.aae` all read

.. code-block:: python

    stream, per_epoch = batches(data, batch_size, seed=seed, device=device)
    total = total_steps(steps, epochs, per_epoch)
    history = History(per_epoch)
    for t in range(1, total + 1):
        x, y = next(stream)
        loss = ...                               # the paper's step
        optimizer_step(opt, loss, "what", t, total)
        history.add(loss=loss.item())
        if t in log_steps(total, log_every, per_epoch):
            history.row(t)
    return history.frame()

An *epoch* is one pass over the data: ``per_epoch`` batches. The schedule multiplies each
optimizer's learning rate by

.. math:: \lambda(t) = \begin{cases} (t + 1) / w & t < w \text{ (warm-up, } w = \lfloor \text{warmup} \cdot T \rfloor) \\
          1 - s \;\text{(linear)}, \quad \tfrac12 (1 + \cos \pi s) \;\text{(cosine)}, \quad 1 \;\text{(constant)} & \text{else,}
          \end{cases}

or, for ``"piecewise"`` (Rice et al.'s step decay), 1 until :math:`s = 1/2`, then 0.1 until
:math:`s = 3/4`, then 0.01,

with :math:`s = (t - w) / (T - w)` the fraction of the steps after the warm-up and :math:`T` the
total. No function here touches the global random state: shuffles use their own seeded
``torch.Generator``. Taught in chapters 00 (``fit``), 01 and 02 (the generative loops).
"""
from __future__ import annotations

import contextlib
import math
import time
from typing import Iterable, Iterator

import pandas as pd
import torch
from tqdm.auto import tqdm

from .data import ImageData, Loader
from .distributed import shard_indices
from .utils import check_images, check_int, check_labels, check_nonnegative, check_positive, draw, show_progress

SCHEDULES = ("constant", "linear", "cosine", "piecewise")
# (x, y), or (x, y, idx) with the examples' indices when asked for (indices=True)
Batch = tuple[torch.Tensor, "torch.Tensor | None"] | tuple[torch.Tensor, "torch.Tensor | None", torch.Tensor]


# ------------------------------------------------------------------------------ learning rates
def check_schedule(schedule: str, warmup: float = 0.0) -> None:
    """Raise ``ValueError`` unless ``schedule`` is one of ``SCHEDULES`` (constant, linear, cosine,
    piecewise) and ``warmup`` a fraction in [0, 1).
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if not 0.0 <= check_nonnegative(warmup, "warmup") < 1.0:
        raise ValueError(f"warmup must be a fraction of training in [0, 1), got {warmup!r}")


def lr_factor(schedule: str, t: int, total: int, warmup: float = 0.0) -> float:
    r"""The factor :math:`\lambda(t)` of the learning rate at step ``t`` (counted from 0) of ``total``
    (see the module doc): a linear warm-up over the first ``warmup`` fraction of the steps, then
    ``"constant"``, ``"linear"`` decay to 0, ``"cosine"`` decay to 0, or ``"piecewise"``: 1, then 0.1
    from half of the steps after the warm-up and 0.01 from three quarters (the step decay of Rice et
    al., 2020, at epochs 100 and 150 of 200).
    """
    check_schedule(schedule, warmup)
    if schedule == "constant":
        return 1.0
    w = int(warmup * total)
    if t < w:
        return (t + 1) / w
    rest = (t - w) / max(1, total - w)
    if schedule == "linear":
        return max(0.0, 1.0 - rest)
    if schedule == "piecewise":
        return 1.0 if rest < 0.5 else 0.1 if rest < 0.75 else 0.01
    return 0.5 * (1 + math.cos(math.pi * rest))


def lr_schedulers(optimizers: Iterable[torch.optim.Optimizer], schedule: str, total: int,
                  warmup: float = 0.0) -> list[torch.optim.lr_scheduler.LambdaLR]:
    """One :func:`lr_factor` schedule over ``total`` steps per optimizer; call ``.step()`` on each after
    every training step.
    """
    check_schedule(schedule, warmup)
    check_int(total, "total", minimum=1)
    return [torch.optim.lr_scheduler.LambdaLR(o, lambda t: lr_factor(schedule, t, total, warmup))
            for o in optimizers]


# ------------------------------------------------------------------------------------- batches
class TensorBatches:
    """Shuffled batches ``(x, y)`` of a pair of tensors (``y`` may be None), reshuffled each pass by
    a ``torch.Generator`` seeded once with ``seed``. With ``drop_last`` a pass has ``N // batch_size``
    full batches (one batch of all ``N`` when ``N < batch_size``); without, ``ceil(N / batch_size)``.
    With ``shard=(rank, world_size)`` each batch is rank ``rank``'s share of the global batch
    (:func:`advlib.distributed.shard_indices`). With ``indices=True`` each batch is ``(x, y, idx)``,
    ``idx`` the rows of ``x`` it holds.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor | None, batch_size: int, seed: int,
                 device: torch.device | str, drop_last: bool = False,
                 shard: tuple[int, int] | None = None, indices: bool = False) -> None:
        self.x, self.y, self.device, self.indices = x, y, device, indices
        self.batch_size = min(check_int(batch_size, "batch_size", minimum=1), x.shape[0])
        self.drop_last = drop_last
        self.generator = torch.Generator().manual_seed(seed)
        self.shard = shard

    def __len__(self) -> int:
        n = self.x.shape[0]
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        order = draw(torch.randperm, self.x.shape[0], generator=self.generator)
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            if self.shard is not None:
                idx = shard_indices(idx, *self.shard)
            y = None if self.y is None else self.y[idx].to(self.device)
            yield (self.x[idx].to(self.device), y, idx.to(self.device)) if self.indices else (self.x[idx].to(self.device), y)


def _forever(batches: Iterable[Batch]) -> Iterator[Batch]:
    while True:
        yield from batches


def batches(data, batch_size: int, *, seed: int, device: torch.device | str, drop_last: bool = False,
            name: str = "data", labels: bool = False, shard: tuple[int, int] | None = None,
            indices: bool = False) -> tuple[Iterator[Batch], int | None]:
    """An endless stream of shuffled ``(x, y)`` batches of ``data`` on ``device``, and the number of
    batches in one pass (an epoch; ``None`` for a sampler).

    ``data`` (the argument ``name`` of the calling loop, named in every error) is one of

    - an :class:`~advlib.data.ImageData`;
    - an ``(x, y)`` pair of tensors of the same length (``y`` long class indices when ``labels``);
    - a tensor ``x`` (then ``y`` is None), unless ``labels``;
    - a sampler ``n -> x`` (``y`` is None), unless ``labels``.

    ``drop_last`` drops a last partial batch (when there is at least one full one); the generative
    loops drop it, :func:`advlib.train.fit` keeps it. Never empty. With ``shard=(rank, world_size)``
    (data-parallel training, :func:`advlib.distributed.shard`), ``batch_size`` is the global batch and
    each batch is this rank's share of it; the number of batches per epoch is the global one. With
    ``indices=True`` each batch is ``(x, y, idx)``, ``idx`` the positions of its examples in
    ``data`` (not for a sampler, whose examples have none).
    """
    check_int(batch_size, "batch_size", minimum=1)
    if isinstance(data, ImageData):
        if len(data) == 0:
            raise ValueError(f"{name} is empty ({data!r}); it needs at least one image")
        loader = Loader(data, batch_size, shuffle=True, seed=seed, device=device,
                        drop_last=drop_last and len(data) >= batch_size, shard=shard, indices=indices)
        return _forever(loader), len(loader)
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        x, y = data
        check_images(x, f"{name}[0] (x)", bounds=None, finite=False)  # NaNs are the loss guard's
        if labels:
            check_labels(y, x.shape[0], f"{name}[1] (y)")
        elif y is not None and (not isinstance(y, torch.Tensor) or y.shape[:1] != x.shape[:1]):
            got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise ValueError(f"{name}: x and y must be tensors of the same length, got {x.shape[0]} images and {got}")
    elif isinstance(data, torch.Tensor) and not labels:
        check_images(data, name, bounds=None, finite=False)
        x, y = data, None
    elif callable(data) and not labels:
        if indices:
            raise ValueError(f"{name}: a sampler n -> x has no example indices; give a tensor or an ImageData")
        if shard is not None:
            raise ValueError(f"{name}: a sampler n -> x cannot be sharded over processes; give a tensor or an ImageData")

        def sample() -> Iterator[Batch]:
            while True:
                yield data(batch_size).to(device), None
        return sample(), None
    else:
        allowed = ("an advlib.data.ImageData or an (x, y) pair of tensors" if labels else
                   "an advlib.data.ImageData, an (x, y) pair of tensors, a tensor x or a sampler n -> x")
        raise ValueError(f"{name} must be {allowed}, got {type(data).__name__}")
    stream = TensorBatches(x, y, batch_size, seed, device, drop_last, shard, indices)
    return _forever(stream), len(stream)


def total_steps(steps: int | None, epochs: float | None, per_epoch: int | None) -> int:
    """The length of a run: ``steps``, or ``epochs`` passes of ``per_epoch`` batches (rounded, at least
    one step). Exactly one of ``steps`` and ``epochs`` must be given; a sampler (``per_epoch=None``)
    needs ``steps``.
    """
    if (steps is None) == (epochs is None):
        raise ValueError("give exactly one of steps and epochs")
    if steps is not None:
        return check_int(steps, "steps", minimum=1)
    check_positive(epochs, "epochs")
    if per_epoch is None:
        raise ValueError("epochs needs finite data; with a sampler give steps")
    return max(1, int(round(epochs * per_epoch)))


def log_steps(total: int, log_every: int | None, per_epoch: int | None) -> set[int]:
    """The steps (1-based) after which a history row is written: every ``log_every`` steps (an integer
    >= 1; ``None`` for the default: one epoch, or a tenth of the run for a sampler), and the last step.
    """
    default = per_epoch or max(1, total // 10)
    every = check_int(default if log_every is None else log_every, "log_every", minimum=1)
    return set(range(every, total + 1, every)) | {total}


# ------------------------------------------------------------------------- guard and bookkeeping
def check_finite(loss: torch.Tensor, what: str, t: int, total: int) -> None:
    """Raise ``FloatingPointError`` when ``loss`` is NaN or infinite, naming the ``what`` loss and the step.
    """
    if not torch.isfinite(loss):
        raise FloatingPointError(f"the {what} loss became {loss.item()} at step {t} of {total}; "
                                 f"lower the learning rate or check the data")


def optimizer_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, what: str, t: int, total: int) -> None:
    """One step of ``optimizer`` on ``loss``: :func:`check_finite`, then zero the gradients, backward, step.
    """
    check_finite(loss, what, t, total)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def progress_bar(total: int, desc: str, progress: bool | None) -> tqdm:
    """A tqdm bar over ``total`` steps (hidden unless :func:`advlib.utils.show_progress` says so).
    """
    return tqdm(total=total, desc=desc, disable=not show_progress(progress), leave=False)


class History:
    r"""The history table of a run: running weighted means between rows, one row per call of ``row``.

    ``add`` adds ``weight * value`` for each named value; ``row`` writes ``epoch`` (when
    ``per_epoch`` is known), ``step``, each mean :math:`\sum_i w_i v_i / \sum_i w_i` since the last row,
    the ``extra`` columns and the time ``time_s`` (training only: time in :meth:`paused` is left out), then starts the sums afresh.
    """

    def __init__(self, per_epoch: int | None = None) -> None:
        self.per_epoch = per_epoch
        self.rows: list[dict] = []
        self.t0 = time.time()
        self._sums: dict[str, float] = {}
        self._weight = 0.0

    def add(self, weight: float = 1.0, **values: float) -> None:
        """Add one step's ``values`` (floats), each counted ``weight`` times (e.g. the batch size)."""
        for k, v in values.items():
            self._sums[k] = self._sums.get(k, 0.0) + weight * float(v)
        self._weight += weight

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Leave the time spent inside (an evaluation, a callback) out of ``time_s``, which so counts
        training only."""
        start = time.time()
        try:
            yield
        finally:
            self.t0 += time.time() - start

    def row(self, t: int, **extra) -> dict:
        """Append and return the row of step ``t``: the means since the last row, ``extra``, ``time_s``."""
        w = self._weight or 1.0
        row = {**({"epoch": round(t / self.per_epoch, 3)} if self.per_epoch else {}), "step": t,
               **{k: v / w for k, v in self._sums.items()}, **extra, "time_s": round(time.time() - self.t0, 1)}
        self.rows.append(row)
        self._sums, self._weight = {}, 0.0
        return row

    def frame(self) -> pd.DataFrame:
        """The rows so far as a DataFrame."""
        return pd.DataFrame(self.rows)


# ------------------------------------------------------------------------------------ one run
class Run:
    """The skeleton of a training run: the steps ``t = 1 .. total`` with the networks in train mode at
    the start of each step, the progress bar, the history and the steps that write a row; at the end
    (or on an error) the bar is closed and every network is left in eval mode. A loop keeps only its
    optimizers and its step::

        run = Run.over((encoder, decoder), data, batch_size, seed=0, epochs=1, desc="AE")
        for t in run:
            x, _ = next(run.stream)
            loss = ...                                    # the paper's step
            optimizer_step(opt, loss, "reconstruction", t, run.total)
            run.history.add(loss=loss.item())
            if t in run.log_at:
                run.history.row(t)
        return run.history.frame()

    :meth:`over` makes the batch stream of ``data`` (:func:`batches`) and counts the steps from
    ``steps`` or ``epochs`` (:func:`total_steps`); a loop with its own stream (or none) gives
    ``total`` directly. ``log_at``: the steps after which a row is written (:func:`log_steps`);
    ``device``: where the batches are.
    """

    def __init__(self, models: tuple[torch.nn.Module, ...], total: int, *, per_epoch: int | None = None,
                 log_every: int | None = None, desc: str = "train", progress: bool | None = None,
                 stream: Iterator[tuple] | None = None, device: torch.device | str | None = None) -> None:
        self.models, self.device = tuple(models), device
        self.total = check_int(total, "total", minimum=1)
        self.per_epoch, self.stream = per_epoch, stream
        self.log_at = log_steps(self.total, log_every, per_epoch)
        self.history = History(per_epoch)
        self.desc, self.progress = desc, progress
        self.bar: tqdm | None = None

    @classmethod
    def over(cls, models: tuple[torch.nn.Module, ...], data, batch_size: int, *, seed: int, device: torch.device | str,
             steps: int | None = None, epochs: float | None = None, log_every: int | None = None,
             desc: str = "train", progress: bool | None = None, drop_last: bool = True, **batch_options) -> "Run":
        """A run over the shuffled batches of ``data`` (:func:`batches`, with ``drop_last`` and
        ``batch_options``), ``steps`` long or ``epochs`` passes."""
        stream, per_epoch = batches(data, batch_size, seed=seed, device=device, drop_last=drop_last, **batch_options)
        return cls(models, total_steps(steps, epochs, per_epoch), per_epoch=per_epoch, log_every=log_every,
                   desc=desc, progress=progress, stream=stream, device=device)

    def __iter__(self) -> Iterator[int]:
        self.bar = progress_bar(self.total, self.desc, self.progress)
        try:
            for t in range(1, self.total + 1):
                for m in self.models:
                    m.train()
                yield t
                self.bar.update(1)
        finally:
            self.bar.close()
            for m in self.models:
                m.eval()
