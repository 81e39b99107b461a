"""The adversaries that perturb the batch: FGSM, FGSM-RS, PGD, FGM and N-FGSM."""
from __future__ import annotations

import torch

from .. import attacks
from ..utils import check_int, check_nonnegative, draw
from ._protocol import Adversary, Schedule, as_schedule, step_size


def fgsm(eps: float | Schedule) -> Adversary:
    r"""FGSM training's adversary (Goodfellow et al., 2015):
    :math:`x_{in} = \mathrm{clip}_{[0,1]}(x + \epsilon\,\mathrm{sign}(\nabla_x L(h(x), y)))`, from
    :math:`x` itself (no random start); the step is eps.
    """
    eps_at = as_schedule(eps)

    def adversary(model, x, y, progress, index=None):
        e = eps_at(progress)
        return attacks.fgsm(model, x, y, eps=e) if e > 0 else x

    return adversary


def fgsm_rs(eps: float | Schedule, *, alpha: float | None = None, alpha_ratio: float | None = None,
            clip_start: bool = True) -> Adversary:
    r"""FGSM from a random start (Wong, Rice and Kolter, 2020, "Fast is better than free"): a uniform
    start in the eps-ball, one signed step of :math:`\alpha` (default ``alpha_ratio`` 1.25, i.e.
    1.25 eps), projection. This is PGD with one step.

    ``clip_start`` decides where the gradient is taken. ``True`` (the default, and PGD's convention):
    at :math:`\mathrm{clip}_{[0,1]}(x + \delta_0)`, a point of the image box, and the better of that
    start and the stepped point is returned (:func:`advlib.attacks.pgd`'s best iterate). ``False``:
    as in Wong et al.'s code, at :math:`x + \delta_0` itself, which may leave the box, and the stepped
    point :math:`\mathrm{clip}_{[0,1]}(x + \Pi_{[-\epsilon,\epsilon]^d}(\delta_0 + \alpha\,
    \mathrm{sign}(\nabla_x L)))` is returned. On MNIST, where most pixels are 0 or 1, clipping
    removes about half of the start's noise; chapter 09 shows what that does to catastrophic
    overfitting.
    """
    eps_at = as_schedule(eps)
    alpha_at = step_size(alpha, alpha_ratio, 1.25)
    if not isinstance(clip_start, bool):
        raise ValueError(f"clip_start must be True or False, got {clip_start!r}")

    def adversary(model, x, y, progress, index=None):
        e = eps_at(progress)
        if e <= 0:
            return x
        a = alpha_at(e)
        if clip_start:
            return attacks.pgd(model, x, y, eps=e, alpha=a, steps=1, random_start=True)
        stepped = attacks.pgd(model, x, y, eps=e, alpha=a, steps=1, random_start=True, bounds=None, select="last")
        return stepped.clamp(0.0, 1.0)

    return adversary


def pgd(eps: float | Schedule, *, steps: int = 7, alpha: float | None = None, alpha_ratio: float | None = None,
        norm: str | float = "inf", random_start: bool = True) -> Adversary:
    r"""PGD adversarial training's adversary (Madry et al., 2018): ``steps`` steps of :math:`\alpha`
    (default :math:`2.5\,\epsilon / \texttt{steps}`) from a random start, L-inf or L2
    (:func:`advlib.attacks.pgd`, best iterate). With eps a schedule (e.g. :func:`linear_ramp`, or
    IAT's :func:`staircase`), give the step as ``alpha_ratio`` so that it follows eps.
    """
    eps_at = as_schedule(eps)
    steps = check_int(steps, "steps", minimum=1)
    alpha_at = step_size(alpha, alpha_ratio, None)
    norm = attacks.normalize_norm(norm)

    def adversary(model, x, y, progress, index=None):
        e = eps_at(progress)
        if e <= 0:
            return x
        return attacks.pgd(model, x, y, eps=e, alpha=alpha_at(e), steps=steps, norm=norm,
                           random_start=random_start)

    return adversary


def fgm(eps: float | Schedule, *, norm: str | float = 2, bounds: tuple[float, float] | None = None) -> Adversary:
    r"""The fast gradient method's adversary, L2 by default, and no box unless ``bounds`` is given
    (for features that are not pixels): :math:`x + \epsilon\, \nabla_x L / \|\nabla_x L\|_2`. Use
    with ``fit(..., clean_weight=0.5)`` for Goodfellow et al.'s objective
    :math:`\tfrac12 L(x, y) + \tfrac12 L(x + r_{\mathrm{adv}}, y)`, the labelled cousin of VAT.
    """
    eps_at = as_schedule(eps)
    norm = attacks.normalize_norm(norm)

    def adversary(model, x, y, progress, index=None):
        e = eps_at(progress)
        return attacks.fgsm(model, x, y, eps=e, norm=norm, bounds=bounds) if e > 0 else x

    return adversary


def nfgsm(eps: float | Schedule, *, k: float = 2.0, alpha: float | None = None,
          alpha_ratio: float | None = None) -> Adversary:
    r"""N-FGSM's adversary (de Jorge, Bibi, Volpi, Sanyal, Torr, Rogez and Dokania, NeurIPS 2022,
    "Make Some Noise: Reliable and Efficient Single-Step Adversarial Training"): a noise *larger*
    than the eps-ball, one FGSM step from the noisy point, and no projection,

    .. math:: \eta \sim U[-k\epsilon, k\epsilon]^d,\qquad
              x_{in} = \mathrm{clip}_{[0,1]}\Big(x + \eta' + \alpha\,
              \mathrm{sign}\big(\nabla_x L(h(x + \eta'), y)\big)\Big),\qquad
              \eta' = \mathrm{clip}_{[0,1]}(x + \eta) - x,

    so the perturbation :math:`x_{in} - x` reaches up to :math:`(k + 1)\,\epsilon` in L-inf (with the
    defaults, :math:`3\epsilon`) where FGSM-RS (:func:`fgsm_rs`) projects back to :math:`\epsilon`.
    Defaults are the paper's: ``k = 2`` and :math:`\alpha = \epsilon` (``alpha_ratio`` 1). Followed
    from the reference code (github.com/pdejorge/N-FGSM, ``train.py``): the noise is clipped so that
    :math:`x + \eta'` is an image of [0, 1] before the gradient is taken, the stepped point is
    clipped to [0, 1], and there is no projection (its ``--clip`` is off by default); the loss is the
    cross-entropy. With eps a schedule, the noise's range :math:`k\epsilon` follows it, and so does
    the step given as ``alpha_ratio``, as the reference's SVHN ramp does (over the first 5 of 30
    epochs, i.e. ``linear_ramp(eps, 1/6)``).

    One difference: the reference takes the gradient with the model in train mode (batch norm
    normalises with, and updates its running statistics from, the noisy batch; dropout is on); here,
    like every adversary of this module, in eval mode, with each submodule's mode restored and no
    parameter's ``.grad`` touched (:func:`advlib.attacks.fgsm`). The noise comes from torch's global
    random state, which ``fit`` seeds.

    The reference's settings: CIFAR-10/100, PreActResNet-18 (also WideResNet-28-10), eps from 2/255
    to 16/255 with ``alpha = eps`` and ``k = 2``, 30 epochs, SGD with a cyclic learning rate up to
    0.2 at mid-training, momentum 0.9, weight decay 5e-4, batch 128; SVHN: the same, except that the
    learning rate peaks at 2/5 of training, eps and ``alpha`` are ramped over the first 5 epochs,
    ``k = 3`` at eps 12/255 (PreActResNet-18) and ``alpha`` = 8/255 at eps 10/255 and 12/255
    (WideResNet-28-10).
    """
    eps_at = as_schedule(eps)
    k = check_nonnegative(k, "k")
    alpha_at = step_size(alpha, alpha_ratio, 1.0)

    def adversary(model, x, y, progress, index=None):
        e = eps_at(progress)
        if e <= 0:
            return x
        u = draw(torch.rand, x.shape, device=x.device, dtype=x.dtype)
        noisy = (x + (2 * u - 1) * (k * e)).clamp(0.0, 1.0)
        return attacks.fgsm(model, noisy.detach(), y, eps=alpha_at(e))

    return adversary
