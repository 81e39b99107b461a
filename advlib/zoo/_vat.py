"""Chapter 06's recipe, ``vat_mnist``: virtual adversarial training on MNIST, semi-supervised and
supervised (taught in chapter 06), with its settings.
"""
from __future__ import annotations

import time

import torch
from torch import nn

from .. import adversaries, cache, data, models
from ..attacks import VAT_MODES
from ..evaluate import accuracy
from ..train import fit, recompute_batch_norm
from ..utils import check_int, check_positive, get_device, seed_everything
from ._common import RECIPES, cache_name, _one_process_only, recipe

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
              eps: float | None = None, direction_mode: str = "eval", budget: str | None = None,
              retrain: bool = False, root=None, verbose: bool = True, seed: int | None = None) -> nn.Module:
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
    (:func:`advlib.adversaries.vat`; default the paper's ``VAT_XI_PAPER`` = 1e-6, which in
    float32 gives a partly random direction: chapter 06 compares it with 1e-3), found with the model
    in ``direction_mode``: ``"eval"`` (the running statistics, which come from the labelled batches
    alone) or ``"train"`` (the statistics of each batch, the reference code's choice); ``eps``
    overrides the recipe's (e.g. the reference code's few-label 0.3). The labelled set is
    ``n_labels / 10`` images per class (seeded); semi-supervised runs take ``steps`` steps,
    supervised ones ``sup_epochs`` epochs (``zoo.RECIPES["vat_mnist"]``). Batch norm as in the
    reference code: only the labelled pass updates the running statistics, and after training they
    are recomputed over the training images (:func:`advlib.train.recompute_batch_norm`).

    ``model.meta["history"]`` holds the training curve (loss, accuracy on a seeded subset of
    ``n_monitor`` test images, training time ``time_s``); ``model.meta["bn_recomputed"]`` the monitor
    accuracy before and after the statistics were recomputed, and its time.
    """
    if method not in VAT_METHODS:
        raise ValueError(f"method must be one of {VAT_METHODS}, got {method!r}")
    if method == "ml" and (xi is not None or eps is not None or direction_mode != "eval"):
        raise ValueError("xi, eps and direction_mode are VAT's settings; method='ml' takes none of them")
    if direction_mode not in VAT_MODES:
        raise ValueError(f"direction_mode must be one of {VAT_MODES}, got {direction_mode!r}")
    cfg = recipe("vat_mnist", budget, seed)
    if n_labels is not None:
        n_labels = check_int(n_labels, "n_labels", minimum=10)
        if n_labels % 10 or n_labels > 60000:
            raise ValueError(f"n_labels must be a multiple of 10 (the same number per class) up to 60000, "
                             f"or None (every label), got {n_labels}")
    if method == "vat":
        cfg["xi"] = float(check_positive(VAT_XI_PAPER if xi is None else xi, "xi"))
        if eps is not None:
            cfg["eps"] = float(check_positive(eps, "eps"))
        if direction_mode != "eval":  # the default leaves the settings (and the cache key) as they were
            cfg["direction_mode"] = direction_mode
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
            reg = adversaries.vat(cfg["eps"], xi=cfg["xi"], power_iterations=cfg["power_iterations"],
                                  weight=cfg["weight"], direction_mode=cfg.get("direction_mode", "eval"))
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

    variant = []
    if method == "vat":
        variant = [f"xi{cfg['xi']:g}", *([f"eps{eps:g}"] if eps is not None else []),
                   *(["train-direction"] if direction_mode == "train" else [])]
    name = cache_name("vat_mnist", "all" if supervised else n_labels, method, *variant)
    return cache.load_or_train(name, build, train, cfg, cfg["budget"], retrain, verbose=verbose)
