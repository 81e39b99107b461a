r"""Two more training objectives for :func:`advlib.train.fit`: TRADES, a regulariser, and N-FGSM, an adversary.

- TRADES (Zhang et al., 2019) trades clean accuracy for robustness explicitly: the clean
  cross-entropy plus :math:`\beta` times the KL divergence between the prediction at :math:`x` and
  at the point :math:`x'` of the eps-ball where that divergence is largest
  (:func:`trades_regularizer`, with its inner maximisation :func:`trades_perturbation`);
- N-FGSM (de Jorge et al., 2022) is single-step adversarial training without catastrophic
  overfitting: a large uniform noise, one FGSM step from the noisy point, and no projection back
  onto the eps-ball (:func:`nfgsm_adversary`).

Both follow the conventions of :mod:`advlib.train`: ``eps_ramp`` grows eps (and the step size with
it) linearly from 0 over that fraction of training, and step sizes are given in absolute units.

Taught in :ref:`ch-pgd-training` and :ref:`ch-fast-training`.
"""
from __future__ import annotations

import torch
from torch import nn

from . import attacks
from .train import Adversary, Regularizer, ramp
from .utils import (check_images, check_int, check_model_input, check_nonnegative, check_positive, draw, eval_mode,
                    freeze_batch_norm_stats)


# ------------------------------------------------------------------------------------------ TRADES
def trades_perturbation(model: nn.Module, x: torch.Tensor, *, eps: float, alpha: float, steps: int,
                        norm: str | float = "inf", generator: torch.Generator | None = None) -> torch.Tensor:
    r"""The inner maximisation of TRADES (Zhang et al., 2019): the point :math:`x'` of the eps-ball
    around ``x`` (and of the image box [0, 1]) where the prediction moves farthest from the clean one,

    .. math:: x' \approx \arg\max_{\|x' - x\| \le \epsilon,\; x' \in [0,1]^d}
              \mathrm{KL}\big(p_\theta(\cdot \mid x) \,\|\, p_\theta(\cdot \mid x')\big),

    found as the reference code (``trades.py`` of github.com/yaodongyu/TRADES) does: from
    :math:`x'_0 = x + 0.001\,\xi`, :math:`\xi \sim N(0, I)` (at :math:`x' = x` the KL is at its
    minimum and its gradient is zero, hence the small noise), ``steps`` ascent steps

    .. math:: x'_{t+1} = \mathrm{clip}_{[0,1]}\Big(\Pi_{\mathcal{B}_\epsilon(x)}\big(x'_t + \alpha\,
              d(\nabla_{x'} \mathrm{KL}(p_\theta(\cdot \mid x) \,\|\, p_\theta(\cdot \mid x'_t)))\big)\Big)

    with :math:`d(g) = \mathrm{sign}(g)` (L-inf) or :math:`g / \|g\|_2` (L2), and the *last* iterate is
    returned (not the best one, as :func:`advlib.attacks.pgd` would). The clean probabilities are
    computed once and held constant. As in the reference, the first gradient is taken at the
    unclipped start; the returned point is always in the eps-ball and in [0, 1]. For L2 the
    reference uses SGD on :math:`\delta` with the normalised gradient and a learning rate of
    :math:`2\epsilon/K`; here it is the same normalised step of size ``alpha``.

    Like every attack of :mod:`advlib.attacks`: the model runs in eval mode (each submodule's mode is
    restored), only the input is differentiated (no parameter's ``.grad`` is touched), and the result
    is detached. ``generator`` seeds the start's noise (global random state otherwise). Needs no labels.

    Args: model (returns logits); x (N, ...) float in [0, 1]; eps >= 0; alpha > 0; steps >= 1;
    norm "inf" or 2. Returns x', detached.

    Taught in :ref:`ch-pgd-training`.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    eps = check_nonnegative(eps, "eps")
    alpha = check_positive(alpha, "alpha")
    steps = check_int(steps, "steps", minimum=1)
    norm = attacks.normalize_norm(norm)
    check_images(x, "x")
    check_model_input(model, x, "x")
    x = x.detach()
    with eval_mode(model):
        with torch.no_grad():
            logits_clean = model(x)
        x_adv = x + 0.001 * draw(torch.randn, x.shape, generator=generator, device=x.device, dtype=x.dtype)
        for _ in range(steps):
            x_adv = x_adv.detach().requires_grad_(True)
            with torch.enable_grad():
                kl = attacks.kl_divergence(logits_clean, model(x_adv)).sum()
                (grad,) = torch.autograd.grad(kl, x_adv)
            delta = attacks.project(x_adv.detach() - x + alpha * attacks.ascent_direction(grad, norm), eps, norm)
            x_adv = (x + delta).clamp(0.0, 1.0)
    return x_adv.detach()


def trades_regularizer(eps: float, beta: float, *, steps: int, alpha: float, norm: str | float = "inf",
                       eps_ramp: float = 0.0) -> Regularizer:
    r"""TRADES (Zhang, Yu, Jiao, Xing, El Ghaoui and Jordan, ICML 2019, "Theoretically Principled
    Trade-off between Robustness and Accuracy") as a regulariser for :func:`advlib.train.fit`:
    ``fit(model, data, regularizer=trades_regularizer(0.3, 1.0, steps=40, alpha=0.01))`` (with
    ``adversary=None``, so the rest of the loss is the clean cross-entropy) minimises

    .. math:: \frac1B \sum_{i=1}^{B} \Big[\mathrm{CE}\big(f_\theta(x_i), y_i\big) + \beta\,
              \mathrm{KL}\big(p_\theta(\cdot \mid x_i) \,\|\, p_\theta(\cdot \mid x'_i)\big)\Big],
              \qquad x'_i \approx \arg\max_{\|x'_i - x_i\|_\infty \le \epsilon}
              \mathrm{KL}\big(p_\theta(\cdot \mid x_i) \,\|\, p_\theta(\cdot \mid x'_i)\big),

    :math:`p_\theta = \mathrm{softmax}(f_\theta)`. This is the reference code's
    (github.com/yaodongyu/TRADES, ``trades.py``) ``loss_natural + beta * loss_robust`` with
    ``loss_robust = (1 / batch_size) * KLDivLoss(size_average=False)(log_softmax(model(x_adv)),
    softmax(model(x_natural)))``; the regulariser returns the second term, the mean over the batch of
    :math:`\beta\,\mathrm{KL}`. As there, the gradient flows through *both* predictions (the clean one
    is not held constant, unlike VAT's). :math:`x'` comes from :func:`trades_perturbation`: ``steps``
    signed steps of ``alpha`` from :math:`x + 0.001\,N(0, I)`, in eval mode, projected onto the
    eps-ball and [0, 1], last iterate.

    The reference's settings: MNIST (small CNN): eps 0.3, ``alpha`` 0.01, 40 steps, beta 1.0 (the
    paper also reports 6.0), SGD lr 0.01 (divided by 10 at epochs 55, 75 and 90), momentum 0.9,
    batch 128, 100 epochs; CIFAR-10 (WideResNet-34-10): eps 0.031 (8/255 = 0.0314 rounded down),
    ``alpha`` 0.007 (a little under 2/255 = 0.0078), 10 steps, beta 6.0, SGD lr 0.1 (divided by 10
    at epoch 75), momentum 0.9, weight decay 2e-4, batch 128, 76 epochs. ``norm=2`` runs the L2 inner maximisation.
    ``eps_ramp`` grows eps and ``alpha`` linearly from 0 over that fraction of training (the
    reference has no ramp).

    Labels are not used, but the regulariser has ``uses_labels = True``, so that ``fit`` applies it
    to the labelled batch, as TRADES does (and refuses ``unlabelled=``).

    Batch norm: the reference computes the clean and the adversarial predictions of the loss in
    train mode, each pass updating the running statistics (three updates per step: the
    cross-entropy's pass on :math:`x`, then :math:`x'` and :math:`x` again for the KL). Here both
    predictions are in the model's current mode (train mode in ``fit``), so they normalise with the
    statistics of their own batch, as there; but only ``fit``'s cross-entropy pass on :math:`x`
    updates the running statistics, the regulariser's passes leave them alone
    (:func:`advlib.utils.freeze_batch_norm_stats`). The running statistics therefore follow clean
    batches only, where the reference's mix in adversarial ones.

    Args: eps >= 0; beta >= 0, the weight of the KL; steps >= 1; alpha > 0, the step size (absolute,
    at the full eps); norm "inf" or 2; eps_ramp >= 0.

    Taught in :ref:`ch-pgd-training`.
    """
    eps = check_nonnegative(eps, "eps")
    beta = check_nonnegative(beta, "beta")
    steps = check_int(steps, "steps", minimum=1)
    alpha = check_positive(alpha, "alpha")
    norm = attacks.normalize_norm(norm)
    eps_ramp = check_nonnegative(eps_ramp, "eps_ramp")

    def regularizer(model: nn.Module, x: torch.Tensor, progress: float, y: torch.Tensor | None = None) -> torch.Tensor:
        e = ramp(eps, progress, eps_ramp)
        if e <= 0 or beta == 0:
            return x.new_zeros((), dtype=torch.float32 if x.dtype != torch.float64 else x.dtype)
        x_adv = trades_perturbation(model, x, eps=e, alpha=alpha * e / eps, steps=steps, norm=norm)
        with freeze_batch_norm_stats(model):
            logits_clean = model(x)
            logits_adv = model(x_adv.to(x.dtype))
        return beta * attacks.kl_divergence(logits_clean, logits_adv).mean()

    regularizer.uses_labels = True
    return regularizer


# ------------------------------------------------------------------------------------------ N-FGSM
def nfgsm_adversary(eps: float, *, k: float = 2.0, alpha: float | None = None,
                    eps_ramp: float = 0.0) -> Adversary:
    r"""The adversary of N-FGSM (de Jorge, Bibi, Volpi, Sanyal, Torr, Rogez and Dokania, NeurIPS 2022,
    "Make Some Noise: Reliable and Efficient Single-Step Adversarial Training"): a noise *larger*
    than the eps-ball, one FGSM step from the noisy point, and no projection,

    .. math:: \eta \sim U[-k\epsilon, k\epsilon]^d,\qquad
              x_{in} = \mathrm{clip}_{[0,1]}\Big(x + \eta' + \alpha\,
              \mathrm{sign}\big(\nabla_x L(h(x + \eta'), y)\big)\Big),\qquad
              \eta' = \mathrm{clip}_{[0,1]}(x + \eta) - x,

    so the perturbation :math:`x_{in} - x` reaches up to :math:`(k + 1)\,\epsilon` in L-inf (with the
    defaults, :math:`3\epsilon`) where FGSM-RS (:func:`advlib.train.fgsm_rs_adversary`) projects back
    to :math:`\epsilon`. Defaults are the paper's: ``k = 2`` and ``alpha = eps``. Followed from the
    reference code (github.com/pdejorge/N-FGSM, ``train.py``): the noise is clipped so that
    :math:`x + \eta'` is an image of [0, 1] before the gradient is taken, the stepped point is clipped
    to [0, 1], and there is no projection (its ``--clip`` is off by default); the loss is the
    cross-entropy. With ``eps_ramp`` > 0 eps grows linearly from 0 over that fraction of training,
    and the noise's range :math:`k\epsilon` and ``alpha`` with it, as the reference does for SVHN
    (over the first 5 of 30 epochs, i.e. ``eps_ramp=1/6``).

    One difference: the reference takes the gradient with the model in train mode (batch norm
    normalises with, and updates its running statistics from, the noisy batch; dropout is on); here,
    like every adversary of :mod:`advlib.train`, in eval mode, with each submodule's mode restored and
    no parameter's ``.grad`` touched (:func:`advlib.attacks.fgsm`). The noise comes from torch's
    global random state, which ``fit`` seeds.

    The reference's settings: CIFAR-10/100, PreActResNet-18 (also WideResNet-28-10), eps from 2/255
    to 16/255 with ``alpha = eps`` and ``k = 2``, 30 epochs, SGD with a cyclic learning rate up to
    0.2 at mid-training, momentum 0.9, weight decay 5e-4, batch 128; SVHN: the same, except that the
    learning rate peaks at 2/5 of training, eps and ``alpha`` are ramped over the first 5 epochs,
    ``k = 3`` at eps 12/255 (PreActResNet-18) and ``alpha`` = 8/255 at eps 10/255 and 12/255
    (WideResNet-28-10).

    Args: eps >= 0; k >= 0, the noise's range in multiples of eps (0 gives FGSM with step alpha);
    alpha > 0, the step size (absolute, at the full eps; default eps); eps_ramp >= 0.

    Taught in :ref:`ch-fast-training`.
    """
    eps = check_nonnegative(eps, "eps")
    k = check_nonnegative(k, "k")
    if alpha is not None:
        alpha = check_positive(alpha, "alpha")
    eps_ramp = check_nonnegative(eps_ramp, "eps_ramp")

    def adversary(model, x, y, progress):
        e = ramp(eps, progress, eps_ramp)
        if e <= 0:
            return x
        a = e if alpha is None else alpha * e / eps
        u = draw(torch.rand, x.shape, device=x.device, dtype=x.dtype)
        noisy = (x + (2 * u - 1) * (k * e)).clamp(0.0, 1.0)
        return attacks.fgsm(model, noisy.detach(), y, eps=a)

    return adversary
