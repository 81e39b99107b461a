r"""Fast adversarial training and how it fails: catastrophic overfitting, its diagnostics and its cures.

Single-step adversarial training replaces the inner maximum of Madry et al.'s saddle-point problem by
one signed gradient step. With FGSM from a random start (Wong, Rice and Kolter, 2020, "Fast is better
than free") the adversary is

.. math:: \delta_0 \sim U[-\epsilon, \epsilon]^d,\qquad
          \delta = \Pi_{[-\epsilon,\epsilon]^d}\big(\delta_0 + \alpha\,\mathrm{sign}(\nabla_x L(h(x + \delta_0), y))\big),

two gradient computations per example per step instead of PGD-:math:`K`'s :math:`K + 1`. Its
failure mode is *catastrophic overfitting*: within a few hundred steps the model becomes robust to
the single step it trains on and to nothing else (accuracy under FGSM rises while accuracy under PGD
falls to about zero), because the loss surface stops being linear inside the eps-ball, so the
gradient at one point no longer says where the loss is high a step away.

This module holds what chapter 09 adds on top of :func:`advlib.train.fit`:

- :func:`fgsm_diagnostics`: the numbers that show the collapse (accuracy under FGSM and PGD, the
  cosine between the FGSM and the PGD perturbation, the loss the FGSM step gains, and the *gradient
  alignment* :math:`\cos(\nabla_x L(x), \nabla_x L(x + \eta))`, :math:`\eta \sim U[-\epsilon,\epsilon]^d`);
- :class:`RobustEarlyStopping`: Wong et al.'s cure, PGD on a fixed training batch after each
  evaluation, keeping the weights where it was highest;
- :func:`gradalign_regularizer`: Andriushchenko and Flammarion's (2020) cure, a penalty
  :math:`\lambda\,(1 - \cos(\nabla_x L(x), \nabla_x L(x + \eta)))` that keeps the loss locally linear;
- :class:`APARTAdversary`: an APART-style adversary (Li, Liu, Dong and Shang, 2020) whose step size and
  random-start scale are learned by gradient ascent on the training loss.

Taught in :ref:`ch-fast-training`.
"""
from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn
import torch.nn.functional as F

from . import attacks
from .evaluate import Accuracy, attack as _attack, correct_mask, robust_accuracy
from .utils import check_images, check_int, check_labels, check_nonnegative, check_positive, eval_mode, new_generator


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-example cosine between two batches of tensors (0 where either is 0)."""
    a, b = a.flatten(1).float(), b.flatten(1).float()
    return F.cosine_similarity(a, b, dim=1, eps=1e-12)


def _ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y, reduction="none")


def _input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``grad_x sum_i CE(model(x_i), y_i)``, detached (:func:`advlib.attacks.input_gradient`)."""
    return attacks.input_gradient(model, x, y, _ce)[0]


def gradient_alignment(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Per example: :math:`\cos(\nabla_x L(h(x), y), \nabla_x L(h(x + \eta), y))` with
    :math:`\eta \sim U[-\epsilon, \epsilon]^d` (not clipped to the box, as in Andriushchenko and
    Flammarion). Near 1 where the loss is locally linear; it falls when single-step training is about
    to overfit catastrophically. The model's mode and parameter gradients are left as they were.

    Taught in :ref:`ch-fast-training`.
    """
    eps = check_nonnegative(eps, "eps")
    check_images(x, "x", bounds=None)
    check_labels(y, x.shape[0], "y")
    eta = attacks.random_delta(x, eps, "inf", generator)
    with eval_mode(model):
        g1 = _input_gradient(model, x, y)
        g2 = _input_gradient(model, x + eta, y)
    return _cosine(g1, g2).detach()


def input_gradient_sign(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""Per pixel, :math:`\mathrm{sign}(\nabla_x L(h(x), y))` as int8 (-1, 0, 1): the direction FGSM
    steps in (before the box clips it). Chapter 09 shows it epoch by epoch. Mode and parameter
    gradients are left as they were.

    Taught in :ref:`ch-fast-training`.
    """
    check_labels(y, x.shape[0], "y")
    with eval_mode(model):
        return _input_gradient(model, x, y).sign().to(torch.int8)


@torch.no_grad()
def _mean_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model(x).float(), y, reduction="none")


def fgsm_diagnostics(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, pgd_steps: int = 10,
                     pgd_restarts: int = 1, seed: int = 0) -> dict[str, float]:
    r"""What a single step sees of the eps-ball, on ``(x, y)``:

    - ``fgsm_acc``, ``pgd_acc``: accuracy (right clean and under the attack) under FGSM at ``eps``
      and under PGD-``pgd_steps`` (step ``2.5 eps / steps``, random start);
    - ``cos_fgsm_pgd``: mean cosine between the FGSM perturbation :math:`x_{fgsm} - x` and the PGD one;
    - ``fgsm_loss_gain`` and ``pgd_loss_gain``: mean cross-entropy gained by each perturbation;
    - ``grad_alignment``: the mean of :func:`gradient_alignment`.

    A model that has overfit catastrophically has ``fgsm_acc`` high, ``pgd_acc`` near 0, a small FGSM
    loss gain beside a large PGD one, and low gradient alignment. Seeded by ``seed`` (the random
    starts), so two calls on the same model agree.

    Taught in :ref:`ch-fast-training`.
    """
    eps = check_nonnegative(eps, "eps")
    check_images(x, "x")
    check_labels(y, x.shape[0], "y")
    check_int(pgd_steps, "pgd_steps", minimum=1)
    generator = new_generator(seed)
    x_fgsm = attacks.fgsm(model, x, y, eps=eps)
    x_pgd = attacks.pgd(model, x, y, eps=eps, steps=pgd_steps, restarts=pgd_restarts, generator=generator)
    with eval_mode(model):
        clean, l_fgsm, l_pgd = _mean_loss(model, x, y), _mean_loss(model, x_fgsm, y), _mean_loss(model, x_pgd, y)
    clean_ok = correct_mask(model, x, y)
    return {
        "fgsm_acc": float(Accuracy.of(clean_ok & correct_mask(model, x_fgsm, y))),
        "pgd_acc": float(Accuracy.of(clean_ok & correct_mask(model, x_pgd, y))),
        "cos_fgsm_pgd": float(_cosine(x_fgsm - x, x_pgd - x).mean()),
        "fgsm_loss_gain": float((l_fgsm - clean).mean()),
        "pgd_loss_gain": float((l_pgd - clean).mean()),
        "grad_alignment": float(gradient_alignment(model, x, y, eps, generator=generator).mean()),
    }


class RobustEarlyStopping:
    r"""Wong et al.'s early stopping for fast adversarial training, as a ``callback`` of
    :func:`advlib.train.fit`: after each evaluation, accuracy under PGD-``steps`` (random start,
    step ``2.5 eps / steps``) on a fixed batch of *training* images ``(x, y)``; the weights where it
    was highest are kept, and ``restore`` loads them into the model after training.

    Wong et al. stop training once that accuracy falls (they used PGD-5 on one training batch); here
    training runs on, so that a chapter can show the whole collapse, and ``best_row`` says where the
    stopped run would have ended (its cost is the training time up to there). Each evaluation adds
    ``es_pgd_acc`` to the history row.

    Example: ``es = RobustEarlyStopping(x_batch, y_batch, eps=0.3); fit(..., callback=es); es.restore(model)``

    Taught in :ref:`ch-fast-training`.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, eps: float, *, steps: int = 5, seed: int = 0) -> None:
        check_images(x, "x")
        check_labels(y, x.shape[0], "y")
        self.x, self.y = x, y
        self.eps = check_positive(eps, "eps")
        self.steps = check_int(steps, "steps", minimum=1)
        self.seed = seed
        self.best_acc: float = -1.0
        self.best_row: dict | None = None
        self.best_state: dict[str, torch.Tensor] | None = None

    def __call__(self, model: nn.Module, row: dict) -> None:
        generator = new_generator(self.seed)
        pgd = _attack("pgd", eps=self.eps, steps=self.steps, generator=generator)
        acc = float(robust_accuracy(model, self.x, self.y, pgd))
        row["es_pgd_acc"] = acc
        if acc > self.best_acc:
            self.best_acc, self.best_row = acc, dict(row)
            self.best_state = copy.deepcopy({k: v.detach().clone() for k, v in model.state_dict().items()})

    def restore(self, model: nn.Module) -> dict:
        """Load the best weights seen into ``model``; return the history row where they were seen."""
        if self.best_state is None:
            raise RuntimeError("RobustEarlyStopping.restore: no evaluation has run yet; pass the object as "
                               "fit(..., callback=...) and train first")
        model.load_state_dict(self.best_state)
        return dict(self.best_row)


def gradalign_regularizer(eps: float, weight: float) -> Callable[[nn.Module, torch.Tensor, float, torch.Tensor], torch.Tensor]:
    r"""GradAlign (Andriushchenko and Flammarion, 2020) as a labelled regulariser for
    :func:`advlib.train.fit`:

    .. math:: R(\theta; x, y) = \lambda \Big(1 - \frac{1}{|x|}\sum_i
              \cos\big(\nabla_x L(h_\theta(x_i), y_i),\; \nabla_x L(h_\theta(x_i + \eta_i), y_i)\big)\Big),
              \qquad \eta_i \sim U[-\epsilon, \epsilon]^d,

    with ``weight`` :math:`= \lambda`. As in their code, only the gradient at the random point is
    differentiated with respect to the weights (double backpropagation); the clean gradient is held
    constant. It costs about two more gradient computations per example than FGSM training alone.
    Use with the zero-init FGSM adversary: ``fit(..., adversary=fgsm_adversary(eps),
    regularizer=gradalign_regularizer(eps, 0.2))``.

    Taught in :ref:`ch-fast-training`.
    """
    eps = check_positive(eps, "eps")
    weight = check_nonnegative(weight, "weight")

    def regularizer(model: nn.Module, x: torch.Tensor, progress: float, y: torch.Tensor) -> torch.Tensor:
        g1 = _input_gradient(model, x, y)
        x_eta = (x + attacks.random_delta(x, eps, "inf")).detach().requires_grad_(True)
        loss = F.cross_entropy(model(x_eta).float(), y, reduction="sum")
        (g2,) = torch.autograd.grad(loss, x_eta, create_graph=True)  # differentiated again below
        return weight * (1.0 - _cosine(g1, g2).mean())

    regularizer.uses_labels = True
    return regularizer


class APARTAdversary:
    r"""An APART-style adversary (Li, Liu, Dong and Shang, 2020): FGSM from a start whose *step size*
    :math:`\alpha` and *start scale* :math:`\sigma` are parameters, learned by gradient ascent on the
    training loss as the model trains,

    .. math:: \delta = \Pi_{[-\epsilon,\epsilon]^d}\big(\sigma\,u + \alpha\,\mathrm{sign}(\nabla_x L(h(x + \sigma u), y))\big),
              \qquad \alpha \leftarrow \alpha + \eta_\alpha\, \partial_\alpha L(h(x + \delta), y)

    (and the same for :math:`\sigma`), each kept in ``[0, 2 eps]`` and ``[0, eps]``. With
    ``weight_decay`` :math:`\lambda > 0` the ascent is on :math:`L - \tfrac{\lambda}{2}(\alpha^2 + \sigma^2)`,
    which holds each parameter where the loss's pull :math:`\partial_\alpha L` equals
    :math:`\lambda\alpha` instead of letting it run to the bound (the paper's code uses a weight
    decay of 400 on its SGD steps, for the same reason). The returned
    input carries the graph back to :math:`\alpha` and :math:`\sigma`, so the training step's backward
    fills their gradients; the adversary takes its ascent step (Adam, learning rate ``lr``) at its
    next call. ``history`` records ``(alpha, sigma)`` after every step.

    The start direction :math:`u \in [-1, 1]^d` is fresh uniform noise for every batch, or, with
    ``n_examples`` (the size of the training set), the paper's *per-example stored initialisation*:
    one :math:`u_i` per training example (uniform at first), carried from epoch to epoch and, after
    each step on example :math:`i`, moved by the sign of the input gradient at its adversarial input
    (which the training step's backward computes anyway):

    .. math:: u_i \leftarrow \mathrm{clip}_{[-1, 1]}\big(u_i + (\alpha / \sigma)\,
              \mathrm{sign}(\nabla_x L(h(x_i + \delta_i), y_i))\big),

    so the start :math:`\sigma u_i` accumulates one more ascent step per epoch (as ATTA's
    accumulated perturbations, on which the paper's code builds). Then the adversary has
    ``uses_indices = True`` and :func:`advlib.train.fit` hands it each batch's example indices; the
    update of a batch is applied at the next call, once the step's backward has filled the gradient.

    Where it differs from the paper's code: their steps are SGD with momentum on :math:`\alpha` and
    :math:`\sigma` with a cyclic learning rate (up to :math:`5\cdot10^{-8}`) and weight decay 400,
    from :math:`10^{-4}`; here Adam from ``alpha`` and ``sigma`` (default eps each), with
    ``weight_decay`` (default 0) as above. Their learned layer-wise perturbations (a signed
    step inside each residual block) are not here: the chapter's CNN has no residual blocks, and
    the input perturbation is the one every evaluation attacks. What is here is the idea the paper
    names first: the perturbation generator has parameters (and, with ``n_examples``, a memory) that
    strengthen as training goes on.

    Taught in :ref:`ch-fast-training`.
    """

    def __init__(self, eps: float, *, alpha: float | None = None, sigma: float | None = None,
                 lr: float = 1e-3, weight_decay: float = 0.0, n_examples: int | None = None) -> None:
        self.eps = check_positive(eps, "eps")
        a0 = 1.0 * self.eps if alpha is None else check_positive(alpha, "alpha")
        s0 = 1.0 * self.eps if sigma is None else check_nonnegative(sigma, "sigma")
        self.alpha = torch.tensor(float(a0), requires_grad=True)
        self.sigma = torch.tensor(float(s0), requires_grad=True)
        # maximize=True negates the loss's gradient before the decay is added: ascent on L - wd/2 |p|^2
        self.optimizer = torch.optim.Adam([self.alpha, self.sigma], lr=check_positive(lr, "lr"),
                                          maximize=True, weight_decay=check_nonnegative(weight_decay, "weight_decay"))
        self.history: list[tuple[float, float]] = []
        self.n_examples = None if n_examples is None else check_int(n_examples, "n_examples", minimum=1)
        self.uses_indices = self.n_examples is not None
        self.starts: torch.Tensor | None = None  # u_i of every example, made at the first call
        self._pending: tuple[torch.Tensor, torch.Tensor] | None = None  # (indices, adversarial input)

    def _ascend(self) -> None:
        if self.alpha.grad is not None or self.sigma.grad is not None:
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            with torch.no_grad():
                self.alpha.clamp_(1e-4, 2 * self.eps)
                self.sigma.clamp_(0.0, self.eps)
            self.history.append((self.alpha.item(), self.sigma.item()))

    def _update_starts(self) -> None:
        """Move the stored starts of the last batch by the sign of the gradient at its adversarial
        input (when the training step's backward filled it)."""
        if self._pending is None:
            return
        index, x_in = self._pending
        self._pending = None
        if x_in.grad is not None:
            ratio = self.alpha.item() / max(self.sigma.item(), 1e-7)
            step = ratio * x_in.grad.sign().to(self.starts.device, self.starts.dtype)
            self.starts[index] = (self.starts[index] + step).clamp_(-1.0, 1.0)

    def _start_directions(self, x: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
        if not self.uses_indices:
            return torch.empty_like(x).uniform_(-1.0, 1.0)
        if index is None:
            raise ValueError("this APARTAdversary stores a start per example (n_examples was given): call it "
                             "with index= (advlib.train.fit does)")
        index = index.to(x.device)
        if index.shape != x.shape[:1] or index.dtype != torch.long:
            raise ValueError(f"index must hold one long index per image ({x.shape[0]}), got "
                             f"{tuple(index.shape)} {index.dtype}")
        if self.starts is None:
            self.starts = torch.empty((self.n_examples, *x.shape[1:]), device=x.device).uniform_(-1.0, 1.0)
        elif self.starts.shape[1:] != x.shape[1:]:
            raise ValueError(f"x must have the image shape this APARTAdversary stores starts for, "
                             f"{tuple(self.starts.shape[1:])}, got {tuple(x.shape[1:])}; use one adversary per data set")
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= self.n_examples):
            raise ValueError(f"index must be in [0, n_examples = {self.n_examples}), got "
                             f"[{int(index.min())}, {int(index.max())}]")
        return self.starts[index].to(x.dtype)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, progress: float,
                 index: torch.Tensor | None = None) -> torch.Tensor:
        if self.uses_indices:
            self._update_starts()  # before the ascent step: the update reads the alpha it was made with
        self._ascend()
        alpha, sigma = self.alpha.to(x.device), self.sigma.to(x.device)
        u = self._start_directions(x, index)
        start = torch.clamp(x + sigma.detach() * u, 0.0, 1.0)
        with eval_mode(model):
            grad = _input_gradient(model, start, y)
        delta = torch.clamp(sigma * u + alpha * grad.sign(), -self.eps, self.eps)
        x_in = torch.clamp(x + delta, 0.0, 1.0)
        if self.uses_indices:
            x_in.retain_grad()  # the training step's backward fills x_in.grad, read at the next call
            self._pending = (index, x_in)
        return x_in
