r"""Generative adversarial networks (Goodfellow et al. 2014): the losses, the training loops and the
1-D theory of chapter 01.

The two-player game

.. math:: \min_G \max_D V(D, G) = \mathbb E_{x\sim p_\text{data}}[\log D(x)]
          + \mathbb E_{z\sim p_z}[\log(1 - D(G(z)))]

is played by alternating gradient steps (:func:`train_gan`): ``d_steps`` ascent steps of :math:`D`
on :math:`V`, then one step of :math:`G`, either on the *minimax* loss
:math:`\mathbb E_z \log(1 - D(G(z)))` (minimised) or on the *non-saturating* loss
:math:`-\mathbb E_z \log D(G(z))`, which has the same fixed point but strong gradients when :math:`D`
rejects the samples (:func:`generator_loss`). For a fixed :math:`G` the best discriminator is
:math:`D^*(x) = p_\text{data}(x) / (p_\text{data}(x) + p_g(x))` and
:math:`C(G) = V(D^*, G) = -\log 4 + 2\,\mathrm{JS}(p_\text{data} \| p_g)`
(:func:`optimal_discriminator`, :func:`js_divergence`, :func:`gan_value`; :func:`train_discriminator`
learns :math:`D^*` from samples). :func:`class_balance` measures how evenly generated samples spread
over the classes a classifier sees in them (mode collapse); where the modes are known points (the
ring of Gaussians), :func:`mode_coverage` measures the samples' quality and their spread over the
modes, and :func:`mode_drops` finds the modes lost over a run's logs. The networks are in
:mod:`advlib.models.gan`. Taught in chapter 01.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from . import loops
from .utils import check_int, check_positive, draw, model_device

Sampler = Callable[[int], torch.Tensor]
LOG4 = math.log(4.0)


# ============================================================================== the losses
def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, real_label: float = 1.0) -> torch.Tensor:
    r"""The discriminator's loss :math:`-V = -\mathbb E\log D(x) - \mathbb E\log(1 - D(G(z)))`,
    from logits: ``softplus(-real) + softplus(fake)``, batch means.

    ``real_label`` < 1 is *one-sided label smoothing* (Salimans et al. 2016): the real examples'
    target becomes ``real_label`` instead of 1 (the fakes' stays 0), i.e. the real term is the
    cross-entropy ``real_label * softplus(-real) + (1 - real_label) * softplus(real)``. The best
    discriminator is then :math:`D^* = a\,p_\text{data} / (p_\text{data} + p_g)` with
    :math:`a` = ``real_label``, which no longer grows towards 1 where the generator is absent.
    """
    if not 0.5 < float(real_label) <= 1.0:
        raise ValueError(f"real_label must be in (0.5, 1], got {real_label}")
    real = F.softplus(-real_logits)
    if real_label < 1.0:
        real = real_label * real + (1.0 - real_label) * F.softplus(real_logits)
    return real.mean() + F.softplus(fake_logits).mean()


def generator_loss(fake_logits: torch.Tensor, kind: str = "ns") -> torch.Tensor:
    r"""The generator's loss from the discriminator's logits :math:`\ell` on generated samples.

    ``"minimax"``: :math:`\mathbb E_z \log(1 - D(G(z))) = -\mathbb E\,\mathrm{softplus}(\ell)`
    (its gradient vanishes when :math:`D(G(z)) \to 0`); ``"ns"`` (non-saturating):
    :math:`-\mathbb E_z \log D(G(z)) = \mathbb E\,\mathrm{softplus}(-\ell)`.
    """
    if kind == "minimax":
        return -F.softplus(fake_logits).mean()
    if kind == "ns":
        return F.softplus(-fake_logits).mean()
    raise ValueError(f"kind must be 'ns' or 'minimax', got {kind!r}")


def adam(params, lr: float, betas: tuple[float, float] = (0.5, 0.999), name: str = "lr") -> torch.optim.Adam:
    r"""Adam on ``params`` with the GAN papers' :math:`\beta_1 = 0.5` by default (the momentum of the
    usual 0.9 makes the alternating game oscillate more); ``name`` names ``lr`` in errors.
    """
    return torch.optim.Adam(list(params), lr=check_positive(lr, name), betas=betas)


# ============================================================================== the loops
def train_gan(G: nn.Module, D: nn.Module, data, *, steps: int | None = None, epochs: float | None = None,
              batch_size: int = 64, lr_g: float = 2e-4, lr_d: float = 2e-4, betas=(0.5, 0.999),
              loss: str = "ns", d_steps: int = 1, real_label: float = 1.0, log_every: int | None = None,
              seed: int = 0,
              generator: torch.Generator | None = None, progress: bool | None = None,
              callback: Callable[[nn.Module, nn.Module, dict], None] | None = None) -> pd.DataFrame:
    r"""Train a GAN in place by alternating ``d_steps`` discriminator steps and one generator step
    (Algorithm 1 of Goodfellow et al. 2014, with Adam); ``G`` and ``D`` are left in eval mode.

    Each round, for a batch :math:`x` of real samples and noise :math:`z, z' \sim \mathcal N(0, I)`:
    :math:`D` steps on :func:`discriminator_loss` of :math:`(D(x), D(G(z)))`, then :math:`G` steps
    on :func:`generator_loss` of :math:`D(G(z'))`.

    Args:
        G: a generator with attribute ``z_dim``.
        D: a discriminator returning logits ``(N,)``.
        data: real samples: an :class:`~advlib.data.ImageData`, a tensor, an ``(x, y)`` pair (``y``
            ignored) or a sampler ``n -> x`` (see :func:`advlib.loops.batches`; a last partial batch is dropped).
        steps / epochs: length of training in generator steps, or in passes over ``data`` (one).
        loss: generator loss, ``"ns"`` (non-saturating) or ``"minimax"`` (see :func:`generator_loss`).
        real_label: the discriminator's target for real samples; below 1, one-sided label smoothing
            (see :func:`discriminator_loss`).
        log_every: steps between history rows (default: one per epoch, or 10 rows for a sampler).
        seed: seeds the shuffle of ``data``.
        generator: draws the noise, first :math:`z` then :math:`z'` each round (default: a
            ``torch.Generator`` seeded with ``seed + 1``). The global random state is not touched.
        callback: ``callback(G, D, row)`` after each history row (e.g. to keep sample snapshots).

    Returns the history: ``epoch`` (if finite data), ``step``, ``d_loss`` (:math:`-V` estimate),
    ``g_loss``, ``d_real`` / ``d_fake`` (mean :math:`D(x)` and :math:`D(G(z))`), ``time_s``.
    """
    generator_loss(torch.zeros(1), loss)  # validates the loss name
    discriminator_loss(torch.zeros(1), torch.zeros(1), real_label)  # validates real_label
    d_steps = check_int(d_steps, "d_steps", minimum=1)
    if not hasattr(G, "z_dim"):
        raise ValueError("G must have an attribute z_dim (the noise dimension)")
    device = model_device(G)
    run = loops.Run.over((G, D), data, batch_size, seed=seed, device=device, steps=steps, epochs=epochs,
                         log_every=log_every, desc=f"GAN ({loss})", progress=progress)
    opt_g, opt_d = adam(G.parameters(), lr_g, betas, "lr_g"), adam(D.parameters(), lr_d, betas, "lr_d")
    gz = torch.Generator().manual_seed(seed + 1) if generator is None else generator

    def noise(n: int) -> torch.Tensor:
        return draw(torch.randn, n, G.z_dim, generator=gz, device=device)

    for t in run:
        for _ in range(d_steps):
            x, _ = next(run.stream)
            with torch.no_grad():
                fake = G(noise(x.shape[0]))
            real_logits, fake_logits = D(x), D(fake)
            d_loss = discriminator_loss(real_logits, fake_logits, real_label)
            loops.optimizer_step(opt_d, d_loss, "discriminator", t, run.total)
        g_loss = generator_loss(D(G(noise(x.shape[0]))), loss)
        loops.optimizer_step(opt_g, g_loss, "generator", t, run.total)
        run.history.add(d_loss=d_loss.item(), g_loss=g_loss.item(), d_real=torch.sigmoid(real_logits).mean().item(),
                        d_fake=torch.sigmoid(fake_logits).mean().item())
        if t in run.log_at:
            row = run.history.row(t)
            run.bar.set_postfix(d_loss=round(row["d_loss"], 3), g_loss=round(row["g_loss"], 3))
            if callback is not None:
                with run.history.paused():  # time_s counts training only
                    callback(G, D, row)
                G.train(), D.train()
    return run.history.frame()


def train_discriminator(D: nn.Module, real: Sampler, fake: Sampler, *, steps: int = 2000, batch_size: int = 512,
                        lr: float = 1e-3, log_every: int | None = None, progress: bool | None = None) -> pd.DataFrame:
    r"""Train ``D`` alone, with the generator fixed: maximise
    :math:`\mathbb E_{x\sim\text{real}}\log D(x) + \mathbb E_{x\sim\text{fake}}\log(1 - D(x))`, whose
    maximiser is :math:`D^* = p_\text{data} / (p_\text{data} + p_g)`. ``real`` and ``fake`` are samplers
    ``n -> x`` and the only source of randomness (seed them, or give them generators). ``D`` is left
    in eval mode. Returns the history (``step``, ``value`` = the mean estimate of :math:`V` since the
    last row, ``time_s``; a row every ``log_every`` steps, default a tenth of the run).
    """
    steps = check_int(steps, "steps", minimum=1)
    check_int(batch_size, "batch_size", minimum=1)
    device = model_device(D)
    opt = torch.optim.Adam(D.parameters(), lr=check_positive(lr, "lr"))
    run = loops.Run((D,), steps, log_every=log_every, desc="D only", progress=progress)
    for t in run:
        loss = discriminator_loss(D(real(batch_size).to(device)), D(fake(batch_size).to(device)))
        loops.optimizer_step(opt, loss, "discriminator", t, steps)
        run.history.add(value=-loss.item())
        if t in run.log_at:
            run.history.row(t)
    return run.history.frame()


# ======================================================================= judging the samples
def _entropy(shares: np.ndarray) -> float:
    """The entropy in nats of shares that sum to 1 (0 log 0 = 0)."""
    nz = shares[shares > 0]
    return float(-(nz * np.log(nz)).sum())


def class_balance(labels: torch.Tensor | np.ndarray, n_classes: int = 10) -> dict:
    r"""How evenly ``labels`` (class indices, e.g. a classifier's predictions on generated samples)
    spread over ``n_classes`` classes: ``shares`` (the fraction of each class), ``entropy`` (of the
    shares, in nats; :math:`\log` ``n_classes`` when perfectly even, 0 when one class takes all),
    ``max_share`` / ``min_share`` and their classes ``max_class`` / ``min_class``, and ``n``.

    A generator that drops or starves modes shows it as a low entropy, a large ``max_share`` and a
    small ``min_share``, compared with the same numbers for real data.
    """
    n_classes = check_int(n_classes, "n_classes", minimum=1)
    y = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels).flatten().long().cpu()
    if y.numel() == 0:
        raise ValueError("labels must not be empty")
    if y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"labels must be in [0, {n_classes}), got values from {int(y.min())} to {int(y.max())}")
    shares = (torch.bincount(y, minlength=n_classes).double() / y.numel()).numpy()
    return {"shares": shares, "entropy": _entropy(shares), "max_share": float(shares.max()),
            "max_class": int(shares.argmax()), "min_share": float(shares.min()), "min_class": int(shares.argmin()),
            "n": int(y.numel())}


def mode_coverage(samples: torch.Tensor, modes: torch.Tensor, radius: float) -> dict:
    r"""Where generated ``samples`` (n, d) land among known ``modes`` (k, d), each sample given to its
    nearest mode:

    - ``hq``, the *high-quality* share: samples within ``radius`` of their mode (for modes that are
      isotropic Gaussians of standard deviation :math:`\sigma` in 2-D and ``radius`` :math:`= 3\sigma`,
      the data's own share is :math:`1 - e^{-9/2} = 98.9\%`);
    - ``shares`` (k,): each mode's share *of the high-quality samples* (they sum to 1; all 0 when no
      sample is of high quality), so a generator whose samples all sit slightly off the modes is not
      read as having dropped them;
    - ``entropy`` of ``shares`` in nats (:math:`\log k` when even) and ``min_share`` / ``max_share``.

    Counting a mode as covered when it holds a fixed share of *all* samples would mix quality with
    coverage: a ring of samples drawn slightly inside the modes' circle would "drop" modes it visits.
    """
    x = torch.as_tensor(samples).detach().float().cpu()
    m = torch.as_tensor(modes).detach().float().cpu()
    if x.ndim != 2 or m.ndim != 2 or x.shape[1] != m.shape[1] or not len(x) or not len(m):
        raise ValueError(f"samples (n, d) and modes (k, d) must be non-empty 2-D with one d, got "
                         f"{tuple(x.shape)} and {tuple(m.shape)}")
    radius = check_positive(radius, "radius")
    dist, nearest = torch.cdist(x, m).min(1)
    good = dist <= radius
    counts = torch.bincount(nearest[good], minlength=len(m)).double()
    shares = (counts / counts.sum()).numpy() if counts.sum() > 0 else np.zeros(len(m))
    return {"hq": float(good.double().mean()), "shares": shares, "entropy": _entropy(shares),
            "min_share": float(shares.min()), "max_share": float(shares.max()), "n": int(len(x))}


def mode_drops(shares: np.ndarray, floor: float, k: int = 3) -> dict:
    r"""The modes a run loses, from its ``shares`` logged over time, (T, modes) (e.g. the ``shares``
    of :func:`mode_coverage` at each log). A mode is *absent* at a log when its share is below
    ``floor``; a *drop* is a run of at least ``k`` consecutive absent logs after a log where it was
    present, so that a share flickering around the floor for fewer than ``k`` logs is not a drop.

    Returns ``drops`` (the number of such runs, over all modes), ``dropped_modes`` (the modes with at
    least one), ``lost_at_end`` (modes absent over the last ``k`` logs) and ``present`` (T,), the
    number of modes present at each log.
    """
    s = np.asarray(shares, float)
    if s.ndim != 2 or not s.size:
        raise ValueError(f"shares must be a non-empty (logs, modes) array, got shape {s.shape}")
    floor = check_positive(floor, "floor")
    k = check_int(k, "k", minimum=1)
    absent = s < floor
    drops, dropped = 0, []
    for j in range(s.shape[1]):
        held, run, runs = False, 0, 0
        for gone in absent[:, j]:
            run = run + 1 if gone else 0
            held = held or not gone
            runs += int(held and run == k)  # a run counts once, when it reaches k logs
        drops += runs
        if runs:
            dropped.append(j)
    lost = np.flatnonzero(absent[-k:].all(0)).tolist() if len(s) >= k else []
    return {"drops": drops, "dropped_modes": dropped, "lost_at_end": lost, "present": (~absent).sum(1)}


# ========================================================================== GAN theory (1-D)
def optimal_discriminator(p_data: np.ndarray, p_g: np.ndarray) -> np.ndarray:
    r""":math:`D^*(x) = p_\text{data}(x) / (p_\text{data}(x) + p_g(x))` on a grid of density values
    (0.5 where both vanish).
    """
    p, q = np.asarray(p_data, float), np.asarray(p_g, float)
    if p.shape != q.shape:
        raise ValueError(f"p_data and p_g must have the same shape, got {p.shape} and {q.shape}")
    s = p + q
    return np.where(s > 0, p / np.where(s > 0, s, 1.0), 0.5)


def _kl(p: np.ndarray, m: np.ndarray, dx: float) -> float:
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / m[mask])) * dx)


def js_divergence(p: np.ndarray, q: np.ndarray, dx: float) -> float:
    r"""Jensen-Shannon divergence :math:`\tfrac12 \mathrm{KL}(p\|m) + \tfrac12 \mathrm{KL}(q\|m)`,
    :math:`m = (p + q)/2`, of two densities given on a uniform grid of spacing ``dx`` (natural log,
    at most :math:`\log 2`).
    """
    p, q = np.asarray(p, float), np.asarray(q, float)
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same shape, got {p.shape} and {q.shape}")
    check_positive(dx, "dx")
    m = 0.5 * (p + q)
    return 0.5 * _kl(p, m, dx) + 0.5 * _kl(q, m, dx)


def gan_value(p_data: np.ndarray, p_g: np.ndarray, d: np.ndarray, dx: float) -> float:
    r""":math:`V(D, G) = \int p_\text{data}\log D + p_g \log(1 - D)\,dx` by quadrature, for densities and
    discriminator values on a uniform grid. With ``d`` = :func:`optimal_discriminator` this is
    :math:`C(G) = -\log 4 + 2\,\mathrm{JS}`.
    """
    p, q, d = (np.asarray(a, float) for a in (p_data, p_g, d))
    if not p.shape == q.shape == d.shape:
        raise ValueError(f"p_data, p_g and d must have the same shape, got {p.shape}, {q.shape} and {d.shape}")
    check_positive(dx, "dx")
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(p > 0, p * np.log(np.clip(d, 1e-300, 1)), 0.0)
        b = np.where(q > 0, q * np.log(np.clip(1 - d, 1e-300, 1)), 0.0)
    return float(np.sum(a + b) * dx)
