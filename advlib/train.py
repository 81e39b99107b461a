r"""One training loop for every chapter: standard and adversarial training differ only in the
*perturbation function* handed to :func:`fit`.

A perturbation function has the signature ``perturb(model, x, y, progress) -> x_in`` where
``progress`` in [0, 1) is the fraction of training done (for eps ramps and curricula). The loss of one
step is

.. math:: \ell = w\,L(h(x), y) + (1 - w)\,L(h(x_{in}), y) \;+\; R(h, x_u)

with ``w = clean_weight`` (0 by default; 0.5 gives Goodfellow et al.'s FGSM regulariser) and an
optional regulariser ``R`` on an (unlabelled) batch ``x_u`` (e.g. VAT). ``perturb=None`` is standard
training, :math:`\min_\theta \mathbb{E}[L(h_\theta(x), y)]`; PGD gives Madry et al.'s
:math:`\min_\theta \mathbb{E}[\max_{\|\delta\|\le\epsilon} L(h_\theta(x+\delta), y)]`.
Taught in chapters 00, 04 and 07.
"""
from __future__ import annotations

import math
import time
from typing import Callable

import pandas as pd
import torch
from torch import nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import attacks
from .data import ImageData, Loader
from .evaluate import Attack, accuracy, robust_accuracy
from .utils import (bf16_autocast, check_images, check_int, check_labels, check_positive, model_device,
                    resolve_amp, show_progress)

Perturb = Callable[[nn.Module, torch.Tensor, torch.Tensor, float], torch.Tensor]
Regularizer = Callable[[nn.Module, torch.Tensor, float], torch.Tensor]


# ------------------------------------------------------------------------ perturbation functions
def ramp(eps: float, progress: float, fraction: float) -> float:
    """``eps`` scaled linearly from 0 over the first ``fraction`` of training (constant if 0)."""
    if fraction <= 0:
        return eps
    return eps * min(1.0, progress / fraction)


def fgsm_perturbation(eps: float, *, eps_ramp: float = 0.0) -> Perturb:
    """FGSM training (Goodfellow et al., 2015): ``x + eps * sign(grad_x L)``. Chapter 04."""
    eps = check_positive(eps, "eps")

    def perturb(model, x, y, progress):
        e = ramp(eps, progress, eps_ramp)
        return attacks.fgsm(model, x, y, eps=e) if e > 0 else x

    return perturb


def fgsm_rs_perturbation(eps: float, *, alpha: float | None = None, eps_ramp: float = 0.0) -> Perturb:
    """FGSM with a random start (Wong et al., 2020, "Fast is better than free"): uniform start in the
    eps-ball, one signed step of ``alpha`` (default 1.25 eps), projection. This is PGD with one step."""
    eps = check_positive(eps, "eps")

    def perturb(model, x, y, progress):
        e = ramp(eps, progress, eps_ramp)
        a = 1.25 * e if alpha is None else alpha * (e / eps if eps > 0 else 0.0)
        return attacks.pgd(model, x, y, eps=e, alpha=a, steps=1, random_start=True) if e > 0 else x

    return perturb


def pgd_perturbation(eps: float, *, alpha: float | None = None, steps: int = 7, norm: str | float = "inf",
                     random_start: bool = True, eps_ramp: float = 0.0) -> Perturb:
    """PGD adversarial training (Madry et al., 2018): ``steps`` signed steps of ``alpha`` (default
    ``2.5 eps / steps``) from a random start. With ``eps_ramp`` > 0, eps (and alpha with it) grows
    linearly from 0 over that fraction of training. Chapter 07."""
    eps = check_positive(eps, "eps")
    steps = check_int(steps, "steps", minimum=1)

    def perturb(model, x, y, progress):
        e = ramp(eps, progress, eps_ramp)
        if e <= 0:
            return x
        a = None if alpha is None else alpha * e / eps
        return attacks.pgd(model, x, y, eps=e, alpha=a, steps=steps, norm=norm, random_start=random_start)

    return perturb


# --------------------------------------------------------------------------------------- fit
def _lr_factor(schedule: str, t: int, total: int, warmup: float) -> float:
    if schedule == "constant":
        return 1.0
    w = int(warmup * total)
    if t < w:
        return (t + 1) / w
    rest = (t - w) / max(1, total - w)
    if schedule == "linear":
        return max(0.0, 1.0 - rest)
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * rest))
    raise ValueError(f"schedule must be 'constant', 'linear' or 'cosine', got {schedule!r}")


class _TensorLoader:
    """Shuffled batches of a pair of tensors (for data that is not an :class:`ImageData`)."""

    def __init__(self, x, y, batch_size, seed, device):
        self.x, self.y, self.bs, self.device = x, y, batch_size, device
        self.g = torch.Generator().manual_seed(seed)

    def __len__(self):
        return math.ceil(self.x.shape[0] / self.bs)

    def __iter__(self):
        order = torch.randperm(self.x.shape[0], generator=self.g)
        for i in range(len(self)):
            idx = order[i * self.bs:(i + 1) * self.bs]
            yield self.x[idx].to(self.device), (None if self.y is None else self.y[idx].to(self.device))


def _make_loader(data, batch_size, seed, device, name: str = "data"):
    """Shuffled batches of ``data`` (the argument ``name`` of :func:`fit`), checked first: an
    :class:`ImageData` or an ``(x, y)`` pair, or for ``unlabeled`` also a tensor ``x``; never empty."""
    if isinstance(data, ImageData):
        if len(data) == 0:
            raise ValueError(f"{name} is empty ({data!r}); it needs at least one image")
        return Loader(data, batch_size, shuffle=True, seed=seed, device=device)
    if isinstance(data, (tuple, list)) and len(data) == 2:
        check_images(data[0], f"{name}[0] (x)", bounds=None, finite=False)  # NaNs: the loss guard
        check_labels(data[1], data[0].shape[0], f"{name}[1] (y)")
        return _TensorLoader(data[0], data[1], batch_size, seed, device)
    if isinstance(data, torch.Tensor) and name == "unlabeled":
        check_images(data, name, bounds=None, finite=False)
        return _TensorLoader(data, None, batch_size, seed, device)
    extra = ", or a tensor x" if name == "unlabeled" else ""
    raise ValueError(f"{name} must be an advlib.data.ImageData or an (x, y) pair of tensors{extra}, "
                     f"got {type(data).__name__}")


def _forever(loader):
    while True:
        yield from loader


def fit(model: nn.Module, data, *, epochs: float = 1, batch_size: int = 128, lr: float = 1e-3,
        optimizer: str = "adam", momentum: float = 0.9, weight_decay: float = 0.0,
        schedule: str = "linear", warmup: float = 0.1, perturb: Perturb | None = None,
        clean_weight: float = 0.0, regularizer: Regularizer | None = None, unlabeled=None,
        unlabeled_batch_size: int | None = None, val: tuple[torch.Tensor, torch.Tensor] | None = None,
        val_attack: Attack | None = None, evals: int | None = None, amp: bool | str = False, seed: int = 0,
        grad_clip: float | None = None, progress: bool | None = None,
        callback: Callable[[nn.Module, dict], None] | None = None) -> pd.DataFrame:
    """Train ``model`` in place and return its history (one row per evaluation).

    Args:
        data: an :class:`~advlib.data.ImageData` or an ``(x, y)`` pair of tensors.
        epochs: passes over ``data`` (fractions allowed: 0.5 is half an epoch).
        optimizer: ``"adam"`` or ``"sgd"`` (with ``momentum``, Nesterov off).
        schedule: learning-rate schedule ``"linear"`` (warm-up then linear decay to 0, default),
            ``"cosine"`` (warm-up then cosine) or ``"constant"``; ``warmup`` is the warm-up fraction.
        perturb: perturbation function (see the module doc); ``None`` for standard training.
        clean_weight: weight ``w`` of the clean loss when ``perturb`` is given.
        regularizer: ``R(model, x_u, progress) -> scalar`` added to the loss, on batches of
            ``unlabeled`` (a tensor or ImageData) when given, else on the labelled batch.
        val: ``(x, y)`` to evaluate clean accuracy on; ``val_attack`` adds robust accuracy.
        evals: number of evaluations (history rows); default one per epoch.
        amp: bfloat16 autocast (attacks inside run in it too): ``True``, ``False``, or ``"auto"``, i.e.
            only where bf16 is native (:func:`advlib.utils.bf16_is_native`): about 2x faster on a CPU
            with AVX512-BF16, but 13x *slower* on an AVX2-only CPU, where it is emulated.
        callback: called as ``callback(model, row)`` after each evaluation.

    Raises ``FloatingPointError`` when the loss is not finite (the NaN guard), naming the step.
    """
    check_positive(epochs, "epochs", allow_zero=False)
    check_positive(lr, "lr", allow_zero=False)
    check_int(batch_size, "batch_size", minimum=1)
    if unlabeled_batch_size is not None:
        check_int(unlabeled_batch_size, "unlabeled_batch_size", minimum=1)
    if not 0.0 <= check_positive(warmup, "warmup") < 1.0:
        raise ValueError(f"warmup must be a fraction of training in [0, 1), got {warmup!r}")
    if unlabeled is not None and regularizer is None:
        raise ValueError("unlabeled= is used only by a regularizer (e.g. vat_regularizer); give one, or drop unlabeled")
    if not 0.0 <= clean_weight <= 1.0:
        raise ValueError(f"clean_weight must be in [0, 1], got {clean_weight}")
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    _lr_factor(schedule, 0, 1, warmup)  # validates the schedule name
    device = model_device(model)
    amp = resolve_amp(amp, device)
    loader = _make_loader(data, batch_size, seed, device)
    total = max(1, int(round(epochs * len(loader))))
    n_evals = max(1, math.ceil(epochs)) if evals is None else check_int(evals, "evals", minimum=1)
    eval_at = {min(total, round(total * (k + 1) / n_evals)) for k in range(n_evals)}
    unl = None
    if unlabeled is not None:
        unl = _forever(_make_loader(unlabeled, unlabeled_batch_size or batch_size, seed + 1, device, "unlabeled"))

    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer == "adam":
        opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: _lr_factor(schedule, t, total, warmup))

    history, run_loss, run_correct, run_n, t0 = [], 0.0, 0, 0, time.time()
    bar = tqdm(total=total, desc="train", disable=not show_progress(progress), leave=False)
    model.train()
    batches = _forever(loader)
    for t in range(total):
        x, y = next(batches)
        prog = t / total
        with bf16_autocast(device, amp):
            x_in = perturb(model, x, y, prog) if perturb is not None else x
            model.train()
            logits = model(x_in)
            loss = F.cross_entropy(logits.float(), y)
            if perturb is not None and clean_weight > 0:
                loss = clean_weight * F.cross_entropy(model(x).float(), y) + (1 - clean_weight) * loss
            if regularizer is not None:
                xu = next(unl)[0] if unl is not None else x
                loss = loss + regularizer(model, xu, prog)
        if not torch.isfinite(loss):
            bar.close()
            raise FloatingPointError(f"the training loss became {loss.item()} at step {t + 1} of {total} "
                                     f"(epoch {t / len(loader):.2f}); lower lr or check the data")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(params, grad_clip)
        opt.step()
        sched.step()
        run_loss += loss.item() * y.shape[0]
        run_correct += (logits.argmax(1) == y).sum().item()
        run_n += y.shape[0]
        bar.update(1)
        if t + 1 in eval_at:
            row = {"epoch": round((t + 1) / len(loader), 3), "step": t + 1,
                   "train_loss": run_loss / run_n, "train_acc": run_correct / run_n,
                   "lr": opt.param_groups[0]["lr"], "bf16": amp, "time_s": round(time.time() - t0, 1)}
            if val is not None:
                row["val_acc"] = accuracy(model, val[0], val[1])
                if val_attack is not None:
                    row["val_robust_acc"] = robust_accuracy(model, val[0], val[1], val_attack)
            history.append(row)
            bar.set_postfix({k: round(v, 4) for k, v in row.items() if k in ("train_loss", "val_acc", "val_robust_acc")})
            if callback is not None:
                callback(model, row)
            run_loss, run_correct, run_n = 0.0, 0, 0
            model.train()
    bar.close()
    model.eval()
    return pd.DataFrame(history)


# ------------------------------------------------- virtual adversarial training and its baselines
def vat_regularizer(eps: float, *, xi: float = 1e-6, power_iterations: int = 1, weight: float = 1.0,
                    eps_ramp: float = 0.0) -> Regularizer:
    r"""Virtual adversarial training (Miyato et al., 2016) as a regulariser for :func:`fit`:

    .. math:: R(\theta; x_u) = \lambda\,\frac{1}{|x_u|}\sum_i
              \mathrm{KL}\big(\hat p(\cdot \mid x_i) \,\|\, p_\theta(\cdot \mid x_i + r_{\mathrm{vadv},i})\big)

    i.e. ``weight`` times the mean negative LDS, where ``r_vadv`` comes from
    :func:`advlib.attacks.vat_perturbation` (``eps``, ``xi``, ``power_iterations``) and ``p_hat`` is the
    current prediction held constant (no gradient through it). No labels are used, so ``x_u`` may be
    unlabelled (``fit(..., regularizer=vat_regularizer(2.0), unlabeled=x_u)``) or the labelled batch
    (supervised VAT, when ``unlabeled`` is None). Both predictions use the model's current mode (in
    ``fit``: train mode); the perturbation itself is found in eval mode. ``power_iterations=0``
    gives random perturbation training (RPT): a random direction of norm ``eps`` instead.
    ``eps_ramp`` grows eps linearly from 0 over that fraction of training. Chapter 06.
    """
    eps = check_positive(eps, "eps")
    check_positive(xi, "xi", allow_zero=False)
    check_int(power_iterations, "power_iterations", minimum=0)
    weight = check_positive(weight, "weight")

    def regularizer(model: nn.Module, x_u: torch.Tensor, progress: float) -> torch.Tensor:
        e = ramp(eps, progress, eps_ramp)
        r = attacks.vat_perturbation(model, x_u, eps=e, xi=xi, power_iterations=power_iterations)
        with torch.no_grad():
            logits_p = model(x_u)
        return weight * attacks.kl_divergence(logits_p, model(x_u + r.to(x_u.dtype))).mean()

    return regularizer


def rpt_regularizer(eps: float, *, weight: float = 1.0) -> Regularizer:
    """Random perturbation training: :func:`vat_regularizer` with a random direction of L2 norm
    ``eps`` in place of the virtual adversarial one (``power_iterations=0``). Chapter 06."""
    return vat_regularizer(eps, power_iterations=0, weight=weight)


def fgm_perturbation(eps: float, *, norm: str | float = 2, bounds: tuple[float, float] | None = None,
                     eps_ramp: float = 0.0) -> Perturb:
    r"""Adversarial training with the fast gradient method, L2 by default, and no box unless
    ``bounds`` is given (for features that are not pixels):
    :math:`x + \epsilon\, \nabla_x L / \|\nabla_x L\|_2`. Use with ``fit(..., clean_weight=0.5)`` for
    Goodfellow et al.'s objective :math:`\tfrac12 L(x, y) + \tfrac12 L(x + r_{\mathrm{adv}}, y)`,
    the labelled cousin of VAT. Chapter 06."""
    eps = check_positive(eps, "eps")
    norm = attacks.normalize_norm(norm)

    def perturb(model, x, y, progress):
        e = ramp(eps, progress, eps_ramp)
        return attacks.fgsm(model, x, y, eps=e, norm=norm, bounds=bounds) if e > 0 else x

    return perturb
