r"""One training loop for every chapter: standard and adversarial training differ only in the
*adversary* handed to :func:`fit`.

An adversary ``adversary(model, x, y, progress, index=None) -> x_in`` returns the inputs the step
trains on (e.g. :math:`x_{in} = x + \delta`, with :math:`\delta` the *perturbation*), where
``progress`` in [0, 1) is the fraction of training done (for eps schedules); every adversary and
regulariser, and their one protocol, is in :mod:`advlib.adversaries`. The loss of one step is

.. math:: \ell = w\,L(h(x), y) + (1 - w)\,L(h(x_{in}), y) \;+\; R(h, x_u)

with ``w = clean_weight`` (0 by default; 0.5 gives Goodfellow et al.'s FGSM regulariser) and an
optional regulariser ``R`` on an (unlabelled) batch ``x_u`` (e.g. VAT). ``adversary=None`` is standard
training, :math:`\min_\theta \mathbb{E}[L(h_\theta(x), y)]`; PGD gives Madry et al.'s
:math:`\min_\theta \mathbb{E}[\max_{\|\delta\|\le\epsilon} L(h_\theta(x+\delta), y)]`.
The loop's bookkeeping (batches, schedule, finite-loss guard, history) is :mod:`advlib.loops`.

Batch norm: one forward pass per step updates the running statistics, the pass of the loss on
the labelled batch (the clean batch when ``clean_weight`` > 0, else ``x_in``, the only pass).
The other passes (on ``x_in`` when the clean batch is there too, and every pass inside the
regulariser) normalise with their own batch statistics but leave the running statistics alone
(:func:`advlib.utils.freeze_batch_norm_stats`), as the reference VAT code does
(``update_batch_stats=False``).
Taught in chapters 00, 04 and 07.
"""
from __future__ import annotations

import contextlib
import itertools
import math
from typing import Callable

import pandas as pd
import torch
from torch import nn
import torch.nn.functional as F

from . import distributed, loops
from .adversaries import Adversary, Regularizer, accepts
from .evaluate import Attack, accuracy, robust_accuracy
from .loops import check_schedule
from .data import ImageData, Loader
from .utils import (announce_compute_path, batch_norm_layers, bf16_autocast, check_int,
                    check_positive, eval_mode, freeze_batch_norm_stats, model_device, resolve_amp)

# the old names of the adversaries and regularisers, until the chapters move to advlib.adversaries
from ._aliases import fgm_adversary, fgsm_adversary, fgsm_rs_adversary, pgd_adversary, rpt_regularizer, vat_regularizer  # noqa: E402,F401


# --------------------------------------------------------------------------------------- fit
def fit(model: nn.Module, data, *, epochs: float = 1, batch_size: int = 128, lr: float = 1e-3,
        optimizer: str = "adam", momentum: float = 0.9, weight_decay: float = 0.0,
        schedule: str = "linear", warmup: float = 0.1, adversary: Adversary | None = None,
        clean_weight: float = 0.0, regularizer: Regularizer | None = None, unlabelled=None,
        unlabelled_batch_size: int | None = None, val: tuple[torch.Tensor, torch.Tensor] | None = None,
        val_attack: Attack | None = None, evals: int | None = None, amp: bool | str = False, seed: int = 0,
        grad_clip: float | None = None, progress: bool | None = None,
        callback: Callable[[nn.Module, dict], None] | None = None) -> pd.DataFrame:
    """Train ``model`` in place and return its history (one row per evaluation: ``train_loss``,
    ``train_acc``, ``lr``, ``val_acc`` and ``val_robust_acc`` when asked, ``time_s`` the seconds of
    training so far, evaluations and callbacks left out); the model is left in eval mode.

    Args:
        data: an :class:`~advlib.data.ImageData` or an ``(x, y)`` pair of tensors of the same length.
        epochs: passes over ``data`` (fractions allowed: 0.5 is half an epoch); a pass keeps the last
            partial batch, so every example is seen once.
        optimizer: ``"adam"`` or ``"sgd"`` (with ``momentum``, Nesterov off).
        schedule: learning-rate schedule ``"linear"`` (warm-up then linear decay to 0, default),
            ``"cosine"`` (warm-up then cosine) or ``"constant"``; ``warmup`` is the warm-up fraction
            (:func:`advlib.loops.lr_factor`).
        adversary: called as ``adversary(model, x, y, progress)``, with ``index=idx`` too (the
            positions of the batch's examples in ``data``) when it takes ``index``
            (:mod:`advlib.adversaries`); ``None`` for standard training.
        clean_weight: weight ``w`` of the clean loss when ``adversary`` is given. Then the clean
            pass alone updates batch-norm running statistics; the pass on ``x_in`` uses its batch's
            statistics without storing them (with ``clean_weight=0`` the pass on ``x_in``, the
            only one, updates them).
        regularizer: ``R(model, x, progress) -> scalar`` added to the loss, on the labelled batch,
            or, when ``unlabelled`` is given (a tensor, an ``(x, y)`` pair or an ImageData; labels
            unused), on batches of it; one that takes ``y`` gets the batch's labels (``None`` on
            unlabelled batches). It runs with batch-norm
            running statistics frozen (:func:`advlib.utils.freeze_batch_norm_stats`).
        val: ``(x, y)`` to evaluate clean accuracy on; ``val_attack`` adds robust accuracy.
        evals: number of evaluations (history rows); default one per epoch.
        amp: bfloat16 autocast (attacks inside run in it too): ``True``, ``False``, or ``"auto"``, i.e.
            only where bf16 is native (:func:`advlib.utils.bf16_is_native`): faster on a CPU with
            AVX512-BF16, much slower on an AVX2-only CPU, where it is emulated (the scaling appendix
            gives the measured ratios).
        seed: seeds the shuffles (``unlabelled`` uses ``seed + 1``); the global random state is not touched.
        grad_clip: when given (> 0), the gradient's global L2 norm is clipped to it before each step.
        callback: called as ``callback(model, row)`` after each evaluation.

    Raises ``FloatingPointError`` when the loss is not finite (the NaN guard), naming the step.

    Under ``torchrun`` with several processes (:mod:`advlib.distributed`) the same call trains
    data-parallel with ``DistributedDataParallel``: ``batch_size`` (and ``unlabelled_batch_size``) is
    the global batch, split evenly over the ranks, and ``lr`` is the learning rate for it; each rank
    attacks its own share, with random starts and dropout of its own (seeded by ``seed`` and its
    rank); the training columns of the history are means over the global batch; evaluation, the
    progress bar and ``callback`` run on rank 0 only; every rank returns rank 0's history and ends
    with rank 0's model.
    """
    check_positive(epochs, "epochs")
    check_positive(lr, "lr")
    check_int(batch_size, "batch_size", minimum=1)
    if unlabelled_batch_size is not None:
        check_int(unlabelled_batch_size, "unlabelled_batch_size", minimum=1)
    check_schedule(schedule, warmup)
    if grad_clip is not None:
        grad_clip = check_positive(grad_clip, "grad_clip")
    if unlabelled is not None and regularizer is None:
        raise ValueError("unlabelled= is used only by a regularizer (e.g. vat_regularizer); give one, or drop unlabelled")
    if not 0.0 <= clean_weight <= 1.0:
        raise ValueError(f"clean_weight must be in [0, 1], got {clean_weight}")
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    parallel = distributed.init()  # under torchrun with several processes; False in one process
    if parallel:
        distributed.per_rank(batch_size, "batch_size")
        distributed.per_rank(unlabelled_batch_size or batch_size, "unlabelled_batch_size")
    main = distributed.is_main()
    device = model_device(model)
    amp = resolve_amp(amp, device)
    if main:
        announce_compute_path(device, amp)
    shard = distributed.shard()
    run = loops.Run.over((model,), data, batch_size, seed=seed, device=device, epochs=epochs, desc="train",
                         progress=progress if main else False, drop_last=False, labels=True, shard=shard, indices=True)
    total = run.total
    n_evals = max(1, math.ceil(epochs)) if evals is None else check_int(evals, "evals", minimum=1)
    eval_at = {min(total, round(total * (k + 1) / n_evals)) for k in range(n_evals)}
    unl = None
    if unlabelled is not None:
        unl, _ = loops.batches(unlabelled, unlabelled_batch_size or batch_size, seed=seed + 1, device=device,
                               name="unlabelled", shard=shard)

    # one process: net is model. Data-parallel: net is the DistributedDataParallel wrapper, through
    # which each step makes exactly one forward (the loss on x_in); the attack, the clean term and the
    # regulariser run on the wrapped module itself, so their gradients join the same backward and no
    # second forward goes through the wrapper before it (which breaks with batch norm).
    net = distributed.wrap(model)
    model = net.module if parallel else model
    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer == "adam":
        opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    (sched,) = loops.lr_schedulers([opt], schedule, total, warmup)

    history = run.history
    gives_index, gives_y = accepts(adversary, "index"), accepts(regularizer, "y")
    with distributed.rank_random_state(seed, device):  # each rank its own random starts and dropout
        for t in run:  # the model in train mode at each step, in eval mode at the end (or on an error)
            x, y, index = next(run.stream)
            prog = (t - 1) / total
            with bf16_autocast(device, amp):
                if adversary is None:
                    x_in = x
                else:
                    x_in = adversary(model, x, y, prog, **({"index": index} if gives_index else {}))
                model.train()
                two_passes = adversary is not None and clean_weight > 0
                # batch norm: only the clean pass updates the running statistics when there is one
                with freeze_batch_norm_stats(model) if two_passes else contextlib.nullcontext():
                    logits = net(x_in)
                loss = F.cross_entropy(logits.float(), y)
                if two_passes:
                    loss = clean_weight * F.cross_entropy(model(x).float(), y) + (1 - clean_weight) * loss
                if regularizer is not None:
                    with freeze_batch_norm_stats(model):  # its passes never move the statistics
                        xr, yr = (next(unl)[0], None) if unl is not None else (x, y)
                        loss = loss + regularizer(model, xr, prog, **({"y": yr} if gives_y else {}))
            if parallel:  # the global batch's loss and accuracy, the same on every rank
                n, means = distributed.mean_over_ranks(y.shape[0], loss=loss.detach(),
                                                       acc=(logits.argmax(1) == y).float().mean())
                loops.check_finite(torch.tensor(means["loss"]), "training", t, total)
            else:
                loops.check_finite(loss, "training", t, total)
            opt.zero_grad(set_to_none=True)
            loss.backward()  # data-parallel: the gradients are averaged over the ranks here
            if grad_clip is not None:
                nn.utils.clip_grad_norm_(params, grad_clip)
            opt.step()
            sched.step()
            if parallel:
                history.add(weight=n, train_loss=means["loss"], train_acc=means["acc"])
            else:
                history.add(weight=y.shape[0], train_loss=loss.item(),
                            train_acc=(logits.argmax(1) == y).float().mean().item())
            if t in eval_at:
                row = history.row(t, lr=opt.param_groups[0]["lr"], bf16=amp)
                with history.paused():  # time_s counts training only, not evaluations and callbacks
                    if main:  # evaluation, progress and callback on rank 0; the others wait for its row
                        if val is not None:
                            row["val_acc"] = accuracy(model, val[0], val[1])
                            if val_attack is not None:
                                row["val_robust_acc"] = robust_accuracy(model, val[0], val[1], val_attack)
                        run.bar.set_postfix({k: round(v, 4) for k, v in row.items()
                                             if k in ("train_loss", "val_acc", "val_robust_acc")})
                        if callback is not None:
                            callback(model, row)
                    if parallel:
                        history.rows[-1] = distributed.broadcast_object(row)
                model.train()
    distributed.sync_buffers(model)  # every rank ends with rank 0's batch-norm statistics
    return history.frame()


@torch.no_grad()
def recompute_batch_norm(model: nn.Module, data, *, batch_size: int = 500) -> int:
    r"""Set every batch-norm layer's running statistics to the mean, over the batches of ``data``, of
    the statistics it sees in train mode, with the weights as they are; the VAT reference code's last
    step after training ("finetune batch stat", over the unlabelled training set):

    .. math:: \mu = \frac1B \sum_{b=1}^{B} \mu_b, \qquad \sigma^2 = \frac1B \sum_{b=1}^{B} \sigma^2_b

    for batches :math:`b` of ``batch_size`` (in order; the last one may be smaller, and is skipped
    if it holds a single example, which batch norm cannot normalise). ``data`` is an
    :class:`~advlib.data.ImageData`, a tensor of inputs or an ``(x, y)`` pair (labels unused). Only
    the batch-norm layers run in train mode (dropout stays off); every submodule's mode and each
    layer's ``momentum`` are restored. Returns the number of batches. A model without batch norm is
    left unchanged.
    """
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    bns = batch_norm_layers(model)
    if isinstance(data, ImageData):
        n = len(data)
    else:
        x = data[0] if isinstance(data, (tuple, list)) else data
        if not isinstance(x, torch.Tensor) or x.dim() < 2 or x.shape[0] == 0:
            raise ValueError("data must be an ImageData, a non-empty tensor of inputs (N, ...) or an (x, y) pair")
        n = x.shape[0]
    if not bns:
        return 0
    device = model_device(model)
    if isinstance(data, ImageData):  # in order, as floats in [0, 1]
        inputs = (xb for xb, _ in Loader(data, batch_size, device=device))
    else:
        inputs = (x[i:i + batch_size].to(device) for i in range(0, n, batch_size))
    n_batches = math.ceil(n / batch_size)
    if n_batches > 1 and n - (n_batches - 1) * batch_size == 1:
        n_batches -= 1  # a last batch of one example: batch norm cannot normalise it
    momenta = [m.momentum for m in bns]
    with eval_mode(model):
        try:
            for m in bns:
                m.reset_running_stats()
                m.momentum = None  # cumulative average: after B batches, the mean of the B batch statistics
                m.train()
            for xb in itertools.islice(inputs, n_batches):
                model(xb)
        finally:
            for m, momentum in zip(bns, momenta):
                m.momentum = momentum
    return n_batches

