r"""Generators, discriminators, encoders and decoders for chapters 01 (GAN) and 02 (AAE).

All are small multilayer perceptrons or small convnets, sized for a CPU:

- :class:`MLPGenerator` :math:`G: z \mapsto x` and :class:`MLPDiscriminator` :math:`D: x \mapsto`
  a logit (so :math:`D(x) = \sigma(\text{logit})`), for 1-D / 2-D toys and MNIST;
- :class:`ConvGenerator` / :class:`ConvDiscriminator`: a small DCGAN pair for 1x28x28 images;
- :class:`Encoder` (deterministic :math:`q(z|x)`, the AAE's), :class:`GaussianEncoder`
  (:math:`q(z|x) = \mathcal N(\mu(x), \operatorname{diag}\sigma^2(x))`, the VAE's),
  :class:`SemiSupervisedEncoder` (a categorical head :math:`q(y|x)` and a style head :math:`q(z|x)`),
  :class:`Decoder` :math:`p(x|z)` (optionally also fed a one-hot label).

Images are float in [0, 1]; generators and decoders of images end in a sigmoid, so their outputs are
valid images too. Discriminators return *logits* of shape ``(N,)``; the losses in
:mod:`advlib.generative` apply the sigmoid inside numerically stable BCE terms.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from ..utils import check_int
from .common import mlp_layers as _mlp


def _shape(shape: int | Sequence[int], name: str) -> tuple[int, ...]:
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    if not shape or any((not isinstance(s, int)) or s < 1 for s in shape):
        raise ValueError(f"{name} must be a positive int or a tuple of positive ints, got {shape!r}")
    return shape


def _hidden(hidden: Sequence[int], name: str = "hidden") -> tuple[int, ...]:
    hidden = tuple(hidden)
    if any((not isinstance(h, int)) or h < 1 for h in hidden):
        raise ValueError(f"{name} must be a sequence of positive ints, got {hidden!r}")
    return hidden


_OUTPUTS = {"sigmoid": nn.Sigmoid, "linear": nn.Identity, "tanh": nn.Tanh}


# ------------------------------------------------------------------------------------------- GAN
def _append_condition(h: torch.Tensor, c: torch.Tensor | None, cond_dim: int, who: str) -> torch.Tensor:
    """``[h, c]`` for a conditioned network (``c`` of shape ``(N, cond_dim)``); ``h`` when ``cond_dim`` is 0."""
    if cond_dim:
        if c is None or c.shape != (h.shape[0], cond_dim):
            raise ValueError(f"c must have shape ({h.shape[0]}, {cond_dim}), got {None if c is None else tuple(c.shape)}")
        return torch.cat([h, c.to(h.dtype)], 1)
    if c is not None:
        raise ValueError(f"this {who} has cond_dim=0 and takes no c")
    return h


class MLPGenerator(nn.Module):
    r"""A generator :math:`G(z)`: an MLP from ``z_dim`` noise to ``out_shape`` (chapter 01).

    ``out="sigmoid"`` for images in [0, 1], ``"linear"`` for toy data on the real line / plane.
    """

    def __init__(self, z_dim: int = 64, out_shape: int | Sequence[int] = (1, 28, 28),
                 hidden: Sequence[int] = (256, 512), out: str = "sigmoid", batch_norm: bool = False) -> None:
        super().__init__()
        self.z_dim = check_int(z_dim, "z_dim", minimum=1)
        self.out_shape = _shape(out_shape, "out_shape")
        if out not in _OUTPUTS:
            raise ValueError(f"out must be one of {sorted(_OUTPUTS)}, got {out!r}")
        sizes = [self.z_dim, *_hidden(hidden), math.prod(self.out_shape)]
        self.net = nn.Sequential(_mlp(sizes, nn.LeakyReLU(0.2), batch_norm), _OUTPUTS[out]())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must have shape (N, {self.z_dim}), got {tuple(z.shape)}")
        return self.net(z).view(-1, *self.out_shape)


class MLPDiscriminator(nn.Module):
    r"""A discriminator: an MLP from ``in_shape`` to one logit per example; :math:`D(x) = \sigma(\cdot)`.

    With ``cond_dim`` > 0 it also takes a conditioning vector ``c`` (e.g. a one-hot label, chapter 02),
    concatenated to the flattened input. Chapters 01 and 02.
    """

    def __init__(self, in_shape: int | Sequence[int] = (1, 28, 28), hidden: Sequence[int] = (512, 256),
                 cond_dim: int = 0, dropout: float = 0.0) -> None:
        super().__init__()
        self.in_shape = _shape(in_shape, "in_shape")
        self.cond_dim = check_int(cond_dim, "cond_dim", minimum=0)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        sizes = [math.prod(self.in_shape) + self.cond_dim, *_hidden(hidden), 1]
        self.net = _mlp(sizes, nn.LeakyReLU(0.2), dropout=dropout)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        h = x.flatten(1)
        if h.shape[1] != math.prod(self.in_shape):
            raise ValueError(f"x must have {math.prod(self.in_shape)} features per example, got shape {tuple(x.shape)}")
        return self.net(_append_condition(h, c, self.cond_dim, "discriminator")).squeeze(1)


class ConvGenerator(nn.Module):
    """A small DCGAN generator for 1x28x28 images: linear to ``width x 7 x 7``, then two stride-2
    transposed convolutions (batch norm + ReLU between), sigmoid output. Chapter 01."""

    def __init__(self, z_dim: int = 64, width: int = 64) -> None:
        super().__init__()
        self.z_dim = check_int(z_dim, "z_dim", minimum=1)
        w = check_int(width, "width", minimum=2)
        self.out_shape = (1, 28, 28)
        self.fc = nn.Sequential(nn.Linear(self.z_dim, w * 7 * 7), nn.BatchNorm1d(w * 7 * 7), nn.ReLU())
        self.net = nn.Sequential(
            nn.ConvTranspose2d(w, w // 2, 4, 2, 1), nn.BatchNorm2d(w // 2), nn.ReLU(),
            nn.ConvTranspose2d(w // 2, 1, 4, 2, 1), nn.Sigmoid())
        self.width = w

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must have shape (N, {self.z_dim}), got {tuple(z.shape)}")
        return self.net(self.fc(z).view(-1, self.width, 7, 7))


class ConvDiscriminator(nn.Module):
    """A small DCGAN discriminator for 1x28x28 images: two stride-2 convolutions with LeakyReLU(0.2),
    then a linear layer to one logit. Chapter 01."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        w = check_int(width, "width", minimum=1)
        self.in_shape = (1, 28, 28)
        self.net = nn.Sequential(
            nn.Conv2d(1, w, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(w, 2 * w, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Linear(2 * w * 7 * 7, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != self.in_shape:
            raise ValueError(f"x must have shape (N, 1, 28, 28), got {tuple(x.shape)}")
        return self.net(x).squeeze(1)


# ------------------------------------------------------------------------------------ autoencoders
class Encoder(nn.Module):
    r"""A deterministic encoder :math:`z = f(x)`: an MLP from ``in_shape`` to ``z_dim`` (the AAE's
    :math:`q(z|x)`, a point mass; chapter 02)."""

    def __init__(self, in_shape: int | Sequence[int] = (1, 28, 28), z_dim: int = 2,
                 hidden: Sequence[int] = (512, 512)) -> None:
        super().__init__()
        self.in_shape = _shape(in_shape, "in_shape")
        self.z_dim = check_int(z_dim, "z_dim", minimum=1)
        self.net = _mlp([math.prod(self.in_shape), *_hidden(hidden), self.z_dim], nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


class GaussianEncoder(nn.Module):
    r"""The VAE's encoder :math:`q(z|x) = \mathcal N(\mu(x), \operatorname{diag}\exp(\text{logvar}(x)))`;
    ``forward`` returns ``(mu, logvar)``, each ``(N, z_dim)``. Chapter 02."""

    def __init__(self, in_shape: int | Sequence[int] = (1, 28, 28), z_dim: int = 2,
                 hidden: Sequence[int] = (512, 512)) -> None:
        super().__init__()
        self.in_shape = _shape(in_shape, "in_shape")
        self.z_dim = check_int(z_dim, "z_dim", minimum=1)
        self.net = _mlp([math.prod(self.in_shape), *_hidden(hidden), 2 * self.z_dim], nn.ReLU())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.net(x.flatten(1)).chunk(2, dim=1)
        return mu, logvar.clamp(-12, 8)


class SemiSupervisedEncoder(nn.Module):
    r"""The semi-supervised AAE's encoder: a shared MLP trunk with a categorical head (logits of
    :math:`q(y|x)`, ``n_classes``) and a style head (:math:`z`, ``z_dim``). ``forward`` returns
    ``(logits, z)``. Chapter 02."""

    def __init__(self, in_shape: int | Sequence[int] = (1, 28, 28), n_classes: int = 10, z_dim: int = 10,
                 hidden: Sequence[int] = (512, 512)) -> None:
        super().__init__()
        self.in_shape = _shape(in_shape, "in_shape")
        self.n_classes = check_int(n_classes, "n_classes", minimum=2)
        self.z_dim = check_int(z_dim, "z_dim", minimum=1)
        hidden = _hidden(hidden)
        if not hidden:
            raise ValueError("hidden must have at least one layer")
        self.trunk = nn.Sequential(_mlp([math.prod(self.in_shape), *hidden], nn.ReLU()), nn.ReLU())
        self.head_y = nn.Linear(hidden[-1], self.n_classes)
        self.head_z = nn.Linear(hidden[-1], self.z_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(x.flatten(1))
        return self.head_y(h), self.head_z(h)


class Decoder(nn.Module):
    r"""A decoder :math:`p(x|z)` (or :math:`p(x|z, y)` with ``cond_dim`` > 0, the one-hot label of
    the supervised AAE): an MLP ending in a sigmoid, output ``(N, *out_shape)`` in [0, 1]. Chapter 02."""

    def __init__(self, z_dim: int = 2, out_shape: int | Sequence[int] = (1, 28, 28),
                 hidden: Sequence[int] = (512, 512), cond_dim: int = 0) -> None:
        super().__init__()
        self.z_dim = check_int(z_dim, "z_dim", minimum=1)
        self.cond_dim = check_int(cond_dim, "cond_dim", minimum=0)
        self.out_shape = _shape(out_shape, "out_shape")
        self.net = nn.Sequential(_mlp([self.z_dim + self.cond_dim, *_hidden(hidden), math.prod(self.out_shape)],
                                      nn.ReLU()), nn.Sigmoid())

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must have shape (N, {self.z_dim}), got {tuple(z.shape)}")
        return self.net(_append_condition(z, c, self.cond_dim, "decoder")).view(-1, *self.out_shape)


# ------------------------------------------------------------------------------------- factories
def mnist_gan(kind: str = "mlp", z_dim: int = 64) -> tuple[nn.Module, nn.Module]:
    """A fresh ``(G, D)`` pair for MNIST: ``kind="mlp"`` (G 64-256-512-784, D 784-512-256-1) or
    ``"conv"`` (the small DCGAN). Chapter 01."""
    if kind == "mlp":
        return MLPGenerator(z_dim, (1, 28, 28)), MLPDiscriminator((1, 28, 28))
    if kind == "conv":
        return ConvGenerator(z_dim), ConvDiscriminator()
    raise ValueError(f"kind must be 'mlp' or 'conv', got {kind!r}")


def toy_gan(dim: int = 2, z_dim: int = 2, hidden: int = 128) -> tuple[MLPGenerator, MLPDiscriminator]:
    """A fresh ``(G, D)`` pair of two-hidden-layer MLPs for ``dim``-dimensional toy data. Chapter 01."""
    check_int(hidden, "hidden", minimum=1)
    return (MLPGenerator(z_dim, (dim,), (hidden, hidden), out="linear"),
            MLPDiscriminator((dim,), (hidden, hidden)))


class ClassifierView(nn.Module):
    """The categorical head of a :class:`SemiSupervisedEncoder` as a plain classifier ``x -> logits``
    (shares the encoder's parameters), so :func:`advlib.train.fit` and :mod:`advlib.evaluate` can use
    it, e.g. for the labels-only baseline of chapter 02."""

    def __init__(self, encoder: SemiSupervisedEncoder) -> None:
        super().__init__()
        if not isinstance(encoder, SemiSupervisedEncoder):
            raise ValueError(f"encoder must be a SemiSupervisedEncoder, got {type(encoder).__name__}")
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)[0]
