"""advlib: the small library behind the book *Adversarial Training*.

Modules, in the order data flows: :mod:`~advlib.data` (its files found, downloaded and read by
:mod:`~advlib.datafiles`) -> :mod:`~advlib.models` ->
:mod:`~advlib.attacks` -> :mod:`~advlib.train` / :mod:`~advlib.evaluate` -> :mod:`~advlib.plots`;
plus :mod:`~advlib.budget` (smoke / book / paper), :mod:`~advlib.cache` (trained models),
:mod:`~advlib.zoo` (named recipes shared by the chapters), :mod:`~advlib.loops` (the bookkeeping
every training loop shares), :mod:`~advlib.results` (each chapter's paper-vs-ours rows),
:mod:`~advlib.stats` (intervals and paired comparisons, on scipy.stats), :mod:`~advlib.worst_case`
(the headline robust accuracy over every attack, its warning flags and the evaluation cache),
:mod:`~advlib.lessons` (each chapter's self-checks in one ledger) and :mod:`~advlib.distributed`
(data-parallel training under ``torchrun``); :mod:`~advlib.kernels` (the attacks' faster CPU path);
:mod:`~advlib.adversaries` holds everything :func:`~advlib.train.fit` trains against.
The generative side: :mod:`~advlib.gan` (chapter 01) and
:mod:`~advlib.aae` (chapter 02), with their networks in :mod:`advlib.models.gan` and
:mod:`advlib.models.autoencoders`. Sentences (chapter 03): :mod:`~advlib.text` -> :mod:`~advlib.arae`.
The later robustness chapters: :mod:`~advlib.robust_gradients` (08), :mod:`~advlib.fast` (09) and
:mod:`~advlib.large_eps` (10).
"""
from . import (aae, adversaries, arae, attacks, budget, cache, data, datafiles, distributed, evaluate, fast, gan, kernels, large_eps,
               lessons, loops, models, plots, results, stats, text, train, utils, worst_case, zoo)
from .utils import get_device, seed_everything

__version__ = "0.1.0"
__all__ = ["aae", "adversaries", "arae", "attacks", "budget", "cache", "data", "datafiles", "distributed", "evaluate", "fast", "gan",
           "kernels", "large_eps", "lessons", "loops", "models", "plots", "results", "stats", "text", "train", "utils",
           "worst_case", "zoo",
           "get_device", "seed_everything", "__version__"]
