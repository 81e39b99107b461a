"""Named model recipes that train once and then load from :mod:`advlib.cache`.

Each recipe fixes its settings per budget (``smoke`` / ``book`` / ``paper``), so a chapter asks for
``zoo.standard_mnist()`` and gets the same model the earlier chapter trained. The settings are part
of the cache key: changing a recipe retrains it.
"""
from __future__ import annotations

import torch
from torch import nn

from . import budget as _budget
from . import cache, data, models
from .train import fit
from .utils import seed_everything

RECIPES: dict[str, dict[str, dict]] = {
    # Chapter 00: the Madry CNN trained normally on MNIST.
    "standard_mnist": {
        "smoke": dict(n_train=4000, epochs=1, batch_size=64, lr=1e-3, seed=0),
        "book": dict(n_train=60000, epochs=3, batch_size=128, lr=1e-3, seed=0),
        "paper": dict(n_train=60000, epochs=10, batch_size=50, lr=1e-3, seed=0),
    },
}


def recipe(name: str, budget: str | None = None) -> dict:
    """The settings of recipe ``name`` at ``budget`` (default: the active budget)."""
    if name not in RECIPES:
        raise ValueError(f"name must be one of {sorted(RECIPES)}, got {name!r}")
    return dict(_budget.pick(budget, **RECIPES[name]))


def standard_mnist(budget: str | None = None, retrain: bool = False, root=None, verbose: bool = True) -> nn.Module:
    """The Madry MNIST CNN trained without adversarial examples (Adam, linear decay). Chapter 00.

    At the ``book`` budget: 3 epochs over the 60k training images, about 99% test accuracy.
    """
    cfg = recipe("standard_mnist", budget)

    def train(model: nn.Module):
        seed_everything(cfg["seed"])
        train_set = data.mnist(train=True, root=root)
        if cfg["n_train"] < len(train_set):
            train_set = train_set.subset(cfg["n_train"], seed=cfg["seed"])
        return fit(model, train_set, epochs=cfg["epochs"], batch_size=cfg["batch_size"], lr=cfg["lr"],
                   seed=cfg["seed"])

    def build() -> nn.Module:
        torch.manual_seed(cfg["seed"])
        return models.mnist_cnn()

    return cache.load_or_train("standard_mnist", build, train, cfg, cfg["budget"], retrain, verbose=verbose)
