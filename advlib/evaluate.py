"""Evaluation: predictions, clean accuracy, robust accuracy under an attack, and eps sweeps.

An *attack* here is any callable ``attack(model, x, y) -> x_adv``; build one from :mod:`advlib.attacks`
with ``functools.partial`` (``partial(pgd, eps=0.3, steps=40, restarts=3)``) or with :func:`attack`.
Taught in chapters 00 (accuracy) and 07 (honest robust evaluation).
"""
from __future__ import annotations

import functools
from typing import Callable, Iterable

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from . import attacks as _attacks
from .utils import check_images, check_int, check_labels, eval_mode, model_device, show_progress

Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def attack(name: str, **kwargs) -> Attack:
    """``attack("pgd", eps=0.3, steps=40)`` -> an ``Attack`` (a partial of :mod:`advlib.attacks`)."""
    table = {"fgsm": _attacks.fgsm, "pgd": _attacks.pgd}
    if name not in table:
        raise ValueError(f"name must be one of {sorted(table)}, got {name!r}")
    return functools.partial(table[name], **kwargs)


def _batches(x: torch.Tensor, y: torch.Tensor | None, batch_size: int):
    for i in range(0, x.shape[0], batch_size):
        yield x[i:i + batch_size], (None if y is None else y[i:i + batch_size])


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Logits of ``model`` on ``x`` (eval mode, restored after), batch by batch, on ``x``'s device."""
    check_images(x, "x", bounds=None)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    dev = model_device(model)
    with eval_mode(model):
        return torch.cat([model(xb.to(dev)).float().to(x.device) for xb, _ in _batches(x, None, batch_size)])


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    """Fraction of ``x`` that ``model`` classifies as ``y`` (in eval mode)."""
    check_labels(y, x.shape[0], "y")
    return (predict(model, x, batch_size).argmax(1) == y.to(x.device)).float().mean().item()


def adversarial_examples(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack,
                         batch_size: int = 250, progress: bool = False) -> torch.Tensor:
    """``attack`` applied batch by batch; returns all adversarial examples (on ``x``'s device)."""
    check_images(x, "x", bounds=None)
    check_labels(y, x.shape[0], "y")
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    dev = model_device(model)
    out = []
    it = _batches(x, y, batch_size)
    if show_progress(progress):
        it = tqdm(it, total=-(-x.shape[0] // batch_size), desc="attack", leave=False)
    for xb, yb in it:
        out.append(attack(model, xb.to(dev), yb.to(dev)).to(x.device))
    return torch.cat(out)


def robust_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack,
                    batch_size: int = 250, progress: bool = False) -> float:
    """Accuracy on ``attack``'s adversarial examples of ``(x, y)``.

    An example counts as robust only if the model is right on its adversarial version. The attack
    itself decides the worst case over restarts (see :func:`advlib.attacks.pgd`).
    """
    x_adv = adversarial_examples(model, x, y, attack, batch_size, progress)
    return accuracy(model, x_adv, y, batch_size)


def eps_sweep(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps_values: Iterable[float],
              attack: str | Callable = "pgd", batch_size: int = 250, progress: bool | None = None,
              **attack_kwargs) -> pd.DataFrame:
    """Robust accuracy at each eps: a table with columns ``eps`` and ``accuracy``.

    ``attack`` is ``"fgsm"``, ``"pgd"`` or a function ``f(model, x, y, eps=..., **attack_kwargs)``.
    For PGD without an explicit ``alpha``, the step is ``2.5 * eps / steps`` at each eps.
    """
    fn = {"fgsm": _attacks.fgsm, "pgd": _attacks.pgd}.get(attack, attack) if isinstance(attack, str) else attack
    if isinstance(attack, str) and attack not in ("fgsm", "pgd"):
        raise ValueError(f"attack must be 'fgsm', 'pgd' or a callable, got {attack!r}")
    rows = []
    eps_values = list(eps_values)
    for eps in tqdm(eps_values, desc="eps sweep", leave=False, disable=not show_progress(progress)):
        acc = robust_accuracy(model, x, y, functools.partial(fn, eps=float(eps), **attack_kwargs), batch_size)
        rows.append({"eps": float(eps), "accuracy": acc})
    return pd.DataFrame(rows)
