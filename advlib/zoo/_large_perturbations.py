"""Chapter 10's recipes, adversarial training at large perturbations (taught in chapter 10), with their
settings: ``plain_large_mnist`` (from scratch at eps 0.4), ``extended_mnist`` and ``extended_cifar``
(chapter 07's robust models trained on at a larger eps) and ``iat_mnist`` (the growing-eps curriculum).
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from .. import adversaries, cache, data
from ..evaluate import attack as _attack
from ..train import fit
from ..utils import get_device, seed_everything
from ._common import RECIPES, cache_name, _cifar_model, _mnist_cnn, _split, recipe
from ._pgd import robust_cifar, robust_mnist

# Chapter 10: the Madry CNN trained at the large eps 0.4 (L-inf) three ways. Each budget's settings
# per recipe; the PGD steps are ``step_ratio * eps / steps`` at the eps of the moment
# (advlib.adversaries.pgd with alpha_ratio = step_ratio / steps), and the held-out set is evaluated with PGD-``val_steps``
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
    :func:`advlib.train.fit` against :func:`advlib.adversaries.pgd` with eps a schedule (``stages`` > 1:
    IAT's :func:`advlib.adversaries.staircase`; else constant at ``eps``), with held-out clean and
    PGD-``val_steps`` accuracy at ``eps``."""

    def train(model: nn.Module):
        seed_everything(cfg["seed"])
        if init is not None:
            model.load_state_dict(init.state_dict())
        train_set, val_set = _split(load(), cfg)
        val = val_set.tensors(device=get_device())
        eps_at = adversaries.staircase(cfg["eps"], cfg["stages"]) if cfg.get("stages", 1) > 1 else cfg["eps"]
        adversary = adversaries.pgd(eps_at, steps=cfg["steps"], alpha_ratio=cfg["step_ratio"] / cfg["steps"])
        val_attack = _attack("pgd", eps=cfg["eps"], steps=cfg["val_steps"])
        return fit(model, train_set, epochs=cfg["epochs"], batch_size=cfg["batch_size"], lr=cfg["lr"],
                   optimizer=optimizer, warmup=cfg["warmup"], adversary=adversary, val=val, val_attack=val_attack,
                   evals=cfg["evals"], amp=cfg["amp"], seed=cfg["seed"])

    return train


def plain_large_mnist(*, budget: str | None = None, seed: int | None = None, retrain: bool = False, root=None,
                      verbose: bool = True) -> nn.Module:
    r"""The Madry MNIST CNN trained from scratch with PGD adversarial training at
    :math:`\epsilon = 0.4` (L-inf), no ramp and no curriculum: the failure chapter 10 starts from.
    ``model.meta["history"]`` holds the training loss and held-out clean and PGD accuracy.
    """
    cfg = recipe("plain_large_mnist", budget, seed)
    train = _large_eps_train(cfg, lambda: data.mnist(train=True, root=root), init=None)
    return cache.load_or_train("plain_large_mnist", _mnist_cnn(cfg), train, cfg, cfg["budget"], retrain,
                               verbose=verbose)


def extended_mnist(*, budget: str | None = None, seed: int | None = None, retrain: bool = False, root=None,
                   verbose: bool = True) -> nn.Module:
    r"""Extended adversarial training: :func:`robust_mnist` (trained at :math:`\epsilon = 0.3`), then
    PGD adversarial training at :math:`\epsilon = 0.4`. At the ``book`` budget: 3 epochs, PGD-10 of
    step 0.1 from a random start, Adam 5e-4 with warm-up and linear decay (the paper: 5 epochs of
    PGD-200, step 0.005). The starting model's recipe is part of the cache key, and its training
    time is in ``model.meta["init_time_s"]``.
    """
    cfg = recipe("extended_mnist", budget, seed)
    base = robust_mnist(budget=cfg["budget"], root=root, verbose=verbose, seed=seed)
    cfg["init"] = {"recipe": "robust_mnist", "config": base.meta["config"]}
    train = _large_eps_train(cfg, lambda: data.mnist(train=True, root=root), init=base)
    model = cache.load_or_train("extended_mnist", _mnist_cnn(cfg), train, cfg, cfg["budget"], retrain,
                                verbose=verbose)
    model.meta["init_time_s"] = base.meta["history"]["time_s"][-1]
    return model


def iat_mnist(*, budget: str | None = None, seed: int | None = None, retrain: bool = False, root=None,
              verbose: bool = True) -> nn.Module:
    r"""IAT, the paper's growing-:math:`\epsilon` curriculum, from scratch: PGD adversarial training
    with :math:`\epsilon` in ``stages`` equal stages :math:`0.4 (k + 1) / K`
    (:func:`advlib.adversaries.staircase`). At the ``book`` budget: 1.5 epochs in 8 stages
    (0.05, 0.10, ..., 0.40), PGD-3 of step eps/2 (the paper: 40 epochs, 0.01 more each epoch).
    """
    cfg = recipe("iat_mnist", budget, seed)
    train = _large_eps_train(cfg, lambda: data.mnist(train=True, root=root), init=None)
    return cache.load_or_train("iat_mnist", _mnist_cnn(cfg), train, cfg, cfg["budget"], retrain, verbose=verbose)


def extended_cifar(eps: float = 16 / 255, *, budget: str | None = None, seed: int | None = None,
                   retrain: bool = False, root=None, verbose: bool = True) -> nn.Module:
    r"""Extended adversarial training on CIFAR-10: :func:`robust_cifar` (:math:`\epsilon = 8/255`),
    then PGD adversarial training at ``eps``, one of ``EXTENDED_CIFAR_EPS`` (16/255, 32/255). At the
    ``book`` budget: 2 epochs, PGD-3 of step 2.5 eps / 3 from a random start, Adam 5e-4 with warm-up
    and linear decay (the paper: 5 epochs of PGD with steps of 2/255 over 2.5 eps, SGD 1e-3 with
    momentum, from Madry et al.'s ResNet-50). The starting model's recipe is part of the cache key.
    """
    if not any(abs(float(eps) - e) < 1e-9 for e in EXTENDED_CIFAR_EPS):
        raise ValueError(f"eps must be one of 16/255, 32/255 (EXTENDED_CIFAR_EPS), got {eps!r}")
    cfg = recipe("extended_cifar", budget, seed)
    base = robust_cifar(budget=cfg["budget"], root=root, verbose=verbose, seed=seed)
    cfg.update(eps=float(eps), stages=1, init={"recipe": "robust_cifar", "config": base.meta["config"]})
    name = cache_name("extended_cifar", round(float(eps) * 255))
    train = _large_eps_train(cfg, lambda: data.cifar10(train=True, root=root), init=base,
                             optimizer=cfg["optimizer"])
    model = cache.load_or_train(name, _cifar_model(base.meta["config"]), train, cfg, cfg["budget"], retrain,
                                verbose=verbose)
    model.meta["init_time_s"] = base.meta["history"]["time_s"][-1]
    return model
