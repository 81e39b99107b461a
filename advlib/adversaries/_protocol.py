"""The two call signatures of :mod:`advlib.adversaries`, eps schedules and step sizes."""
from __future__ import annotations

import inspect
import math
from typing import Callable

import torch
from torch import nn

from ..utils import check_int, check_nonnegative, check_positive

# adversary(model, x, y, progress[, index]) -> x_in
Adversary = Callable[..., torch.Tensor]
# regularizer(model, x, progress[, y]) -> scalar
Regularizer = Callable[[nn.Module, torch.Tensor, float, "torch.Tensor | None"], torch.Tensor]
# progress in [0, 1] -> eps
Schedule = Callable[[float], float]
# eps -> the step size at that eps (None: the attack's default)
StepSize = Callable[[float], "float | None"]


def accepts(fn: Callable, name: str) -> bool:
    """Whether ``fn`` takes an argument called ``name`` (or any keyword, ``**kwargs``): how
    :func:`advlib.train.fit` decides to hand an adversary ``index=`` and a regulariser ``y=``, so that
    a hand-written ``adversary(model, x, y, progress)`` or ``regularizer(model, x, progress)``, which
    needs neither, works as it is.
    """
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # no signature to read (a builtin): hand it nothing extra
        return False
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def linear_ramp(eps: float, fraction: float) -> Schedule:
    r"""The schedule :math:`\epsilon(p) = \epsilon \min(1, p / f)`: eps grows linearly from 0 over
    the first ``fraction`` :math:`f` of training, then stays (constant eps when ``fraction`` is 0).
    """
    eps = check_nonnegative(eps, "eps")
    fraction = check_nonnegative(fraction, "fraction")
    if fraction > 1:
        raise ValueError(f"fraction must be a share of training in [0, 1], got {fraction!r}")

    def eps_at(progress: float) -> float:
        return eps if fraction <= 0 else eps * min(1.0, progress / fraction)

    return eps_at


def staircase(eps_max: float, stages: int, *, eps_min: float | None = None) -> Schedule:
    r"""IAT's schedule (Shaeiri et al., 2020): ``stages`` :math:`K` equal stages of training, stage
    :math:`k = \lfloor pK \rfloor` at
    :math:`\epsilon_k = \epsilon_{\min} + (\epsilon_{\max} - \epsilon_{\min})\, k / (K - 1)`; by
    default :math:`\epsilon_{\min} = \epsilon_{\max} / K`, so :math:`\epsilon_k = \epsilon_{\max}(k+1)/K`,
    the paper's :math:`0.01\,(\text{epoch} + 1)` with :math:`K = 40` stages of one epoch.
    """
    eps_max = check_positive(eps_max, "eps_max")
    stages = check_int(stages, "stages", minimum=1)
    if eps_min is not None:
        eps_min = check_positive(eps_min, "eps_min")
        if eps_min > eps_max:
            raise ValueError(f"eps_min must be at most eps_max = {eps_max}, got {eps_min}")

    def eps_at(progress: float) -> float:
        if not 0.0 <= progress <= 1.0:
            raise ValueError(f"progress must be the share of training done, in [0, 1], got {progress!r}")
        k = min(stages - 1, math.floor(progress * stages))
        if eps_min is None:  # the paper's form, computed as written
            return eps_max * (k + 1) / stages
        return eps_max if stages == 1 else eps_min + (eps_max - eps_min) * k / (stages - 1)

    return eps_at


def ramped(eps: float, alpha: float | None, fraction: float) -> dict:
    """The ``eps`` and step arguments of this module's factories for an eps ramped linearly over the
    first ``fraction`` of training with ``alpha`` the step at the full eps: no ramp, ``eps`` and the
    absolute ``alpha``; a ramp, :func:`linear_ramp` and ``alpha_ratio = alpha / eps``, so that the
    step follows the ramp. (The form the zoo's settings, and the old factories, write a ramp in.)
    """
    if not fraction:
        return {"eps": eps, "alpha": alpha}
    return {"eps": linear_ramp(eps, fraction), "alpha_ratio": None if alpha is None or eps == 0 else alpha / eps}


def as_schedule(eps: float | Schedule, name: str = "eps") -> Schedule:
    """``eps`` as a schedule: a number >= 0 becomes a constant one; a callable ``progress -> eps``
    is wrapped so that each value it returns is checked (a finite number >= 0, else ``ValueError``
    naming ``name``).
    """
    if callable(eps):
        schedule = eps

        def checked(progress: float) -> float:
            value = schedule(progress)
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"{name}(progress) must return a number, got {value!r}") from None
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name}(progress) must be a finite number >= 0, got {value!r} at progress {progress}")
            return value

        return checked
    value = check_nonnegative(eps, name)
    return lambda progress: value


def step_size(alpha: float | None, alpha_ratio: float | None, default_ratio: float | None) -> StepSize:
    r"""The step size at the eps of the moment, :math:`\epsilon \mapsto \alpha`: ``alpha`` (absolute,
    the same at every eps) or ``alpha_ratio`` :math:`\cdot\,\epsilon` (a multiple of the eps of the
    moment, so it follows a schedule); at most one of them. Neither: ``default_ratio`` times eps, or,
    when that is None, None (the attack's own default).
    """
    if alpha is not None and alpha_ratio is not None:
        raise ValueError(f"give alpha (absolute) or alpha_ratio (a multiple of eps), not both; got alpha={alpha!r} "
                         f"and alpha_ratio={alpha_ratio!r}")
    if alpha is not None:
        a = check_positive(alpha, "alpha")
        return lambda eps: a
    if alpha_ratio is not None:
        r = check_positive(alpha_ratio, "alpha_ratio")
        return lambda eps: r * eps
    if default_ratio is None:
        return lambda eps: None
    return lambda eps: default_ratio * eps
