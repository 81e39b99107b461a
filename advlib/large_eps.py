r"""Training against large perturbations (Shaeiri, Nobahari and Rohban, 2020, "Towards deep learning
models resistant to large perturbations").

Adversarial training solves :math:`\min_\theta \mathbb{E}[\max_{\|\delta\|_\infty \le \epsilon}
L(h_\theta(x + \delta), y)]`. At a large but still reasonable :math:`\epsilon` (0.4 on MNIST, 16/255
or 32/255 on CIFAR-10) training from scratch fails: the first adversarial examples of a random
network are so strong that the network learns to predict one class. Two ways around it, both an
:math:`\epsilon` *schedule* in the adversary of :func:`advlib.train.fit`
(:func:`advlib.adversaries.pgd` with eps a schedule):

- **extended training**: start from a model trained at a smaller :math:`\epsilon` (chapter 07's 0.3
  model) and continue at the large one;
- **IAT**, the paper's growing-:math:`\epsilon` curriculum from scratch,
  :math:`\epsilon_k = \epsilon_{\max} (k + 1) / K` in stage :math:`k = 0, \dots, K - 1`
  (:func:`advlib.adversaries.staircase`; the paper: :math:`0.01\,(\text{epoch} + 1)` up to 0.4
  over 40 epochs).

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

import torch
from torch import nn

from .evaluate import Attack
# the old names of IAT's schedule and the scheduled PGD adversary, until chapter 10 moves to advlib.adversaries
from ._aliases import scheduled_pgd_adversary, staircase_eps  # noqa: F401
from .utils import check_images, check_nonnegative


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
    """
    eps = check_nonnegative(eps, "eps")
    threshold = _check_threshold(threshold)
    check_images(x, "x")
    flat = x.flatten(1)
    above = flat > threshold
    can_flip = torch.where(above, (flat - eps).clamp(min=0.0) <= threshold,
                           (flat + eps).clamp(max=1.0) > threshold)
    return can_flip.float().mean(1)
