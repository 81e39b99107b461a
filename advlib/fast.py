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
- in :mod:`advlib.adversaries`, with everything else ``fit`` trains against: GradAlign
  (Andriushchenko and Flammarion, 2020), a penalty
  :math:`\lambda\,(1 - \cos(\nabla_x L(x), \nabla_x L(x + \eta)))` that keeps the loss locally
  linear (:func:`advlib.adversaries.gradalign`), and an APART-style adversary (Li, Liu, Dong and
  Shang, 2020) whose step size and random-start scale are learned by gradient ascent on the
  training loss (:class:`advlib.adversaries.APART`).

Taught in :ref:`ch-fast-training`.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
import torch.nn.functional as F

from . import attacks
from .evaluate import Accuracy, attack as _attack, correct_mask, robust_accuracy
# the old names of GradAlign and APART, until chapter 09 moves to advlib.adversaries
from ._aliases import APARTAdversary, gradalign_regularizer  # noqa: F401
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
