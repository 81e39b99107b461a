r"""Evaluation: predictions, accuracy with its confidence interval, honest robust accuracy, eps sweeps,
an independent AutoAttack-style evaluation, and the MMD between two samples.

An *attack* here is any callable ``attack(model, x, y) -> x_adv``; build one from :mod:`advlib.attacks`
with ``functools.partial`` (``partial(pgd, eps=0.3, steps=40, restarts=3)``) or with :func:`attack`.

**Robust accuracy** follows AutoAttack and RobustBench: an example counts as robust only if the model
is right on it clean *and* under every attack tried (the worst case per example over attacks,
restarts and iterates). Accuracies are returned as :class:`Accuracy`, a float that also carries ``n``
and a Wilson 95% interval,

.. math:: \frac{\hat p + \frac{z^2}{2n} \pm z\sqrt{\frac{\hat p(1-\hat p)}{n} + \frac{z^2}{4n^2}}}{1 + \frac{z^2}{n}},
          \qquad z = 1.96.

Taught in chapters 00 (accuracy), 02 (:func:`mmd2`) and 07 (honest robust evaluation).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from . import attacks as _attacks
from .stats import wilson_interval as _wilson  # the interval of every Accuracy (scipy.stats)
from .utils import (bf16_autocast, check_images, check_int, check_labels, check_model_input, check_nonnegative,
                    check_positive, eval_mode, model_device, resolve_amp, show_progress)

Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


# ------------------------------------------------------------------------- accuracy with its interval
def _count(value: int, name: str) -> int:
    """``value`` as an int if it is a whole number >= 0 (an int, or a float or 0-d tensor holding one)."""
    try:
        v = int(value)
        whole = not isinstance(value, bool) and v == value
    except (TypeError, ValueError, RuntimeError):
        whole = False
    if not whole or v < 0:
        raise ValueError(f"{name} must be a whole number >= 0, got {value!r}")
    return v


class Accuracy(float):
    """A fraction correct that remembers how it was measured: it *is* the float ``correct / n``
    (so arithmetic and formatting work as usual) and carries ``correct``, ``n`` and the Wilson 95%
    interval ``low``, ``high``. ``str(acc)`` reads ``"91.0% [89.1, 92.6], n=1000"``.
    """

    correct: int
    n: int
    low: float
    high: float

    def __new__(cls, correct: int, n: int) -> "Accuracy":
        correct, n = _count(correct, "correct"), _count(n, "n")
        if correct > n:
            raise ValueError(f"correct must be at most n={n}, got {correct}")
        obj = super().__new__(cls, correct / n if n else float("nan"))
        obj.correct, obj.n = correct, n
        obj.low, obj.high = _wilson(correct, n) if n else (float("nan"), float("nan"))
        return obj

    @classmethod
    def of(cls, mask: torch.Tensor) -> "Accuracy":
        """The accuracy of a boolean per-example mask (``True`` = right)."""
        return cls(int(mask.sum().item()), mask.numel())

    @property
    def interval(self) -> tuple[float, float]:
        """``(low, high)``, the Wilson 95% interval."""
        return self.low, self.high

    def __str__(self) -> str:
        return f"{100 * float(self):.1f}% [{100 * self.low:.1f}, {100 * self.high:.1f}], n={self.n}"

    def __repr__(self) -> str:
        return f"Accuracy({float(self):.4f}, n={self.n}, 95% CI [{self.low:.4f}, {self.high:.4f}])"

    def __reduce__(self):
        return (Accuracy, (self.correct, self.n))

    def row(self) -> dict:
        """``{"accuracy", "n", "ci_low", "ci_high"}`` for a table row (plain floats)."""
        return {"accuracy": float(self), "n": self.n, "ci_low": self.low, "ci_high": self.high}


# ------------------------------------------------------------------------------------ predictions
def attack(name: str, **kwargs) -> Attack:
    """``attack("pgd", eps=0.3, steps=40)`` -> an ``Attack`` (a partial of :mod:`advlib.attacks`).
    """
    table = {"fgsm": _attacks.fgsm, "pgd": _attacks.pgd}
    if name not in table:
        raise ValueError(f"name must be one of {sorted(table)}, got {name!r}")
    return functools.partial(table[name], **kwargs)


def _batches(x: torch.Tensor, y: torch.Tensor | None, batch_size: int):
    for i in range(0, x.shape[0], batch_size):
        yield x[i:i + batch_size], (None if y is None else y[i:i + batch_size])


def _float32(device: torch.device):
    """Autocast off: predictions that decide correctness are always computed in full precision."""
    return torch.autocast(device_type=device.type, enabled=False)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Logits of ``model`` on ``x`` (eval mode, restored after; float32, autocast off), batch by
    batch, on ``x``'s device.
    """
    check_images(x, "x", bounds=None)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    dev = model_device(model)
    out = []
    with eval_mode(model), _float32(dev):
        for xb, _ in _batches(x, None, batch_size):
            xb = xb.to(dev)
            if not out:
                check_model_input(model, xb, "x")
            logits = model(xb)
            _attacks.check_logits(logits, xb.shape[0])
            out.append(logits.float().to(x.device))
    return torch.cat(out)


def correct_mask(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Per example, whether ``model`` classifies ``x`` as ``y`` (bool, on ``x``'s device).
    """
    check_labels(y, x.shape[0], "y")
    logits = predict(model, x, batch_size)
    _attacks.check_logits(logits, finite=True)
    return logits.argmax(1) == y.to(x.device)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> Accuracy:
    """Fraction of ``x`` that ``model`` classifies as ``y`` (in eval mode), as an :class:`Accuracy`.
    """
    return Accuracy.of(correct_mask(model, x, y, batch_size))


# ----------------------------------------------------------------------------- robust evaluation
def adversarial_examples(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack,
                         batch_size: int = 250, progress: bool = False, amp: bool | str = False, *,
                         name: str | None = None) -> torch.Tensor:
    """``attack`` applied batch by batch; returns all adversarial examples (on ``x``'s device).
    ``amp``: run the attack under bfloat16 autocast (see :func:`advlib.utils.resolve_amp`).
    Each batch the attack returns must be a finite tensor of the shape and dtype of its input; a
    ``ValueError`` naming the attack (``name``, default its function's name) says otherwise.
    """
    check_images(x, "x", bounds=None)
    check_labels(y, x.shape[0], "y")
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    dev = model_device(model)
    bf16 = resolve_amp(amp, dev)
    out = []
    it = _batches(x, y, batch_size)
    if show_progress(progress):
        it = tqdm(it, total=-(-x.shape[0] // batch_size), desc="attack", leave=False)
    for xb, yb in it:
        xb = xb.to(dev)
        with bf16_autocast(dev, bf16):
            x_adv = attack(model, xb, yb.to(dev))
        _check_attack_output(x_adv, xb, name or _name_of(attack))
        out.append(x_adv.to(x.device))
    return torch.cat(out)


def _check_attack_output(x_adv: torch.Tensor, xb: torch.Tensor, name: str) -> None:
    """Raise ``ValueError``, naming the attack, unless it returned finite images shaped and typed like ``xb``."""
    if not isinstance(x_adv, torch.Tensor):
        raise ValueError(f"attack {name!r} must return a tensor of images, got {type(x_adv).__name__}")
    if x_adv.shape != xb.shape:
        raise ValueError(f"attack {name!r} returned images of shape {tuple(x_adv.shape)} for a batch of "
                         f"shape {tuple(xb.shape)}; it must return one image per input, same shape")
    if x_adv.dtype != xb.dtype:
        raise ValueError(f"attack {name!r} returned {x_adv.dtype} images for {xb.dtype} inputs; it must "
                         "return the dtype it was given")
    if not torch.isfinite(x_adv).all():
        raise ValueError(f"attack {name!r} returned images with NaN or infinite values")


def _named(attacks: Attack | Sequence[Attack] | Mapping[str, Attack]) -> dict[str, Attack]:
    if callable(attacks):
        return {_name_of(attacks): attacks}
    if isinstance(attacks, Mapping):
        named = dict(attacks)
    else:
        named = {}
        for a in attacks:
            name, k = _name_of(a), 2
            while name in named:
                name, k = f"{_name_of(a)} ({k})", k + 1
            named[name] = a
    if not named or not all(callable(a) for a in named.values()):
        raise ValueError("attacks must be an attack, a non-empty sequence of attacks or a dict name -> attack")
    return named


def _name_of(a: Attack) -> str:
    if isinstance(a, functools.partial):
        return getattr(a.func, "__name__", "attack")
    return getattr(a, "__name__", type(a).__name__)


@dataclass
class RobustnessReport:
    """What :func:`robustness` found: ``table`` (one row per stage: clean, then each attack, each row
    the accuracy of the examples still right after it and every attack before it, with n and a 95%
    interval), ``mask`` (per example: right clean and under every attack), ``masks`` (the same after
    each stage) and ``worst`` (the final :class:`Accuracy`).
    """

    table: pd.DataFrame
    mask: torch.Tensor
    masks: dict[str, torch.Tensor] = field(repr=False)
    worst: Accuracy

    def _repr_html_(self) -> str:
        return self.table._repr_html_()

    def __str__(self) -> str:
        return self.table.to_string()

    def merge(self, name: str, mask: torch.Tensor) -> "RobustnessReport":
        """A new report with one more stage, ``name``: another attack's per-example robust ``mask``
        (True = right under it) on the same examples, joined into the worst case.

        Example: ``report.merge("PGD-100 x 10 restarts (study)", study_mask)``
        """
        if name in self.masks:
            raise ValueError(f"name must be a new stage, got {name!r}; stages: {list(self.masks)}")
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.shape != self.mask.shape:
            raise ValueError(f"mask must be a bool tensor of shape {tuple(self.mask.shape)} (one entry per example), "
                             f"got {getattr(mask, 'dtype', type(mask).__name__)} {tuple(getattr(mask, 'shape', ()))}")
        worst = self.mask & mask.to(self.mask.device)
        masks = {**self.masks, name: worst}
        table = pd.concat([self.table, pd.DataFrame([Accuracy.of(worst).row()], index=[f"+ {name}"])])
        table.index.name = self.table.index.name
        return RobustnessReport(table=table, mask=worst, masks=masks, worst=Accuracy.of(worst))


def robustness(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
               attacks: Attack | Sequence[Attack] | Mapping[str, Attack], batch_size: int = 250,
               progress: bool = False, amp: bool | str = False) -> RobustnessReport:
    """Honest robust accuracy: each example is robust only if the model is right on it clean and under
    every attack in ``attacks`` (a callable, a list, or a dict name -> attack, run in that order).

    Each attack runs only on the examples still robust after the ones before it (as AutoAttack does),
    so a strong first attack makes the rest cheap, and an example already wrong clean is never
    attacked. Correctness is always judged in float32 on the returned examples; ``amp`` runs the
    attacks themselves under bf16 autocast. Returns a :class:`RobustnessReport`.
    """
    check_images(x, "x", bounds=None)
    check_labels(y, x.shape[0], "y")
    named = _named(attacks)
    mask = correct_mask(model, x, y, batch_size)
    masks, rows = {"clean": mask.clone()}, [{"stage": "clean", **Accuracy.of(mask).row()}]
    for name, atk in named.items():
        idx = mask.nonzero().squeeze(1)
        if idx.numel():
            x_adv = adversarial_examples(model, x[idx], y[idx], atk, batch_size, progress, amp, name=name)
            mask[idx] = correct_mask(model, x_adv, y[idx], batch_size)
        masks[name] = mask.clone()
        rows.append({"stage": f"+ {name}", **Accuracy.of(mask).row()})
    table = pd.DataFrame(rows).set_index("stage")
    return RobustnessReport(table=table, mask=mask, masks=masks, worst=Accuracy.of(mask))


def robust_mask(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                attacks: Attack | Sequence[Attack] | Mapping[str, Attack], batch_size: int = 250,
                progress: bool = False, amp: bool | str = False) -> torch.Tensor:
    """Per example (bool): right clean and under every attack given. See :func:`robustness`.
    """
    return robustness(model, x, y, attacks, batch_size, progress, amp).mask


def robust_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                    attack: Attack | Sequence[Attack] | Mapping[str, Attack], batch_size: int = 250,
                    progress: bool = False, amp: bool | str = False) -> Accuracy:
    """The share of ``(x, y)`` that the model gets right clean *and* under ``attack`` (or under every
    attack of a list or dict), as an :class:`Accuracy` with n and a 95% interval. Examples wrong
    clean are not attacked.
    """
    return robustness(model, x, y, attack, batch_size, progress, amp).worst


def eps_sweep(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps_values: Iterable[float],
              attack: str | Callable = "pgd", batch_size: int = 250, progress: bool | None = None,
              **attack_kwargs) -> pd.DataFrame:
    """Robust accuracy at each eps: a table with columns ``eps``, ``accuracy``, ``n``, ``ci_low`` and
    ``ci_high`` (the Wilson 95% interval).

    ``attack`` is ``"fgsm"``, ``"pgd"`` or a function ``f(model, x, y, eps=..., **attack_kwargs)``.
    For PGD without an explicit ``alpha``, the step is ``2.5 * eps / steps`` at each eps.
    """
    if isinstance(attack, str) and attack not in ("fgsm", "pgd"):
        raise ValueError(f"attack must be 'fgsm', 'pgd' or a callable, got {attack!r}")
    fn = {"fgsm": _attacks.fgsm, "pgd": _attacks.pgd}[attack] if isinstance(attack, str) else attack
    if isinstance(eps_values, (str, bytes)) or not isinstance(eps_values, Iterable):
        raise ValueError(f"eps_values must be a non-empty list of numbers, e.g. [0.1, 0.2], got {eps_values!r}")
    eps_values = [check_nonnegative(e, "eps_values") for e in eps_values]
    if not eps_values:
        raise ValueError("eps_values must be a non-empty list of numbers, got an empty one")
    rows = []
    for eps in tqdm(eps_values, desc="eps sweep", leave=False, disable=not show_progress(progress)):
        acc = robust_accuracy(model, x, y, functools.partial(fn, eps=float(eps), **attack_kwargs), batch_size)
        rows.append({"eps": float(eps), **acc.row()})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------- independent evaluation (AutoAttack)
AUTOATTACK_VERSIONS = {"fast": ("apgd-ce", "apgd-t"), "standard": ("apgd-ce", "apgd-t", "fab-t", "square")}
# the fewest classes each attack's loss is defined for (targeted DLR: the 3rd and 4th largest logits)
_MIN_CLASSES = {"apgd-ce": 2, "apgd-t": 4, "fab-t": 2, "square": 2}


def autoattack_attacks(eps: float, norm: str | float = "inf", version: str = "fast", *, steps: int = 100,
                       n_target_classes: int = 9, num_classes: int = 10, square_queries: int = 5000,
                       seed: int = 0, only: Sequence[str] | None = None) -> dict[str, Attack]:
    """The attacks of AutoAttack (Croce & Hein, 2020), from ``torchattacks``, as a dict name -> attack
    for :func:`robustness` (so they can be combined with our own attacks in one worst case).

    ``version="fast"``: APGD with cross-entropy, then targeted APGD with the DLR loss against the
    ``n_target_classes`` most likely other classes; ``"standard"`` adds targeted FAB and the
    black-box Square attack (``square_queries`` queries), as AutoAttack's standard version does.
    ``steps`` is the iterations of each APGD / FAB run (AutoAttack: 100), the knob that fits it to a
    CPU. ``only`` picks attacks by key instead of a version (some of ``"apgd-ce"``, ``"apgd-t"``,
    ``"fab-t"``, ``"square"``, run in that order). The attacks run on the model in eval mode;
    parameters' gradients are not touched; each checks that the model has ``num_classes`` outputs.
    """
    import torchattacks  # an independent implementation: imported only when asked for

    if version not in AUTOATTACK_VERSIONS:
        raise ValueError(f"version must be one of {sorted(AUTOATTACK_VERSIONS)}, got {version!r}")
    keys = AUTOATTACK_VERSIONS[version]
    if only is not None:
        unknown = sorted(set(only) - set(_MIN_CLASSES))
        if unknown or not only:
            raise ValueError(f"only must name some of {list(_MIN_CLASSES)}, got {only!r}")
        keys = tuple(k for k in _MIN_CLASSES if k in only)
    norm_name = {"inf": "Linf", "2": "L2"}[_attacks.normalize_norm(norm)]
    steps = check_int(steps, "steps", minimum=1)
    num_classes = check_int(num_classes, "num_classes", minimum=2)
    n_target_classes = check_int(n_target_classes, "n_target_classes", minimum=1)
    if n_target_classes > num_classes - 1:
        raise ValueError(f"n_target_classes must be at most num_classes - 1 = {num_classes - 1}, got {n_target_classes}")
    needs = max(_MIN_CLASSES[k] for k in keys)
    if num_classes < needs:
        chosen = f"version={version!r}" if only is None else f"only={list(keys)}"
        raise ValueError(f"num_classes must be at least {needs} for {chosen} (the targeted DLR loss "
                         f"reads the 3rd and 4th largest logits), got {num_classes}; attack a model with fewer "
                         "classes with advlib.attacks.pgd")
    eps = check_nonnegative(eps, "eps")
    builders = {
        "apgd-ce": lambda m: torchattacks.APGD(m, norm=norm_name, eps=eps, steps=steps, n_restarts=1,
                                               loss="ce", seed=seed),
        "apgd-t": lambda m: _with_targets(torchattacks.APGDT(m, norm=norm_name, eps=eps, steps=steps, n_restarts=1,
                                                             n_classes=num_classes, seed=seed), n_target_classes),
        "fab-t": lambda m: torchattacks.FAB(m, norm=norm_name, eps=eps, steps=steps, n_restarts=1,
                                            multi_targeted=True, n_classes=num_classes, seed=seed),
        "square": lambda m: torchattacks.Square(m, norm=norm_name, eps=eps, n_queries=square_queries,
                                                n_restarts=1, seed=seed),
    }
    names = {"apgd-ce": "APGD-CE", "apgd-t": "APGD-T (DLR)", "fab-t": "FAB-T", "square": "Square"}
    settings = {"norm": norm_name, "eps": eps, "steps": steps, "n_target_classes": n_target_classes,
                "square_queries": square_queries, "seed": seed, "torchattacks": str(torchattacks.__version__)}
    return {names[k]: _TorchattacksAttack(builders[k], names[k], num_classes, {"attack": k, **settings})
            for k in keys}


def _with_targets(atk, n_target_classes: int):
    atk.n_target_classes = n_target_classes
    return atk


class _TorchattacksAttack:
    """Adapts a torchattacks attack to ``attack(model, x, y) -> x_adv``: built for the model it is
    given, run in eval mode (modes restored), in float32, with the parameters frozen for the call
    (some torchattacks attacks call ``backward``, which would otherwise add to their ``.grad``)."""

    def __init__(self, build: Callable[[nn.Module], object], name: str, num_classes: int, config: dict):
        self.build, self.__name__, self.num_classes = build, name, num_classes
        self.config = {**config, "num_classes": num_classes}  # everything the result depends on (a cache key)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        params = [p for p in model.parameters() if p.requires_grad]
        try:
            for p in params:
                p.requires_grad_(False)
            with eval_mode(model), _float32(x.device):
                with torch.no_grad():
                    logits = model(x[:1])
                _attacks.check_logits(logits, 1)
                if logits.shape[1] != self.num_classes:
                    raise ValueError(f"num_classes must be the model's number of outputs, {logits.shape[1]}, "
                                     f"for {self.__name__}; got num_classes={self.num_classes}")
                return self.build(model)(x, y).detach()
        finally:
            for p in params:
                p.requires_grad_(True)


def autoattack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, norm: str | float = "inf",
               version: str = "fast", steps: int = 100, batch_size: int = 250, progress: bool = False,
               **kwargs) -> RobustnessReport:
    """The independent evaluation in one call: :func:`robustness` under :func:`autoattack_attacks`
    (per attack, cumulative, and the worst case).
    """
    return robustness(model, x, y, autoattack_attacks(eps, norm, version, steps=steps, **kwargs),
                      batch_size, progress)


# ------------------------------------------------------------------ distance between two samples (MMD)
def mmd2(x: torch.Tensor, y: torch.Tensor, bandwidths=(0.25, 0.5, 1.0, 2.0, 4.0), unbiased: bool = False) -> float:
    r"""Squared maximum mean discrepancy between samples ``x`` (N, d) and ``y`` (M, d) with a sum of
    Gaussian kernels :math:`k(a, b) = \sum_s \exp(-\|a - b\|^2 / (2 s^2))` over ``bandwidths``:

    .. math:: \mathrm{MMD}^2 = \overline{k(x, x')} + \overline{k(y, y')} - 2\,\overline{k(x, y)}.

    The biased (V-statistic) estimate is 0 for identical samples and never negative; ``unbiased``
    leaves out the diagonal terms (about 0 for two samples of one distribution, may be slightly
    negative). Zero in the population iff the distributions agree.
    """
    x, y = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must be (N, d) and (M, d) with the same d, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.shape[0] < 2 or y.shape[0] < 2:
        raise ValueError("x and y need at least 2 rows each")
    for name, t in (("x", x), ("y", y)):
        if not torch.isfinite(t).all():
            raise ValueError(f"{name} contains NaN or infinite values")
    bws = [check_positive(b, "bandwidths") for b in bandwidths]
    if not bws:
        raise ValueError("bandwidths must not be empty")

    def k(a, b):
        d2 = torch.cdist(a, b).pow(2)
        return sum(torch.exp(-d2 / (2 * s * s)) for s in bws)

    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    n, m = x.shape[0], y.shape[0]
    if unbiased:
        sxx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
        syy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    else:
        sxx, syy = kxx.mean(), kyy.mean()
    return float(sxx + syy - 2 * kxy.mean())
