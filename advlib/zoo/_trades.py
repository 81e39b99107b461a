"""TRADES recipes (Zhang et al., 2019), beside chapter 07's PGD training: ``trades_mnist(beta)`` and
``trades_cifar(beta)``, the networks and budgets of ``robust_mnist`` and ``robust_cifar`` trained on the
clean cross-entropy plus ``beta`` times the KL between the clean and the perturbed prediction
(:func:`advlib.adversaries.trades`); ``beta`` is the trade-off knob of the accuracy-robustness
frontier.
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from .. import cache, data
from ..utils import check_positive
from ._common import RECIPES, cache_name, _cifar_model, _mnist_cnn, _train_with, recipe

RECIPES.update({
    # TRADES on MNIST, TRADES-style at smoke and book: robust_mnist's network, data, optimiser, schedule,
    # eps ramp and inner steps (2 / 3 signed steps of eps/2 on the KL, where the paper takes 40 of
    # 0.01), so the two are compared at about the same cost. paper: the reference's inner maximisation
    # (40 steps of 0.01), beta 1, SGD 0.01 with momentum, 100 epochs at batch 128; its learning-rate
    # drops (epochs 55, 75, 90) are replaced by the piecewise schedule (x0.1 at half, x0.01 at three
    # quarters) and its small CNN by the Madry CNN (SGD's momentum is 0.9, as in the reference).
    "trades_mnist": {
        "smoke": {**RECIPES["robust_mnist"]["smoke"], "beta": 1.0},
        "book": {**RECIPES["robust_mnist"]["book"], "beta": 1.0},
        "paper": dict(n_train=59500, n_val=500, epochs=100, batch_size=128, lr=0.01, optimizer="sgd",
                      weight_decay=0.0, schedule="piecewise", warmup=0.0, eps=0.3, alpha=0.01, steps=40,
                      eps_ramp=0.0, amp=False, evals=50, val_steps=40, seed=0, beta=1.0),
    },
    # TRADES on CIFAR-10, TRADES-style at smoke and book: robust_cifar's small CNN, budget and inner
    # steps, beta 6 (the paper's CIFAR-10 value). paper: PreAct-ResNet18 (the paper: WideResNet-34-10),
    # 10 steps of 0.007 at eps 0.031, beta 6, SGD 0.1 with weight decay 2e-4, 100 epochs with the
    # piecewise schedule (the reference: 76 epochs, one drop at epoch 75).
    "trades_cifar": {
        "smoke": {**RECIPES["robust_cifar"]["smoke"], "beta": 6.0},
        "book": {**RECIPES["robust_cifar"]["book"], "beta": 6.0},
        "paper": dict(arch="preact_resnet18", n_train=49500, n_val=500, epochs=100, batch_size=128, lr=0.1,
                      optimizer="sgd", weight_decay=2e-4, schedule="piecewise", warmup=0.0, eps=0.031,
                      alpha=0.007, steps=10, eps_ramp=0.0, amp=False, evals=25, val_steps=10, seed=0, beta=6.0),
    },
})


def trades_mnist(beta: float | None = None, *, budget: str | None = None, seed: int | None = None,
                 retrain: bool = False, root=None, verbose: bool = True) -> nn.Module:
    r"""The Madry MNIST CNN trained with TRADES at :math:`\epsilon = 0.3` (L-inf):

    .. math:: \min_\theta \mathbb E\Big[\mathrm{CE}(f_\theta(x), y) + \beta\,
              \max_{\|x' - x\|_\infty \le \epsilon} \mathrm{KL}\big(f_\theta(x) \,\|\, f_\theta(x')\big)\Big],

    the inner maximum by signed steps on the KL from :math:`x + 0.001\,N(0, I)`. ``beta`` (default the
    recipe's, 1.0 as in the paper for MNIST) trades clean accuracy for robustness and enters the cache
    name. At ``smoke`` and ``book`` the network, data, optimiser and inner steps are
    :func:`robust_mnist`'s (TRADES-style: 3 steps of 0.15, not the paper's 40 of 0.01); ``paper``
    follows the reference's inner maximisation and optimiser, with the differences listed in
    ``zoo.RECIPES["trades_mnist"]``'s comment. ``model.meta["history"]`` holds held-out clean and PGD
    accuracy.
    """
    return _trades("trades_mnist", _mnist_cnn, lambda: data.mnist(train=True, root=root), beta, budget, retrain,
                   verbose, seed)


def trades_cifar(beta: float | None = None, *, budget: str | None = None, seed: int | None = None,
                 retrain: bool = False, root=None, verbose: bool = True) -> nn.Module:
    r"""Chapter 07's small CIFAR-10 CNN (PreAct-ResNet18 at ``paper``) trained with TRADES at
    :math:`\epsilon = 8/255` (L-inf), the loss of :func:`trades_mnist`; ``beta`` default 6.0 (the
    paper's CIFAR-10 value). TRADES-style at ``smoke`` and ``book``: :func:`robust_cifar`'s budget and
    inner steps (2 of 6/255, not the paper's 10 of 0.007); ``paper``: the reference's inner
    maximisation, beta and SGD, with the differences listed in ``zoo.RECIPES["trades_cifar"]``'s comment.
    """
    return _trades("trades_cifar", _cifar_model, lambda: data.cifar10(train=True, root=root), beta, budget,
                   retrain, verbose, seed)


def _trades(name: str, build: Callable[[dict], Callable[[], nn.Module]], load: Callable[[], data.ImageData],
            beta: float | None, budget: str | None, retrain: bool, verbose: bool, seed: int | None) -> nn.Module:
    """The TRADES recipe ``name`` with ``beta`` (default the recipe's), cached as ``<name>_beta<beta>``."""
    cfg = recipe(name, budget, seed)
    if beta is not None:
        cfg["beta"] = check_positive(beta, "beta")
    train = _train_with(cfg, load, adversarial=True)
    return cache.load_or_train(cache_name(name, f"beta{cfg['beta']:g}"), build(cfg), train, cfg, cfg["budget"], retrain,
                               verbose=verbose)
