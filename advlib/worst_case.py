r"""The headline robust accuracy a referee accepts: every attack on the same images, a gradient-free one
among them, the warning signs of a misleading evaluation, and a cache so that re-running a chapter
reloads its evaluations instead of attacking again.

**The headline.** :func:`headline` runs, in order and each only on the examples every earlier stage
left right (as AutoAttack does), our PGD with restarts, APGD with cross-entropy, targeted APGD with
the DLR loss, and the gradient-free Square attack, sized by the budget (``HEADLINE_SETTINGS``).
An example is robust only if it is right clean and under every stage:

.. math:: \text{robust}(x_i) = \mathbb 1[h(x_i) = y_i] \prod_{a \in \text{attacks}} \mathbb 1[h(a(x_i)) = y_i].

Any other attack a chapter ran on the same images (a restarts study, a transfer attack, BPDA) joins
the same per-example worst case through ``extra=`` (its per-example robust mask), so "the worst case
over every attack we ran" is literally what is printed.

**The flags** (:func:`evaluation_flags`), in the spirit of AutoAttack's and RobustBench's checks, each
a sign that gradient attacks may overstate robustness or that the evaluation is not what it seems:
outputs that look like probabilities (softmax inside the model: cross-entropy saturates), a forward
pass that is not deterministic, examples whose input gradient is exactly zero (gradient masking),
Square breaking examples the gradient attacks missed, robust accuracy not falling as eps grows, fewer
classes than the targeted DLR loss needs, and a model left in train mode.

**The cache** (:func:`cached_robustness`): a robustness result is stored beside the model cache,
under ``<cache dir>/evaluations/``, keyed by the SHA-256 of the model's weights, of the images and
labels, and of the full attack configuration (each attack's function, arguments, and a generator's
state); any change to one of them runs the attacks again. A change to the attack *code* does not
change the key: clear the folder after editing an attack.

Taught in :ref:`ch-pgd-training`.
"""
from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from . import attacks as _attacks
from . import budget as _budget
from . import cache as _cache
from .evaluate import Accuracy, Attack, RobustnessReport, autoattack_attacks, robustness
from .utils import check_images, check_labels, check_nonnegative, eval_mode, freeze_batch_norm_stats, new_generator

#: The headline evaluation at each budget: PGD steps and restarts, APGD steps, the number of target
#: classes of APGD-T, and Square's queries. ``book`` fits a 2-core CPU for 1,000 MNIST or CIFAR-10
#: images; ``paper`` is AutoAttack's standard setting (100 APGD steps, 9 targets, 5,000 queries).
HEADLINE_SETTINGS = {
    "smoke": {"pgd_steps": 10, "pgd_restarts": 1, "apgd_steps": 10, "targets": 3, "square_queries": 50},
    "book": {"pgd_steps": 40, "pgd_restarts": 3, "apgd_steps": 100, "targets": 9, "square_queries": 1000},
    "paper": {"pgd_steps": 100, "pgd_restarts": 10, "apgd_steps": 100, "targets": 9, "square_queries": 5000},
}
GRADIENT_FREE = ("Square",)  # the stages that use no gradient


@dataclass
class Headline:
    """What :func:`headline` found: ``report`` (the :class:`~advlib.evaluate.RobustnessReport`, one row
    per stage, extra attacks merged), ``table`` (the same with ``broken here``, the examples each stage
    was the first to break), ``flags`` (:func:`evaluation_flags`), ``settings`` and ``worst``.
    """

    report: RobustnessReport
    table: pd.DataFrame
    flags: pd.DataFrame
    settings: dict = field(default_factory=dict)

    @property
    def worst(self) -> Accuracy:
        """Right clean and under every attack, with n and a 95% interval."""
        return self.report.worst

    @property
    def mask(self) -> torch.Tensor:
        """Per example, whether the model is right on it clean and under every attack (bool)."""
        return self.report.mask

    def __str__(self) -> str:
        raised = self.flags[self.flags.raised]
        lines = [self.table.to_string(), "", f"worst case: {self.worst}",
                 "flags raised: " + (", ".join(raised.flag) if len(raised) else "none")]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return self.table._repr_html_() + self.flags._repr_html_()


def headline(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, norm: str | float = "inf",
             budget: str | None = None, extra: Mapping[str, torch.Tensor] | None = None,
             sweep: pd.DataFrame | None = None, seed: int = 0, batch_size: int = 250,
             cache: bool = True, progress: bool = False) -> Headline:
    """The worst case over our PGD with restarts, APGD-CE, APGD-T (DLR) and Square (gradient-free),
    each run on the survivors of the ones before, plus every mask in ``extra`` (name -> per-example
    robust mask from another attack the chapter ran on these images), with the evaluation flags.

    Args: model (returns logits); x, y the evaluation images and labels; eps, norm the threat model;
    budget: the row of ``HEADLINE_SETTINGS`` (default ``$ADVLIB_BUDGET``); extra; sweep: an eps
    sweep of this model (columns ``eps``, ``accuracy``) for the monotonicity flag; seed: PGD's random
    starts and the torchattacks seeds; cache: reuse a stored result (:func:`cached_robustness`).

    Example: ``h = headline(model, x, y, eps=0.3); print(h); h.worst``
    """
    check_images(x, "x")
    check_labels(y, x.shape[0], "y")
    eps = check_nonnegative(eps, "eps")
    norm = _attacks.normalize_norm(norm)
    budget = _budget.resolve(budget)
    s = dict(HEADLINE_SETTINGS[budget])
    num_classes = _num_classes(model, x)
    s["targets"] = min(s["targets"], num_classes - 1)
    pgd_name = f"PGD-{s['pgd_steps']} x {s['pgd_restarts']}"
    stages: dict[str, Attack] = {pgd_name: functools.partial(
        _attacks.pgd, eps=eps, norm=norm, steps=s["pgd_steps"], restarts=s["pgd_restarts"], early_stop=True,
        generator=new_generator(seed))}
    # the targeted DLR loss needs 4 classes; with fewer, APGD-CE and Square only (the flags say so)
    only = ("apgd-ce", "apgd-t", "square") if num_classes >= 4 else ("apgd-ce", "square")
    stages.update(autoattack_attacks(eps, norm, steps=s["apgd_steps"], n_target_classes=s["targets"],
                                     num_classes=num_classes, square_queries=s["square_queries"], seed=seed,
                                     only=only))
    report = cached_robustness(model, x, y, stages, batch_size=batch_size, cache=cache, progress=progress)
    for name, mask in (extra or {}).items():
        report = report.merge(name, mask)
    table = report.table.copy()
    before = [report.masks["clean"]] + list(report.masks.values())[:-1]
    table.insert(1, "broken here", [0] + [int((b & ~m).sum()) for b, m in zip(before[1:], list(report.masks.values())[1:])])
    flags = evaluation_flags(model, x, y, report=report, sweep=sweep)
    return Headline(report=report, table=table, flags=flags, settings={"budget": budget, "eps": eps, "norm": norm, **s})


def _num_classes(model: nn.Module, x: torch.Tensor) -> int:
    with torch.no_grad(), eval_mode(model):
        out = model(x[:1])
    _attacks.check_logits(out)
    return int(out.shape[1])


# ------------------------------------------------------------------------------------------ flags
def evaluation_flags(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, report: RobustnessReport | None = None,
                     sweep: pd.DataFrame | None = None, gradient_free: Sequence[str] = GRADIENT_FREE,
                     n: int = 256) -> pd.DataFrame:
    """The warning signs of an evaluation, one row each (``flag``, ``raised``, ``value``, ``detail``):

    - ``probability outputs``: every output row lies in [0, 1] and sums to 1 (a softmax inside the model);
    - ``non-deterministic forward``: two forward passes of the model as it is (its own modes; batch-norm
      statistics not moved, the global random stream not advanced) differ;
    - ``zero input gradient``: the share of examples whose cross-entropy input gradient is exactly 0
      everywhere (``detail``: the share of zero pixels over all examples);
    - ``gradient-free finds``: examples right under every gradient attack that a gradient-free stage of
      ``report`` (named in ``gradient_free``) broke;
    - ``accuracy rises with eps``: in ``sweep`` (columns ``eps``, ``accuracy``), robust accuracy higher at
      a larger eps;
    - ``too few classes for DLR``: fewer than 4 outputs (targeted APGD-DLR cannot run);
    - ``model in train mode``: a submodule in train mode (dropout, batch statistics).

    Checks without their input (no ``report``, no ``sweep``) read "not checked". The first ``n``
    examples are used for the model checks. Nothing about the model changes.
    """
    check_images(x, "x", bounds=None)
    check_labels(y, x.shape[0], "y")
    xb, yb = x[:n], y[:n]
    rows = []

    def flag(name: str, raised: bool | None, value, detail: str) -> None:
        rows.append({"flag": name, "raised": bool(raised), "value": value,
                     "detail": "not checked: " + detail if raised is None else detail})

    with torch.no_grad(), eval_mode(model):
        out = model(xb).float()
    probs = bool((out >= 0).all() and (out <= 1).all() and torch.allclose(out.sum(1), torch.ones(len(out), device=out.device), atol=1e-3))
    flag("probability outputs", probs, probs, "rows in [0, 1] summing to 1: the model ends in a softmax; attack its logits")

    devices = [xb.device] if xb.device.type == "cuda" else []
    with torch.no_grad(), freeze_batch_norm_stats(model), torch.random.fork_rng(devices=devices):
        a, b = model(xb).float(), model(xb).float()
    gap = float((a - b).abs().max())
    flag("non-deterministic forward", gap > 1e-4 * max(1.0, float(a.abs().max())), gap,
         "largest difference between two forward passes of the model as it is")

    with eval_mode(model):
        xg = xb.detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(xg).float(), yb, reduction="sum"), xg)
    zero_examples = float((grad.flatten(1) == 0).all(1).float().mean())
    zero_pixels = float((grad == 0).float().mean())
    flag("zero input gradient", zero_examples > 0, zero_examples,
         f"share of examples with an all-zero input gradient ({100 * zero_pixels:.1f}% of all pixels have zero "
         "gradient): gradient attacks cannot move them")

    if report is None:
        flag("gradient-free finds", None, None, "no report given")
    else:
        names = list(report.masks)
        found = 0
        for i, name in enumerate(names):
            if name in gradient_free and i > 0:
                found += int((report.masks[names[i - 1]] & ~report.masks[name]).sum())
        ran = [g for g in gradient_free if g in names]
        flag("gradient-free finds", found > 0 if ran else None, found,
             f"examples right under every gradient attack before {', '.join(ran)} that it broke"
             if ran else "no gradient-free stage in the report")

    if sweep is None:
        flag("accuracy rises with eps", None, None, "no eps sweep given")
    else:
        s = sweep.sort_values("eps")
        rise = float(s["accuracy"].diff().max()) if len(s) > 1 else 0.0
        flag("accuracy rises with eps", rise > 0, rise, "largest rise of robust accuracy from one eps to the next")

    flag("too few classes for DLR", out.shape[1] < 4, int(out.shape[1]),
         "number of classes (targeted APGD-DLR needs 4; it was left out)")
    training = [name or type(model).__name__ for name, m in model.named_modules() if m.training]
    flag("model in train mode", bool(training), len(training),
         "submodules in train mode: " + (", ".join(training[:5]) if training else "none"))
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- evaluation cache
EVAL_FOLDER = "evaluations"


def cached_robustness(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                      attacks: Mapping[str, Attack], *, batch_size: int = 250, amp: bool | str = False,
                      config: Mapping | None = None, cache: bool = True, progress: bool = False) -> RobustnessReport:
    """:func:`advlib.evaluate.robustness`, stored and reused: the key is the SHA-256 of the model's
    weights, of ``x`` and ``y``, of every attack's configuration (:func:`describe_attack`), of
    ``batch_size`` and ``amp``, and of ``config`` (anything else the result depends on). A stored
    result is loaded with ``weights_only=True``; a new one is written atomically. ``cache=False``
    always attacks and stores nothing. A ``torch.Generator`` inside an attack is keyed by its state
    at the call: re-running a cell that seeds it anew reloads, while a second call with the same
    generator object (advanced by the first) is another evaluation and runs.
    """
    named = dict(attacks)
    if not cache:
        return robustness(model, x, y, named, batch_size, progress, amp)
    path = evaluation_path(model, x, y, named, batch_size=batch_size, amp=amp, config=config)
    if path.exists():
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            return _report_from_masks({k: v.to(x.device) for k, v in blob["masks"].items()})
        except Exception as e:  # a torn or foreign file: attack again and overwrite it
            path.unlink(missing_ok=True)
            print(f"the stored evaluation {path.name} could not be read ({type(e).__name__}); evaluating again")
    report = robustness(model, x, y, named, batch_size, progress, amp)
    _cache.atomic_save({"masks": {k: v.cpu() for k, v in report.masks.items()}}, path)
    return report


def evaluation_path(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attacks: Mapping[str, Attack], *,
                    batch_size: int = 250, amp: bool | str = False, config: Mapping | None = None) -> Path:
    """Where :func:`cached_robustness` stores this evaluation: ``<cache dir>/evaluations/robustness-<key>.pt``.
    """
    key = {"weights": _digest(model.state_dict()), "x": _digest(x), "y": _digest(y),
           "attacks": [[name, describe_attack(a)] for name, a in attacks.items()],
           "batch_size": batch_size, "amp": amp, "config": _cache.exact(dict(config or {}), "config")}
    h = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return _cache.cache_dir() / EVAL_FOLDER / f"robustness-{h}.pt"


def describe_attack(attack: Attack) -> dict:
    """An attack's full configuration as exact JSON, for the cache key: a ``functools.partial`` by its
    function's qualified name and its arguments (a ``torch.Generator`` by its state); an object with a
    ``config`` dict (the torchattacks adapters of :func:`advlib.evaluate.autoattack_attacks`) by that.
    Anything else is a ``ValueError``: give it a ``config`` attribute.
    """
    if isinstance(attack, functools.partial):
        kwargs = {k: ({"generator_state": v.get_state()} if isinstance(v, torch.Generator) else v)
                  for k, v in attack.keywords.items()}
        return {"function": f"{attack.func.__module__}.{attack.func.__qualname__}",
                "args": _cache.exact(list(attack.args), "attack args"), "kwargs": _cache.exact(kwargs, "attack kwargs")}
    config = getattr(attack, "config", None)
    if isinstance(config, Mapping):
        return {"function": type(attack).__qualname__, "config": _cache.exact(dict(config), "attack config")}
    raise ValueError(f"attack {attack!r} cannot be described for the evaluation cache: use a functools.partial of "
                     "an attack function, or give the callable a `config` dict of everything it depends on")


def _digest(obj) -> str:
    h = hashlib.sha256()
    items = sorted(obj.items()) if isinstance(obj, Mapping) else [("", obj)]
    for name, t in items:
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(_cache.tensor_bytes(t))
    return h.hexdigest()


def _report_from_masks(masks: dict[str, torch.Tensor]) -> RobustnessReport:
    rows = [{"stage": "clean" if name == "clean" else f"+ {name}", **Accuracy.of(m).row()} for name, m in masks.items()]
    final = list(masks.values())[-1]
    return RobustnessReport(table=pd.DataFrame(rows).set_index("stage"), mask=final.clone(), masks=masks,
                            worst=Accuracy.of(final))
