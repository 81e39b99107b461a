"""Chapter 09's recipes, fast adversarial training and robust overfitting (taught in chapter 09), with
their settings: ``fast_mnist`` and ``fast_cifar`` (one model per fast-training method of
``FAST_METHODS``) and ``robust_overfitting_mnist`` and ``robust_overfitting_cifar`` (PGD training on a
small subset for many epochs).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .. import adversaries, cache, data, fast
from ..evaluate import accuracy, attack as _attack, correct_mask, robust_mask
from ..train import fit
from ..utils import get_device, new_generator, seed_everything
from ._common import RECIPES, cache_name, eps_and_step, _cifar_model, _mnist_cnn, _one_process_only, _split, recipe

RECIPES.update({
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
})


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
    # de Jorge et al.'s N-FGSM: noise U[-2 eps, 2 eps], then an FGSM step of eps, not projected back
    "nfgsm": dict(adversary="nfgsm", alpha=1.0, noise=2.0),
    "pgd3": dict(adversary="pgd", alpha=0.5, steps=3),          # multi-step peers, for the cost table
    "pgd7": dict(adversary="pgd", alpha=2.5 / 7, steps=7),
}


def _fast_adversary(cfg: dict, n_examples: int):
    """The adversary of a chapter-09 recipe's ``cfg`` for a training set of ``n_examples`` images."""
    eps, kind = cfg["eps"], cfg["adversary"]
    if kind == "fgsm":
        return adversaries.fgsm(cfg["alpha"] * eps)
    if kind == "fgsm_rs":
        return adversaries.fgsm_rs(eps, alpha=cfg["alpha"] * eps, clip_start=cfg.get("clip_start", True))
    if kind == "pgd":
        return adversaries.pgd(eps, alpha=cfg["alpha"] * eps, steps=cfg["steps"])
    if kind == "nfgsm":
        return adversaries.nfgsm(eps, k=cfg["noise"], alpha=cfg["alpha"] * eps)
    return adversaries.APART(eps, alpha=cfg["alpha"] * eps, sigma=cfg["sigma"] * eps, lr=cfg["apart_lr"],
                               weight_decay=cfg.get("apart_wd", 0.0),
                               n_examples=n_examples if cfg.get("stored_starts") else None)


def fast_mnist(method: str = "fgsm_rs", *, alpha: float | None = None, lr: float | None = None,
               epochs: float | None = None, n_train: int | None = None, seed: int | None = None,
               gradalign: float | None = None, budget: str | None = None, retrain: bool = False, root=None,
               verbose: bool = True) -> nn.Module:
    r"""The Madry MNIST CNN trained at :math:`\epsilon = 0.3` (L-inf) with the adversary ``method``,
    one of ``FAST_METHODS``: ``"fgsm"`` (no random start, step eps), ``"fgsm_rs"`` (Wong et al.'s FGSM
    from a random start, step 1.25 eps), ``"fgsm_rs_unclipped"`` (the same, with the gradient taken at
    the unclipped random start, as in their code: ``clip_start=False`` of
    :func:`advlib.adversaries.fgsm_rs`), ``"fgsm_rs_es"`` (the same run with their early stopping:
    the returned weights are those of the evaluation where PGD-``es_steps`` accuracy on a fixed
    training batch of 500 images was highest), ``"gradalign"`` (FGSM plus the GradAlign penalty),
    ``"apart"`` (:class:`advlib.adversaries.APART`), ``"apart_stored"`` (the same with a start stored
    per training example, its ``n_examples``), ``"apart_wd"`` (that, with a weight decay on the
    adversary's two parameters), ``"nfgsm"`` (de Jorge et al.'s N-FGSM: noise of twice eps and an FGSM
    step of eps, not projected back onto the ball; :func:`advlib.adversaries.nfgsm`), and the
    multi-step peers ``"pgd3"`` and ``"pgd7"``.
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
    """
    return _fast_recipe("fast_cifar", method, _cifar_model, lambda: data.cifar10(train=True, root=root), budget,
                        retrain, verbose, eps=eps, alpha=alpha, lr=lr, epochs=epochs, n_train=n_train, width=width,
                        seed=seed)


def _fast_recipe(name: str, method: str, build: Callable[[dict], Callable[[], nn.Module]],
                 load: Callable[[], data.ImageData], budget: str | None, retrain: bool, verbose: bool,
                 **overrides) -> nn.Module:
    """The chapter-09 recipe ``name`` for ``method``: its settings (with the overrides that are not
    None), trained by :func:`_fast_train` on ``load()`` or loaded from the cache as
    ``<name>_<method>``; an early-stopping run's kept row is ``model.meta["early_stopping"]``."""
    cfg = _fast_config(name, method, budget, **overrides)
    return cache.load_or_train(cache_name(name, method), build(cfg), _fast_train(name, cfg, load), cfg, cfg["budget"],
                               retrain, verbose=verbose)


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
        regularizer = adversaries.gradalign(cfg["eps"], cfg["gradalign"]) if "gradalign" in cfg else None
        stopper = None
        if cfg.get("early_stopping"):
            xt, yt = train_set.subset(min(500, len(train_set)), seed=cfg["seed"] + 1).tensors(device=device)
            stopper = fast.RobustEarlyStopping(xt, yt, cfg["eps"], steps=cfg["es_steps"])

        def callback(net: nn.Module, row: dict) -> None:
            row["val_acc"] = float(accuracy(net, xv, yv))
            row.update(fast.fgsm_diagnostics(net, xv, yv, cfg["eps"], pgd_steps=cfg["diag_steps"], seed=cfg["seed"]))
            row["fgsm_sign"] = fast.input_gradient_sign(net, xs, ys).tolist()
            if isinstance(adversary, adversaries.APART):
                row["alpha"], row["sigma"] = adversary.alpha.item(), adversary.sigma.item()
            if stopper is not None:  # last, so that the row it keeps is complete
                stopper(net, row)

        history = fit(model, train_set, epochs=cfg["epochs"], batch_size=cfg["batch_size"], lr=cfg["lr"],
                      warmup=cfg["warmup"], adversary=adversary, regularizer=regularizer, evals=cfg["evals"],
                      amp=cfg["amp"], seed=cfg["seed"], callback=callback)
        if stopper is not None:
            return {"history": history, "early_stopping": stopper.restore(model)}
        return history

    return train


def robust_overfitting_mnist(*, budget: str | None = None, seed: int | None = None, retrain: bool = False,
                             root=None, verbose: bool = True) -> nn.Module:
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
    """
    cfg = recipe("robust_overfitting_mnist", budget, seed)
    train = _robust_overfitting_train("robust_overfitting_mnist", cfg, lambda train: data.mnist(train=train, root=root))
    return cache.load_or_train("robust_overfitting_mnist", _mnist_cnn(cfg), train, cfg, cfg["budget"], retrain,
                               verbose=verbose)


def robust_overfitting_cifar(*, budget: str | None = None, seed: int | None = None, retrain: bool = False,
                             root=None, verbose: bool = True) -> nn.Module:
    r"""Chapter 07's small CIFAR-10 CNN in :func:`robust_overfitting_mnist`'s experiment: PGD training at
    :math:`\epsilon = 8/255` on a small subset of CIFAR-10 for many epochs with Rice et al.'s
    piecewise learning-rate decay, and the same curves in ``model.meta["history"]``. The returned
    weights are the last ones.
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

        adversary = adversaries.pgd(**eps_and_step(cfg), steps=cfg["steps"])
        return fit(model, train_set, epochs=cfg["epochs"], batch_size=cfg["batch_size"], lr=cfg["lr"],
                   schedule="piecewise", warmup=0.0, adversary=adversary, evals=cfg["evals"], amp=cfg["amp"],
                   seed=cfg["seed"], callback=callback)

    return train
