"""Named model recipes that train once and then load from :mod:`advlib.cache`.

Each recipe fixes its settings per budget (``smoke`` / ``book`` / ``paper``), so a chapter asks for
``zoo.standard_mnist()`` or ``zoo.robust_mnist()`` and gets the same model the earlier chapter
trained. The settings are part of the cache key: changing a recipe retrains it.

Every recipe keeps one contract:

- its signature is ``recipe(<what picks the model>, *, budget=None, seed=None, retrain=False,
  root=None, verbose=True)``: the arguments that pick which model (``method``, ``n_labels``, ``eps``,
  ``beta``, ``n_train``) come first and may be positional; everything else is keyword-only;
- its model is cached under :func:`cache_name` (the recipe's name, then those arguments) with its
  settings at the budget (:func:`recipe`) as the key;
- it returns the model in eval mode with ``model.meta``: ``name``, ``budget``, ``config`` (the
  settings), ``history`` (the training curve, a dict of columns; its ``time_s``, or ``time`` for
  the chapter-03 recipes, counts the seconds of training only, evaluations left out), ``machine``
  (where it was trained) and any record the recipe keeps beside them (``early_stopping``,
  ``bn_recomputed``, ``init_time_s``).

A recipe is an entry point, like a chapter's setup cell: it seeds the global random state with its
``seed`` before building the model (and before training it), so that the model it caches is the one
its settings describe. Nothing else in ``advlib`` reseeds the global random state. Every recipe takes
``seed=``: ``None`` (the default) keeps the recipe's own seed and so every existing cache key; another
seed trains (and caches) another run of the same recipe, and :func:`over_seeds` trains or loads a
recipe over several seeds and tabulates a metric across them, with the mean and its interval. Only
the training is reseeded: the chapter-03 recipes keep their corpus split.

Recipes: ``standard_mnist`` (chapter 00), ``gan_mnist`` (chapter 01), ``arae_sentiment`` and ``sentiment_language_model``
(chapter 03), ``robust_mnist``, ``standard_cifar`` and ``robust_cifar`` (chapter 07), ``fast_mnist``
and ``fast_cifar`` (chapter 09, one per fast-training method), ``robust_overfitting_mnist`` and
``robust_overfitting_cifar`` (chapter 09), ``robust_mnist_l2``, ``robust_cifar_l2`` and ``subset_mnist`` (chapter 08),
``plain_large_mnist``, ``extended_mnist``, ``iat_mnist`` and ``extended_cifar`` (chapter 10), and
``trades_mnist`` and ``trades_cifar`` (TRADES beside chapter 07's PGD training). The robust ones
solve Madry et al.'s saddle-point problem

.. math:: \\min_\\theta \\mathbb{E}_{(x, y)} \\Big[\\max_{\\|\\delta\\|_\\infty \\le \\epsilon} L(h_\\theta(x + \\delta), y)\\Big]

with the inner maximum approximated by a few PGD steps (:func:`advlib.adversaries.pgd`).

From the command line, ``python -m advlib.zoo train NAME [--budget B]`` trains a recipe and caches it;
under ``torchrun --nproc_per_node=N -m advlib.zoo train NAME`` the recipes that train with
:func:`advlib.train.fit` (``standard_mnist``, ``robust_mnist``, ``robust_mnist_l2``, ``subset_mnist``,
``standard_cifar``, ``robust_cifar``) train
data-parallel on N processes (:mod:`advlib.distributed`), with the same settings and cache key. The
chapter-03 and chapter-09 recipes train in one process only.
"""
from __future__ import annotations

# The recipes live in one module per chapter, each with its settings beside it; the package gathers
# their public names in one namespace (tests patch a recipe's training where it is: zoo._common, ...).
from ._common import RECIPES, cache_name, over_seeds, recipe
from ._standard import standard_mnist
from ._gan import GAN_ARCHS, gan_mnist
from ._pgd import robust_cifar, robust_mnist, standard_cifar
from ._gradients import robust_cifar_l2, robust_mnist_l2, subset_mnist
from ._fast_training import FAST_METHODS, fast_cifar, fast_mnist, robust_overfitting_cifar, robust_overfitting_mnist
from ._sentiment import ARAE_VARIANTS, CORPUS_SETTINGS, arae_sentiment, sentiment_corpus, sentiment_language_model
from ._large_perturbations import EXTENDED_CIFAR_EPS, extended_cifar, extended_mnist, iat_mnist, plain_large_mnist
from ._vat import VAT_LABELS, VAT_METHODS, VAT_XI_PAPER, vat_mnist
from ._trades import trades_cifar, trades_mnist
from . import _common, _fast_training, _gan, _gradients, _large_perturbations, _pgd, _sentiment, _standard, _trades, _vat

__all__ = ["recipe", "over_seeds", "cache_name", "standard_mnist", "gan_mnist", "robust_mnist", "standard_cifar", "robust_cifar",
           "robust_mnist_l2", "robust_cifar_l2", "subset_mnist", "fast_mnist", "fast_cifar",
           "robust_overfitting_mnist", "robust_overfitting_cifar", "plain_large_mnist", "extended_mnist",
           "iat_mnist", "extended_cifar", "sentiment_corpus", "arae_sentiment", "sentiment_language_model",
           "vat_mnist", "trades_mnist", "trades_cifar"]
