"""advlib: the small library behind the book *Adversarial Training*.

Modules, in the order data flows: :mod:`~advlib.data` -> :mod:`~advlib.models` ->
:mod:`~advlib.attacks` -> :mod:`~advlib.train` / :mod:`~advlib.evaluate` -> :mod:`~advlib.plots`;
plus :mod:`~advlib.budget` (smoke / book / paper), :mod:`~advlib.cache` (trained models) and
:mod:`~advlib.zoo` (named recipes shared by the chapters). Sentences for chapter 03:
:mod:`~advlib.text` -> :mod:`~advlib.arae`.
"""
from . import arae, attacks, budget, cache, data, evaluate, generative, models, plots, text, train, utils, zoo
from .utils import get_device, seed_everything

__version__ = "0.1.0"
__all__ = ["arae", "attacks", "budget", "cache", "data", "evaluate", "generative", "models", "plots", "text", "train", "utils", "zoo",
           "get_device", "seed_everything", "__version__"]
