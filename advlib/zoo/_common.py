"""The zoo's table of settings and what its recipes share: ``RECIPES``, which every chapter's module
fills with its recipes' settings at every budget, :func:`recipe` (chapter 00) and :func:`over_seeds`
(chapter 09), and the pieces of more than one chapter: the Madry MNIST CNN and CIFAR-10 model builders,
the seeded train/held-out split, :func:`advlib.train.fit` with a recipe's settings (chapters 07 and 08),
the untimed evaluation callback and the unpacking of extra training results (chapters 06 and 09), and
the refusal to train data-parallel (chapters 03, 06 and 09).
"""
from __future__ import annotations

from typing import Callable, Sequence

import pandas as pd
import torch
from torch import nn

from .. import budget as _budget
from .. import data, distributed, models, stats
from ..evaluate import Accuracy, attack as _attack
from .. import adversaries
from ..train import fit
from ..utils import check_int, get_device, seed_everything

# recipe name -> {budget: settings}; each chapter's module adds its recipes
RECIPES: dict[str, dict[str, dict]] = {}


def recipe(name: str, budget: str | None = None, seed: int | None = None) -> dict:
    """The settings of recipe ``name`` at ``budget`` (default: the active budget); ``seed``, when
    given, replaces the recipe's own (``None`` keeps it, and with it every existing cache key).
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


def _split(train_set: data.ImageData, cfg: dict) -> tuple[data.ImageData, data.ImageData]:
    """``n_train`` training images and ``n_val`` held-out validation images (disjoint, seeded)."""
    n_train, n_val = cfg["n_train"], cfg["n_val"]
    if n_train + n_val > len(train_set):
        raise ValueError(f"n_train + n_val must be at most {len(train_set)}, got {n_train} + {n_val}")
    val, rest = train_set.split(n_val, seed=cfg["seed"])
    return (rest if n_train == len(rest) else rest.subset(n_train, seed=cfg["seed"])), val


def cache_name(recipe: str, *variant: object) -> str:
    """The name a recipe's model is cached under: the recipe's, then each argument that picks which
    model (the method, the label count, beta, eps), as the recipe writes it, joined by ``_``:
    ``cache_name("fast_mnist", "fgsm_rs")`` is ``"fast_mnist_fgsm_rs"``. A recipe without such an
    argument is cached under its own name."""
    return "_".join([recipe, *map(str, variant)])


def eps_and_step(cfg: dict) -> dict:
    """A recipe's ``eps``, ``alpha`` and ``eps_ramp`` settings as the arguments of
    :mod:`advlib.adversaries`: without a ramp, eps and the absolute step; with one (the settings'
    ``alpha`` is the step at the full eps), a :func:`~advlib.adversaries.linear_ramp` and the step
    as a multiple of the eps of the moment, so the step follows the ramp."""
    return adversaries.ramped(cfg["eps"], cfg.get("alpha"), cfg.get("eps_ramp", 0.0))


def _train_with(cfg: dict, load: Callable[[], data.ImageData], adversarial: bool) -> Callable[[nn.Module], object]:
    """A ``train(model)`` for :func:`advlib.cache.load_or_train`: :func:`advlib.train.fit` with the
    recipe's settings, a PGD adversary when ``adversarial`` (or, when the settings hold TRADES's
    ``beta``, clean training plus :func:`advlib.adversaries.trades`), and a held-out
    validation set (clean, and under PGD-``val_steps`` at ``eps`` when ``adversarial``) evaluated
    ``evals`` times."""

    def train(model: nn.Module):
        seed_everything(cfg["seed"])
        train_set, val_set = _split(load(), cfg)
        val = val_set.tensors(device=get_device())
        adversary = val_attack = regularizer = None
        if adversarial:
            norm = cfg.get("norm", "inf")  # the L-inf recipes predate the key: absent, it is "inf"
            if "beta" in cfg:  # TRADES: clean cross-entropy + beta KL(f(x) || f(x')), x' from the KL's PGD
                regularizer = adversaries.trades(**eps_and_step(cfg), beta=cfg["beta"], steps=cfg["steps"], norm=norm)
            else:
                adversary = adversaries.pgd(**eps_and_step(cfg), steps=cfg["steps"], norm=norm)
            val_attack = _attack("pgd", eps=cfg["eps"], steps=cfg["val_steps"], norm=norm)
        return fit(model, train_set, epochs=cfg["epochs"], batch_size=cfg["batch_size"], lr=cfg["lr"],
                   optimizer=cfg["optimizer"], weight_decay=cfg["weight_decay"], schedule=cfg["schedule"],
                   warmup=cfg["warmup"], adversary=adversary, regularizer=regularizer, val=val, val_attack=val_attack,
                   evals=cfg["evals"],
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


def _one_process_only(name: str, loop: str) -> None:
    """Raise ``RuntimeError`` when data-parallel: the loop of recipe ``name`` trains in one process."""
    if distributed.world_size() > 1:
        raise RuntimeError(f"{name} trains in one process only ({loop} is not data-parallel); train it "
                           f"without torchrun (python -m advlib.zoo train {name}), then every process loads it")
