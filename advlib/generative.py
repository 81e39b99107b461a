r"""Training loops and statistics for the adversarial generative models of chapters 01 and 02.

**GAN** (chapter 01, Goodfellow et al. 2014). The two-player game

.. math:: \min_G \max_D V(D, G) = \mathbb E_{x\sim p_\text{data}}[\log D(x)]
          + \mathbb E_{z\sim p_z}[\log(1 - D(G(z)))]

is played by alternating gradient steps: ``d_steps`` ascent steps of :math:`D` on :math:`V`, then one
step of :math:`G`, either on the *minimax* loss :math:`\mathbb E_z \log(1 - D(G(z)))` (minimised) or
on the *non-saturating* loss :math:`-\mathbb E_z \log D(G(z))`, which has the same fixed point but
strong gradients when :math:`D` rejects the samples. For a fixed :math:`G` the best discriminator is
:math:`D^*(x) = p_\text{data}(x) / (p_\text{data}(x) + p_g(x))` and
:math:`C(G) = V(D^*, G) = -\log 4 + 2\,\mathrm{JS}(p_\text{data} \| p_g)`
(:func:`optimal_discriminator`, :func:`js_divergence`, :func:`gan_value`).

**AAE** (chapter 02, Makhzani et al. 2016). An autoencoder whose *aggregated posterior*
:math:`q(z) = \int q(z|x)\, p_d(x)\, dx` is pushed towards a prior :math:`p(z)` by a GAN on the codes.
Every mini-batch has a *reconstruction phase* (encoder and decoder minimise the reconstruction
loss) and a *regularisation phase* (the discriminator learns to tell prior samples from codes; the
encoder, as the generator, learns to fool it): :func:`train_aae`. Variants: label information in the
regulariser (:class:`MixturePrior` component chosen by a one-hot label, an extra class for unlabelled
data), the supervised AAE (the label goes into the decoder) and the semi-supervised AAE
(:func:`train_semi_supervised_aae`). :func:`train_vae` fits a VAE for comparison (the KL term in place
of the adversarial one) and :func:`train_autoencoder` a plain autoencoder. :func:`mmd2` measures how
far a set of codes is from prior samples.
"""
from __future__ import annotations

import math
import time
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .data import ImageData, Loader
from .models.generative import GaussianEncoder
from .train import _lr_factor
from .utils import check_int, check_positive, model_device, show_progress

Sampler = Callable[[int], torch.Tensor]
LOG4 = math.log(4.0)


# =========================================================================== data plumbing
def _stream(data, batch_size: int, seed: int, device: torch.device) -> tuple[Iterator, int | None]:
    """An endless stream of ``(x, y_or_None)`` batches and the number of batches per epoch.

    ``data``: an :class:`ImageData`, an ``(x, y)`` pair, a tensor ``x``, or a sampler ``n -> x``.
    """
    if isinstance(data, ImageData):
        if len(data) == 0:
            raise ValueError(f"data is empty ({data!r}); it needs at least one image")
        loader = Loader(data, batch_size, shuffle=True, seed=seed, device=device, drop_last=len(data) >= batch_size)

        def gen():
            while True:
                yield from loader
        return gen(), len(loader)
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        x, y = data
        if y is not None and y.shape[0] != x.shape[0]:
            raise ValueError(f"data: x and y must have the same length, got {x.shape[0]} and {y.shape[0]}")
    elif isinstance(data, torch.Tensor):
        x, y = data, None
    elif callable(data):
        def gen():
            while True:
                yield data(batch_size).to(device), None
        return gen(), None
    else:
        raise ValueError("data must be an advlib.data.ImageData, an (x, y) pair of tensors, a tensor x, "
                         "or a callable sampler n -> x")
    if x.shape[0] == 0:
        raise ValueError("data is empty")
    g = torch.Generator().manual_seed(seed)
    bs = min(batch_size, x.shape[0])
    per_epoch = x.shape[0] // bs

    def gen():
        while True:
            order = torch.randperm(x.shape[0], generator=g)
            for i in range(per_epoch):
                idx = order[i * bs:(i + 1) * bs]
                yield x[idx].to(device), (None if y is None else y[idx].to(device))
    return gen(), per_epoch


def _total_steps(steps: int | None, epochs: float | None, per_epoch: int | None) -> int:
    if (steps is None) == (epochs is None):
        raise ValueError("give exactly one of steps and epochs")
    if steps is not None:
        return check_int(steps, "steps", minimum=1)
    check_positive(epochs, "epochs", allow_zero=False)
    if per_epoch is None:
        raise ValueError("epochs needs finite data; with a sampler give steps")
    return max(1, int(round(epochs * per_epoch)))


def _log_points(total: int, log_every: int | None, per_epoch: int | None) -> set[int]:
    every = log_every or per_epoch or max(1, total // 10)
    every = check_int(every, "log_every", minimum=1)
    return set(range(every, total + 1, every)) | {total}


def _schedule(data, batch_size: int, seed: int, device: torch.device, steps: int | None, epochs: float | None,
              log_every: int | None) -> tuple[Iterator, int | None, int, set[int]]:
    """The batch stream, the steps per epoch (None for a sampler), the total steps and the logged steps."""
    stream, per_epoch = _stream(data, batch_size, seed, device)
    total = _total_steps(steps, epochs, per_epoch)
    return stream, per_epoch, total, _log_points(total, log_every, per_epoch)


def _adam(params, lr: float, betas=(0.5, 0.999)) -> torch.optim.Adam:
    return torch.optim.Adam(list(params), lr=check_positive(lr, "lr", allow_zero=False), betas=betas)


def _decay(optimisers, schedule: str, total: int) -> list[torch.optim.lr_scheduler.LambdaLR]:
    """One learning-rate schedule (``constant``, ``linear`` or ``cosine`` decay to 0 over ``total``
    steps) per optimiser; call ``.step()`` on each after every training step."""
    _lr_factor(schedule, 0, 1, 0.0)  # validates the name
    return [torch.optim.lr_scheduler.LambdaLR(o, lambda t: _lr_factor(schedule, t, total, 0.0)) for o in optimisers]


def _finite(loss: torch.Tensor, what: str, step: int) -> None:
    if not torch.isfinite(loss):
        raise FloatingPointError(f"the {what} loss became {loss.item()} at step {step}; lower the learning rate")


def _step(opt: torch.optim.Optimizer, loss: torch.Tensor, what: str, t: int) -> None:
    """One optimiser step on ``loss``, after checking that it is finite (``what`` names it in the error)."""
    _finite(loss, what, t)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def one_hot(y: torch.Tensor, n: int) -> torch.Tensor:
    """One-hot float rows of the labels ``y`` (``(N,)`` ints in ``[0, n)``)."""
    return F.one_hot(y.long(), n).float()


# ============================================================================== GAN losses
def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    r"""The discriminator's loss :math:`-V = -\mathbb E\log D(x) - \mathbb E\log(1 - D(G(z)))`,
    from logits: ``softplus(-real) + softplus(fake)``, batch means. Chapter 01."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_loss(fake_logits: torch.Tensor, kind: str = "ns") -> torch.Tensor:
    r"""The generator's loss from the discriminator's logits on generated samples. Chapter 01.

    ``"minimax"``: :math:`\mathbb E_z \log(1 - D(G(z))) = -\mathbb E\,\mathrm{softplus}(\ell)`
    (its gradient vanishes when :math:`D(G(z)) \to 0`); ``"ns"`` (non-saturating):
    :math:`-\mathbb E_z \log D(G(z)) = \mathbb E\,\mathrm{softplus}(-\ell)`.
    """
    if kind == "minimax":
        return -F.softplus(fake_logits).mean()
    if kind == "ns":
        return F.softplus(-fake_logits).mean()
    raise ValueError(f"kind must be 'ns' or 'minimax', got {kind!r}")


def train_gan(G: nn.Module, D: nn.Module, data, *, steps: int | None = None, epochs: float | None = None,
              batch_size: int = 64, lr_g: float = 2e-4, lr_d: float = 2e-4, betas=(0.5, 0.999),
              loss: str = "ns", d_steps: int = 1, log_every: int | None = None, seed: int = 0,
              progress: bool | None = None, callback: Callable[[nn.Module, nn.Module, dict], None] | None = None
              ) -> pd.DataFrame:
    r"""Train a GAN in place by alternating ``d_steps`` discriminator steps and one generator step
    (Algorithm 1 of Goodfellow et al. 2014, with Adam). Chapter 01.

    Args:
        G: a generator with attribute ``z_dim``; noise is :math:`z \sim \mathcal N(0, I)`.
        D: a discriminator returning logits ``(N,)``.
        data: real samples: an :class:`~advlib.data.ImageData`, a tensor, an ``(x, y)`` pair (``y``
            ignored) or a sampler ``n -> x``.
        steps / epochs: length of training in generator steps, or in passes over ``data`` (one).
        loss: generator loss, ``"ns"`` (non-saturating) or ``"minimax"`` (see :func:`generator_loss`).
        log_every: steps between history rows (default: one per epoch, or 10 rows for a sampler).
        callback: ``callback(G, D, row)`` after each history row (e.g. to keep sample snapshots).

    Returns the history: ``step``, ``epoch`` (if finite data), ``d_loss`` (:math:`-V` estimate),
    ``g_loss``, ``d_real`` / ``d_fake`` (mean :math:`D(x)` and :math:`D(G(z))`), ``time_s``.
    """
    generator_loss(torch.zeros(1), loss)  # validates the loss name
    check_int(batch_size, "batch_size", minimum=1)
    d_steps = check_int(d_steps, "d_steps", minimum=1)
    if not hasattr(G, "z_dim"):
        raise ValueError("G must have an attribute z_dim (the noise dimension)")
    device = model_device(G)
    stream, per_epoch, total, logs = _schedule(data, batch_size, seed, device, steps, epochs, log_every)
    opt_g, opt_d = _adam(G.parameters(), lr_g, betas), _adam(D.parameters(), lr_d, betas)
    gz = torch.Generator().manual_seed(seed + 1)
    noise = lambda n: torch.randn(n, G.z_dim, generator=gz).to(device)  # noqa: E731
    G.train(), D.train()
    history, acc, t0 = [], dict(d_loss=0.0, g_loss=0.0, d_real=0.0, d_fake=0.0, n=0), time.time()
    bar = tqdm(total=total, desc=f"GAN ({loss})", disable=not show_progress(progress), leave=False)
    for t in range(1, total + 1):
        for _ in range(d_steps):
            x, _y = next(stream)
            with torch.no_grad():
                fake = G(noise(x.shape[0]))
            real_logits, fake_logits = D(x), D(fake)
            d_loss = discriminator_loss(real_logits, fake_logits)
            _step(opt_d, d_loss, "discriminator", t)
        fake_logits_g = D(G(noise(x.shape[0])))
        g_loss = generator_loss(fake_logits_g, loss)
        _step(opt_g, g_loss, "generator", t)
        acc["d_loss"] += d_loss.item()
        acc["g_loss"] += g_loss.item()
        acc["d_real"] += torch.sigmoid(real_logits).mean().item()
        acc["d_fake"] += torch.sigmoid(fake_logits).mean().item()
        acc["n"] += 1
        bar.update(1)
        if t in logs:
            n = acc.pop("n")
            row = {"step": t, **({"epoch": round(t / per_epoch, 3)} if per_epoch else {}),
                   **{k: v / n for k, v in acc.items()}, "time_s": round(time.time() - t0, 1)}
            history.append(row)
            acc = dict(d_loss=0.0, g_loss=0.0, d_real=0.0, d_fake=0.0, n=0)
            bar.set_postfix(d_loss=round(row["d_loss"], 3), g_loss=round(row["g_loss"], 3))
            if callback is not None:
                callback(G, D, row)
                G.train(), D.train()
    bar.close()
    G.eval(), D.eval()
    return pd.DataFrame(history)


def train_discriminator(D: nn.Module, real: Sampler, fake: Sampler, *, steps: int = 2000, batch_size: int = 512,
                        lr: float = 1e-3, seed: int = 0, progress: bool | None = None) -> pd.DataFrame:
    r"""Train ``D`` alone, with the generator fixed: maximise
    :math:`\mathbb E_{x\sim\text{real}}\log D(x) + \mathbb E_{x\sim\text{fake}}\log(1 - D(x))`, whose
    maximiser is :math:`D^* = p_\text{data} / (p_\text{data} + p_g)`. ``real`` and ``fake`` are samplers
    ``n -> x``. Returns the history (``step``, ``value`` = the running estimate of :math:`V`). Chapter 01."""
    steps = check_int(steps, "steps", minimum=1)
    check_int(batch_size, "batch_size", minimum=1)
    device = model_device(D)
    opt = torch.optim.Adam(D.parameters(), lr=check_positive(lr, "lr", allow_zero=False))
    torch.manual_seed(seed)
    D.train()
    history, run, t0 = [], 0.0, time.time()
    every = max(1, steps // 10)
    for t in tqdm(range(1, steps + 1), desc="D only", disable=not show_progress(progress), leave=False):
        loss = discriminator_loss(D(real(batch_size).to(device)), D(fake(batch_size).to(device)))
        _step(opt, loss, "discriminator", t)
        run += -loss.item()
        if t % every == 0 or t == steps:
            history.append({"step": t, "value": run / (every if t % every == 0 else t % every),
                            "time_s": round(time.time() - t0, 1)})
            run = 0.0
    D.eval()
    return pd.DataFrame(history)


# ========================================================================== GAN theory (1-D)
def optimal_discriminator(p_data: np.ndarray, p_g: np.ndarray) -> np.ndarray:
    r""":math:`D^*(x) = p_\text{data}(x) / (p_\text{data}(x) + p_g(x))` on a grid of density values
    (0.5 where both vanish). Chapter 01."""
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
    at most :math:`\log 2`). Chapter 01."""
    p, q = np.asarray(p, float), np.asarray(q, float)
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same shape, got {p.shape} and {q.shape}")
    check_positive(dx, "dx", allow_zero=False)
    m = 0.5 * (p + q)
    return 0.5 * _kl(p, m, dx) + 0.5 * _kl(q, m, dx)


def gan_value(p_data: np.ndarray, p_g: np.ndarray, d: np.ndarray, dx: float) -> float:
    r""":math:`V(D, G) = \int p_\text{data}\log D + p_g \log(1 - D)\,dx` by quadrature, for densities and
    discriminator values on a uniform grid. With ``d`` = :func:`optimal_discriminator` this is
    :math:`C(G) = -\log 4 + 2\,\mathrm{JS}`. Chapter 01."""
    p, q, d = (np.asarray(a, float) for a in (p_data, p_g, d))
    check_positive(dx, "dx", allow_zero=False)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(p > 0, p * np.log(np.clip(d, 1e-300, 1)), 0.0)
        b = np.where(q > 0, q * np.log(np.clip(1 - d, 1e-300, 1)), 0.0)
    return float(np.sum(a + b) * dx)


# ================================================================================== priors
class GaussianPrior:
    r""":math:`p(z) = \mathcal N(0, \text{std}^2 I)` in ``dim`` dimensions. Chapter 02."""

    def __init__(self, dim: int = 2, std: float = 1.0) -> None:
        self.dim = check_int(dim, "dim", minimum=1)
        self.std = check_positive(std, "std", allow_zero=False)
        self.n_components = 1

    def sample(self, n: int, labels: torch.Tensor | None = None, generator: torch.Generator | None = None,
               device=None) -> torch.Tensor:
        """``n`` samples ``(n, dim)``; ``labels`` is ignored (one component)."""
        check_int(n, "n", minimum=1)
        return (self.std * torch.randn(n, self.dim, generator=generator)).to(device or "cpu")

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """:math:`\\log p(z)` per row."""
        return (-0.5 * (z / self.std).pow(2).sum(1) - self.dim * (math.log(self.std) + 0.5 * math.log(2 * math.pi)))

    def __repr__(self) -> str:
        return f"GaussianPrior(dim={self.dim}, std={self.std})"


class MixturePrior:
    r"""A mixture of ``n_components`` equally likely 2-D Gaussians whose means lie on a circle of
    ``radius``, each stretched along its radius (standard deviations ``std = (radial, tangential)``),
    like the petals of Makhzani et al.'s figure. ``sample(n, labels)`` draws component ``labels[i]``
    for row ``i`` (any component where the label is -1, i.e. unlabelled). Chapter 02.
    """

    def __init__(self, n_components: int = 10, radius: float = 4.0, std: tuple[float, float] = (1.0, 0.3)) -> None:
        self.n_components = check_int(n_components, "n_components", minimum=1)
        self.radius = check_positive(radius, "radius")
        if len(std) != 2:
            raise ValueError(f"std must be (radial, tangential), got {std!r}")
        self.std = tuple(check_positive(s, "std", allow_zero=False) for s in std)
        self.dim = 2
        angles = torch.arange(self.n_components) * (2 * math.pi / self.n_components)
        self.directions = torch.stack([angles.cos(), angles.sin()], 1)     # radial unit vectors
        self.means = self.radius * self.directions

    def sample(self, n: int, labels: torch.Tensor | None = None, generator: torch.Generator | None = None,
               device=None) -> torch.Tensor:
        check_int(n, "n", minimum=1)
        k = torch.randint(self.n_components, (n,), generator=generator)
        if labels is not None:
            labels = labels.detach().cpu().long()
            if labels.shape != (n,):
                raise ValueError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
            if labels.min() < -1 or labels.max() >= self.n_components:
                raise ValueError(f"labels must lie in [-1, {self.n_components - 1}] (-1 = unlabelled)")
            k = torch.where(labels >= 0, labels, k)
        e = torch.randn(n, 2, generator=generator) * torch.tensor(self.std)
        r, t = self.directions[k], self.directions[k] @ torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
        return (self.means[k] + e[:, :1] * r + e[:, 1:] * t).to(device or "cpu")

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """:math:`\\log p(z) = \\log \\frac1K \\sum_k \\mathcal N(z; \\mu_k, R_k \\operatorname{diag}(s^2) R_k^T)`."""
        d = z[:, None, :] - self.means.to(z)[None]                        # (N, K, 2)
        dirs = self.directions.to(z)
        u_r = (d * dirs[None]).sum(-1)                                      # radial coordinate
        u_t = (d * torch.stack([-dirs[:, 1], dirs[:, 0]], 1)[None]).sum(-1)  # tangential coordinate
        sr, st = self.std
        log_n = -0.5 * ((u_r / sr) ** 2 + (u_t / st) ** 2) - math.log(2 * math.pi * sr * st)
        return torch.logsumexp(log_n, 1) - math.log(self.n_components)

    def __repr__(self) -> str:
        return f"MixturePrior(n_components={self.n_components}, radius={self.radius}, std={self.std})"


# ========================================================================== autoencoders
def reconstruction_loss(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    r"""Bernoulli negative log-likelihood of the pixels, summed per image, averaged over the batch:
    :math:`-\sum_j x_j \log \hat x_j + (1 - x_j)\log(1 - \hat x_j)` (nats per image). Chapter 02."""
    return F.binary_cross_entropy(x_hat.clamp(1e-6, 1 - 1e-6), x, reduction="sum") / x.shape[0]


def _row(t: int, per_epoch: int | None, acc: dict, t0: float) -> dict:
    n = acc.pop("n")
    row = {"step": t, **({"epoch": round(t / per_epoch, 3)} if per_epoch else {}),
           **{k: v / n for k, v in acc.items()}, "time_s": round(time.time() - t0, 1)}
    for k in acc:
        acc[k] = 0.0
    acc["n"] = 0
    return row


def train_autoencoder(encoder: nn.Module, decoder: nn.Module, data, *, epochs: float | None = None,
                      steps: int | None = None, batch_size: int = 100, lr: float = 1e-3, seed: int = 0,
                      log_every: int | None = None, progress: bool | None = None) -> pd.DataFrame:
    """A plain (unregularised) autoencoder: minimise :func:`reconstruction_loss` only. The baseline
    whose codes follow no prior. Chapter 02. Returns the history (``rec`` per image)."""
    device = model_device(encoder)
    stream, per_epoch, total, logs = _schedule(data, batch_size, seed, device, steps, epochs, log_every)
    opt = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=check_positive(lr, "lr", allow_zero=False))
    encoder.train(), decoder.train()
    history, acc, t0 = [], dict(rec=0.0, n=0), time.time()
    for t in tqdm(range(1, total + 1), desc="AE", disable=not show_progress(progress), leave=False):
        x, _ = next(stream)
        rec = reconstruction_loss(decoder(encoder(x)), x)
        _step(opt, rec, "reconstruction", t)
        acc["rec"] += rec.item()
        acc["n"] += 1
        if t in logs:
            history.append(_row(t, per_epoch, acc, t0))
    encoder.eval(), decoder.eval()
    return pd.DataFrame(history)


def train_aae(encoder: nn.Module, decoder: nn.Module, discriminator: nn.Module, data, prior, *,
              epochs: float | None = None, steps: int | None = None, batch_size: int = 100,
              lr: float = 1e-3, lr_reg: float = 2e-4, schedule: str = "constant", label_prior: bool = False,
              label_decoder: bool = False, seed: int = 0, log_every: int | None = None,
              progress: bool | None = None) -> pd.DataFrame:
    r"""Train an adversarial autoencoder in place (Makhzani et al. 2016, section 2). Chapter 02.

    Every mini-batch, in order:

    1. *reconstruction*: encoder and decoder take a step on :func:`reconstruction_loss`;
    2. *regularisation*: the discriminator takes a step on :func:`discriminator_loss` with prior
       samples :math:`z' \sim p(z)` as "real" and codes :math:`z = q(x)` as "fake"; then the encoder
       takes a step on the non-saturating :func:`generator_loss` of its codes.

    Args:
        encoder: ``x -> z`` (:class:`~advlib.models.generative.Encoder`).
        decoder: ``z -> x`` (with ``label_decoder``: ``(z, one_hot(y)) -> x``, ``cond_dim=10``).
        discriminator: ``z -> logit`` (with ``label_prior``: ``(z, one_hot) -> logit`` with
            ``cond_dim = prior.n_components + 1``).
        data: an :class:`~advlib.data.ImageData` or ``(x, y)``; labels are needed for the label options.
        prior: :class:`GaussianPrior` or :class:`MixturePrior`.
        label_prior: label information in the regulariser (section 4 of the paper): a labelled image's
            code is matched to the prior component of its label, with the one-hot label also given to
            the discriminator; label -1 marks an unlabelled image, which gets the extra one-hot class
            and is matched to the whole mixture.
        label_decoder: the supervised AAE (section 5): the decoder also receives the one-hot label, so
            the code (the "style") need not carry the digit's identity.
        lr, lr_reg: Adam learning rates of the reconstruction phase and of the regularisation phase.
        schedule: ``"constant"``, or ``"linear"`` / ``"cosine"`` decay of all three learning rates to 0
            over the run; a decay damps the oscillation of the adversarial game, so the codes settle
            instead of stopping wherever the last swing left them.

    Returns the history: ``rec`` (nats per image), ``d_loss``, ``g_loss``, ``time_s`` per epoch.
    """
    if not hasattr(prior, "sample"):
        raise ValueError("prior must be a GaussianPrior or MixturePrior (an object with .sample)")
    device = model_device(encoder)
    stream, per_epoch, total, logs = _schedule(data, batch_size, seed, device, steps, epochs, log_every)
    n_cond = prior.n_components + 1
    opt_ae = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=check_positive(lr, "lr", allow_zero=False))
    opt_d, opt_g = _adam(discriminator.parameters(), lr_reg), _adam(encoder.parameters(), lr_reg)
    schedulers = _decay((opt_ae, opt_d, opt_g), schedule, total)
    gp = torch.Generator().manual_seed(seed + 2)
    for m in (encoder, decoder, discriminator):
        m.train()
    history, acc, t0 = [], dict(rec=0.0, d_loss=0.0, g_loss=0.0, n=0), time.time()
    for t in tqdm(range(1, total + 1), desc="AAE", disable=not show_progress(progress), leave=False):
        x, y = next(stream)
        if (label_prior or label_decoder) and y is None:
            raise ValueError("label_prior / label_decoder need labels: pass data as an ImageData or (x, y)")
        c_dec = one_hot(y, decoder.cond_dim) if label_decoder else None
        # 1. reconstruction phase
        rec = reconstruction_loss(decoder(encoder(x), c_dec), x)
        _step(opt_ae, rec, "reconstruction", t)
        # 2. regularisation phase: discriminator, then encoder as generator
        if label_prior:
            c = one_hot(torch.where(y >= 0, y, torch.full_like(y, n_cond - 1)), n_cond)
            z_prior = prior.sample(x.shape[0], labels=y, generator=gp, device=device)
            d_args = (c,)
        else:
            z_prior = prior.sample(x.shape[0], generator=gp, device=device)
            d_args = ()
        z = encoder(x)
        d_loss = discriminator_loss(discriminator(z_prior, *d_args), discriminator(z.detach(), *d_args))
        _step(opt_d, d_loss, "discriminator", t)
        g_loss = generator_loss(discriminator(z, *d_args), "ns")
        _step(opt_g, g_loss, "encoder (as generator)", t)
        for sched in schedulers:
            sched.step()
        acc["rec"] += rec.item()
        acc["d_loss"] += d_loss.item()
        acc["g_loss"] += g_loss.item()
        acc["n"] += 1
        if t in logs:
            history.append(_row(t, per_epoch, acc, t0))
    for m in (encoder, decoder, discriminator):
        m.eval()
    return pd.DataFrame(history)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor, std: float = 1.0) -> torch.Tensor:
    r""":math:`\mathrm{KL}(\mathcal N(\mu, \operatorname{diag} e^{\text{logvar}}) \| \mathcal N(0, s^2 I))`
    per row, in closed form. Chapter 02."""
    var = logvar.exp() / std ** 2
    return 0.5 * (var + mu.pow(2) / std ** 2 - 1 - logvar + 2 * math.log(std)).sum(1)


def train_vae(encoder: nn.Module, decoder: nn.Module, data, prior, *, epochs: float | None = None,
              steps: int | None = None, batch_size: int = 100, lr: float = 1e-3, seed: int = 0,
              log_every: int | None = None, progress: bool | None = None) -> pd.DataFrame:
    r"""Train a VAE in place by minimising the negative ELBO
    :math:`\mathbb E_{q(z|x)}[-\log p(x|z)] + \mathrm{KL}(q(z|x) \| p(z))` with the reparameterisation
    :math:`z = \mu + \sigma \epsilon`. The KL term is exact for a :class:`GaussianPrior` and a one-sample
    Monte Carlo estimate :math:`\log q(z|x) - \log p(z)` for a :class:`MixturePrior`. The encoder is a
    :class:`~advlib.models.generative.GaussianEncoder`. Chapter 02 (the comparison with the AAE).

    Returns the history: ``rec``, ``kl`` (nats per image), ``time_s``.
    """
    if not hasattr(prior, "log_prob"):
        raise ValueError("prior must be a GaussianPrior or MixturePrior (an object with .log_prob)")
    device = model_device(encoder)
    stream, per_epoch, total, logs = _schedule(data, batch_size, seed, device, steps, epochs, log_every)
    opt = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=check_positive(lr, "lr", allow_zero=False))
    torch.manual_seed(seed)
    encoder.train(), decoder.train()
    history, acc, t0 = [], dict(rec=0.0, kl=0.0, n=0), time.time()
    for t in tqdm(range(1, total + 1), desc="VAE", disable=not show_progress(progress), leave=False):
        x, _ = next(stream)
        mu, logvar = encoder(x)
        eps = torch.randn_like(mu)
        z = mu + (0.5 * logvar).exp() * eps
        rec = reconstruction_loss(decoder(z), x)
        if isinstance(prior, GaussianPrior):
            kl = gaussian_kl(mu, logvar, prior.std).mean()
        else:
            log_q = (-0.5 * eps.pow(2) - 0.5 * logvar - 0.5 * math.log(2 * math.pi)).sum(1)
            kl = (log_q - prior.log_prob(z)).mean()
        loss = rec + kl
        _step(opt, loss, "VAE", t)
        acc["rec"] += rec.item()
        acc["kl"] += kl.item()
        acc["n"] += 1
        if t in logs:
            history.append(_row(t, per_epoch, acc, t0))
    encoder.eval(), decoder.eval()
    return pd.DataFrame(history)


def train_semi_supervised_aae(encoder: nn.Module, decoder: nn.Module, disc_y: nn.Module, disc_z: nn.Module,
                              data, labelled: tuple[torch.Tensor, torch.Tensor], *, epochs: float | None = None,
                              steps: int | None = None, batch_size: int = 100, lr: float = 1e-3,
                              lr_reg: float = 2e-4, lr_semi: float = 1e-3, schedule: str = "constant",
                              z_std: float = 1.0, seed: int = 0,
                              val: tuple[torch.Tensor, torch.Tensor] | None = None, log_every: int | None = None,
                              progress: bool | None = None) -> pd.DataFrame:
    r"""The semi-supervised AAE (Makhzani et al. 2016, section 6). Chapter 02.

    The encoder (:class:`~advlib.models.generative.SemiSupervisedEncoder`) gives :math:`q(y|x)` (softmax
    of the categorical head) and a style code :math:`z`; the decoder reconstructs from
    :math:`(z, q(y|x))` (``cond_dim = n_classes``). Every mini-batch has three phases:

    1. *reconstruction* on an unlabelled batch (encoder + decoder);
    2. *regularisation*: ``disc_y`` tells one-hot samples of a uniform categorical from
       :math:`q(y|x)`, ``disc_z`` tells :math:`\mathcal N(0, \text{z\_std}^2 I)` samples from :math:`z`;
       then the encoder takes a step to fool both (non-saturating losses);
    3. *semi-supervised classification*: the encoder's categorical head takes a cross-entropy step on
       a batch of the ``labelled`` pairs.

    ``data`` is the unlabelled images (ImageData, tensor or ``(x, y)`` with ``y`` ignored); ``val`` an
    optional ``(x, y)`` to report ``val_error`` at each history row. ``schedule`` decays all four
    learning rates as in :func:`train_aae`.
    """
    xl, yl = labelled
    if xl.shape[0] != yl.shape[0] or xl.shape[0] == 0:
        raise ValueError(f"labelled must be a non-empty (x, y) pair of equal length, got {xl.shape[0]} and {yl.shape[0]}")
    n_classes = encoder.n_classes
    if getattr(decoder, "cond_dim", None) != n_classes:
        raise ValueError(f"decoder.cond_dim must equal encoder.n_classes={n_classes}")
    check_positive(z_std, "z_std", allow_zero=False)
    device = model_device(encoder)
    stream, per_epoch, total, logs = _schedule(data, batch_size, seed, device, steps, epochs, log_every)
    lab_stream, _ = _stream((xl, yl), batch_size, seed + 3, device)
    opt_ae = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=check_positive(lr, "lr", allow_zero=False))
    opt_d = _adam([*disc_y.parameters(), *disc_z.parameters()], lr_reg)
    opt_g = _adam(encoder.parameters(), lr_reg)
    opt_s = torch.optim.Adam(encoder.parameters(), lr=check_positive(lr_semi, "lr_semi", allow_zero=False))
    schedulers = _decay((opt_ae, opt_d, opt_g, opt_s), schedule, total)
    gp = torch.Generator().manual_seed(seed + 2)
    models = (encoder, decoder, disc_y, disc_z)
    for m in models:
        m.train()
    history, acc, t0 = [], dict(rec=0.0, d_loss=0.0, g_loss=0.0, ce=0.0, n=0), time.time()
    for t in tqdm(range(1, total + 1), desc="semi-supervised AAE", disable=not show_progress(progress), leave=False):
        x, _ = next(stream)
        n = x.shape[0]
        # 1. reconstruction
        logits, z = encoder(x)
        rec = reconstruction_loss(decoder(z, logits.softmax(1)), x)
        _step(opt_ae, rec, "reconstruction", t)
        # 2. regularisation: both discriminators, then the encoder as generator
        logits, z = encoder(x)
        q_y = logits.softmax(1)
        y_prior = one_hot(torch.randint(n_classes, (n,), generator=gp), n_classes).to(device)
        z_prior = (z_std * torch.randn(n, z.shape[1], generator=gp)).to(device)
        d_loss = (discriminator_loss(disc_y(y_prior), disc_y(q_y.detach()))
                  + discriminator_loss(disc_z(z_prior), disc_z(z.detach())))
        _step(opt_d, d_loss, "discriminator", t)
        g_loss = generator_loss(disc_y(q_y), "ns") + generator_loss(disc_z(z), "ns")
        _step(opt_g, g_loss, "encoder (as generator)", t)
        # 3. semi-supervised classification on the labelled set
        xb, yb = next(lab_stream)
        ce = F.cross_entropy(encoder(xb)[0], yb)
        _step(opt_s, ce, "classification", t)
        for sched in schedulers:
            sched.step()
        for k, v in (("rec", rec), ("d_loss", d_loss), ("g_loss", g_loss), ("ce", ce)):
            acc[k] += v.item()
        acc["n"] += 1
        if t in logs:
            row = _row(t, per_epoch, acc, t0)
            if val is not None:
                row["val_error"] = 1.0 - (classify(encoder, val[0]) == val[1].to(device)).float().mean().item()
            history.append(row)
            for m in models:
                m.train()
    for m in models:
        m.eval()
    return pd.DataFrame(history)


@torch.no_grad()
def classify(encoder: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Predicted classes ``argmax q(y|x)`` of a semi-supervised encoder (eval mode restored). Chapter 02."""
    was = encoder.training
    encoder.eval()
    device = model_device(encoder)
    out = torch.cat([encoder(x[i:i + batch_size].to(device))[0].argmax(1) for i in range(0, x.shape[0], batch_size)])
    encoder.train(was)
    return out


@torch.no_grad()
def encode(encoder: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Codes of ``x`` (the mean for a Gaussian encoder, the style for a semi-supervised one), on the
    CPU, in eval mode (restored). Chapter 02."""
    was = encoder.training
    encoder.eval()
    device = model_device(encoder)
    outs = []
    for i in range(0, x.shape[0], batch_size):
        out = encoder(x[i:i + batch_size].to(device))
        if isinstance(encoder, GaussianEncoder):
            out = out[0]          # the mean
        elif isinstance(out, tuple):
            out = out[-1]         # the style code of a semi-supervised encoder
        outs.append(out.cpu())
    encoder.train(was)
    return torch.cat(outs)


# ===================================================================================== MMD
def mmd2(x: torch.Tensor, y: torch.Tensor, bandwidths=(0.25, 0.5, 1.0, 2.0, 4.0), unbiased: bool = False) -> float:
    r"""Squared maximum mean discrepancy between samples ``x`` (N, d) and ``y`` (M, d) with a sum of
    Gaussian kernels :math:`k(a, b) = \sum_s \exp(-\|a - b\|^2 / (2 s^2))` over ``bandwidths``:

    .. math:: \mathrm{MMD}^2 = \overline{k(x, x')} + \overline{k(y, y')} - 2\,\overline{k(x, y)}.

    The biased (V-statistic) estimate is 0 for identical samples and never negative; ``unbiased``
    leaves out the diagonal terms (about 0 for two samples of one distribution, may be slightly
    negative). Zero in the population iff the distributions agree. Chapter 02.
    """
    x, y = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must be (N, d) and (M, d) with the same d, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.shape[0] < 2 or y.shape[0] < 2:
        raise ValueError("x and y need at least 2 rows each")
    bws = [check_positive(b, "bandwidths", allow_zero=False) for b in bandwidths]
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
