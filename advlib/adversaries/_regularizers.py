"""The regularisers: VAT, random perturbation training, GradAlign and TRADES."""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from .. import attacks
from ..utils import (check_images, check_int, check_model_input, check_nonnegative, check_positive, draw, eval_mode,
                     freeze_batch_norm_stats)
from ._protocol import Regularizer, Schedule, as_schedule, step_size


def vat(eps: float | Schedule, *, xi: float = 1e-6, power_iterations: int = 1, weight: float = 1.0,
        direction_mode: str = "eval") -> Regularizer:
    r"""Virtual adversarial training (Miyato et al., 2016) as a regulariser:

    .. math:: R(\theta; x_u) = \lambda\,\frac{1}{|x_u|}\sum_i
              \mathrm{KL}\big(\hat p(\cdot \mid x_i) \,\|\, p_\theta(\cdot \mid x_i + r_{\mathrm{vadv},i})\big)

    i.e. ``weight`` times the mean negative LDS, where ``r_vadv`` comes from
    :func:`advlib.attacks.vat_perturbation` (``eps``, ``xi``, ``power_iterations``) and ``p_hat`` is the
    current prediction held constant (no gradient through it). No labels are used, so ``x_u`` may be
    unlabelled (``fit(..., regularizer=vat(2.0), unlabelled=x_u)``) or the labelled batch
    (supervised VAT, when ``unlabelled`` is None). Both predictions use the model's current mode (in
    ``fit``: train mode, so batch norm normalises with the statistics of ``x_u`` and of
    ``x_u + r_vadv``) and never update batch-norm running statistics
    (:func:`advlib.utils.freeze_batch_norm_stats`, the reference code's
    ``update_batch_stats=False``). The perturbation itself is found with the model in
    ``direction_mode`` (:func:`advlib.attacks.vat_perturbation`'s ``mode``), where nothing is updated
    either: ``"eval"`` (the default) normalises with the running statistics, which in
    semi-supervised ``fit`` come from the labelled batches alone; ``"train"`` with the statistics of
    ``x_u`` and ``x_u + xi d``, as the reference code does (chapter 06 compares the two).
    ``power_iterations=0`` gives random perturbation training (:func:`rpt`): a random direction of
    norm ``eps`` instead.
    """
    eps_at = as_schedule(eps)
    check_positive(xi, "xi")
    check_int(power_iterations, "power_iterations", minimum=0)
    weight = check_nonnegative(weight, "weight")
    if direction_mode not in attacks.VAT_MODES:
        raise ValueError(f"direction_mode must be one of {attacks.VAT_MODES}, got {direction_mode!r}")

    def regularizer(model: nn.Module, x_u: torch.Tensor, progress: float, y: torch.Tensor | None = None) -> torch.Tensor:
        r = attacks.vat_perturbation(model, x_u, eps=eps_at(progress), xi=xi, power_iterations=power_iterations,
                                     mode=direction_mode)
        with freeze_batch_norm_stats(model):
            with torch.no_grad():
                logits_p = model(x_u)
            logits_q = model(x_u + r.to(x_u.dtype))
        return weight * attacks.kl_divergence(logits_p, logits_q).mean()

    return regularizer


def rpt(eps: float | Schedule, *, weight: float = 1.0) -> Regularizer:
    """Random perturbation training: :func:`vat` with a random direction of L2 norm ``eps`` in place
    of the virtual adversarial one (``power_iterations=0``).
    """
    return vat(eps, power_iterations=0, weight=weight)


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-example cosine between two batches of tensors (0 where either is 0)."""
    return F.cosine_similarity(a.flatten(1).float(), b.flatten(1).float(), dim=1, eps=1e-12)


def gradalign(eps: float, weight: float) -> Regularizer:
    r"""GradAlign (Andriushchenko and Flammarion, 2020) as a labelled regulariser:

    .. math:: R(\theta; x, y) = \lambda \Big(1 - \frac{1}{|x|}\sum_i
              \cos\big(\nabla_x L(h_\theta(x_i), y_i),\; \nabla_x L(h_\theta(x_i + \eta_i), y_i)\big)\Big),
              \qquad \eta_i \sim U[-\epsilon, \epsilon]^d,

    with ``weight`` :math:`= \lambda`. As in their code, only the gradient at the random point is
    differentiated with respect to the weights (double backpropagation); the clean gradient is held
    constant. It costs about two more gradient computations per example than FGSM training alone.
    Use with the zero-init FGSM adversary: ``fit(..., adversary=fgsm(eps),
    regularizer=gradalign(eps, 0.2))``. It needs labels, so not with ``fit(..., unlabelled=...)``.
    """
    eps = check_positive(eps, "eps")
    weight = check_nonnegative(weight, "weight")

    def regularizer(model: nn.Module, x: torch.Tensor, progress: float, y: torch.Tensor | None = None) -> torch.Tensor:
        if y is None:
            raise ValueError("gradalign needs the batch's labels y: it runs on the labelled batch; do not give "
                             "fit(..., unlabelled=...) with it")
        g1 = attacks.input_gradient(model, x, y, lambda logits, t: F.cross_entropy(logits, t, reduction="none"))[0]
        x_eta = (x + attacks.random_delta(x, eps, "inf")).detach().requires_grad_(True)
        loss = F.cross_entropy(model(x_eta).float(), y, reduction="sum")
        (g2,) = torch.autograd.grad(loss, x_eta, create_graph=True)  # differentiated again below
        return weight * (1.0 - _cosine(g1, g2).mean())

    return regularizer


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


def trades(eps: float | Schedule, beta: float, *, steps: int, alpha: float | None = None,
           alpha_ratio: float | None = None, norm: str | float = "inf") -> Regularizer:
    r"""TRADES (Zhang, Yu, Jiao, Xing, El Ghaoui and Jordan, ICML 2019, "Theoretically Principled
    Trade-off between Robustness and Accuracy") as a regulariser for :func:`advlib.train.fit`:
    ``fit(model, data, regularizer=trades(0.3, 1.0, steps=40, alpha=0.01))`` (with
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
    With eps a schedule (e.g. :func:`linear_ramp`; the reference has none), give the step as
    ``alpha_ratio`` so that it follows eps.

    Labels are not used: ``fit`` applies it to the labelled batch, as TRADES does, or to the
    ``unlabelled`` batches when given (semi-supervised TRADES).

    Batch norm: the reference computes the clean and the adversarial predictions of the loss in
    train mode, each pass updating the running statistics (three updates per step: the
    cross-entropy's pass on :math:`x`, then :math:`x'` and :math:`x` again for the KL). Here both
    predictions are in the model's current mode (train mode in ``fit``), so they normalise with the
    statistics of their own batch, as there; but only ``fit``'s cross-entropy pass on :math:`x`
    updates the running statistics, the regulariser's passes leave them alone
    (:func:`advlib.utils.freeze_batch_norm_stats`). The running statistics therefore follow clean
    batches only, where the reference's mix in adversarial ones.

    Args: eps >= 0 or a schedule; beta >= 0, the weight of the KL; steps >= 1; alpha > 0 (absolute) or
    alpha_ratio > 0 (a multiple of eps), the step size, one of them; norm "inf" or 2.
    """
    eps_at = as_schedule(eps)
    beta = check_nonnegative(beta, "beta")
    steps = check_int(steps, "steps", minimum=1)
    if alpha is None and alpha_ratio is None:
        raise ValueError("trades needs a step size: give alpha (absolute) or alpha_ratio (a multiple of eps)")
    alpha_at = step_size(alpha, alpha_ratio, None)
    norm = attacks.normalize_norm(norm)

    def regularizer(model: nn.Module, x: torch.Tensor, progress: float, y: torch.Tensor | None = None) -> torch.Tensor:
        e = eps_at(progress)
        if e <= 0 or beta == 0:
            return x.new_zeros((), dtype=torch.float32 if x.dtype != torch.float64 else x.dtype)
        x_adv = trades_perturbation(model, x, eps=e, alpha=alpha_at(e), steps=steps, norm=norm)
        with freeze_batch_norm_stats(model):
            logits_clean = model(x)
            logits_adv = model(x_adv.to(x.dtype))
        return beta * attacks.kl_divergence(logits_clean, logits_adv).mean()

    return regularizer
