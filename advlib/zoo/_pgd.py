"""Chapter 07's recipes, PGD adversarial training (taught in chapter 07), with their settings:
``robust_mnist`` (the Madry MNIST CNN at eps 0.3), ``standard_cifar`` and ``robust_cifar`` (the small
CIFAR-10 CNN, trained normally and at eps 8/255; PreAct-ResNet18 at the ``paper`` budget).
"""
from __future__ import annotations

from torch import nn

from .. import cache, data
from ._common import RECIPES, _cifar_model, _mnist_cnn, _train_with, recipe

RECIPES.update({
    # Chapter 07: the Madry CNN trained with PGD adversarial training at eps = 0.3 (L-inf).
    # book: 3 PGD steps of eps/2 from a random start, eps ramped up over the first 20% of the steps,
    # Adam with 10% warm-up then linear decay, bf16 autocast where it is native (amp="auto"); 7 epochs =
    # 4,165 steps (the wall time is printed in chapter 07). paper: Madry et al.'s PGD-40, step 0.01, 100k
    # steps at batch 50, Adam 1e-4.
    "robust_mnist": {
        "smoke": dict(n_train=600, n_val=100, epochs=1, batch_size=100, lr=1e-3, optimizer="adam",
                      weight_decay=0.0, schedule="linear", warmup=0.1, eps=0.3, alpha=0.15, steps=2,
                      eps_ramp=0.2, amp=False, evals=1, val_steps=3, seed=0),
        "book": dict(n_train=59500, n_val=500, epochs=7, batch_size=100, lr=1e-3, optimizer="adam",
                     weight_decay=0.0, schedule="linear", warmup=0.1, eps=0.3, alpha=0.15, steps=3,
                     eps_ramp=0.2, amp="auto", evals=7, val_steps=10, seed=0),
        "paper": dict(n_train=59500, n_val=500, epochs=84, batch_size=50, lr=1e-4, optimizer="adam",
                      weight_decay=0.0, schedule="constant", warmup=0.0, eps=0.3, alpha=0.01, steps=40,
                      eps_ramp=0.0, amp=False, evals=84, val_steps=40, seed=0),
    },
    # Chapter 07: the small VGG-style CIFAR-10 CNN (batch norm) trained normally.
    "standard_cifar": {
        "smoke": dict(arch="small_cnn", n_train=500, n_val=100, epochs=1, batch_size=128, lr=1e-3,
                      optimizer="adam", weight_decay=0.0, schedule="linear", warmup=0.1, amp=False, evals=1,
                      seed=0),
        "book": dict(arch="small_cnn", n_train=49500, n_val=500, epochs=4.0, batch_size=128, lr=1e-3,
                     optimizer="adam", weight_decay=0.0, schedule="linear", warmup=0.1, amp="auto", evals=4,
                     seed=0),
        "paper": dict(arch="preact_resnet18", n_train=49500, n_val=500, epochs=200, batch_size=128, lr=0.1,
                      optimizer="sgd", weight_decay=5e-4, schedule="cosine", warmup=0.0, amp=False, evals=50,
                      seed=0),
    },
    # Chapter 07: the same CNN with PGD adversarial training at eps = 8/255 (L-inf): 2 steps of
    # 0.75 eps from a random start, 4 epochs (1,548 steps) at the book budget. paper: Madry et al.'s
    # PGD-7, step 2/255, about 80k steps at batch 128, SGD 0.1 with weight decay (they used a wide
    # ResNet and a piecewise schedule).
    "robust_cifar": {
        "smoke": dict(arch="small_cnn", n_train=500, n_val=100, epochs=1, batch_size=128, lr=1e-3,
                      optimizer="adam", weight_decay=0.0, schedule="linear", warmup=0.1, eps=8 / 255,
                      alpha=6 / 255, steps=1, eps_ramp=0.1, amp=False, evals=1, val_steps=3, seed=0),
        "book": dict(arch="small_cnn", n_train=49500, n_val=500, epochs=4.0, batch_size=128, lr=1e-3,
                     optimizer="adam", weight_decay=0.0, schedule="linear", warmup=0.1, eps=8 / 255,
                     alpha=6 / 255, steps=2, eps_ramp=0.1, amp="auto", evals=8, val_steps=10, seed=0),
        "paper": dict(arch="preact_resnet18", n_train=49500, n_val=500, epochs=205, batch_size=128, lr=0.1,
                      optimizer="sgd", weight_decay=2e-4, schedule="cosine", warmup=0.0, eps=8 / 255,
                      alpha=2 / 255, steps=7, eps_ramp=0.0, amp=False, evals=41, val_steps=10, seed=0),
    },
})


def robust_mnist(*, budget: str | None = None, seed: int | None = None, retrain: bool = False, root=None,
                 verbose: bool = True) -> nn.Module:
    r"""The Madry MNIST CNN trained with PGD adversarial training at :math:`\epsilon = 0.3` (L-inf).
    Chapter 07.

    Each step replaces the batch by :math:`x + \delta^*`, with :math:`\delta^*` from ``steps`` PGD
    steps of size ``alpha`` from a random start (eps and alpha ramped up from 0 over the first
    ``eps_ramp`` of training), then steps the weights on the loss there (Danskin's theorem). At the
    ``book`` budget: 3 steps of 0.15, Adam 1e-3 with warm-up and linear decay, 7 epochs, bf16 autocast
    where the hardware has it natively;
    chapter 07 measures its accuracy, clean and under attack. ``model.meta["history"]`` holds the
    training curve (held-out clean and PGD accuracy, training time).
    """
    cfg = recipe("robust_mnist", budget, seed)

    train = _train_with(cfg, lambda: data.mnist(train=True, root=root), adversarial=True)
    return cache.load_or_train("robust_mnist", _mnist_cnn(cfg), train, cfg, cfg["budget"], retrain, verbose=verbose)


def standard_cifar(*, budget: str | None = None, seed: int | None = None, retrain: bool = False, root=None,
                   verbose: bool = True) -> nn.Module:
    """The small CIFAR-10 CNN (:func:`advlib.models.small_cifar_cnn`) trained without adversarial
    examples; PreAct-ResNet18 at the ``paper`` budget. Chapter 07.

    The offline CIFAR-10 training set is a JPEG-degraded copy (the test set is exact), so test
    accuracy is a little below what the original pixels would give.
    """
    cfg = recipe("standard_cifar", budget, seed)
    train = _train_with(cfg, lambda: data.cifar10(train=True, root=root), adversarial=False)
    return cache.load_or_train("standard_cifar", _cifar_model(cfg), train, cfg, cfg["budget"], retrain,
                               verbose=verbose)


def robust_cifar(*, budget: str | None = None, seed: int | None = None, retrain: bool = False, root=None,
                 verbose: bool = True) -> nn.Module:
    r"""The small CIFAR-10 CNN trained with PGD adversarial training at :math:`\epsilon = 8/255`
    (L-inf); PreAct-ResNet18 with Madry et al.'s PGD-7 at the ``paper`` budget. Chapter 07.

    At the ``book`` budget: 2 PGD steps of 6/255 from a random start, eps ramped over the first 10%,
    Adam 1e-3, bf16 autocast where native, 4 epochs (see ``zoo.RECIPES``).
    """
    cfg = recipe("robust_cifar", budget, seed)
    train = _train_with(cfg, lambda: data.cifar10(train=True, root=root), adversarial=True)
    return cache.load_or_train("robust_cifar", _cifar_model(cfg), train, cfg, cfg["budget"], retrain,
                               verbose=verbose)
