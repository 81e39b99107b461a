"""Named model recipes that train once and then load from :mod:`advlib.cache`.

Each recipe fixes its settings per budget (``smoke`` / ``book`` / ``paper``), so a chapter asks for
``zoo.standard_mnist()`` or ``zoo.robust_mnist()`` and gets the same model the earlier chapter
trained. The settings are part of the cache key: changing a recipe retrains it.

A recipe is an entry point, like a chapter's setup cell: it seeds the global random state with its
``seed`` before building the model (and before training it), so that the model it caches is the one
its settings describe. Nothing else in ``advlib`` reseeds the global random state. Every recipe takes
``seed=``: ``None`` (the default) keeps the recipe's own seed and so every existing cache key; another
seed trains (and caches) another run of the same recipe, and :func:`over_seeds` trains or loads a
recipe over several seeds and tabulates a metric across them, with the mean and its interval. Only
the training is reseeded: the chapter-03 recipes keep their corpus split.

Recipes: ``standard_mnist`` (chapter 00), ``arae_sentiment`` and ``sentiment_language_model``
(chapter 03), ``robust_mnist``, ``standard_cifar`` and ``robust_cifar`` (chapter 07), ``fast_mnist``
and ``fast_cifar`` (chapter 09, one per fast-training method), ``robust_overfitting_mnist`` and
``robust_overfitting_cifar`` (chapter 09), ``robust_mnist_l2``, ``robust_cifar_l2`` and ``subset_mnist`` (chapter 08),
``plain_large_mnist``, ``extended_mnist``, ``iat_mnist`` and ``extended_cifar`` (chapter 10). The robust ones
solve Madry et al.'s saddle-point problem

.. math:: \\min_\\theta \\mathbb{E}_{(x, y)} \\Big[\\max_{\\|\\delta\\|_\\infty \\le \\epsilon} L(h_\\theta(x + \\delta), y)\\Big]

with the inner maximum approximated by a few PGD steps (:func:`advlib.train.pgd_adversary`).

From the command line, ``python -m advlib.zoo train NAME [--budget B]`` trains a recipe and caches it;
under ``torchrun --nproc_per_node=N -m advlib.zoo train NAME`` the recipes that train with
:func:`advlib.train.fit` (``standard_mnist``, ``robust_mnist``, ``robust_mnist_l2``, ``subset_mnist``,
``standard_cifar``, ``robust_cifar``) train
data-parallel on N processes (:mod:`advlib.distributed`), with the same settings and cache key. The
chapter-03 and chapter-09 recipes train in one process only.
"""
from __future__ import annotations

import time
from typing import Callable, Sequence

import pandas as pd
import torch
from torch import nn

from .. import budget as _budget
from .. import arae, cache, data, distributed, fast, large_eps, models, stats, text
from ..evaluate import Accuracy, accuracy, attack as _attack, correct_mask, robust_mask
from ..train import fgsm_adversary, fgsm_rs_adversary, fit, pgd_adversary, recompute_batch_norm, vat_regularizer
from ..utils import check_int, check_positive, get_device, new_generator, seed_everything

RECIPES: dict[str, dict[str, dict]] = {
    # Chapter 00: the Madry CNN trained normally on MNIST.
    "standard_mnist": {
        "smoke": dict(n_train=4000, epochs=1, batch_size=64, lr=1e-3, seed=0),
        "book": dict(n_train=60000, epochs=3, batch_size=128, lr=1e-3, seed=0),
        "paper": dict(n_train=60000, epochs=10, batch_size=50, lr=1e-3, seed=0),
    },
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
    # Chapter 09: the Madry CNN trained on MNIST at eps = 0.3 with a single-step (or a cheap) adversary;
    # ``method`` (an argument of the recipe, see FAST_METHODS) picks the adversary. Wong et al.'s MNIST
    # settings: batch 100, Adam with a cyclic learning rate (up to lr over the first 40% of the steps,
    # then down to 0; the "linear" schedule with warmup 0.4), evaluated twice an epoch on 500 held-out
    # images (diagnostics of catastrophic overfitting: advlib.fast.fgsm_diagnostics). book: 6 epochs
    # (Wong et al. ran 10). paper: their 10 epochs.
    "fast_mnist": {
        "smoke": dict(n_train=1000, n_val=100, epochs=1, batch_size=100, lr=5e-3, warmup=0.4, eps=0.3,
                      amp=False, evals=2, diag_steps=2, es_steps=2, n_snapshots=3, seed=0),
        "book": dict(n_train=59500, n_val=500, epochs=6, batch_size=100, lr=5e-3, warmup=0.4, eps=0.3,
                     amp="auto", evals=12, diag_steps=10, es_steps=5, n_snapshots=3, seed=0),
        "paper": dict(n_train=59500, n_val=500, epochs=10, batch_size=100, lr=5e-3, warmup=0.4, eps=0.3,
                      amp=False, evals=20, diag_steps=40, es_steps=5, n_snapshots=3, seed=0),
    },
    # Chapter 09 on CIFAR-10: chapter 07's small CNN with the fast_mnist adversaries (FAST_METHODS) at
    # eps (an argument of the recipe; 8/255 by default), Adam with the cyclic learning rate of
    # fast_mnist, batch 128, evaluated twice an epoch on 500 held-out images. book: 8 epochs on 10,000
    # images. paper: Wong et al.'s 15 epochs on the whole training set (they train PreAct-ResNet18
    # with SGD, cyclic up to 0.2).
    "fast_cifar": {
        "smoke": dict(arch="small_cnn", n_train=500, n_val=100, epochs=1, batch_size=128, lr=2e-3, warmup=0.4,
                      eps=8 / 255, amp=False, evals=2, diag_steps=2, es_steps=2, n_snapshots=3, seed=0),
        "book": dict(arch="small_cnn", n_train=10000, n_val=500, epochs=8, batch_size=128, lr=2e-3, warmup=0.4,
                     eps=8 / 255, amp="auto", evals=16, diag_steps=10, es_steps=5, n_snapshots=3, seed=0),
        "paper": dict(arch="preact_resnet18", n_train=49500, n_val=500, epochs=15, batch_size=128, lr=2e-3,
                      warmup=0.4, eps=8 / 255, amp=False, evals=30, diag_steps=20, es_steps=5, n_snapshots=3,
                      seed=0),
    },
    # Chapter 09: robust overfitting (Rice, Wong & Kolter, 2020). PGD-7 training of the Madry CNN at
    # eps = 0.3 (ramped over the first eps_ramp of training) on a small subset of MNIST for many
    # epochs, with their piecewise learning-rate decay (x0.1 at half of training, x0.01 at three
    # quarters; they train 200 epochs and decay at 100 and 150). Evaluated ``evals`` times under
    # PGD-``eval_steps``: on n_val held-out training images (the early-stopping set), on n_curve of
    # the training subset, and on n_test seeded test images (the test curve).
    "robust_overfitting_mnist": {
        "smoke": dict(n_train=200, n_val=100, n_curve=100, n_test=100, epochs=2, batch_size=50, lr=1e-3,
                      eps=0.3, eps_ramp=0.2, steps=2, eval_steps=2, amp=False, evals=2, seed=0),
        "book": dict(n_train=1000, n_val=500, n_curve=500, n_test=1000, epochs=100, batch_size=50, lr=1e-3,
                     eps=0.3, eps_ramp=0.2, steps=7, eval_steps=10, amp="auto", evals=25, seed=0),
        "paper": dict(n_train=1000, n_val=500, n_curve=1000, n_test=10000, epochs=200, batch_size=50, lr=1e-3,
                      eps=0.3, eps_ramp=0.2, steps=7, eval_steps=20, amp=False, evals=100, seed=0),
    },
    # Chapter 09: the same experiment on CIFAR-10 with chapter 07's small CNN at eps = 8/255 (PGD steps of
    # 2.5 eps / steps from a random start). book: 1,000 images, 100 epochs. paper: Rice et al.'s 200
    # epochs of PGD-10 on the whole training set, PreAct ResNet-18 (they use SGD 0.1; here Adam).
    "robust_overfitting_cifar": {
        "smoke": dict(arch="small_cnn", n_train=200, n_val=100, n_curve=100, n_test=100, epochs=2, batch_size=50,
                      lr=1e-3, eps=8 / 255, eps_ramp=0.1, steps=2, eval_steps=2, amp=False, evals=2, seed=0),
        "book": dict(arch="small_cnn", n_train=1000, n_val=500, n_curve=500, n_test=500, epochs=100,
                     batch_size=50, lr=1e-3, eps=8 / 255, eps_ramp=0.1, steps=5, eval_steps=10, amp="auto",
                     evals=20, seed=0),
        "paper": dict(arch="preact_resnet18", n_train=49500, n_val=500, n_curve=1000, n_test=10000, epochs=200,
                      batch_size=128, lr=1e-3, eps=8 / 255, eps_ramp=0.0, steps=10, eval_steps=20, amp=False,
                      evals=100, seed=0),
    },
    # Chapter 03: adversarially regularised autoencoders on the sentiment corpus (sentences of at most
    # max_len tokens rated at least 0.5 from neutral), one LSTM decoder per sentiment. book: the
    # reference code's sizes (embedding and LSTM 128, noise 32, MLPs 128) on a vocabulary of the
    # tokens seen twice; Adam for the autoencoder instead of SGD at lr 1 (see arae.make_optimizers).
    # ``variant`` (an argument of the recipe) sets the two weights.
    "arae_sentiment": {
        "smoke": dict(max_len=12, vocab_size=2000, min_count=3, n_test=300, embed=32, hidden=64, code=32,
                      noise=16, mlp=64, steps=250, batch_size=32, critic_steps=2, noise_std=0.1, lr=1e-2,
                      seed=0),
        "book": dict(max_len=15, vocab_size=8000, min_count=2, n_test=1000, embed=128, hidden=128, code=128,
                     noise=32, mlp=128, steps=3000, batch_size=64, critic_steps=5, noise_std=0.1, lr=3e-3,
                     seed=0),
        "paper": dict(max_len=25, vocab_size=30000, min_count=1, n_test=1000, embed=128, hidden=128, code=128,
                      noise=32, mlp=128, steps=100000, batch_size=64, critic_steps=5, noise_std=0.1, lr=1e-3,
                      seed=0),
    },
    # Chapter 03: an LSTM language model of the same training sentences (the corpus settings are
    # arae_sentiment's, and part of this recipe's cache key too), to score fluency by perplexity.
    "sentiment_language_model": {
        "smoke": dict(embed=32, hidden=64, steps=60, batch_size=32, lr=3e-3, seed=0),
        "book": dict(embed=128, hidden=256, steps=2000, batch_size=64, lr=2e-3, seed=0),
        "paper": dict(embed=128, hidden=256, steps=20000, batch_size=64, lr=2e-3, seed=0),
    },
}


# Chapter 08: chapter 07's small CIFAR-10 CNN with PGD adversarial training against an L2 adversary,
# eps = 0.5 (the usual CIFAR-10 L2 radius; Tsipras et al.'s seed repository used 0.314): robust_cifar's
# recipe at every budget with the L-inf ball replaced by the L2 ball. smoke and book: steps of 0.75 eps,
# as robust_cifar's; paper: Madry et al.'s L2 PGD-7 step, 0.1.
_CIFAR_L2_ALPHA = {"smoke": 0.375, "book": 0.375, "paper": 0.1}
RECIPES["robust_cifar_l2"] = {
    budget: {**cfg, "norm": "2", "eps": 0.5, "alpha": _CIFAR_L2_ALPHA[budget]}
    for budget, cfg in RECIPES["robust_cifar"].items()
}


def recipe(name: str, budget: str | None = None, seed: int | None = None) -> dict:
    """The settings of recipe ``name`` at ``budget`` (default: the active budget); ``seed``, when
    given, replaces the recipe's own (``None`` keeps it, and with it every existing cache key).

    Taught in :ref:`ch-preliminaries`.
    """
    if name not in RECIPES:
        raise ValueError(f"name must be one of {sorted(RECIPES)}, got {name!r}")
    cfg = dict(_budget.pick(budget, **RECIPES[name]))
    if seed is not None:
        cfg["seed"] = check_int(seed, "seed")
    return cfg


def over_seeds(recipe_fn: Callable[..., nn.Module], seeds: Sequence[int], metric: Callable[[nn.Module], float],
               **kwargs) -> tuple[pd.DataFrame, "stats.SeedMean"]:
    """Train (or load) ``recipe_fn(**kwargs, seed=s)`` for each seed in ``seeds`` and measure
    ``metric(model)`` on each: returns a table (``seed``, ``value``, and ``n``, ``ci_low``, ``ci_high``
    when the metric is an :class:`~advlib.evaluate.Accuracy`) and the mean over seeds with its Student-t
    interval (:func:`advlib.stats.seed_mean`; at least 2 seeds).

    Example: ``table, mean = zoo.over_seeds(zoo.fast_mnist, [0, 1, 2], lambda m: accuracy(m, x, y), method="fgsm")``

    Taught in :ref:`ch-fast-training`.
    """
    seeds = [check_int(s, "seeds") for s in seeds]
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must hold at least 2 different seeds, got {seeds}")
    rows = []
    for s in seeds:
        value = metric(recipe_fn(**kwargs, seed=s))
        row = {"seed": s, "value": float(value)}
        if isinstance(value, Accuracy):
            row.update(n=value.n, ci_low=value.low, ci_high=value.high)
        rows.append(row)
    table = pd.DataFrame(rows)
    return table, stats.seed_mean(table["value"].to_numpy())


def standard_mnist(budget: str | None = None, retrain: bool = False, root=None, verbose: bool = True, *, seed: int | None = None) -> nn.Module:
    """The Madry MNIST CNN trained without adversarial examples (Adam, linear decay). Chapter 00.

    At the ``book`` budget: 3 epochs over the 60k training images, about 99% test accuracy.

    Taught in :ref:`ch-preliminaries`.
    """
    cfg = recipe("standard_mnist", budget, seed)

    def train(model: nn.Module):
        seed_everything(cfg["seed"])
        train_set = data.mnist(train=True, root=root)
        if cfg["n_train"] < len(train_set):
            train_set = train_set.subset(cfg["n_train"], seed=cfg["seed"])
        return fit(model, train_set, epochs=cfg["epochs"], batch_size=cfg["batch_size"], lr=cfg["lr"],
                   seed=cfg["seed"])

    return cache.load_or_train("standard_mnist", _mnist_cnn(cfg), train, cfg, cfg["budget"], retrain, verbose=verbose)


# ---------------------------------------------------------------------------- chapter 07 recipes
def _split(train_set: data.ImageData, cfg: dict) -> tuple[data.ImageData, data.ImageData]:
    """``n_train`` training images and ``n_val`` held-out validation images (disjoint, seeded)."""
    n_train, n_val = cfg["n_train"], cfg["n_val"]
    if n_train + n_val > len(train_set):
        raise ValueError(f"n_train + n_val must be at most {len(train_set)}, got {n_train} + {n_val}")
    val, rest = train_set.split(n_val, seed=cfg["seed"])
    return (rest if n_train == len(rest) else rest.subset(n_train, seed=cfg["seed"])), val


def _train_with(cfg: dict, load: Callable[[], data.ImageData], adversarial: bool) -> Callable[[nn.Module], object]:
    """A ``train(model)`` for :func:`advlib.cache.load_or_train`: :func:`advlib.train.fit` with the
    recipe's settings, a PGD adversary when ``adversarial``, and a held-out validation set (clean,
    and under PGD-``val_steps`` at ``eps`` when ``adversarial``) evaluated ``evals`` times."""

    def train(model: nn.Module):
        seed_everything(cfg["seed"])
        train_set, val_set = _split(load(), cfg)
        val = val_set.tensors(device=get_device())
        adversary = val_attack = None
        if adversarial:
            norm = cfg.get("norm", "inf")  # the L-inf recipes predate the key: absent, it is "inf"
            adversary = pgd_adversary(cfg["eps"], alpha=cfg["alpha"], steps=cfg["steps"], norm=norm,
                                      eps_ramp=cfg["eps_ramp"])
            val_attack = _attack("pgd", eps=cfg["eps"], steps=cfg["val_steps"], norm=norm)
        return fit(model, train_set, epochs=cfg["epochs"], batch_size=cfg["batch_size"], lr=cfg["lr"],
                   optimizer=cfg["optimizer"], weight_decay=cfg["weight_decay"], schedule=cfg["schedule"],
                   warmup=cfg["warmup"], adversary=adversary, val=val, val_attack=val_attack, evals=cfg["evals"],
                   amp=cfg["amp"], seed=cfg["seed"])

    return train


def _mnist_cnn(cfg: dict) -> Callable[[], nn.Module]:
    """A ``build()`` for :func:`advlib.cache.load_or_train`: the Madry MNIST CNN, seeded by the recipe."""

    def build() -> nn.Module:
        torch.manual_seed(cfg["seed"])
        return models.mnist_cnn()

    return build


def _cifar_model(cfg: dict) -> Callable[[], nn.Module]:
    archs = {"small_cnn": models.small_cifar_cnn, "preact_resnet18": models.preact_resnet18}
    if cfg["arch"] not in archs:
        raise ValueError(f"arch must be one of {sorted(archs)}, got {cfg['arch']!r}")
    options = {}
    if "width" in cfg:
        if cfg["arch"] != "small_cnn":
            raise ValueError(f"width is an option of arch 'small_cnn' only, not of {cfg['arch']!r}")
        options["width"] = check_int(cfg["width"], "width", minimum=1)

    def build() -> nn.Module:
        torch.manual_seed(cfg["seed"])
        return archs[cfg["arch"]](**options)

    return build


def robust_mnist(budget: str | None = None, retrain: bool = False, root=None, verbose: bool = True, *, seed: int | None = None) -> nn.Module:
    r"""The Madry MNIST CNN trained with PGD adversarial training at :math:`\epsilon = 0.3` (L-inf).
    Chapter 07.

    Each step replaces the batch by :math:`x + \delta^*`, with :math:`\delta^*` from ``steps`` PGD
    steps of size ``alpha`` from a random start (eps and alpha ramped up from 0 over the first
    ``eps_ramp`` of training), then steps the weights on the loss there (Danskin's theorem). At the
    ``book`` budget: 3 steps of 0.15, Adam 1e-3 with warm-up and linear decay, 7 epochs, bf16 autocast
    where the hardware has it natively;
    about 90% accuracy under PGD-50 with restarts and 99% clean (see chapter 07 for the measured numbers). ``model.meta["history"]`` holds the
    training curve (held-out clean and PGD accuracy, wall time).

    Taught in :ref:`ch-pgd-training`.
    """
    cfg = recipe("robust_mnist", budget, seed)

    train = _train_with(cfg, lambda: data.mnist(train=True, root=root), adversarial=True)
    return cache.load_or_train("robust_mnist", _mnist_cnn(cfg), train, cfg, cfg["budget"], retrain, verbose=verbose)


def standard_cifar(budget: str | None = None, retrain: bool = False, root=None, verbose: bool = True, *, seed: int | None = None) -> nn.Module:
    """The small CIFAR-10 CNN (:func:`advlib.models.small_cifar_cnn`) trained without adversarial
    examples; PreAct-ResNet18 at the ``paper`` budget. Chapter 07.

    The offline CIFAR-10 training set is a JPEG-degraded copy (the test set is exact), so test
    accuracy is a little below what the original pixels would give.

    Taught in :ref:`ch-pgd-training`.
    """
    cfg = recipe("standard_cifar", budget, seed)
    train = _train_with(cfg, lambda: data.cifar10(train=True, root=root), adversarial=False)
    return cache.load_or_train("standard_cifar", _cifar_model(cfg), train, cfg, cfg["budget"], retrain,
                               verbose=verbose)


def robust_cifar(budget: str | None = None, retrain: bool = False, root=None, verbose: bool = True, *, seed: int | None = None) -> nn.Module:
    r"""The small CIFAR-10 CNN trained with PGD adversarial training at :math:`\epsilon = 8/255`
    (L-inf); PreAct-ResNet18 with Madry et al.'s PGD-7 at the ``paper`` budget. Chapter 07.

    At the ``book`` budget: 2 PGD steps of 6/255 from a random start, eps ramped over the first 10%,
    Adam 1e-3, bf16 autocast where native, 4 epochs (see ``zoo.RECIPES``).

    Taught in :ref:`ch-pgd-training`.
    """
    cfg = recipe("robust_cifar", budget, seed)
    train = _train_with(cfg, lambda: data.cifar10(train=True, root=root), adversarial=True)
    return cache.load_or_train("robust_cifar", _cifar_model(cfg), train, cfg, cfg["budget"], retrain,
                               verbose=verbose)


# ---------------------------------------------------------------------------- chapter 08 recipes
def robust_mnist_l2(budget: str | None = None, retrain: bool = False, root=None, verbose: bool = True, *, seed: int | None = None) -> nn.Module:
    r"""The Madry MNIST CNN trained with PGD adversarial training against an L2 adversary,
    :math:`\|\delta\|_2 \le \epsilon = 2.0`. Chapter 08.

    The inner maximum is approximated by ``steps`` steps along the normalised gradient,
    :math:`\delta \leftarrow \Pi_{\|\delta\|_2 \le \epsilon}(\delta + \alpha\, g / \|g\|_2)`,
    from a random start in the ball (:func:`advlib.attacks.pgd` with ``norm=2``). At the ``book``
    budget: 3 steps of eps/2, eps ramped over the first 20%, Adam 1e-3 with warm-up and linear decay,
    3 epochs, bf16 autocast where native. ``model.meta["history"]`` holds held-out clean and L2 PGD-10
    accuracy and the wall time.

    Taught in :ref:`ch-robust-gradients`.
    """
    cfg = recipe("robust_mnist_l2", budget, seed)

    train = _train_with(cfg, lambda: data.mnist(train=True, root=root), adversarial=True)
    return cache.load_or_train("robust_mnist_l2", _mnist_cnn(cfg), train, cfg, cfg["budget"], retrain, verbose=verbose)


def robust_cifar_l2(budget: str | None = None, retrain: bool = False, root=None, verbose: bool = True, *, seed: int | None = None) -> nn.Module:
    r"""The small CIFAR-10 CNN of :func:`robust_cifar` trained with PGD adversarial training against an
    L2 adversary, :math:`\|\delta\|_2 \le \epsilon = 0.5`; PreAct-ResNet18 at the ``paper`` budget.
    Chapter 08.

    At the ``book`` budget: 2 normalised-gradient steps of 0.375 from a random start in the L2 ball,
    eps ramped over the first 10%, Adam 1e-3 with warm-up and linear decay, bf16 autocast where
    native, 4 epochs: :func:`robust_cifar`'s schedule with the L-inf ball replaced by the L2 ball.
    ``model.meta["history"]`` holds held-out clean and L2 PGD-10 accuracy and the wall time.

    Taught in :ref:`ch-robust-gradients`.
    """
    cfg = recipe("robust_cifar_l2", budget, seed)
    train = _train_with(cfg, lambda: data.cifar10(train=True, root=root), adversarial=True)
    return cache.load_or_train("robust_cifar_l2", _cifar_model(cfg), train, cfg, cfg["budget"], retrain,
                               verbose=verbose)


def subset_mnist(n_train: int, eps: float = 0.0, budget: str | None = None, retrain: bool = False, root=None,
                 verbose: bool = True, *, seed: int | None = None) -> nn.Module:
    r"""The Madry MNIST CNN trained on ``n_train`` seeded training images for the recipe's fixed number
    of steps: normally when ``eps`` is 0, else with L2 PGD adversarial training at ``eps`` (``pgd_steps``
    steps of eps/2 from a random start, as :func:`robust_mnist_l2`). For Tsipras et al.'s Figure 1:
    with few training images adversarial training can help clean accuracy, with many it costs some.
    ``model.meta["history"]`` has one row, at the end (training loss and accuracy, wall time).

    Taught in :ref:`ch-robust-gradients`.
    """
    n_train = check_int(n_train, "n_train", minimum=1)
    eps = float(check_positive(eps, "eps"))
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
            adversary = pgd_adversary(eps, alpha=eps / 2, steps=cfg["pgd_steps"], norm="2")
        batch_size = min(cfg["batch_size"], n_train)
        per_epoch = -(-n_train // batch_size)  # batches per pass, the last one partial
        return fit(model, train_set, epochs=cfg["steps"] / per_epoch, batch_size=batch_size, lr=cfg["lr"],
                   warmup=cfg["warmup"],
                   adversary=adversary, evals=1, amp=cfg["amp"], seed=cfg["seed"])

    return cache.load_or_train(f"subset_mnist_{n_train}_eps{eps:g}", _mnist_cnn(cfg), train, cfg, cfg["budget"], retrain,
                               verbose=verbose)


# ---------------------------------------------------------------------------- chapter 09 recipes
FAST_METHODS: dict[str, dict] = {
    # method -> the adversary of fast_mnist, its step ``alpha`` as a multiple of eps, and extras
    "fgsm": dict(adversary="fgsm", alpha=1.0),                  # FGSM from x itself (no random start)
    "fgsm_rs": dict(adversary="fgsm_rs", alpha=1.25),           # Wong et al.: random start, step 1.25 eps
    "fgsm_rs_es": dict(adversary="fgsm_rs", alpha=1.25, early_stopping=True),  # ... + their early stopping
    # ... with the random start not clipped to the image box, as in Wong et al.'s code
    "fgsm_rs_unclipped": dict(adversary="fgsm_rs", alpha=1.25, clip_start=False),
    "gradalign": dict(adversary="fgsm", alpha=1.0, gradalign=1.0),  # Andriushchenko & Flammarion
    "apart": dict(adversary="apart", alpha=1.0, sigma=1.0, apart_lr=1e-3),  # learned step and start scale
    # ... and a start stored per training example, moved each epoch (the paper's per-example initialisation)
    "apart_stored": dict(adversary="apart", alpha=1.0, sigma=1.0, apart_lr=1e-3, stored_starts=True),
    # ... and a weight decay on alpha and sigma, as the paper's code has. 0.4 was set once, not tuned: on
    # the (robust) fgsm_rs model the loss's pull on alpha at alpha = eps (sigma = eps / 2, 1,000 training
    # images) is about 0.11, so the decay, 0.4 alpha, outweighs it there and holds alpha below eps
    "apart_wd": dict(adversary="apart", alpha=1.0, sigma=1.0, apart_lr=1e-3, stored_starts=True, apart_wd=0.4),
    "pgd3": dict(adversary="pgd", alpha=0.5, steps=3),          # multi-step peers, for the cost table
    "pgd7": dict(adversary="pgd", alpha=2.5 / 7, steps=7),
}


def _fast_adversary(cfg: dict, n_examples: int):
    """The adversary of a chapter-09 recipe's ``cfg`` for a training set of ``n_examples`` images."""
    eps, kind = cfg["eps"], cfg["adversary"]
    if kind == "fgsm":
        return fgsm_adversary(cfg["alpha"] * eps)
    if kind == "fgsm_rs":
        return fgsm_rs_adversary(eps, alpha=cfg["alpha"] * eps, clip_start=cfg.get("clip_start", True))
    if kind == "pgd":
        return pgd_adversary(eps, alpha=cfg["alpha"] * eps, steps=cfg["steps"])
    return fast.APARTAdversary(eps, alpha=cfg["alpha"] * eps, sigma=cfg["sigma"] * eps, lr=cfg["apart_lr"],
                               weight_decay=cfg.get("apart_wd", 0.0),
                               n_examples=n_examples if cfg.get("stored_starts") else None)


def _untimed(callback: Callable[[nn.Module, dict], None]) -> Callable[[nn.Module, dict], None]:
    """A :func:`advlib.train.fit` callback that runs ``callback`` and keeps the time spent in it (in
    this and every earlier call) out of the history's ``time_s``, which then counts training only."""
    spent = [0.0]  # seconds spent in the callback so far

    def timed(net: nn.Module, row: dict) -> None:
        start = time.perf_counter()
        row["time_s"] = round(row["time_s"] - spent[0], 1)  # training time only
        callback(net, row)
        spent[0] += time.perf_counter() - start

    return timed


def _unpack_meta(model: nn.Module, key: str) -> nn.Module:
    """For a recipe whose training returned ``{"history": ..., key: ...}`` (which the cache keeps whole
    as the history): move ``key`` to ``model.meta[key]`` and leave the history table in
    ``model.meta["history"]``. A model whose training returned the history alone is left as it is."""
    hist = model.meta.get("history", {})
    if isinstance(hist, dict) and key in hist:
        model.meta[key] = hist[key]
        model.meta["history"] = hist["history"]
    return model


def fast_mnist(method: str = "fgsm_rs", *, alpha: float | None = None, lr: float | None = None,
               epochs: float | None = None, n_train: int | None = None, seed: int | None = None,
               gradalign: float | None = None, budget: str | None = None, retrain: bool = False, root=None,
               verbose: bool = True) -> nn.Module:
    r"""The Madry MNIST CNN trained at :math:`\epsilon = 0.3` (L-inf) with the adversary ``method``,
    one of ``FAST_METHODS``: ``"fgsm"`` (no random start, step eps), ``"fgsm_rs"`` (Wong et al.'s FGSM
    from a random start, step 1.25 eps), ``"fgsm_rs_unclipped"`` (the same, with the gradient taken at
    the unclipped random start, as in their code: ``clip_start=False`` of
    :func:`advlib.train.fgsm_rs_adversary`), ``"fgsm_rs_es"`` (the same run with their early stopping:
    the returned weights are those of the evaluation where PGD-``es_steps`` accuracy on a fixed
    training batch of 500 images was highest), ``"gradalign"`` (FGSM plus the GradAlign penalty),
    ``"apart"`` (:class:`advlib.fast.APARTAdversary`), ``"apart_stored"`` (the same with a start stored
    per training example, its ``n_examples``), ``"apart_wd"`` (that, with a weight decay on the
    adversary's two parameters), and the multi-step peers ``"pgd3"`` and ``"pgd7"``.
    ``alpha`` (a multiple of eps), ``lr``, ``epochs``, ``n_train``, ``seed`` and, for ``"gradalign"``,
    the penalty's weight ``gradalign`` (default 1) override the recipe (and enter the cache key), for
    sweeps.

    ``model.meta["history"]`` has a row per evaluation: the training columns of
    :func:`advlib.train.fit`, the held-out diagnostics of :func:`advlib.fast.fgsm_diagnostics`
    (``val_acc``, ``fgsm_acc``, ``pgd_acc``, ``cos_fgsm_pgd``, the loss gains, ``grad_alignment``),
    ``fgsm_sign`` (the sign of the input gradient of ``n_snapshots`` fixed held-out images, the FGSM
    direction), ``time_s`` (training time, evaluations excluded), and per method ``es_pgd_acc`` or
    APART's ``alpha`` and ``sigma``. ``model.meta["early_stopping"]`` is the row the early-stopped
    weights come from.

    Taught in :ref:`ch-fast-training`.
    """
    return _fast_recipe("fast_mnist", method, _mnist_cnn, lambda: data.mnist(train=True, root=root), budget,
                        retrain, verbose, alpha=alpha, lr=lr, epochs=epochs, n_train=n_train, seed=seed,
                        gradalign=gradalign)


def fast_cifar(method: str = "fgsm", *, eps: float | None = None, alpha: float | None = None,
               lr: float | None = None, epochs: float | None = None, n_train: int | None = None,
               width: int | None = None, seed: int | None = None, budget: str | None = None,
               retrain: bool = False, root=None, verbose: bool = True) -> nn.Module:
    r"""Chapter 07's small CIFAR-10 CNN trained at ``eps`` (L-inf; the recipe's default unless given)
    with the fast-training adversary ``method``, one of ``FAST_METHODS`` (see :func:`fast_mnist`),
    and the same diagnostics in ``model.meta["history"]`` (``fgsm_sign`` of ``n_snapshots`` held-out
    images, 3 x 32 x 32 each). Adam with the cyclic learning rate of :func:`fast_mnist`, batch 128.
    ``eps``, ``alpha`` (a multiple of eps), ``lr``, ``epochs``, ``n_train``, ``width`` (the small
    CNN's first-layer channels, 32 if not given; cost grows as its square) and ``seed`` override the
    recipe and enter the cache key. It asks whether catastrophic overfitting shows on CIFAR-10 at
    the scale a CPU allows (chapter 09 compares width 32 with width 64).

    Taught in :ref:`ch-fast-training`.
    """
    return _fast_recipe("fast_cifar", method, _cifar_model, lambda: data.cifar10(train=True, root=root), budget,
                        retrain, verbose, eps=eps, alpha=alpha, lr=lr, epochs=epochs, n_train=n_train, width=width,
                        seed=seed)


def _fast_recipe(name: str, method: str, build: Callable[[dict], Callable[[], nn.Module]],
                 load: Callable[[], data.ImageData], budget: str | None, retrain: bool, verbose: bool,
                 **overrides) -> nn.Module:
    """The chapter-09 recipe ``name`` for ``method``: its settings (with the overrides that are not
    None), trained by :func:`_fast_train` on ``load()`` or loaded from the cache as
    ``<name>_<method>``, with the early-stopping row unpacked into ``model.meta``."""
    cfg = _fast_config(name, method, budget, **overrides)
    model = cache.load_or_train(f"{name}_{method}", build(cfg), _fast_train(name, cfg, load), cfg, cfg["budget"],
                                retrain, verbose=verbose)
    return _unpack_meta(model, "early_stopping")


def _fast_config(name: str, method: str, budget: str | None, **overrides) -> dict:
    """The settings of the chapter-09 recipe ``name`` for ``method`` (FAST_METHODS), with the
    overrides that are not None."""
    if method not in FAST_METHODS:
        raise ValueError(f"method must be one of {sorted(FAST_METHODS)}, got {method!r}")
    cfg = recipe(name, budget)
    cfg.update(method=method, **FAST_METHODS[method])
    if overrides.get("gradalign") is not None and method != "gradalign":
        raise ValueError(f"gradalign= is the weight of the GradAlign penalty, for method='gradalign' only, "
                         f"not {method!r}")
    for key, value in overrides.items():
        if value is not None:
            cfg[key] = value
    return cfg


def _fast_train(name: str, cfg: dict, load: Callable[[], data.ImageData]) -> Callable[[nn.Module], object]:
    """A ``train(model)`` for the fast-training recipes: :func:`advlib.train.fit` with the method's
    adversary (and regulariser), the held-out diagnostics after each evaluation and, for the
    early-stopping methods, Wong et al.'s early stopping."""

    def train(model: nn.Module):
        _one_process_only(name, "its early-stopping callback")
        seed_everything(cfg["seed"])
        train_set, val_set = _split(load(), cfg)
        device = get_device()
        xv, yv = val_set.tensors(device=device)
        xs, ys = xv[:cfg["n_snapshots"]], yv[:cfg["n_snapshots"]]
        adversary = _fast_adversary(cfg, len(train_set))
        regularizer = fast.gradalign_regularizer(cfg["eps"], cfg["gradalign"]) if "gradalign" in cfg else None
        stopper = None
        if cfg.get("early_stopping"):
            xt, yt = train_set.subset(min(500, len(train_set)), seed=cfg["seed"] + 1).tensors(device=device)
            stopper = fast.RobustEarlyStopping(xt, yt, cfg["eps"], steps=cfg["es_steps"])

        def callback(net: nn.Module, row: dict) -> None:
            row["val_acc"] = float(accuracy(net, xv, yv))
            row.update(fast.fgsm_diagnostics(net, xv, yv, cfg["eps"], pgd_steps=cfg["diag_steps"], seed=cfg["seed"]))
            row["fgsm_sign"] = fast.input_gradient_sign(net, xs, ys).tolist()
            if isinstance(adversary, fast.APARTAdversary):
                row["alpha"], row["sigma"] = adversary.alpha.item(), adversary.sigma.item()
            if stopper is not None:  # last, so that the row it keeps is complete
                stopper(net, row)

        history = fit(model, train_set, epochs=cfg["epochs"], batch_size=cfg["batch_size"], lr=cfg["lr"],
                      warmup=cfg["warmup"], adversary=adversary, regularizer=regularizer, evals=cfg["evals"],
                      amp=cfg["amp"], seed=cfg["seed"], callback=_untimed(callback))
        if stopper is not None:
            return {"history": history, "early_stopping": stopper.restore(model)}
        return history

    return train


def robust_overfitting_mnist(budget: str | None = None, retrain: bool = False, root=None,
                             verbose: bool = True, *, seed: int | None = None) -> nn.Module:
    r"""The Madry MNIST CNN trained with PGD-7 at :math:`\epsilon = 0.3` on a small subset of MNIST
    (``n_train`` images) for many epochs with Rice et al.'s piecewise learning-rate decay
    (:func:`advlib.loops.lr_factor`), the setting in which Rice et al. saw *robust overfitting*
    (robust accuracy on the training images keeps rising while on test images it peaks and falls).
    The returned weights are the last ones.

    ``model.meta["history"]`` has a row per evaluation: the training columns of
    :func:`advlib.train.fit`, ``time_s`` (training time, evaluations excluded) and, under
    PGD-``eval_steps`` (random start, step :math:`2.5\epsilon/\text{steps}`, a fixed seed) at the
    full eps: ``val_pgd_acc`` on ``n_val`` held-out training images (the set early stopping reads),
    ``train_pgd_acc`` on ``n_curve`` images of the training subset, and ``test_acc``, ``test_pgd_acc``
    and ``test_pgd_correct`` (a count, for intervals) on ``n_test`` seeded test images.

    Taught in :ref:`ch-fast-training`.
    """
    cfg = recipe("robust_overfitting_mnist", budget, seed)
    train = _robust_overfitting_train("robust_overfitting_mnist", cfg, lambda train: data.mnist(train=train, root=root))
    return cache.load_or_train("robust_overfitting_mnist", _mnist_cnn(cfg), train, cfg, cfg["budget"], retrain,
                               verbose=verbose)


def robust_overfitting_cifar(budget: str | None = None, retrain: bool = False, root=None,
                             verbose: bool = True, *, seed: int | None = None) -> nn.Module:
    r"""Chapter 07's small CIFAR-10 CNN in :func:`robust_overfitting_mnist`'s experiment: PGD training at
    :math:`\epsilon = 8/255` on a small subset of CIFAR-10 for many epochs with Rice et al.'s
    piecewise learning-rate decay, and the same curves in ``model.meta["history"]``. The returned
    weights are the last ones.

    Taught in :ref:`ch-fast-training`.
    """
    cfg = recipe("robust_overfitting_cifar", budget, seed)
    train = _robust_overfitting_train("robust_overfitting_cifar", cfg,
                                      lambda train: data.cifar10(train=train, root=root))
    return cache.load_or_train("robust_overfitting_cifar", _cifar_model(cfg), train, cfg, cfg["budget"], retrain,
                               verbose=verbose)


def _robust_overfitting_train(name: str, cfg: dict,
                              load: Callable[[bool], data.ImageData]) -> Callable[[nn.Module], object]:
    """A ``train(model)`` for the robust-overfitting recipes: PGD training on ``n_train`` images with
    the piecewise schedule, and the PGD curves on held-out, training and test images (``load(True)``
    is the training set, ``load(False)`` the test set)."""

    def train(model: nn.Module):
        _one_process_only(name, "its evaluation callback")
        seed_everything(cfg["seed"])
        train_set, val_set = _split(load(True), cfg)
        test_set = load(False).subset(cfg["n_test"], seed=cfg["seed"])
        device = get_device()
        xv, yv = val_set.tensors(device=device)
        xc, yc = train_set.subset(min(cfg["n_curve"], len(train_set)), seed=cfg["seed"] + 1).tensors(device=device)
        xt, yt = test_set.tensors(device=device)

        def robust(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            generator = new_generator(cfg["seed"])
            pgd = _attack("pgd", eps=cfg["eps"], steps=cfg["eval_steps"], generator=generator)
            return robust_mask(net, x, y, pgd)

        def callback(net: nn.Module, row: dict) -> None:
            row["val_pgd_acc"] = float(robust(net, xv, yv).float().mean())
            row["train_pgd_acc"] = float(robust(net, xc, yc).float().mean())
            row["test_acc"] = float(correct_mask(net, xt, yt).float().mean())
            correct = int(robust(net, xt, yt).sum())
            row["test_pgd_correct"], row["test_pgd_acc"] = correct, correct / len(yt)

        adversary = pgd_adversary(cfg["eps"], steps=cfg["steps"], eps_ramp=cfg["eps_ramp"])
        return fit(model, train_set, epochs=cfg["epochs"], batch_size=cfg["batch_size"], lr=cfg["lr"],
                   schedule="piecewise", warmup=0.0, adversary=adversary, evals=cfg["evals"], amp=cfg["amp"],
                   seed=cfg["seed"], callback=_untimed(callback))

    return train


# ---------------------------------------------------------------------------- chapter 10 recipes
# Chapter 10: the Madry CNN trained at the large eps 0.4 (L-inf) three ways. Each budget's settings
# per recipe; the PGD steps are ``step_ratio * eps / steps`` at the eps of the moment
# (advlib.large_eps.scheduled_pgd_adversary), and the held-out set is evaluated with PGD-``val_steps``
# at the final eps. The paper (Shaeiri et al.) trains with Adam 1e-3 at batch 128: 30 epochs at 0.3
# (PGD-40, step 0.01) then 5 at 0.4 (PGD-200, step 0.005); IAT 40 epochs from scratch, eps 0.01 per
# epoch up to 0.4, PGD steps 2.5 eps / 0.01 of 0.01.
_LARGE_MNIST_COMMON = {
    "smoke": dict(n_train=600, n_val=100, batch_size=100, lr=1e-3, warmup=0.1, eps=0.4, amp=False,
                  evals=1, val_steps=3, seed=0),
    "book": dict(n_train=59500, n_val=500, batch_size=100, lr=1e-3, warmup=0.1, eps=0.4, amp="auto",
                 val_steps=10, seed=0),
    "paper": dict(n_train=59500, n_val=500, batch_size=128, lr=1e-3, warmup=0.0, eps=0.4, amp=False,
                  val_steps=40, seed=0),
}
RECIPES["plain_large_mnist"] = {  # from scratch at 0.4, no ramp: the failure the chapter starts from
    "smoke": {**_LARGE_MNIST_COMMON["smoke"], "epochs": 1, "steps": 2, "step_ratio": 1.5, "stages": 1},
    "book": {**_LARGE_MNIST_COMMON["book"], "epochs": 0.5, "steps": 3, "step_ratio": 1.5, "stages": 1, "evals": 4},
    "paper": {**_LARGE_MNIST_COMMON["paper"], "epochs": 30, "steps": 40, "step_ratio": 1.0, "stages": 1,
              "evals": 30},
}
RECIPES["extended_mnist"] = {  # robust_mnist (0.3), then training at 0.4
    "smoke": {**_LARGE_MNIST_COMMON["smoke"], "epochs": 1, "steps": 2, "step_ratio": 2.5, "stages": 1},
    "book": {**_LARGE_MNIST_COMMON["book"], "lr": 5e-4, "epochs": 3, "steps": 10, "step_ratio": 2.5,
             "stages": 1, "evals": 6},
    "paper": {**_LARGE_MNIST_COMMON["paper"], "epochs": 5, "steps": 200, "step_ratio": 2.5, "stages": 1,
              "evals": 5},
}
RECIPES["iat_mnist"] = {  # from scratch, eps growing in equal stages up to 0.4
    "smoke": {**_LARGE_MNIST_COMMON["smoke"], "epochs": 1, "steps": 2, "step_ratio": 1.5, "stages": 2},
    "book": {**_LARGE_MNIST_COMMON["book"], "epochs": 1.5, "steps": 3, "step_ratio": 1.5, "stages": 8, "evals": 8},
    "paper": {**_LARGE_MNIST_COMMON["paper"], "epochs": 40, "steps": 40, "step_ratio": 1.0, "stages": 40,
              "evals": 40},
}
# Chapter 10, CIFAR-10: robust_cifar (8/255), then training at a larger eps (an argument of the
# recipe, 16/255 or 32/255). The paper: 5 epochs, SGD 1e-3, step 2/255.
RECIPES["extended_cifar"] = {
    "smoke": dict(n_train=500, n_val=100, epochs=1, batch_size=128, lr=1e-3, optimizer="adam", warmup=0.1,
                  steps=1, step_ratio=1.5, amp=False, evals=1, val_steps=3, seed=0),
    "book": dict(n_train=49500, n_val=500, epochs=2.0, batch_size=128, lr=5e-4, optimizer="adam", warmup=0.1,
                 steps=3, step_ratio=2.5, amp="auto", evals=4, val_steps=10, seed=0),
    "paper": dict(n_train=49500, n_val=500, epochs=5, batch_size=128, lr=1e-3, optimizer="sgd", warmup=0.0,
                  steps=10, step_ratio=2.5, amp=False, evals=5, val_steps=20, seed=0),
}
EXTENDED_CIFAR_EPS = (16 / 255, 32 / 255)


def _large_eps_train(cfg: dict, load: Callable[[], data.ImageData], init: nn.Module | None,
                     optimizer: str = "adam") -> Callable[[nn.Module], object]:
    """A ``train(model)`` for the chapter-10 recipes: copy ``init``'s weights when given, then
    :func:`advlib.train.fit` against :func:`advlib.large_eps.scheduled_pgd_adversary` (``stages`` > 1:
    IAT's :func:`advlib.large_eps.staircase_eps`; else constant at ``eps``), with held-out clean and
    PGD-``val_steps`` accuracy at ``eps``."""

    def train(model: nn.Module):
        seed_everything(cfg["seed"])
        if init is not None:
            model.load_state_dict(init.state_dict())
        train_set, val_set = _split(load(), cfg)
        val = val_set.tensors(device=get_device())
        eps_at = large_eps.staircase_eps(cfg["eps"], cfg["stages"]) if cfg.get("stages", 1) > 1 else cfg["eps"]
        adversary = large_eps.scheduled_pgd_adversary(eps_at, steps=cfg["steps"], step_ratio=cfg["step_ratio"])
        val_attack = _attack("pgd", eps=cfg["eps"], steps=cfg["val_steps"])
        return fit(model, train_set, epochs=cfg["epochs"], batch_size=cfg["batch_size"], lr=cfg["lr"],
                   optimizer=optimizer, warmup=cfg["warmup"], adversary=adversary, val=val, val_attack=val_attack,
                   evals=cfg["evals"], amp=cfg["amp"], seed=cfg["seed"])

    return train


def plain_large_mnist(budget: str | None = None, retrain: bool = False, root=None, verbose: bool = True, *, seed: int | None = None) -> nn.Module:
    r"""The Madry MNIST CNN trained from scratch with PGD adversarial training at
    :math:`\epsilon = 0.4` (L-inf), no ramp and no curriculum: the failure chapter 10 starts from.
    ``model.meta["history"]`` holds the training loss and held-out clean and PGD accuracy.

    Taught in :ref:`ch-large-perturbations`.
    """
    cfg = recipe("plain_large_mnist", budget, seed)
    train = _large_eps_train(cfg, lambda: data.mnist(train=True, root=root), init=None)
    return cache.load_or_train("plain_large_mnist", _mnist_cnn(cfg), train, cfg, cfg["budget"], retrain,
                               verbose=verbose)


def extended_mnist(budget: str | None = None, retrain: bool = False, root=None, verbose: bool = True, *, seed: int | None = None) -> nn.Module:
    r"""Extended adversarial training: :func:`robust_mnist` (trained at :math:`\epsilon = 0.3`), then
    PGD adversarial training at :math:`\epsilon = 0.4`. At the ``book`` budget: 3 epochs, PGD-10 of
    step 0.1 from a random start, Adam 5e-4 with warm-up and linear decay (the paper: 5 epochs of
    PGD-200, step 0.005). The starting model's recipe is part of the cache key, and its training
    time is in ``model.meta["init_time_s"]``.

    Taught in :ref:`ch-large-perturbations`.
    """
    cfg = recipe("extended_mnist", budget, seed)
    base = robust_mnist(cfg["budget"], root=root, verbose=verbose, seed=seed)
    cfg["init"] = {"recipe": "robust_mnist", "config": base.meta["config"]}
    train = _large_eps_train(cfg, lambda: data.mnist(train=True, root=root), init=base)
    model = cache.load_or_train("extended_mnist", _mnist_cnn(cfg), train, cfg, cfg["budget"], retrain,
                                verbose=verbose)
    model.meta["init_time_s"] = base.meta["history"]["time_s"][-1]
    return model


def iat_mnist(budget: str | None = None, retrain: bool = False, root=None, verbose: bool = True, *, seed: int | None = None) -> nn.Module:
    r"""IAT, the paper's growing-:math:`\epsilon` curriculum, from scratch: PGD adversarial training
    with :math:`\epsilon` in ``stages`` equal stages :math:`0.4 (k + 1) / K`
    (:func:`advlib.large_eps.staircase_eps`). At the ``book`` budget: 1.5 epochs in 8 stages
    (0.05, 0.10, ..., 0.40), PGD-3 of step eps/2 (the paper: 40 epochs, 0.01 more each epoch).

    Taught in :ref:`ch-large-perturbations`.
    """
    cfg = recipe("iat_mnist", budget, seed)
    train = _large_eps_train(cfg, lambda: data.mnist(train=True, root=root), init=None)
    return cache.load_or_train("iat_mnist", _mnist_cnn(cfg), train, cfg, cfg["budget"], retrain, verbose=verbose)


def extended_cifar(eps: float = 16 / 255, budget: str | None = None, retrain: bool = False, root=None,
                   verbose: bool = True, *, seed: int | None = None) -> nn.Module:
    r"""Extended adversarial training on CIFAR-10: :func:`robust_cifar` (:math:`\epsilon = 8/255`),
    then PGD adversarial training at ``eps``, one of ``EXTENDED_CIFAR_EPS`` (16/255, 32/255). At the
    ``book`` budget: 2 epochs, PGD-3 of step 2.5 eps / 3 from a random start, Adam 5e-4 with warm-up
    and linear decay (the paper: 5 epochs of PGD with steps of 2/255 over 2.5 eps, SGD 1e-3 with
    momentum, from Madry et al.'s ResNet-50). The starting model's recipe is part of the cache key.

    Taught in :ref:`ch-large-perturbations`.
    """
    if not any(abs(float(eps) - e) < 1e-9 for e in EXTENDED_CIFAR_EPS):
        raise ValueError(f"eps must be one of 16/255, 32/255 (EXTENDED_CIFAR_EPS), got {eps!r}")
    cfg = recipe("extended_cifar", budget, seed)
    base = robust_cifar(cfg["budget"], root=root, verbose=verbose, seed=seed)
    cfg.update(eps=float(eps), stages=1, init={"recipe": "robust_cifar", "config": base.meta["config"]})
    name = f"extended_cifar_{round(float(eps) * 255)}"
    train = _large_eps_train(cfg, lambda: data.cifar10(train=True, root=root), init=base,
                             optimizer=cfg["optimizer"])
    model = cache.load_or_train(name, _cifar_model(base.meta["config"]), train, cfg, cfg["budget"], retrain,
                                verbose=verbose)
    model.meta["init_time_s"] = base.meta["history"]["time_s"][-1]
    return model


# ---------------------------------------------------------------------------- chapter 03 recipes
def _one_process_only(name: str, loop: str) -> None:
    """Raise ``RuntimeError`` when data-parallel: the loop of recipe ``name`` trains in one process."""
    if distributed.world_size() > 1:
        raise RuntimeError(f"{name} trains in one process only ({loop} is not data-parallel); train it "
                           f"without torchrun (python -m advlib.zoo train {name}), then every process loads it")


CORPUS_SETTINGS = ("max_len", "vocab_size", "min_count", "n_test", "seed")

ARAE_VARIANTS: dict[str, dict[str, float]] = {
    # variant -> the weights of arae.ARAESettings: the critic's gradient into the encoder (lambda_1)
    # and the encoder's loss against the code classifier (lambda_2)
    "ae": dict(lambda_critic=0.0, lambda_class=0.0),          # plain autoencoder, two decoders
    "ae_classifier": dict(lambda_critic=0.0, lambda_class=1.0),  # no critic into the encoder
    "arae": dict(lambda_critic=0.01, lambda_class=1.0),       # the reference code's defaults
    "arae_x10": dict(lambda_critic=0.1, lambda_class=1.0),    # ten times the critic's weight
}


def sentiment_corpus(budget: str | None = None, root=None) -> text.SentimentCorpus:
    """The sentiment corpus with the settings of the ``arae_sentiment`` recipe at ``budget``
    (the same sentences, split and vocabulary the chapter-03 models were trained on).

    Taught in :ref:`ch-arae`."""
    cfg = recipe("arae_sentiment", budget)  # CORPUS_SETTINGS of it
    return text.sentiment_corpus(max_len=cfg["max_len"], vocab_size=cfg["vocab_size"], min_count=cfg["min_count"],
                                 n_test=cfg["n_test"], seed=cfg["seed"], root=root)


def arae_sentiment(variant: str = "arae", budget: str | None = None, retrain: bool = False, root=None,
                   verbose: bool = True, *, seed: int | None = None) -> arae.ARAE:
    """An ARAE with one decoder per sentiment, trained on :func:`sentiment_corpus`.

    ``variant`` is one of ``ARAE_VARIANTS``: ``"ae"`` (no adversary pushes on the codes),
    ``"ae_classifier"`` (only the code classifier does), ``"arae"`` (critic and classifier, the
    reference code's weights) and ``"arae_x10"`` (ten times the critic's weight). The critic and the
    generator are trained in every variant, so every model has a learned prior to sample from.
    ``model.meta["history"]`` holds the losses, the held-out token accuracy and the wall time.

    Taught in :ref:`ch-arae`.
    """
    if variant not in ARAE_VARIANTS:
        raise ValueError(f"variant must be one of {sorted(ARAE_VARIANTS)}, got {variant!r}")
    cfg = recipe("arae_sentiment", budget, seed)  # the seed of the training; the corpus keeps its split
    cfg.update(variant=variant, **ARAE_VARIANTS[variant])
    corpus = sentiment_corpus(cfg["budget"], root)

    def build() -> arae.ARAE:
        torch.manual_seed(cfg["seed"])
        return arae.ARAE(len(corpus.vocab), n_attributes=2, embed=cfg["embed"], hidden=cfg["hidden"],
                         code=cfg["code"], noise=cfg["noise"], mlp=cfg["mlp"])

    def train(model: arae.ARAE):
        _one_process_only("arae_sentiment", "advlib.arae.train_arae")
        settings = arae.ARAESettings(lambda_critic=cfg["lambda_critic"], lambda_class=cfg["lambda_class"],
                                     critic_steps=cfg["critic_steps"])
        return arae.train_arae(model, corpus, steps=cfg["steps"], batch_size=cfg["batch_size"], settings=settings,
                               noise_std=cfg["noise_std"], lr_autoencoder=cfg["lr"],
                               log_every=max(cfg["steps"] // 15, 1), seed=cfg["seed"])

    model = cache.load_or_train(f"arae_sentiment_{variant}", build, train, cfg, cfg["budget"], retrain,
                                verbose=verbose)
    model.vocab = corpus.vocab
    return model


def sentiment_language_model(budget: str | None = None, retrain: bool = False, root=None,
                             verbose: bool = True, *, seed: int | None = None) -> arae.LanguageModel:
    """An LSTM language model of the training sentences of :func:`sentiment_corpus`, to score the
    fluency of generated and transferred sentences by perplexity.

    Taught in :ref:`ch-arae`."""
    cfg = recipe("sentiment_language_model", budget)
    corpus_cfg = recipe("arae_sentiment", cfg["budget"])
    cfg.update({k: corpus_cfg[k] for k in CORPUS_SETTINGS})
    if seed is not None:  # the seed of the training; the corpus keeps its split (and its "seed")
        cfg["train_seed"] = check_int(seed, "seed")
    train_seed = cfg.get("train_seed", cfg["seed"])
    corpus = sentiment_corpus(cfg["budget"], root)

    def build() -> arae.LanguageModel:
        torch.manual_seed(train_seed)
        return arae.LanguageModel(len(corpus.vocab), embed=cfg["embed"], hidden=cfg["hidden"])

    def train(model: arae.LanguageModel):
        _one_process_only("sentiment_language_model", "advlib.arae.train_language_model")
        start = time.perf_counter()
        arae.train_language_model(model, [s for s, _ in corpus.train], corpus.vocab, steps=cfg["steps"],
                                  batch_size=cfg["batch_size"], lr=cfg["lr"], seed=train_seed)
        return {"time": [time.perf_counter() - start],
                "test_perplexity": [arae.perplexity(model, [s for s, _ in corpus.test], corpus.vocab)]}

    return cache.load_or_train("sentiment_language_model", build, train, cfg, cfg["budget"], retrain,
                               verbose=verbose)


# ---------------------------------------------------------------------------- chapter 06 recipes
# Chapter 06: virtual adversarial training on MNIST (Miyato et al.). The ReLU MLP of the reference
# code's supervised command, 784-1200-600-300-150-10, batch norm before every ReLU, in both settings
# (its semi-supervised command takes 784-1200-1200-10 and eps 0.3; smoke: 784-256-128-10),
# trained on ``n_labels`` labelled images (n_labels / 10 per class, seeded) for ``steps`` steps of
# ``batch_size`` labelled and, with VAT, ``unl_batch`` unlabelled images (all 60,000 training
# images, labels discarded); or, with ``n_labels=None``, on ``sup_n_train`` labelled images for
# ``sup_epochs`` epochs of ``sup_batch`` (the supervised setting; VAT's KL on the labelled batch).
# Adam with warm-up and linear decay. Batch norm as in the reference code: the labelled pass alone
# updates the running statistics, and at the end they are recomputed over the training images
# (advlib.train.recompute_batch_norm). The power iteration runs in float32 whatever ``amp`` says
# (advlib.attacks.vat_perturbation turns autocast off); ``amp`` applies to the other passes.
# paper: the reference code's batches and optimiser (100 labelled + 250 unlabelled, Adam 2e-3,
# 100 epochs of 500 steps; 100 supervised epochs), with this recipe's network and eps.
VAT_XI_PAPER = 1e-6  # the paper's finite-difference step
VAT_METHODS = ("ml", "vat")  # maximum likelihood on the labels alone; VAT
VAT_LABELS = (100, 600, 1000, 3000)  # the paper's semi-supervised settings
RECIPES["vat_mnist"] = {
    "smoke": dict(hidden=[256, 128], steps=300, batch_size=50, unl_batch=64, sup_n_train=3000, sup_epochs=1,
                  sup_batch=100, lr=1e-3, warmup=0.1, eps=2.0, power_iterations=1, weight=1.0, amp=False,
                  evals=5, n_monitor=500, bn_stats="clean pass, recomputed", seed=0),
    "book": dict(hidden=[1200, 600, 300, 150], steps=6000, batch_size=50, unl_batch=128, sup_n_train=60000,
                 sup_epochs=10, sup_batch=100, lr=1e-3, warmup=0.1, eps=2.0, power_iterations=1, weight=1.0,
                 amp="auto", evals=10, n_monitor=1000, bn_stats="clean pass, recomputed", seed=0),
    "paper": dict(hidden=[1200, 600, 300, 150], steps=50000, batch_size=100, unl_batch=250, sup_n_train=60000,
                  sup_epochs=100, sup_batch=100, lr=2e-3, warmup=0.1, eps=2.0, power_iterations=1, weight=1.0,
                  amp=False, evals=20, n_monitor=1000, bn_stats="clean pass, recomputed", seed=0),
}
_VAT_ONLY = ("eps", "power_iterations", "weight", "unl_batch")  # settings only VAT uses


def vat_mnist(n_labels: int | None = 100, method: str = "vat", *, xi: float | None = None,
              budget: str | None = None, retrain: bool = False, root=None, verbose: bool = True,
              seed: int | None = None) -> nn.Module:
    r"""Chapter 06's MNIST MLP (784-1200-600-300-150-10 with batch norm at the ``book`` budget, the
    reference code's supervised network) trained
    on ``n_labels`` labelled images, by maximum likelihood (``method="ml"``) or with virtual
    adversarial training (``method="vat"``); ``n_labels=None`` is the supervised setting (every
    training image labelled). VAT minimises

    .. math:: \frac{1}{|B_l|}\sum_{i \in B_l} -\log p_\theta(y_i \mid x_i)
              \;+\; \lambda \frac{1}{|B_u|}\sum_{j \in B_u}
              \mathrm{KL}\big(p_{\hat\theta}(\cdot \mid x_j) \,\|\, p_\theta(\cdot \mid x_j + r_{\mathrm{vadv},j})\big)

    over a labelled batch :math:`B_l` and a batch :math:`B_u` of unlabelled training images (the
    labelled batch itself in the supervised setting), with :math:`r_{\mathrm{vadv}}` of L2 norm
    ``eps`` from ``power_iterations`` power iterations with the finite-difference step ``xi``
    (:func:`advlib.train.vat_regularizer`; default the paper's ``VAT_XI_PAPER`` = 1e-6, which in
    float32 gives a partly random direction: chapter 06 compares it with 1e-3). The labelled set is
    ``n_labels / 10`` images per class (seeded); semi-supervised runs take ``steps`` steps,
    supervised ones ``sup_epochs`` epochs (``zoo.RECIPES["vat_mnist"]``). Batch norm as in the
    reference code: only the labelled pass updates the running statistics, and after training they
    are recomputed over the training images (:func:`advlib.train.recompute_batch_norm`).

    ``model.meta["history"]`` holds the training curve (loss, accuracy on a seeded subset of
    ``n_monitor`` test images, wall time ``time_s``); ``model.meta["bn_recomputed"]`` the monitor
    accuracy before and after the statistics were recomputed, and its time.

    Taught in :ref:`ch-vat`.
    """
    if method not in VAT_METHODS:
        raise ValueError(f"method must be one of {VAT_METHODS}, got {method!r}")
    if method == "ml" and xi is not None:
        raise ValueError("xi is VAT's finite-difference step; method='ml' takes none")
    cfg = recipe("vat_mnist", budget, seed)
    if n_labels is not None:
        n_labels = check_int(n_labels, "n_labels", minimum=10)
        if n_labels % 10 or n_labels > 60000:
            raise ValueError(f"n_labels must be a multiple of 10 (the same number per class) up to 60000, "
                             f"or None (every label), got {n_labels}")
    if method == "vat":
        cfg["xi"] = float(check_positive(VAT_XI_PAPER if xi is None else xi, "xi", allow_zero=False))
    else:
        for key in _VAT_ONLY:
            cfg.pop(key)
    supervised = n_labels is None
    if supervised:
        for key in ("steps", "batch_size", "unl_batch"):
            cfg.pop(key, None)
    else:
        for key in ("sup_n_train", "sup_epochs", "sup_batch"):
            cfg.pop(key)
    cfg.update(n_labels=n_labels, method=method)

    def build() -> nn.Module:
        torch.manual_seed(cfg["seed"])
        return models.mlp_classifier(cfg["hidden"], batch_norm=True)

    def train(model: nn.Module):
        _one_process_only("vat_mnist", "its batch-norm recomputation")
        seed_everything(cfg["seed"])
        train_set = data.mnist(train=True, root=root)
        test_set = data.mnist(train=False, root=root)
        monitor = test_set.subset(min(cfg["n_monitor"], len(test_set)), seed=cfg["seed"] + 1)
        val = monitor.tensors(device=get_device())
        if supervised:
            labelled = train_set if cfg["sup_n_train"] >= len(train_set) else \
                train_set.subset(cfg["sup_n_train"], seed=cfg["seed"])
            batch_size, unlabelled, epochs = cfg["sup_batch"], None, cfg["sup_epochs"]
        else:
            labelled = train_set.subset(per_class=n_labels // 10, seed=cfg["seed"])
            batch_size = min(cfg["batch_size"], n_labels)
            unlabelled = train_set if method == "vat" else None
            epochs = cfg["steps"] / -(-n_labels // batch_size)  # batches per pass, the last one partial
        reg = None
        if method == "vat":
            reg = vat_regularizer(cfg["eps"], xi=cfg["xi"], power_iterations=cfg["power_iterations"],
                                  weight=cfg["weight"])
        history = fit(model, labelled, epochs=epochs, batch_size=batch_size, lr=cfg["lr"], warmup=cfg["warmup"],
                      regularizer=reg, unlabelled=unlabelled, unlabelled_batch_size=cfg.get("unl_batch"),
                      val=val, evals=cfg["evals"], amp=cfg["amp"], seed=cfg["seed"])
        start = time.perf_counter()
        before = float(accuracy(model, *val))
        batches = recompute_batch_norm(model, train_set if not supervised else labelled)
        after = float(accuracy(model, *val))
        return {"history": history, "bn_recomputed": {"val_acc_before": before, "val_acc_after": after,
                                                      "batches": batches,
                                                      "time_s": round(time.perf_counter() - start, 1)}}

    if supervised:
        name = f"vat_mnist_all_{method}"
    else:
        name = f"vat_mnist_{n_labels}_{method}"
    if method == "vat":
        name += f"_xi{cfg['xi']:g}"
    model = cache.load_or_train(name, build, train, cfg, cfg["budget"], retrain, verbose=verbose)
    return _unpack_meta(model, "bn_recomputed")
