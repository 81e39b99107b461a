"""Chapter 00's recipe, ``standard_mnist``: the Madry MNIST CNN trained without adversarial examples
(taught in chapter 00), with its settings.
"""
from __future__ import annotations

from torch import nn

from .. import cache, data
from ..train import fit
from ..utils import seed_everything
from ._common import RECIPES, _mnist_cnn, recipe

RECIPES.update({
    # Chapter 00: the Madry CNN trained normally on MNIST.
    "standard_mnist": {
        "smoke": dict(n_train=4000, epochs=1, batch_size=64, lr=1e-3, seed=0),
        "book": dict(n_train=60000, epochs=3, batch_size=128, lr=1e-3, seed=0),
        "paper": dict(n_train=60000, epochs=10, batch_size=50, lr=1e-3, seed=0),
    },
})


def standard_mnist(*, budget: str | None = None, seed: int | None = None, retrain: bool = False, root=None,
                   verbose: bool = True) -> nn.Module:
    """The Madry MNIST CNN trained without adversarial examples (Adam, linear decay). Chapter 00.

    At the ``book`` budget: 3 epochs over the 60k training images (chapter 00 measures its accuracy).
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
