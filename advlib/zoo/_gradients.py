"""Chapter 08's recipes, L2 adversarial training (taught in chapter 08), with their settings:
``robust_mnist_l2`` and ``robust_cifar_l2`` (chapter 07's models trained against an L2 adversary) and
``subset_mnist`` (Tsipras et al.'s Figure 1: the Madry CNN trained on a few or many images, normally
or adversarially).
"""
from __future__ import annotations

from torch import nn

from .. import adversaries, cache, data
from ..train import fit
from ..utils import check_int, check_nonnegative, seed_everything
from . import _pgd  # noqa: F401  robust_cifar's settings, which robust_cifar_l2's are built from
from ._common import RECIPES, cache_name, _cifar_model, _mnist_cnn, _train_with, recipe

RECIPES.update({
    # Chapter 08: the Madry CNN with PGD adversarial training against an L2 adversary, eps = 2.0 (the
    # MNIST scale of Tsipras et al.'s L2 models): 3 normalised-gradient steps of eps/2 from a random
    # start in the L2 ball, eps ramped over the first 20%, Adam with warm-up and linear decay. book: 3
    # epochs (1,785 steps). paper: chapter 07's paper settings with PGD-40 in the L2 ball.
    "robust_mnist_l2": {
        "smoke": dict(n_train=600, n_val=100, epochs=1, batch_size=100, lr=1e-3, optimizer="adam",
                      weight_decay=0.0, schedule="linear", warmup=0.1, norm="2", eps=2.0, alpha=1.0, steps=2,
                      eps_ramp=0.2, amp=False, evals=1, val_steps=3, seed=0),
        "book": dict(n_train=59500, n_val=500, epochs=3, batch_size=100, lr=1e-3, optimizer="adam",
                     weight_decay=0.0, schedule="linear", warmup=0.1, norm="2", eps=2.0, alpha=1.0, steps=3,
                     eps_ramp=0.2, amp="auto", evals=3, val_steps=10, seed=0),
        "paper": dict(n_train=59500, n_val=500, epochs=84, batch_size=50, lr=1e-4, optimizer="adam",
                      weight_decay=0.0, schedule="constant", warmup=0.0, norm="2", eps=2.0, alpha=0.125, steps=40,
                      eps_ramp=0.0, amp=False, evals=84, val_steps=40, seed=0),
    },
    # Chapter 08: Tsipras et al.'s Figure 1 on MNIST: the Madry CNN trained on n_train images (an
    # argument of the recipe) for a fixed number of steps, normally (eps = 0) or against the L2 PGD
    # adversary of robust_mnist_l2 at eps (the other argument), to compare clean test accuracy.
    "subset_mnist": {
        "smoke": dict(steps=20, batch_size=50, lr=1e-3, warmup=0.1, pgd_steps=2, amp=False, seed=0),
        "book": dict(steps=400, batch_size=100, lr=1e-3, warmup=0.1, pgd_steps=3, amp="auto", seed=0),
        "paper": dict(steps=4000, batch_size=100, lr=1e-3, warmup=0.1, pgd_steps=10, amp=False, seed=0),
    },
})


# Chapter 08: chapter 07's small CIFAR-10 CNN with PGD adversarial training against an L2 adversary,
# eps = 0.5 (the usual CIFAR-10 L2 radius; Tsipras et al.'s seed repository used 0.314): robust_cifar's
# recipe at every budget with the L-inf ball replaced by the L2 ball. smoke and book: steps of 0.75 eps,
# as robust_cifar's; paper: Madry et al.'s L2 PGD-7 step, 0.1.
_CIFAR_L2_ALPHA = {"smoke": 0.375, "book": 0.375, "paper": 0.1}
RECIPES["robust_cifar_l2"] = {
    budget: {**cfg, "norm": "2", "eps": 0.5, "alpha": _CIFAR_L2_ALPHA[budget]}
    for budget, cfg in RECIPES["robust_cifar"].items()
}


def robust_mnist_l2(*, budget: str | None = None, seed: int | None = None, retrain: bool = False, root=None,
                    verbose: bool = True) -> nn.Module:
    r"""The Madry MNIST CNN trained with PGD adversarial training against an L2 adversary,
    :math:`\|\delta\|_2 \le \epsilon = 2.0`. Chapter 08.

    The inner maximum is approximated by ``steps`` steps along the normalised gradient,
    :math:`\delta \leftarrow \Pi_{\|\delta\|_2 \le \epsilon}(\delta + \alpha\, g / \|g\|_2)`,
    from a random start in the ball (:func:`advlib.attacks.pgd` with ``norm=2``). At the ``book``
    budget: 3 steps of eps/2, eps ramped over the first 20%, Adam 1e-3 with warm-up and linear decay,
    3 epochs, bf16 autocast where native. ``model.meta["history"]`` holds held-out clean and L2 PGD-10
    accuracy and the training time.
    """
    cfg = recipe("robust_mnist_l2", budget, seed)

    train = _train_with(cfg, lambda: data.mnist(train=True, root=root), adversarial=True)
    return cache.load_or_train("robust_mnist_l2", _mnist_cnn(cfg), train, cfg, cfg["budget"], retrain, verbose=verbose)


def robust_cifar_l2(*, budget: str | None = None, seed: int | None = None, retrain: bool = False, root=None,
                    verbose: bool = True) -> nn.Module:
    r"""The small CIFAR-10 CNN of :func:`robust_cifar` trained with PGD adversarial training against an
    L2 adversary, :math:`\|\delta\|_2 \le \epsilon = 0.5`; PreAct-ResNet18 at the ``paper`` budget.
    Chapter 08.

    At the ``book`` budget: 2 normalised-gradient steps of 0.375 from a random start in the L2 ball,
    eps ramped over the first 10%, Adam 1e-3 with warm-up and linear decay, bf16 autocast where
    native, 4 epochs: :func:`robust_cifar`'s schedule with the L-inf ball replaced by the L2 ball.
    ``model.meta["history"]`` holds held-out clean and L2 PGD-10 accuracy and the training time.
    """
    cfg = recipe("robust_cifar_l2", budget, seed)
    train = _train_with(cfg, lambda: data.cifar10(train=True, root=root), adversarial=True)
    return cache.load_or_train("robust_cifar_l2", _cifar_model(cfg), train, cfg, cfg["budget"], retrain,
                               verbose=verbose)


def subset_mnist(n_train: int, eps: float = 0.0, *, budget: str | None = None, seed: int | None = None,
                 retrain: bool = False, root=None, verbose: bool = True) -> nn.Module:
    r"""The Madry MNIST CNN trained on ``n_train`` seeded training images for the recipe's fixed number
    of steps: normally when ``eps`` is 0, else with L2 PGD adversarial training at ``eps`` (``pgd_steps``
    steps of eps/2 from a random start, as :func:`robust_mnist_l2`). For Tsipras et al.'s Figure 1:
    with few training images adversarial training can help clean accuracy, with many it costs some.
    ``model.meta["history"]`` has one row, at the end (training loss and accuracy, training time).
    """
    n_train = check_int(n_train, "n_train", minimum=1)
    eps = float(check_nonnegative(eps, "eps"))
    cfg = recipe("subset_mnist", budget, seed)
    cfg.update(n_train=n_train, eps=eps)

    def train(model: nn.Module):
        seed_everything(cfg["seed"])
        train_set = data.mnist(train=True, root=root)
        if n_train > len(train_set):
            raise ValueError(f"n_train must be at most {len(train_set)}, got {n_train}")
        train_set = train_set.subset(n_train, seed=cfg["seed"])
        adversary = None
        if eps > 0:
            adversary = adversaries.pgd(eps, alpha=eps / 2, steps=cfg["pgd_steps"], norm="2")
        batch_size = min(cfg["batch_size"], n_train)
        per_epoch = -(-n_train // batch_size)  # batches per pass, the last one partial
        return fit(model, train_set, epochs=cfg["steps"] / per_epoch, batch_size=batch_size, lr=cfg["lr"],
                   warmup=cfg["warmup"],
                   adversary=adversary, evals=1, amp=cfg["amp"], seed=cfg["seed"])

    return cache.load_or_train(cache_name("subset_mnist", n_train, f"eps{eps:g}"), _mnist_cnn(cfg), train, cfg, cfg["budget"], retrain,
                               verbose=verbose)
