r"""Training against large perturbations (Shaeiri, Nobahari and Rohban, 2020, "Towards deep learning
models resistant to large perturbations").

Adversarial training solves :math:`\min_\theta \mathbb{E}[\max_{\|\delta\|_\infty \le \epsilon}
L(h_\theta(x + \delta), y)]`. At a large but still reasonable :math:`\epsilon` (0.4 on MNIST, 16/255
or 32/255 on CIFAR-10) training from scratch fails: the first adversarial examples of a random
network are so strong that the network learns to predict one class. Two ways around it, both an
:math:`\epsilon` *schedule* in the adversary of :func:`advlib.train.fit`:

- **extended training**: start from a model trained at a smaller :math:`\epsilon` (chapter 07's 0.3
  model) and continue at the large one;
- **IAT**, the paper's growing-:math:`\epsilon` curriculum from scratch,
  :math:`\epsilon_k = \epsilon_{\max} (k + 1) / K` in stage :math:`k = 0, \dots, K - 1`
  (:func:`staircase_eps`; the paper: :math:`0.01\,(\text{epoch} + 1)` up to 0.4 over 40 epochs).

Where :math:`\epsilon` stops being reasonable: MNIST pixels are nearly binary, so
:math:`x \mapsto \mathbb{1}[x > \tfrac12]` undoes every L-inf perturbation with
:math:`\epsilon < \tfrac12` on a pixel that is exactly 0 or 1; at :math:`\epsilon = \tfrac12` an
adversary can move a black and a white pixel to the same value, and on truly binary images
every image to the same grey image. :class:`BinarizedClassifier` is that defence; its gradient is
zero almost everywhere, so plain PGD cannot move it and overestimates its robustness, and an honest
attack differentiates through the threshold as if it were the identity (BPDA, Athalye, Carlini and
Wagner, 2018: :func:`bpda`). :func:`flippable_fraction` counts the pixels an adversary can flip.

Taught in :ref:`ch-large-perturbations`.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from . import attacks
from .evaluate import Attack
from .train import Adversary
from .utils import check_images, check_int, check_nonnegative, check_positive


# ------------------------------------------------------------------------------- eps schedules
def _check_threshold(threshold: float) -> float:
    """``float(threshold)`` if it is a number in (0, 1), else ``ValueError`` naming ``threshold``."""
    try:
        t = float(threshold)
    except (TypeError, ValueError):
        raise ValueError(f"threshold must be a number in (0, 1), got {threshold!r}") from None
    if not 0.0 < t < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
    return t


def staircase_eps(eps_max: float, stages: int, *, eps_min: float | None = None) -> Callable[[float], float]:
    r"""IAT's schedule as a function of the training progress :math:`p \in [0, 1)`: ``stages`` equal
    stages, stage :math:`k = \lfloor pK \rfloor` at
    :math:`\epsilon_k = \epsilon_{\min} + (\epsilon_{\max} - \epsilon_{\min})\, k / (K - 1)`; by
    default :math:`\epsilon_{\min} = \epsilon_{\max} / K`, so :math:`\epsilon_k = \epsilon_{\max}(k+1)/K`,
    the paper's :math:`0.01\,(\text{epoch} + 1)` with :math:`K = 40` stages of one epoch.

    Taught in :ref:`ch-large-perturbations`.
    """
    eps_max = check_positive(eps_max, "eps_max")
    stages = check_int(stages, "stages", minimum=1)
    if eps_min is not None:
        eps_min = check_positive(eps_min, "eps_min")
        if eps_min > eps_max:
            raise ValueError(f"eps_min must be at most eps_max = {eps_max}, got {eps_min}")

    def eps_at(progress: float) -> float:
        if not 0.0 <= progress <= 1.0:
            raise ValueError(f"progress must be the share of training done, in [0, 1], got {progress!r}")
        k = min(stages - 1, math.floor(progress * stages))
        if eps_min is None:  # the paper's form, computed as written
            return eps_max * (k + 1) / stages
        return eps_max if stages == 1 else eps_min + (eps_max - eps_min) * k / (stages - 1)

    return eps_at


def scheduled_pgd_adversary(eps_at: Callable[[float], float] | float, *, steps: int = 5,
                            step_ratio: float = 2.5, norm: str | float = "inf") -> Adversary:
    r"""The adversary of PGD adversarial training with :math:`\epsilon` a function of the training
    progress, ``eps_at(progress)`` (a number: constant): ``steps`` PGD steps of
    :math:`\alpha = \texttt{step\_ratio}\cdot\epsilon / \texttt{steps}` from a random start, at the
    :math:`\epsilon` of that moment. Extended training is a constant schedule on a model trained at
    a smaller :math:`\epsilon`; IAT is :func:`staircase_eps` from scratch.

    Taught in :ref:`ch-large-perturbations`.
    """
    steps = check_int(steps, "steps", minimum=1)
    step_ratio = check_positive(step_ratio, "step_ratio")
    if not callable(eps_at):
        eps = check_positive(eps_at, "eps_at")
        eps_at = lambda progress: eps  # noqa: E731
    norm = attacks.normalize_norm(norm)

    def adversary(model: nn.Module, x: torch.Tensor, y: torch.Tensor, progress: float) -> torch.Tensor:
        eps = float(eps_at(progress))
        if eps <= 0:
            return x
        return attacks.pgd(model, x, y, eps=eps, alpha=step_ratio * eps / steps, steps=steps, norm=norm,
                           random_start=True)

    return adversary


# ---------------------------------------------------------------- binarisation and its honest attack
class _Threshold(torch.autograd.Function):
    """``1[x > t]`` forward; backward its true derivative (zero almost everywhere), or the identity
    (the straight-through estimator) when ``straight_through``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, threshold: float, straight_through: bool) -> torch.Tensor:
        ctx.straight_through = straight_through
        return (x > threshold).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return (grad if ctx.straight_through else torch.zeros_like(grad)), None, None


class BinarizedClassifier(nn.Module):
    r"""``classifier(1[x > threshold])``: the input is thresholded before it is classified. The
    threshold has zero gradient almost everywhere, so a gradient attack on this module does not move
    (:math:`\mathrm{sign}(0) = 0`); :meth:`straight_through` is the same classifier with the threshold
    differentiated as the identity, for BPDA (:func:`bpda`). Its forward pass is the same function.

    Taught in :ref:`ch-large-perturbations`.
    """

    def __init__(self, classifier: nn.Module, threshold: float = 0.5, *, straight_through: bool = False):
        super().__init__()
        self.classifier = classifier
        self.threshold = _check_threshold(threshold)
        self.straight_through_gradient = bool(straight_through)

    def binarize(self, x: torch.Tensor) -> torch.Tensor:
        """``1[x > threshold]`` as ``x``'s dtype (with the identity gradient when straight-through)."""
        return _Threshold.apply(x, self.threshold, self.straight_through_gradient)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.binarize(x))

    def straight_through(self) -> "BinarizedClassifier":
        """The same classifier (shared, not copied) with the straight-through gradient."""
        return BinarizedClassifier(self.classifier, self.threshold, straight_through=True)


def bpda(attack: Attack) -> Attack:
    r"""Backward Pass Differentiable Approximation for a :class:`BinarizedClassifier`: run ``attack``
    on :meth:`BinarizedClassifier.straight_through`, whose forward pass is the model's own and whose
    backward pass treats the threshold as the identity. The examples it returns are then judged by
    the model itself, so the attack can only be weaker than the truth, never stronger.

    Taught in :ref:`ch-large-perturbations`.
    """

    def bpda_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if not isinstance(model, BinarizedClassifier):
            raise TypeError(f"model must be a BinarizedClassifier for bpda, got {type(model).__name__}")
        return attack(model.straight_through(), x, y)

    bpda_attack.__name__ = f"BPDA {getattr(attack, '__name__', 'attack')}"
    return bpda_attack


def flippable_fraction(x: torch.Tensor, eps: float, threshold: float = 0.5) -> torch.Tensor:
    r"""Per image, the fraction of pixels whose thresholded value :math:`\mathbb{1}[x > t]` an L-inf
    perturbation of size ``eps`` (kept in [0, 1]) can change: pixels above the threshold with
    :math:`x - \epsilon \le t`, and pixels at or below it with :math:`\min(1, x + \epsilon) > t`.

    Taught in :ref:`ch-large-perturbations`.
    """
    eps = check_nonnegative(eps, "eps")
    threshold = _check_threshold(threshold)
    check_images(x, "x")
    flat = x.flatten(1)
    above = flat > threshold
    can_flip = torch.where(above, (flat - eps).clamp(min=0.0) <= threshold,
                           (flat + eps).clamp(max=1.0) > threshold)
    return can_flip.float().mean(1)
