r"""One training loop for every chapter: standard and adversarial training differ only in the
*adversary* handed to :func:`fit`.

An adversary has the signature ``adversary(model, x, y, progress) -> x_in``: it returns the inputs
the step trains on (e.g. :math:`x_{in} = x + \delta`, with :math:`\delta` the *perturbation*), where
``progress`` in [0, 1) is the fraction of training done (for eps ramps and curricula). The loss of one
step is

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

from . import attacks, distributed, loops
from .evaluate import Attack, accuracy, robust_accuracy
from .loops import check_schedule
from .data import ImageData, Loader
from .utils import (announce_compute_path, batch_norm_layers, bf16_autocast, check_int, check_nonnegative,
                    check_positive, eval_mode, freeze_batch_norm_stats, model_device, resolve_amp)

Adversary = Callable[[nn.Module, torch.Tensor, torch.Tensor, float], torch.Tensor]
Regularizer = Callable[[nn.Module, torch.Tensor, float], torch.Tensor]


# ----------------------------------------------------------------------------------- adversaries
def ramp(eps: float, progress: float, fraction: float) -> float:
    """``eps`` scaled linearly from 0 over the first ``fraction`` of training (constant if 0).

    Taught in :ref:`ch-pgd-training`.
    """
    if fraction <= 0:
        return eps
    return eps * min(1.0, progress / fraction)


def fgsm_adversary(eps: float, *, eps_ramp: float = 0.0) -> Adversary:
    """The adversary of FGSM training (Goodfellow et al., 2015): ``x_in = x + eps * sign(grad_x L)``.

    Taught in :ref:`ch-fgsm`.
    """
    eps = check_nonnegative(eps, "eps")

    def adversary(model, x, y, progress):
        e = ramp(eps, progress, eps_ramp)
        return attacks.fgsm(model, x, y, eps=e) if e > 0 else x

    return adversary


def fgsm_rs_adversary(eps: float, *, alpha: float | None = None, eps_ramp: float = 0.0,
                      clip_start: bool = True) -> Adversary:
    r"""The adversary of FGSM with a random start (Wong et al., 2020, "Fast is better than free"): uniform start in the
    eps-ball, one signed step of ``alpha`` (default 1.25 eps), projection. This is PGD with one step.

    ``clip_start`` decides where the gradient is taken. ``True`` (the default, and PGD's convention):
    at :math:`\mathrm{clip}_{[0,1]}(x + \delta_0)`, a point of the image box, and the better of that start
    and the stepped point is returned (:func:`advlib.attacks.pgd`'s best iterate). ``False``: as in
    Wong et al.'s code, at :math:`x + \delta_0` itself, which may leave the box, and the stepped point
    :math:`\mathrm{clip}_{[0,1]}(x + \Pi_{[-\epsilon,\epsilon]^d}(\delta_0 + \alpha\,\mathrm{sign}(\nabla_x L)))`
    is returned. On MNIST, where most pixels are 0 or 1, clipping removes about half of the start's
    noise; chapter 09 shows what that does to catastrophic overfitting.

    Taught in :ref:`ch-fgsm` and :ref:`ch-fast-training`.
    """
    eps = check_nonnegative(eps, "eps")
    if not isinstance(clip_start, bool):
        raise ValueError(f"clip_start must be True or False, got {clip_start!r}")

    def adversary(model, x, y, progress):
        e = ramp(eps, progress, eps_ramp)
        if e <= 0:
            return x
        a = 1.25 * e if alpha is None else alpha * e / eps
        if clip_start:
            return attacks.pgd(model, x, y, eps=e, alpha=a, steps=1, random_start=True)
        stepped = attacks.pgd(model, x, y, eps=e, alpha=a, steps=1, random_start=True, bounds=None, select="last")
        return stepped.clamp(0.0, 1.0)

    return adversary


def pgd_adversary(eps: float, *, alpha: float | None = None, steps: int = 7, norm: str | float = "inf",
                     random_start: bool = True, eps_ramp: float = 0.0) -> Adversary:
    """The adversary of PGD adversarial training (Madry et al., 2018): ``steps`` signed steps of ``alpha`` (default
    ``2.5 eps / steps``) from a random start. With ``eps_ramp`` > 0, eps (and alpha with it) grows
    linearly from 0 over that fraction of training.

    Taught in :ref:`ch-pgd-training`.
    """
    eps = check_nonnegative(eps, "eps")
    steps = check_int(steps, "steps", minimum=1)

    def adversary(model, x, y, progress):
        e = ramp(eps, progress, eps_ramp)
        if e <= 0:
            return x
        a = None if alpha is None else alpha * e / eps
        return attacks.pgd(model, x, y, eps=e, alpha=a, steps=steps, norm=norm, random_start=random_start)

    return adversary


# --------------------------------------------------------------------------------------- fit
def fit(model: nn.Module, data, *, epochs: float = 1, batch_size: int = 128, lr: float = 1e-3,
        optimizer: str = "adam", momentum: float = 0.9, weight_decay: float = 0.0,
        schedule: str = "linear", warmup: float = 0.1, adversary: Adversary | None = None,
        clean_weight: float = 0.0, regularizer: Regularizer | None = None, unlabelled=None,
        unlabelled_batch_size: int | None = None, val: tuple[torch.Tensor, torch.Tensor] | None = None,
        val_attack: Attack | None = None, evals: int | None = None, amp: bool | str = False, seed: int = 0,
        grad_clip: float | None = None, progress: bool | None = None,
        callback: Callable[[nn.Module, dict], None] | None = None) -> pd.DataFrame:
    """Train ``model`` in place and return its history (one row per evaluation); the model is left
    in eval mode.

    Args:
        data: an :class:`~advlib.data.ImageData` or an ``(x, y)`` pair of tensors of the same length.
        epochs: passes over ``data`` (fractions allowed: 0.5 is half an epoch); a pass keeps the last
            partial batch, so every example is seen once.
        optimizer: ``"adam"`` or ``"sgd"`` (with ``momentum``, Nesterov off).
        schedule: learning-rate schedule ``"linear"`` (warm-up then linear decay to 0, default),
            ``"cosine"`` (warm-up then cosine) or ``"constant"``; ``warmup`` is the warm-up fraction
            (:func:`advlib.loops.lr_factor`).
        adversary: adversary function (see the module doc); ``None`` for standard training. An
            adversary with the attribute ``uses_indices = True`` (one that keeps a state per training
            example, e.g. :class:`advlib.fast.APARTAdversary` with ``n_examples``) is called as
            ``adversary(model, x, y, progress, index=idx)``, ``idx`` the positions of the batch's
            examples in ``data``.
        clean_weight: weight ``w`` of the clean loss when ``adversary`` is given. Then the clean
            pass alone updates batch-norm running statistics; the pass on ``x_in`` uses its batch's
            statistics without storing them (with ``clean_weight=0`` the pass on ``x_in``, the
            only one, updates them).
        regularizer: ``R(model, x_u, progress) -> scalar`` added to the loss, on batches of
            ``unlabelled`` (a tensor, an ``(x, y)`` pair or an ImageData; labels unused) when given,
            else on the labelled batch. A regulariser with the attribute ``uses_labels = True`` (e.g.
            :func:`advlib.fast.gradalign_regularizer`) is called as ``R(model, x, progress, y)`` on the
            labelled batch. The regulariser runs with batch-norm running statistics frozen
            (:func:`advlib.utils.freeze_batch_norm_stats`).
        val: ``(x, y)`` to evaluate clean accuracy on; ``val_attack`` adds robust accuracy.
        evals: number of evaluations (history rows); default one per epoch.
        amp: bfloat16 autocast (attacks inside run in it too): ``True``, ``False``, or ``"auto"``, i.e.
            only where bf16 is native (:func:`advlib.utils.bf16_is_native`): about 2x faster on a CPU
            with AVX512-BF16, but 13x *slower* on an AVX2-only CPU, where it is emulated.
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

    Taught in :ref:`ch-preliminaries`.
    """
    check_positive(epochs, "epochs")
    check_positive(lr, "lr")
    check_int(batch_size, "batch_size", minimum=1)
    if unlabelled_batch_size is not None:
        check_int(unlabelled_batch_size, "unlabelled_batch_size", minimum=1)
    check_schedule(schedule, warmup)
    if grad_clip is not None:
        grad_clip = check_positive(grad_clip, "grad_clip")
    if unlabelled is not None and getattr(regularizer, "uses_labels", False):
        raise ValueError("unlabelled= cannot be used with a regularizer that uses labels (uses_labels=True, e.g. "
                         "gradalign_regularizer): it runs on the labelled batch; drop unlabelled")
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
    uses_indices = bool(getattr(adversary, "uses_indices", False))
    stream, per_epoch = loops.batches(data, batch_size, seed=seed, device=device, labels=True, shard=shard,
                                      indices=uses_indices)
    total = loops.total_steps(None, epochs, per_epoch)
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

    history = loops.History(per_epoch)
    bar = loops.progress_bar(total, "train", progress if main else False)
    model.train()
    try:
        with distributed.rank_random_state(seed, device):  # each rank its own random starts and dropout
            for t in range(1, total + 1):
                x, y, *index = next(stream)  # index: [idx] when the adversary uses indices, else []
                prog = (t - 1) / total
                with bf16_autocast(device, amp):
                    if adversary is None:
                        x_in = x
                    elif uses_indices:
                        x_in = adversary(model, x, y, prog, index=index[0])
                    else:
                        x_in = adversary(model, x, y, prog)
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
                            if getattr(regularizer, "uses_labels", False):
                                loss = loss + regularizer(model, x, prog, y)
                            else:
                                xu = next(unl)[0] if unl is not None else x
                                loss = loss + regularizer(model, xu, prog)
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
                bar.update(1)
                if t in eval_at:
                    row = history.row(t, lr=opt.param_groups[0]["lr"], bf16=amp)
                    if main:  # evaluation, progress and callback on rank 0; the others wait for its row
                        if val is not None:
                            row["val_acc"] = accuracy(model, val[0], val[1])
                            if val_attack is not None:
                                row["val_robust_acc"] = robust_accuracy(model, val[0], val[1], val_attack)
                        bar.set_postfix({k: round(v, 4) for k, v in row.items() if k in ("train_loss", "val_acc", "val_robust_acc")})
                        if callback is not None:
                            callback(model, row)
                    if parallel:
                        history.rows[-1] = distributed.broadcast_object(row)
                    model.train()
    finally:
        bar.close()
        model.eval()
    distributed.sync_buffers(model)  # every rank ends with rank 0's batch-norm statistics
    return history.frame()


# ------------------------------------------------- virtual adversarial training and its baselines
def vat_regularizer(eps: float, *, xi: float = 1e-6, power_iterations: int = 1, weight: float = 1.0,
                    eps_ramp: float = 0.0) -> Regularizer:
    r"""Virtual adversarial training (Miyato et al., 2016) as a regulariser for :func:`fit`:

    .. math:: R(\theta; x_u) = \lambda\,\frac{1}{|x_u|}\sum_i
              \mathrm{KL}\big(\hat p(\cdot \mid x_i) \,\|\, p_\theta(\cdot \mid x_i + r_{\mathrm{vadv},i})\big)

    i.e. ``weight`` times the mean negative LDS, where ``r_vadv`` comes from
    :func:`advlib.attacks.vat_perturbation` (``eps``, ``xi``, ``power_iterations``) and ``p_hat`` is the
    current prediction held constant (no gradient through it). No labels are used, so ``x_u`` may be
    unlabelled (``fit(..., regularizer=vat_regularizer(2.0), unlabelled=x_u)``) or the labelled batch
    (supervised VAT, when ``unlabelled`` is None). Both predictions use the model's current mode (in
    ``fit``: train mode, so batch norm normalises with the statistics of ``x_u`` and of
    ``x_u + r_vadv``) and never update batch-norm running statistics
    (:func:`advlib.utils.freeze_batch_norm_stats`, the reference code's
    ``update_batch_stats=False``); the perturbation itself is found in eval mode, where nothing
    is updated either. ``power_iterations=0`` gives random perturbation training (RPT): a random
    direction of norm ``eps`` instead. ``eps_ramp`` grows eps linearly from 0 over that fraction
    of training.

    Taught in :ref:`ch-vat`.
    """
    eps = check_nonnegative(eps, "eps")
    check_positive(xi, "xi")
    check_int(power_iterations, "power_iterations", minimum=0)
    weight = check_nonnegative(weight, "weight")

    def regularizer(model: nn.Module, x_u: torch.Tensor, progress: float) -> torch.Tensor:
        e = ramp(eps, progress, eps_ramp)
        r = attacks.vat_perturbation(model, x_u, eps=e, xi=xi, power_iterations=power_iterations)
        with freeze_batch_norm_stats(model):
            with torch.no_grad():
                logits_p = model(x_u)
            logits_q = model(x_u + r.to(x_u.dtype))
        return weight * attacks.kl_divergence(logits_p, logits_q).mean()

    return regularizer


def rpt_regularizer(eps: float, *, weight: float = 1.0) -> Regularizer:
    """Random perturbation training: :func:`vat_regularizer` with a random direction of L2 norm
    ``eps`` in place of the virtual adversarial one (``power_iterations=0``).

    Taught in :ref:`ch-vat`.
    """
    return vat_regularizer(eps, power_iterations=0, weight=weight)


def fgm_adversary(eps: float, *, norm: str | float = 2, bounds: tuple[float, float] | None = None,
                     eps_ramp: float = 0.0) -> Adversary:
    r"""The adversary of training with the fast gradient method, L2 by default, and no box unless
    ``bounds`` is given (for features that are not pixels):
    :math:`x + \epsilon\, \nabla_x L / \|\nabla_x L\|_2`. Use with ``fit(..., clean_weight=0.5)`` for
    Goodfellow et al.'s objective :math:`\tfrac12 L(x, y) + \tfrac12 L(x + r_{\mathrm{adv}}, y)`,
    the labelled cousin of VAT.

    Taught in :ref:`ch-vat`.
    """
    eps = check_nonnegative(eps, "eps")
    norm = attacks.normalize_norm(norm)

    def adversary(model, x, y, progress):
        e = ramp(eps, progress, eps_ramp)
        return attacks.fgsm(model, x, y, eps=e, norm=norm, bounds=bounds) if e > 0 else x

    return adversary


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

    Taught in :ref:`ch-vat`.
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

