r"""Adversarial attacks as plain functions: ``attack(model, x, y, *, eps, ...) -> x_adv``.

Every attack

- takes a model that returns *logits* (unnormalised scores of shape (N, num_classes), before any
  softmax): a model that returns probabilities is not detected, but the cross-entropy of
  probabilities saturates, its gradients nearly vanish, and the attack looks far weaker than it is;
- takes images ``x`` in [0, 1] (any shape with the batch first), on the model's device and of its
  parameters' dtype, and labels ``y`` (``torch.long``, shape (N,));
- validates its arguments and raises ``ValueError`` naming the bad one;
- runs the model in eval mode and restores every submodule's own mode afterwards;
- differentiates with ``torch.autograd.grad`` with respect to the input only, so no parameter's
  ``.grad`` is ever touched;
- keeps ``x_adv`` inside the eps-ball around ``x`` and inside ``bounds`` (default [0, 1]);
- returns a detached tensor.

Norms: ``"inf"`` (L-infinity) and ``2`` (L2); ``float("inf")``, ``"linf"``, ``"l2"`` and ``"2"`` work too.

The exception is :func:`vat_perturbation` (chapter 06): it needs no labels, returns the perturbation
``r_vadv`` rather than ``x + r``, and works on features of any range (no box), as VAT does.

The loss maximised is ``loss_fn(logits, y)`` per example (default: cross-entropy). A targeted attack
(``targeted=True``) takes ``y`` as the target classes and *minimises* the cross-entropy to them.
A custom ``loss_fn`` is always maximised, e.g. the pig-to-airliner objective of chapter 05,
``CE(logits, y_true) - CE(logits, y_target)``.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn
import torch.nn.functional as F

from .kernels import input_gradient_model, match_memory_format
from .utils import (check_images, check_int, check_labels, check_model_input, check_nonnegative, check_positive,
                    draw, eval_mode, train_mode_frozen_stats)

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
_NORMS = {"inf": "inf", "linf": "inf", "l_inf": "inf", float("inf"): "inf",
          2: "2", "2": "2", "l2": "2", 2.0: "2"}


def normalize_norm(norm: str | float | int) -> str:
    """Map the accepted spellings of a norm to ``"inf"`` or ``"2"``; raise ``ValueError`` otherwise.
    """
    key = norm.lower() if isinstance(norm, str) else norm
    try:
        return _NORMS[key]
    except (KeyError, TypeError):
        raise ValueError(f"norm must be 'inf' or 2 (also accepted: float('inf'), 'linf', 'l2', '2'), got {norm!r}") from None


def _flat_norm(t: torch.Tensor) -> torch.Tensor:
    """Per-example L2 norm, shaped to broadcast against ``t``."""
    return t.flatten(1).norm(dim=1).view(-1, *([1] * (t.dim() - 1)))


def project(delta: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    r"""Project each example's ``delta`` onto the ball ``{||d||_norm <= eps}``.

    L-inf: clip every coordinate to [-eps, eps]. L2: scale by ``min(1, eps / ||delta||_2)``.
    """
    if norm == "inf":
        return delta.clamp(-eps, eps)
    n = _flat_norm(delta)
    return delta * torch.clamp(eps / (n + 1e-12), max=1.0)


def ascent_direction(grad: torch.Tensor, norm: str) -> torch.Tensor:
    r"""The steepest-ascent direction of unit norm: ``sign(g)`` for L-inf, ``g / ||g||_2`` for L2.

    Always finite: a NaN entry of ``g`` counts as 0, and an L2 gradient with infinite entries steps
    along those entries (normalised), so no NaN can reach an adversarial image.
    """
    if norm == "inf":
        return grad.sign().nan_to_num(nan=0.0)
    grad = grad.nan_to_num(nan=0.0, posinf=float("inf"), neginf=-float("inf"))
    norm2 = _flat_norm(grad)
    # an example whose gradient has an infinite entry (or a norm past the float range) steps along
    # its largest entries instead of dividing inf by inf: _unit rescales by the largest entry first
    return torch.where(torch.isfinite(norm2), grad / (norm2 + 1e-10), _unit(grad.nan_to_num()))


def random_delta(x: torch.Tensor, eps: float, norm: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random ``delta`` in the eps-ball: uniform per coordinate (L-inf), or a uniformly random
    direction with a radius uniform in [0, eps] (L2).
    """
    if norm == "inf":
        u = draw(torch.rand, x.shape, generator=generator, device=x.device)
        return ((2 * u - 1) * eps).to(x.dtype)
    g = draw(torch.randn, x.shape, generator=generator, device=x.device).to(x.dtype)
    r = draw(torch.rand, (x.shape[0],) + (1,) * (x.dim() - 1), generator=generator, device=x.device).to(x.dtype)
    return g / (_flat_norm(g) + 1e-12) * r * eps


def _default_loss(targeted: bool) -> LossFn:
    if targeted:
        return lambda logits, y: -F.cross_entropy(logits, y, reduction="none")
    return lambda logits, y: F.cross_entropy(logits, y, reduction="none")


def _validate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
              bounds: tuple[float, float] | None) -> float:
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_images(x, "x", bounds)
    check_model_input(model, x, "x")
    if isinstance(y, torch.Tensor) and y.device != x.device:
        raise ValueError(f"y is on {y.device} but x is on {x.device}; move y with y.to(x.device)")
    check_labels(y, x.shape[0], "y")
    return check_nonnegative(eps, "eps")


def _clip(x_adv: torch.Tensor, bounds: tuple[float, float] | None) -> torch.Tensor:
    return x_adv if bounds is None else x_adv.clamp(bounds[0], bounds[1])


def check_logits(logits: torch.Tensor, n: int | None = None, *, finite: bool = False) -> None:
    """Raise ``ValueError`` unless the model's output is a tensor of logits of shape (N, num_classes)
    (``N = n`` when given) and, with ``finite``, free of NaN and infinities (one sync).
    """
    if not isinstance(logits, torch.Tensor):
        raise ValueError(f"model must return a tensor of logits of shape (N, num_classes), got a "
                         f"{type(logits).__name__}; wrap it so that forward returns the logits only")
    if logits.dim() != 2 or (n is not None and logits.shape[0] != n):
        raise ValueError(f"model must return logits of shape ({'N' if n is None else n}, num_classes), "
                         f"got {tuple(logits.shape)}")
    if finite:
        bad = int((~torch.isfinite(logits.detach())).any(1).sum())
        if bad:
            raise ValueError(f"model returned NaN or infinite logits for {bad} of {logits.shape[0]} images of x; "
                             "nothing measured on them means anything (check the model's weights)")


def _check_classes(logits: torch.Tensor, y: torch.Tensor) -> None:
    """Raise ``ValueError`` unless the model's output is a finite tensor of logits (N, num_classes)
    that ``y`` indexes."""
    check_logits(logits)
    if y.max().item() >= logits.shape[1]:
        raise ValueError(f"y must hold class indices in [0, {logits.shape[1] - 1}] for this model, "
                         f"got a label {y.max().item()}")
    check_logits(logits, finite=True)


def _check_losses(losses: torch.Tensor, n: int) -> None:
    """Raise ``ValueError`` unless ``loss_fn`` gave one loss per example, shape (n,)."""
    if not isinstance(losses, torch.Tensor) or tuple(losses.shape) != (n,):
        shape = tuple(losses.shape) if isinstance(losses, torch.Tensor) else type(losses).__name__
        raise ValueError(f"loss_fn must return one loss per example, shape ({n},), got {shape}; "
                         "use reduction='none'")


def input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn) -> tuple[torch.Tensor, torch.Tensor]:
    """``(grad_x sum_i loss_fn(model(x), y)_i, per-example loss)``, parameters' ``.grad`` untouched.
    """
    x = x.detach().requires_grad_(True)
    logits = model(x)
    _check_classes(logits, y)
    losses = loss_fn(_as_float(logits), y)
    _check_losses(losses, x.shape[0])
    (grad,) = torch.autograd.grad(losses.sum(), x)
    return grad.detach(), losses.detach()


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, norm: str | float = "inf",
         targeted: bool = False, loss_fn: LossFn | None = None,
         bounds: tuple[float, float] | None = (0.0, 1.0)) -> torch.Tensor:
    r"""Fast Gradient Sign Method (Goodfellow et al., 2015), and its L2 form (FGM).

    .. math:: x' = \mathrm{clip}_{[0,1]}\big(x + \epsilon\,\mathrm{sign}(\nabla_x L(h(x), y))\big)

    (L2: :math:`x + \epsilon\, g / \|g\|_2`). Targeted: step *down* the cross-entropy to ``y``.

    Args: model (inputs in [0, 1]); x (N, ...) float in [0, 1]; y (N,) long (targets if targeted);
    eps >= 0; norm "inf" or 2; loss_fn(logits, y) -> (N,) to maximise instead of cross-entropy;
    bounds: the box kept (None for none). Returns x_adv, detached.

    Example: ``x_adv = fgsm(model, x, y, eps=0.1)``
    """
    eps = _validate(model, x, y, eps, bounds)
    norm = normalize_norm(norm)
    loss_fn = loss_fn or _default_loss(targeted)
    with eval_mode(model):
        grad, _ = input_gradient(model, x, y, loss_fn)
    return _clip(x + eps * ascent_direction(grad, norm), bounds).detach()


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, alpha: float | None = None,
        steps: int = 10, norm: str | float = "inf", random_start: bool = True, restarts: int = 1,
        targeted: bool = False, loss_fn: LossFn | None = None,
        bounds: tuple[float, float] | None = (0.0, 1.0), generator: torch.Generator | None = None,
        early_stop: bool = False, select: str = "best", cpu_kernels: bool | str = "auto") -> torch.Tensor:
    r"""Projected Gradient Descent (Madry et al., 2018), L-inf or L2, with random starts and restarts.

    .. math:: \delta_0 \sim U(\mathcal{B}_\epsilon),\quad
              \delta_{t+1} = \Pi_{\mathcal{B}_\epsilon \cap [0,1]-x}\big(\delta_t + \alpha\, d(\nabla_\delta L(h(x+\delta_t), y))\big)

    where :math:`d(g)` is ``sign(g)`` (L-inf) or ``g/||g||_2`` (L2). Each example returns the *best
    iterate seen* over all steps and restarts, not the last one: an iterate that fools the model (or
    hits the target) beats one that does not; among equals, the higher loss wins. The loss and the
    prediction of each iterate come from the forward pass that computes its gradient, so tracking
    them costs one extra forward pass (no backward) per restart, for the last iterate (none with
    ``select="last"`` and one restart, where there is nothing to compare it with). A restart
    attacks only the examples that no earlier restart has fooled. With ``early_stop=True`` an example
    also stops being attacked once it is fooled (checked after steps 1, 2, 4, 8, ..., so the loop
    syncs with the device only ``log2(steps)`` times): right for evaluation, where one success is
    enough; leave it off for training, which wants the strongest (highest-loss) point.
    ``select="last"`` keeps each restart's last iterate instead (the textbook algorithm, and what
    torchattacks returns), the best of them over restarts.

    Speed: with ``cpu_kernels="auto"`` a float32 convolutional model on the CPU runs through
    :func:`advlib.kernels.input_gradient_model`: detached channels-last copies of its 4-D weights, and
    the input gradient of a convolution with few input channels as one matrix product (the model
    itself, its parameters, gradients and buffers are not touched; the iterates agree with the plain
    run to float rounding; ``benchmarks/attacks.py`` prints the ratio). ``True`` forces them on any
    device, ``False`` turns them off.

    Args: model (returns logits); x (N, ...) float in [0, 1]; y (N,) long (targets if targeted);
    eps >= 0; alpha > 0, step size (default ``2.5 * eps / steps``); steps >= 0; norm "inf" or 2;
    random_start; restarts >= 1; targeted; loss_fn(logits, y) -> (N,) to maximise; bounds;
    generator for the random starts (each restart draws a start for the whole batch, so the starts do
    not depend on which examples remain); early_stop; select "best" or "last"; cpu_kernels "auto",
    True or False. Returns x_adv, detached.

    Example: ``x_adv = pgd(model, x, y, eps=0.3, alpha=0.01, steps=40, restarts=5)``
    """
    eps = _validate(model, x, y, eps, bounds)
    norm = normalize_norm(norm)
    steps = check_int(steps, "steps", minimum=0)
    restarts = check_int(restarts, "restarts", minimum=1)
    alpha = 2.5 * eps / max(steps, 1) if alpha is None else check_positive(alpha, "alpha")
    if select not in ("best", "last"):
        raise ValueError(f"select must be 'best' or 'last', got {select!r}")
    loss_fn = loss_fn or _default_loss(targeted)
    forward = input_gradient_model(model, x, cpu_kernels)
    x = match_memory_format(x.detach(), model)
    n = x.shape[0]
    best_x = x.clone()
    best_loss = torch.full((n,), -float("inf"), device=x.device)
    best_hit = torch.zeros(n, dtype=torch.bool, device=x.device)
    checked = False
    score_last = select == "best" or restarts > 1  # else the last iterate is returned with nothing to beat
    with eval_mode(model):
        for r in range(restarts):
            start = random_delta(x, eps, norm, generator) if random_start and eps > 0 else None
            # the examples still attacked: all of them (a slice, so the bookkeeping below needs no
            # gather or scatter), or those no earlier restart has fooled
            idx = slice(None) if r == 0 else (~best_hit).nonzero().squeeze(1)
            if r > 0 and idx.numel() == 0:
                break
            xa, ya = x[idx], y[idx]
            delta = torch.zeros_like(xa) if start is None else _clip(xa + start[idx], bounds) - xa
            for t in range(steps + 1):
                last = t == steps
                candidate = xa + delta
                if last and not score_last:
                    best_x[idx] = candidate
                    break
                logits, losses, grad = _forward(forward, candidate, ya, loss_fn, need_grad=not last,
                                                check_labels_of=None if checked else y)
                checked = True
                hit = (logits.argmax(1) == ya) if targeted else (logits.argmax(1) != ya)
                if select == "best" or last:  # with select="last", only the last iterate is a candidate
                    was_hit, was_loss = best_hit[idx], best_loss[idx]
                    better = (hit & ~was_hit) | ((hit == was_hit) & (losses > was_loss))
                    best_x[idx] = torch.where(better.view(-1, *([1] * (x.dim() - 1))), candidate, best_x[idx])
                    best_loss[idx] = torch.where(better, losses, was_loss)
                    best_hit[idx] = was_hit | hit
                if last:
                    break
                delta = project(delta + alpha * ascent_direction(grad, norm), eps, norm)
                delta = _clip(xa + delta, bounds) - xa
                if early_stop and select == "best" and (t + 1) & t == 0:  # after steps 1, 2, 4, 8, ...
                    keep = (~hit).nonzero().squeeze(1)
                    if keep.numel() == 0:
                        break
                    if keep.numel() < ya.numel():
                        idx = keep if isinstance(idx, slice) else idx[keep]
                        xa, ya, delta = xa[keep], ya[keep], delta[keep]
    return best_x.detach()


def _forward(model: nn.Module | Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor,
             loss_fn: LossFn, need_grad: bool, check_labels_of: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Logits, per-example loss (float32) and, if ``need_grad``, the input gradient of the summed loss.
    ``check_labels_of``: labels to check against the logits' shape (once per attack: it syncs)."""
    x = x.detach().requires_grad_(need_grad)
    with torch.set_grad_enabled(need_grad):
        logits = model(x)
        if check_labels_of is not None:
            _check_classes(logits, check_labels_of)
        losses = loss_fn(_as_float(logits), y)
        if check_labels_of is not None:
            _check_losses(losses, x.shape[0])
        if not need_grad:
            return logits, losses.float(), None
        (grad,) = torch.autograd.grad(losses.sum(), x)
    return logits.detach(), losses.detach().float(), grad.detach()


# ------------------------------------------------------------ virtual adversarial perturbation (VAT)
def _as_float(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float32, or kept in float64 (never downcast: chapter 06 checks VAT in double precision)."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def kl_divergence(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    r"""Per-example :math:`\mathrm{KL}(p \,\|\, q) = \sum_k p_k (\log p_k - \log q_k)` with
    ``p = softmax(logits_p)`` and ``q = softmax(logits_q)``, both of shape (N, num_classes).

    Computed from log-softmaxes (stable for confident models); returns shape (N,).
    """
    if logits_p.shape != logits_q.shape or logits_p.dim() != 2:
        raise ValueError(f"logits_p and logits_q must both have shape (N, num_classes), got "
                         f"{tuple(logits_p.shape)} and {tuple(logits_q.shape)}")
    log_p = F.log_softmax(_as_float(logits_p), dim=1)
    log_q = F.log_softmax(_as_float(logits_q), dim=1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=1)


def _unit(t: torch.Tensor) -> torch.Tensor:
    """Each example of ``t`` scaled to L2 norm 1, safely for tiny values (divide by the largest
    entry first, so that gradients of order 1e-20 do not underflow); an all-zero example stays 0."""
    flat = t.flatten(1)
    tiny = torch.finfo(flat.dtype).tiny
    flat = flat / flat.abs().amax(dim=1, keepdim=True).clamp_min(tiny)
    flat = flat / flat.norm(dim=1, keepdim=True).clamp_min(tiny)
    return flat.view_as(t)


VAT_MODES = ("eval", "train")  # the modes vat_perturbation can find the direction in


def vat_perturbation(model: nn.Module, x: torch.Tensor, *, eps: float, xi: float = 1e-6,
                     power_iterations: int = 1, generator: torch.Generator | None = None,
                     mode: str = "eval") -> torch.Tensor:
    r"""The virtual adversarial perturbation of Miyato et al. (2016): no labels needed.

    .. math:: r_{\mathrm{vadv}} = \arg\max_{\|r\|_2 \le \epsilon} \mathrm{KL}\big(p(\cdot \mid x) \,\|\, p(\cdot \mid x + r)\big)

    The KL is 0 with zero gradient at ``r = 0``, so to second order it is ``r^T H r / 2`` and the
    maximiser is ``eps`` times the dominant eigenvector of the Hessian ``H``. It is found by power
    iteration with a finite difference (``H d ~ grad_r KL(r = xi d) / xi``):

    ``d ~ N(0, I)`` normalised; ``power_iterations`` times: ``d <- normalise(grad_r KL(p(x) || p(x + r)) at r = xi d)``;
    then ``r_vadv = eps * d``. With ``power_iterations=0``, ``d`` stays random: random perturbation
    training's perturbation. The norm is per example, so ``||r_vadv[i]||_2 == eps`` for every ``i``.

    Args: model; x (N, ...) float of any range (no clipping: VAT perturbs features, not only
    images); eps >= 0 (L2 radius); xi > 0 (finite-difference step; the paper: 1e-6 for MNIST);
    power_iterations >= 0; generator for the random start; mode, the mode the model runs in:
    ``"eval"`` (batch norm normalises with its running statistics) or ``"train"`` (every submodule in
    train mode: batch norm normalises each pass with the statistics of the batch it sees, ``x`` and
    then ``x + xi d``, and its running statistics are not updated, as in the reference code's
    ``forward_no_update_batch_stat``; dropout, if any, is active). Either way every submodule's mode
    and every buffer are restored, the passes run in float32 or float64 even under autocast (a step
    of 1e-6 vanishes in bfloat16), and only ``torch.autograd.grad`` w.r.t. ``r`` is used. Chapter 06
    compares the two modes. Returns ``r_vadv`` (not ``x + r``), detached, shaped like ``x``, float32
    (float64 if ``x`` is).

    Example: ``r = vat_perturbation(model, x_unlabelled, eps=2.0)``
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_images(x, "x", bounds=None)
    eps = check_nonnegative(eps, "eps")
    xi = check_positive(xi, "xi")
    power_iterations = check_int(power_iterations, "power_iterations", minimum=0)
    if mode not in VAT_MODES:
        raise ValueError(f"mode must be one of {VAT_MODES}, got {mode!r}")
    x = _as_float(x.detach())
    d = _unit(draw(torch.randn, x.shape, generator=generator, device=x.device).to(x.dtype))
    in_mode = eval_mode(model) if mode == "eval" else train_mode_frozen_stats(model)
    with in_mode, torch.autocast(device_type=x.device.type, enabled=False):
        if power_iterations > 0:
            with torch.no_grad():
                logits_p = _as_float(model(x))
            if logits_p.dim() != 2:
                raise ValueError(f"model must return logits of shape (N, num_classes), got {tuple(logits_p.shape)}")
            for _ in range(power_iterations):
                r = (xi * d).requires_grad_(True)
                kl = kl_divergence(logits_p, model(x + r)).sum()
                (grad,) = torch.autograd.grad(kl, r)
                g = _unit(grad.detach())
                moved = g.flatten(1).abs().amax(dim=1) > 0  # a zero gradient (KL flat in float) keeps d
                d = torch.where(moved.view(-1, *([1] * (x.dim() - 1))), g, d)
    return (eps * d).detach()
