r"""Adversarial autoencoders (Makhzani et al. 2016) and the autoencoders they are compared with:
priors, losses, training loops and inference helpers of chapter 02.

An AAE is an autoencoder whose *aggregated posterior* :math:`q(z) = \int q(z|x)\, p_d(x)\, dx` is
pushed towards a prior :math:`p(z)` by a GAN on the codes. Every mini-batch has a *reconstruction
phase* (encoder and decoder minimise :func:`reconstruction_loss`) and a *regularisation phase* (the
discriminator learns to tell prior samples from codes; the encoder, as the generator, learns to
fool it, with the losses of :mod:`advlib.gan`): :func:`train_aae`. Variants: label information in the
regulariser (:class:`MixturePrior` component chosen by a one-hot label, an extra class for unlabelled
data), the supervised AAE (the label goes into the decoder) and the semi-supervised AAE
(:func:`train_semi_supervised_aae`). :func:`train_vae` fits a VAE for comparison (the KL term in place
of the adversarial one) and :func:`train_autoencoder` a plain autoencoder;
:func:`advlib.evaluate.mmd2` measures how far a set of codes is from prior samples. The networks are
in :mod:`advlib.models.autoencoders`. Every loop leaves its networks in eval mode and draws its
randomness from explicit generators. Taught in chapter 02.
"""
from __future__ import annotations

import math

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from . import loops
from .gan import adam, discriminator_loss, generator_loss
from .models.autoencoders import GaussianEncoder
from .utils import check_int, check_nonnegative, check_positive, draw, model_device


def one_hot(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """One-hot float rows of the labels ``y`` (``(N,)`` ints in ``[0, num_classes)``).
    """
    return F.one_hot(y.long(), num_classes).float()


# ================================================================================== priors
class GaussianPrior:
    r""":math:`p(z) = \mathcal N(0, \text{std}^2 I)` in ``dim`` dimensions.
    """

    def __init__(self, dim: int = 2, std: float = 1.0) -> None:
        self.dim = check_int(dim, "dim", minimum=1)
        self.std = check_positive(std, "std")
        self.n_components = 1

    def sample(self, n: int, labels: torch.Tensor | None = None, generator: torch.Generator | None = None,
               device=None) -> torch.Tensor:
        """``n`` samples ``(n, dim)``; ``labels`` is ignored (one component)."""
        check_int(n, "n", minimum=1)
        return (self.std * draw(torch.randn, n, self.dim, generator=generator)).to(device or "cpu")

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        r""":math:`\log p(z)` per row."""
        return (-0.5 * (z / self.std).pow(2).sum(1) - self.dim * (math.log(self.std) + 0.5 * math.log(2 * math.pi)))

    def __repr__(self) -> str:
        return f"GaussianPrior(dim={self.dim}, std={self.std})"


class MixturePrior:
    r"""A mixture of ``n_components`` equally likely 2-D Gaussians whose means lie on a circle of
    ``radius``, each stretched along its radius (standard deviations ``std = (radial, tangential)``),
    like the petals of Makhzani et al.'s figure. ``sample(n, labels)`` draws component ``labels[i]``
    for row ``i`` (any component where the label is -1, i.e. unlabelled).
    """

    def __init__(self, n_components: int = 10, radius: float = 4.0, std: tuple[float, float] = (1.0, 0.3)) -> None:
        self.n_components = check_int(n_components, "n_components", minimum=1)
        self.radius = check_nonnegative(radius, "radius")
        if len(std) != 2:
            raise ValueError(f"std must be (radial, tangential), got {std!r}")
        self.std = tuple(check_positive(s, "std") for s in std)
        self.dim = 2
        angles = torch.arange(self.n_components) * (2 * math.pi / self.n_components)
        self.directions = torch.stack([angles.cos(), angles.sin()], 1)     # radial unit vectors
        self.means = self.radius * self.directions

    def sample(self, n: int, labels: torch.Tensor | None = None, generator: torch.Generator | None = None,
               device=None) -> torch.Tensor:
        """``n`` samples ``(n, 2)``: row ``i`` from component ``labels[i]``, or a uniformly chosen one
        where ``labels`` is None or -1."""
        check_int(n, "n", minimum=1)
        k = draw(torch.randint, self.n_components, (n,), generator=generator, device="cpu")
        if labels is not None:
            labels = labels.detach().cpu().long()
            if labels.shape != (n,):
                raise ValueError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
            if labels.min() < -1 or labels.max() >= self.n_components:
                raise ValueError(f"labels must lie in [-1, {self.n_components - 1}] (-1 = unlabelled)")
            k = torch.where(labels >= 0, labels, k)
        e = draw(torch.randn, n, 2, generator=generator, device="cpu") * torch.tensor(self.std)
        r, t = self.directions[k], self.directions[k] @ torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
        return (self.means[k] + e[:, :1] * r + e[:, 1:] * t).to(device or "cpu")

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        r""":math:`\log p(z) = \log \frac1K \sum_k \mathcal N(z; \mu_k, R_k \operatorname{diag}(s^2) R_k^T)`."""
        d = z[:, None, :] - self.means.to(z)[None]                        # (N, K, 2)
        dirs = self.directions.to(z)
        u_r = (d * dirs[None]).sum(-1)                                      # radial coordinate
        u_t = (d * torch.stack([-dirs[:, 1], dirs[:, 0]], 1)[None]).sum(-1)  # tangential coordinate
        sr, st = self.std
        log_n = -0.5 * ((u_r / sr) ** 2 + (u_t / st) ** 2) - math.log(2 * math.pi * sr * st)
        return torch.logsumexp(log_n, 1) - math.log(self.n_components)

    def __repr__(self) -> str:
        return f"MixturePrior(n_components={self.n_components}, radius={self.radius}, std={self.std})"


# ================================================================================== losses
def reconstruction_loss(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    r"""Bernoulli negative log-likelihood of the pixels, summed per image, averaged over the batch:
    :math:`-\sum_j x_j \log \hat x_j + (1 - x_j)\log(1 - \hat x_j)` (nats per image).
    """
    return F.binary_cross_entropy(x_hat.clamp(1e-6, 1 - 1e-6), x, reduction="sum") / x.shape[0]


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor, std: float = 1.0) -> torch.Tensor:
    r""":math:`\mathrm{KL}(\mathcal N(\mu, \operatorname{diag} e^{\text{logvar}}) \| \mathcal N(0, s^2 I))`
    per row, in closed form.
    """
    var = logvar.exp() / std ** 2
    return 0.5 * (var + mu.pow(2) / std ** 2 - 1 - logvar + 2 * math.log(std)).sum(1)


# ================================================================================== the loops
def _run(models: tuple[nn.Module, ...], data, batch_size: int, seed: int, steps: int | None, epochs: float | None,
         log_every: int | None, desc: str, progress: bool | None) -> loops.Run:
    """The run of every loop of this module: batches of ``data`` (the last partial one dropped) on the
    first network's device."""
    return loops.Run.over(models, data, batch_size, seed=seed, device=model_device(models[0]), steps=steps,
                          epochs=epochs, log_every=log_every, desc=desc, progress=progress)


def _reconstruction_adam(encoder: nn.Module, decoder: nn.Module, lr: float) -> torch.optim.Adam:
    return torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=check_positive(lr, "lr"))


def train_autoencoder(encoder: nn.Module, decoder: nn.Module, data, *, epochs: float | None = None,
                      steps: int | None = None, batch_size: int = 100, lr: float = 1e-3, seed: int = 0,
                      log_every: int | None = None, progress: bool | None = None) -> pd.DataFrame:
    """A plain (unregularised) autoencoder: minimise :func:`reconstruction_loss` only, with Adam. The
    baseline whose codes follow no prior. Both networks are left in eval mode. Returns the history
    (``rec`` per image, one row per epoch by default).
    """
    run = _run((encoder, decoder), data, batch_size, seed, steps, epochs, log_every, "AE", progress)
    opt = _reconstruction_adam(encoder, decoder, lr)
    for t in run:
        x, _ = next(run.stream)
        rec = reconstruction_loss(decoder(encoder(x)), x)
        loops.optimizer_step(opt, rec, "reconstruction", t, run.total)
        run.history.add(rec=rec.item())
        if t in run.log_at:
            run.history.row(t)
    return run.history.frame()


def train_aae(encoder: nn.Module, decoder: nn.Module, discriminator: nn.Module, data, prior, *,
              epochs: float | None = None, steps: int | None = None, batch_size: int = 100,
              lr: float = 1e-3, lr_reg: float = 2e-4, schedule: str = "constant", label_prior: bool = False,
              label_decoder: bool = False, seed: int = 0, generator: torch.Generator | None = None,
              log_every: int | None = None, progress: bool | None = None) -> pd.DataFrame:
    r"""Train an adversarial autoencoder in place (Makhzani et al. 2016, section 2); the three
    networks are left in eval mode.

    Every mini-batch, in order:

    1. *reconstruction*: encoder and decoder take a step on :func:`reconstruction_loss`;
    2. *regularisation*: the discriminator takes a step on :func:`advlib.gan.discriminator_loss` with
       prior samples :math:`z' \sim p(z)` as "real" and codes :math:`z = q(x)` as "fake"; then the
       encoder takes a step on the non-saturating :func:`advlib.gan.generator_loss` of its codes.

    Args:
        encoder: ``x -> z`` (:class:`~advlib.models.autoencoders.Encoder`).
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
            over the run (:func:`advlib.loops.lr_factor`, no warm-up); a decay damps the oscillation of
            the adversarial game, so the codes settle instead of stopping wherever the last swing left them.
        seed: seeds the shuffle of ``data``.
        generator: draws the prior samples (default: a ``torch.Generator`` seeded with ``seed + 2``).

    Returns the history: ``rec`` (nats per image), ``d_loss``, ``g_loss``, ``time_s`` per epoch.
    """
    if not hasattr(prior, "sample"):
        raise ValueError("prior must be a GaussianPrior or MixturePrior (an object with .sample)")
    loops.check_schedule(schedule)
    run = _run((encoder, decoder, discriminator), data, batch_size, seed, steps, epochs, log_every, "AAE", progress)
    n_cond = prior.n_components + 1
    opt_ae = _reconstruction_adam(encoder, decoder, lr)
    opt_d, opt_g = adam(discriminator.parameters(), lr_reg, name="lr_reg"), adam(encoder.parameters(), lr_reg, name="lr_reg")
    schedulers = loops.lr_schedulers((opt_ae, opt_d, opt_g), schedule, run.total)
    gp = torch.Generator().manual_seed(seed + 2) if generator is None else generator
    for t in run:
        x, y = next(run.stream)
        if (label_prior or label_decoder) and y is None:
            raise ValueError("label_prior / label_decoder need labels: pass data as an ImageData or (x, y)")
        c_dec = one_hot(y, decoder.cond_dim) if label_decoder else None
        # 1. reconstruction phase
        rec = reconstruction_loss(decoder(encoder(x), c_dec), x)
        loops.optimizer_step(opt_ae, rec, "reconstruction", t, run.total)
        # 2. regularisation phase: discriminator, then encoder as generator
        if label_prior:
            c = one_hot(torch.where(y >= 0, y, torch.full_like(y, n_cond - 1)), n_cond)
            z_prior = prior.sample(x.shape[0], labels=y, generator=gp, device=run.device)
            d_args = (c,)
        else:
            z_prior = prior.sample(x.shape[0], generator=gp, device=run.device)
            d_args = ()
        z = encoder(x)
        d_loss = discriminator_loss(discriminator(z_prior, *d_args), discriminator(z.detach(), *d_args))
        loops.optimizer_step(opt_d, d_loss, "discriminator", t, run.total)
        g_loss = generator_loss(discriminator(z, *d_args), "ns")
        loops.optimizer_step(opt_g, g_loss, "encoder (as generator)", t, run.total)
        for sched in schedulers:
            sched.step()
        run.history.add(rec=rec.item(), d_loss=d_loss.item(), g_loss=g_loss.item())
        if t in run.log_at:
            run.history.row(t)
    return run.history.frame()


def train_vae(encoder: nn.Module, decoder: nn.Module, data, prior, *, epochs: float | None = None,
              steps: int | None = None, batch_size: int = 100, lr: float = 1e-3, seed: int = 0,
              generator: torch.Generator | None = None, log_every: int | None = None,
              progress: bool | None = None) -> pd.DataFrame:
    r"""Train a VAE in place by minimising the negative ELBO
    :math:`\mathbb E_{q(z|x)}[-\log p(x|z)] + \mathrm{KL}(q(z|x) \| p(z))` with the reparameterisation
    :math:`z = \mu + \sigma \epsilon`, :math:`\epsilon \sim \mathcal N(0, I)` drawn from ``generator``
    (default: a ``torch.Generator`` seeded with ``seed``; ``seed`` also seeds the shuffle). The KL term
    is exact for a :class:`GaussianPrior` and a one-sample Monte Carlo estimate
    :math:`\log q(z|x) - \log p(z)` for a :class:`MixturePrior`. The encoder is a
    :class:`~advlib.models.autoencoders.GaussianEncoder`. Both networks are left in eval mode.

    Returns the history: ``rec``, ``kl`` (nats per image), ``time_s``.
    """
    if not hasattr(prior, "log_prob"):
        raise ValueError("prior must be a GaussianPrior or MixturePrior (an object with .log_prob)")
    run = _run((encoder, decoder), data, batch_size, seed, steps, epochs, log_every, "VAE", progress)
    opt = _reconstruction_adam(encoder, decoder, lr)
    g_eps = torch.Generator().manual_seed(seed) if generator is None else generator
    for t in run:
        x, _ = next(run.stream)
        mu, logvar = encoder(x)
        eps = draw(torch.randn, mu.shape, generator=g_eps, device=mu.device).to(mu.dtype)
        z = mu + (0.5 * logvar).exp() * eps
        rec = reconstruction_loss(decoder(z), x)
        if isinstance(prior, GaussianPrior):
            kl = gaussian_kl(mu, logvar, prior.std).mean()
        else:
            log_q = (-0.5 * eps.pow(2) - 0.5 * logvar - 0.5 * math.log(2 * math.pi)).sum(1)
            kl = (log_q - prior.log_prob(z)).mean()
        loops.optimizer_step(opt, rec + kl, "VAE", t, run.total)
        run.history.add(rec=rec.item(), kl=kl.item())
        if t in run.log_at:
            run.history.row(t)
    return run.history.frame()


def train_semi_supervised_aae(encoder: nn.Module, decoder: nn.Module, disc_y: nn.Module, disc_z: nn.Module,
                              data, labelled: tuple[torch.Tensor, torch.Tensor], *, epochs: float | None = None,
                              steps: int | None = None, batch_size: int = 100,
                              labelled_batch_size: int | None = None, lr: float = 1e-3,
                              lr_reg: float = 2e-4, lr_semi: float = 1e-3, schedule: str = "constant",
                              input_noise: float = 0.0, z_std: float = 1.0, seed: int = 0,
                              generator: torch.Generator | None = None,
                              val: tuple[torch.Tensor, torch.Tensor] | None = None, log_every: int | None = None,
                              progress: bool | None = None) -> pd.DataFrame:
    r"""The semi-supervised AAE (Makhzani et al. 2016, section 6); the four networks are left in eval mode.

    The encoder (:class:`~advlib.models.autoencoders.SemiSupervisedEncoder`) gives :math:`q(y|x)`
    (softmax of the categorical head) and a style code :math:`z`; the decoder reconstructs from
    :math:`(z, q(y|x))` (``cond_dim = num_classes``). Every step has three phases, each on its own
    batch:

    1. *reconstruction*, on a batch of ``data`` (unlabelled): encoder and decoder take a step on
       :func:`reconstruction_loss`;
    2. *regularisation*, on the same unlabelled batch: ``disc_y`` learns to tell one-hot samples of a
       uniform categorical from :math:`q(y|x)`, ``disc_z`` to tell :math:`\mathcal N(0, \text{z\_std}^2 I)`
       samples from :math:`z`; then the encoder takes a step to fool both (non-saturating losses);
    3. *semi-supervised classification*, on a batch of the ``labelled`` pairs
       (``labelled_batch_size``, default ``batch_size``, at most all of them): the categorical head
       takes a cross-entropy step.

    Args:
        data: the unlabelled images (ImageData, tensor or ``(x, y)`` with ``y`` ignored).
        labelled: ``(x, y)``, the few labelled images.
        lr, lr_reg, lr_semi: Adam learning rates of the three phases.
        schedule: ``"constant"``, or a ``"linear"`` / ``"cosine"`` decay of all four learning rates
            to 0 over the run, as in :func:`train_aae`.
        input_noise: standard deviation of Gaussian noise added to the encoder's input in all three
            phases (0: none). The reconstruction target stays the clean image (a denoising
            autoencoder), and the classifier learns from noisy copies of the labelled images
            rather than their exact pixels (chapter 02 shows it still fits 100 of them at once).
        z_std: the style prior's standard deviation.
        seed: seeds the shuffles (``labelled``: ``seed + 3``).
        generator: draws the prior samples (default: seeded with ``seed + 2``); the input noise has
            its own generator, seeded with ``seed + 4``.
        val: an optional ``(x, y)``; each history row then has ``val_error`` (1 - accuracy of
            :func:`classify` on it). It is only watched, never used to choose or stop.

    Returns the history: ``rec``, ``d_loss``, ``g_loss``, ``ce`` (the labelled cross-entropy, on the
    noisy inputs when ``input_noise`` > 0), ``val_error`` if ``val``, ``time_s``.
    """
    xl, yl = labelled
    if xl.shape[0] != yl.shape[0] or xl.shape[0] == 0:
        raise ValueError(f"labelled must be a non-empty (x, y) pair of equal length, got {xl.shape[0]} and {yl.shape[0]}")
    num_classes = encoder.num_classes
    if getattr(decoder, "cond_dim", None) != num_classes:
        raise ValueError(f"decoder.cond_dim must equal encoder.num_classes={num_classes}")
    check_positive(z_std, "z_std")
    check_nonnegative(input_noise, "input_noise")
    lab_batch = batch_size if labelled_batch_size is None else check_int(labelled_batch_size, "labelled_batch_size",
                                                                         minimum=1)
    lab_batch = min(lab_batch, xl.shape[0])
    loops.check_schedule(schedule)
    models = (encoder, decoder, disc_y, disc_z)
    run = _run(models, data, batch_size, seed, steps, epochs, log_every, "semi-supervised AAE", progress)
    device = run.device
    lab_stream, _ = loops.batches((xl, yl), lab_batch, seed=seed + 3, device=device, drop_last=True,
                                  name="labelled", labels=True)
    opt_ae = _reconstruction_adam(encoder, decoder, lr)
    opt_d = adam([*disc_y.parameters(), *disc_z.parameters()], lr_reg, name="lr_reg")
    opt_g = adam(encoder.parameters(), lr_reg, name="lr_reg")
    opt_s = torch.optim.Adam(encoder.parameters(), lr=check_positive(lr_semi, "lr_semi"))
    schedulers = loops.lr_schedulers((opt_ae, opt_d, opt_g, opt_s), schedule, run.total)
    gp = torch.Generator().manual_seed(seed + 2) if generator is None else generator
    g_noise = torch.Generator().manual_seed(seed + 4)

    def noisy(x: torch.Tensor) -> torch.Tensor:
        if not input_noise:
            return x
        return x + input_noise * draw(torch.randn, x.shape, generator=g_noise, device=x.device).to(x.dtype)

    for t in run:
        x, _ = next(run.stream)
        n = x.shape[0]
        # 1. reconstruction (of the clean image)
        logits, z = encoder(noisy(x))
        rec = reconstruction_loss(decoder(z, logits.softmax(1)), x)
        loops.optimizer_step(opt_ae, rec, "reconstruction", t, run.total)
        # 2. regularisation: both discriminators, then the encoder as generator
        logits, z = encoder(noisy(x))
        q_y = logits.softmax(1)
        y_prior = one_hot(draw(torch.randint, num_classes, (n,), generator=gp, device="cpu"), num_classes).to(device)
        z_prior = (z_std * draw(torch.randn, n, z.shape[1], generator=gp, device="cpu")).to(device)
        d_loss = (discriminator_loss(disc_y(y_prior), disc_y(q_y.detach()))
                  + discriminator_loss(disc_z(z_prior), disc_z(z.detach())))
        loops.optimizer_step(opt_d, d_loss, "discriminator", t, run.total)
        g_loss = generator_loss(disc_y(q_y), "ns") + generator_loss(disc_z(z), "ns")
        loops.optimizer_step(opt_g, g_loss, "encoder (as generator)", t, run.total)
        # 3. semi-supervised classification on the labelled set
        xb, yb = next(lab_stream)
        ce = F.cross_entropy(encoder(noisy(xb))[0], yb)
        loops.optimizer_step(opt_s, ce, "classification", t, run.total)
        for sched in schedulers:
            sched.step()
        run.history.add(rec=rec.item(), d_loss=d_loss.item(), g_loss=g_loss.item(), ce=ce.item())
        if t in run.log_at:
            extra = {}
            with run.history.paused():  # time_s counts training only
                if val is not None:
                    extra["val_error"] = 1.0 - (classify(encoder, val[0]) == val[1].to(device)).float().mean().item()
            run.history.row(t, **extra)
    return run.history.frame()


# ================================================================================== inference
@torch.no_grad()
def classify(encoder: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Predicted classes ``argmax q(y|x)`` of a semi-supervised encoder, in eval mode (its mode
    restored after).
    """
    was = encoder.training
    encoder.eval()
    device = model_device(encoder)
    out = torch.cat([encoder(x[i:i + batch_size].to(device))[0].argmax(1) for i in range(0, x.shape[0], batch_size)])
    encoder.train(was)
    return out


@torch.no_grad()
def encode(encoder: nn.Module, x: torch.Tensor, batch_size: int = 1000, sample: bool = False,
           generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Codes of ``x`` (the style for a semi-supervised encoder), on the CPU, in eval mode (its mode
    restored after). For a :class:`~advlib.models.autoencoders.GaussianEncoder`, the posterior mean
    :math:`\mu(x)` by default, or with ``sample`` one draw :math:`z \sim q(z|x)` per image,
    :math:`\mu + \sigma \epsilon` with :math:`\epsilon` from ``generator`` (default: seeded with 0):
    the draws of all of ``x`` are a sample of the aggregated posterior :math:`q(z)`, the means are not
    (they leave out the spread of every :math:`q(z|x)`). ``sample`` is refused for other encoders,
    whose :math:`q(z|x)` is a point mass.
    """
    gaussian = isinstance(encoder, GaussianEncoder)
    if sample and not gaussian:
        raise ValueError("sample=True needs a GaussianEncoder; a deterministic encoder's code is its only sample")
    g = (torch.Generator().manual_seed(0) if generator is None else generator) if sample else None
    was = encoder.training
    encoder.eval()
    device = model_device(encoder)
    outs = []
    for i in range(0, x.shape[0], batch_size):
        out = encoder(x[i:i + batch_size].to(device))
        if gaussian:
            mu, logvar = out
            out = mu
            if sample:
                out = mu + (0.5 * logvar).exp() * draw(torch.randn, mu.shape, generator=g, device=mu.device).to(mu.dtype)
        elif isinstance(out, tuple):
            out = out[-1]         # the style code of a semi-supervised encoder
        outs.append(out.cpu())
    encoder.train(was)
    return torch.cat(outs)
