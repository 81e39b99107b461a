r"""Data-parallel training under ``torchrun``: the process group, the shard of each batch, per-rank
random starts and the all-reduced metrics that :func:`advlib.train.fit` and :mod:`advlib.cache` use.

``torchrun --nproc_per_node=N script.py`` starts N copies of the script (*ranks*), each told its
place by the environment variables ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and
``MASTER_PORT``. The first time ``fit`` or a recipe of the zoo needs it, :func:`init` joins them into
one process group: NCCL when the device is a GPU (rank ``LOCAL_RANK`` of a node uses GPU
``LOCAL_RANK``), gloo on the CPU. Every rank then draws the same shuffled global batch of ``B``
examples, keeps its own ``B / N`` of them (:func:`shard_indices`), attacks them, and steps on the
gradient of its loss averaged over the ranks by DistributedDataParallel, which is the gradient of the
mean loss over the global batch:

.. math:: \nabla_\theta \frac{1}{B} \sum_{i=1}^{B} \ell_i = \frac{1}{N} \sum_{r=1}^{N} \nabla_\theta \frac{N}{B} \sum_{i \in \text{shard}_r} \ell_i .

So the learning rate is the one for the global batch, as in one process. Without these variables
(or with ``WORLD_SIZE=1``) nothing here starts a process group: every function gives the answer of a
single process (rank 0 of 1) and :func:`advlib.train.fit` runs exactly as it always has. A rank waits
for the others to join for at most ``$ADVLIB_DIST_TIMEOUT`` seconds (default 300), then gives up with
an error naming the variables above.
Taught in :ref:`app-scaling`.
"""
from __future__ import annotations

import contextlib
import math
import os
import sys
from datetime import timedelta
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.constants import default_pg_timeout
from torch.nn.parallel import DistributedDataParallel

from .utils import check_int, check_positive, get_device, launched, model_device

TORCHRUN_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
TIMEOUT_ENV = "ADVLIB_DIST_TIMEOUT"
JOIN_TIMEOUT_S = 300.0  # seconds a rank waits for the others to join, unless $ADVLIB_DIST_TIMEOUT says otherwise


# --------------------------------------------------------------------------------- the process group
def initialized() -> bool:
    """Whether this process belongs to a process group of ``torch.distributed``.
    """
    return dist.is_available() and dist.is_initialized()


def init() -> bool:
    """Join the process group that ``torchrun`` set up, if this process is one of several and has not
    joined yet; return whether training is data-parallel (more than one rank).

    The backend is NCCL when :func:`advlib.utils.get_device` is a GPU (then that GPU, ``cuda:LOCAL_RANK``,
    becomes the current one) and gloo otherwise. A group that the caller made itself is used as it is.
    In a single process this does nothing and returns ``False``.

    Before waiting for the other ranks, it prints (to stderr) one line naming ``WORLD_SIZE``, ``RANK``,
    ``MASTER_ADDR`` and ``MASTER_PORT``; if they have not all joined within ``$ADVLIB_DIST_TIMEOUT``
    seconds (default 300), it raises ``RuntimeError`` naming the same variables. Once joined, the
    collectives keep torch's own timeouts.
    """
    if initialized():
        return dist.get_world_size() > 1
    if not launched():
        return False
    missing = [name for name in TORCHRUN_VARIABLES if not os.environ.get(name)]
    if missing:
        raise RuntimeError(f"WORLD_SIZE={os.environ['WORLD_SIZE']} but the environment variables {missing} "
                           f"are not set; start the processes with torchrun, e.g. torchrun --nproc_per_node=2 script.py")
    if not dist.is_available():
        raise RuntimeError("this build of PyTorch has no torch.distributed; data-parallel training needs it")
    wait = check_positive(os.environ.get(TIMEOUT_ENV, "").strip() or JOIN_TIMEOUT_S, f"{TIMEOUT_ENV} (seconds)")
    device = get_device()
    if device.type == "cuda":
        torch.cuda.set_device(device)
    where = " ".join(f"{name}={os.environ[name]}" for name in ("WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT"))
    print(f"advlib.distributed: joining the process group ({where}); waiting up to {wait:g} s "
          f"for every rank (${TIMEOUT_ENV})", file=sys.stderr, flush=True)
    try:  # torch's env:// rendezvous, with a bounded wait for the other ranks
        store, rank_, size = next(dist.rendezvous("env://", timeout=timedelta(seconds=wait)))
    except RuntimeError as e:
        raise RuntimeError(f"the process group did not form within {wait:g} s ({where}): {type(e).__name__}: {str(e).rstrip('.')}. "
                           f"Start every rank (torchrun --nproc_per_node=N does), check that MASTER_ADDR:MASTER_PORT "
                           f"can be reached, or set {TIMEOUT_ENV} to wait longer (seconds)") from e
    store.set_timeout(default_pg_timeout)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", store=store, rank=rank_,
                            world_size=size)
    return dist.get_world_size() > 1


def close() -> None:
    """Leave the process group (at the end of a program launched by ``torchrun``); nothing in a single process.
    """
    if initialized():
        dist.destroy_process_group()


def rank() -> int:
    """This process's rank, from 0 to :func:`world_size` - 1 (0 in a single process).
    """
    return dist.get_rank() if initialized() else 0


def world_size() -> int:
    """The number of processes training together (1 in a single process).
    """
    return dist.get_world_size() if initialized() else 1


def is_main() -> bool:
    """Whether this is rank 0, the process that logs, keeps the history and writes the cache.
    """
    return rank() == 0


def per_rank(batch_size: int, name: str = "batch_size") -> int:
    """The part of a global batch of ``batch_size`` examples that each rank computes:
    ``batch_size // world_size()``; a ``ValueError`` naming ``name`` unless it is an integer >= 1 that
    divides evenly.
    """
    check_int(batch_size, name, minimum=1)
    n = world_size()
    if batch_size % n:
        raise ValueError(f"{name} is the global batch, split evenly over the {n} processes, so it must be a "
                         f"multiple of {n}; got {batch_size} (use e.g. {name}={max(n, batch_size // n * n)})")
    return batch_size // n


# ------------------------------------------------------------------------------------------ data
def shard_indices(indices: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Rank ``rank``'s contiguous share of one global batch of ``indices``: ``ceil(n / world_size)``
    of them. A batch that does not split evenly (the last, partial one of an epoch) is first padded
    by repeating its first indices, as ``torch.utils.data.DistributedSampler`` pads an epoch, so
    that every rank gets the same number of examples and none is idle.

    Every rank draws the same permutation each epoch from the same seeded generator (the role of
    ``DistributedSampler.set_epoch``), so the shards of one step are disjoint and together are the
    batch one process would draw.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size - 1}] for world_size={world_size}, got {rank}")
    n = indices.shape[0]
    share = math.ceil(n / world_size)
    if share * world_size != n:
        indices = indices.repeat(math.ceil(share * world_size / n))[:share * world_size]
    return indices[rank * share:(rank + 1) * share]


def shard() -> tuple[int, int] | None:
    """``(rank, world_size)`` for the batch streams of :mod:`advlib.loops` when data-parallel, else ``None``.
    """
    return (rank(), world_size()) if world_size() > 1 else None


# --------------------------------------------------------------------------------- random state
def rank_seed(seed: int, rank: int) -> int:
    """A 63-bit seed of its own for each ``(seed, rank)`` pair (NumPy's ``SeedSequence``), for the
    random starts and dropout masks of one rank.
    """
    return int(np.random.SeedSequence([int(seed), int(rank)]).generate_state(1, np.uint64)[0] >> np.uint64(1))


@contextlib.contextmanager
def rank_random_state(seed: int, device: torch.device | str) -> Iterator[None]:
    """Inside, when data-parallel, the global random state (CPU and ``device``) is seeded with
    :func:`rank_seed` of ``(seed, rank())``, so that each rank draws its own random starts and
    dropout masks; the state from before is restored on exit. In a single process: nothing changes.
    """
    if world_size() == 1:
        yield
        return
    device = torch.device(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(rank_seed(seed, rank()))
        yield


# ------------------------------------------------------------------------------------- the model
def wrap(model: nn.Module) -> nn.Module:
    """``model`` for the training step: itself in a single process; when data-parallel, wrapped in
    ``DistributedDataParallel`` (which copies rank 0's weights and buffers to every rank now, averages
    the gradients in each backward and broadcasts rank 0's buffers, e.g. batch-norm statistics, at
    each forward). On a GPU, batch norm first becomes ``SyncBatchNorm`` (statistics of the global
    batch; the same weights and state-dict keys). Attacks must run on ``wrap(model).module``.
    """
    if world_size() == 1:
        return model
    device = model_device(model)
    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return DistributedDataParallel(model, device_ids=[device])
    return DistributedDataParallel(model)  # buffers broadcast from rank 0 at each forward: DDP's default


def sync_buffers(model: nn.Module) -> None:
    """Copy rank 0's buffers (e.g. batch-norm running statistics) to every rank, so that all ranks
    end with the same model (their weights already agree); nothing in a single process.
    """
    if world_size() == 1:
        return
    for buffer in model.buffers():
        dist.broadcast(buffer.data, src=0)


# -------------------------------------------------------------------------------- communication
def mean_over_ranks(n: int, **means: torch.Tensor | float) -> tuple[int, dict[str, float]]:
    """The means of a global batch from each rank's ``n`` examples and its ``means`` over them:
    returns the total count and, for each name, :math:`\\sum_r n_r m_r / \\sum_r n_r` (an all-reduce;
    every rank gets the same numbers). In a single process: ``n`` and the means as floats.

    ``n`` must be an integer >= 0, and >= 1 on at least one rank (the means of no examples are
    undefined): a ``ValueError`` naming ``n`` otherwise.
    """
    check_int(n, "n", minimum=0 if world_size() > 1 else 1)
    nccl = world_size() > 1 and dist.get_backend() == "nccl"
    device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
    totals = torch.tensor([float(n)] + [n * float(v) for v in means.values()], dtype=torch.float64, device=device)
    if world_size() > 1:
        dist.all_reduce(totals, op=dist.ReduceOp.SUM)
    count = totals[0].item()
    if count == 0:
        raise ValueError("n must be >= 1 on at least one rank: the means of no examples are undefined")
    return int(count), {name: (totals[1 + i] / count).item() for i, name in enumerate(means)}


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` (any picklable object) on every rank; every rank waits for it, so it is also
    a barrier. In a single process: ``obj``.
    """
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
