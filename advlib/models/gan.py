r"""Generators and discriminators for chapter 01 (GAN), and the code discriminators of chapter 02.

- :class:`MLPGenerator` :math:`G: z \mapsto x` and :class:`MLPDiscriminator` :math:`D: x \mapsto`
  a logit (so :math:`D(x) = \sigma(\text{logit})`), for 1-D / 2-D toys and MNIST;
- :class:`MinibatchStd`, the batch feature that :class:`MLPDiscriminator` adds with ``minibatch_std=True``
  (its other remedy for mode collapse, ``pack``, judges several samples at once);
- :class:`ConvGenerator` / :class:`ConvDiscriminator`: a small DCGAN-style pair for 1x28x28 images;
- :func:`mnist_gan` and :func:`toy_gan`: fresh pairs.

Generators of images end in a sigmoid, so their samples are valid images in [0, 1]. Discriminators
return *logits* of shape ``(N,)``; the losses in :mod:`advlib.gan` apply the sigmoid inside
numerically stable BCE terms. Sized for a CPU. Taught in chapter 01.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from ..utils import check_int
from .common import append_condition, check_hidden, check_shape, mlp_layers as _mlp

_OUTPUTS = {"sigmoid": nn.Sigmoid, "linear": nn.Identity, "tanh": nn.Tanh}


class MLPGenerator(nn.Module):
    r"""A generator :math:`G(z)`: an MLP from ``z_dim`` noise to ``out_shape`` (chapter 01).

    ``out="sigmoid"`` for images in [0, 1], ``"linear"`` for toy data on the real line / plane.
    """

    def __init__(self, z_dim: int = 64, out_shape: int | Sequence[int] = (1, 28, 28),
                 hidden: Sequence[int] = (256, 512), out: str = "sigmoid", batch_norm: bool = False) -> None:
        super().__init__()
        self.z_dim = check_int(z_dim, "z_dim", minimum=1)
        self.out_shape = check_shape(out_shape, "out_shape")
        if out not in _OUTPUTS:
            raise ValueError(f"out must be one of {sorted(_OUTPUTS)}, got {out!r}")
        sizes = [self.z_dim, *check_hidden(hidden), math.prod(self.out_shape)]
        self.net = nn.Sequential(_mlp(sizes, nn.LeakyReLU(0.2), batch_norm), _OUTPUTS[out]())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must have shape (N, {self.z_dim}), got {tuple(z.shape)}")
        return self.net(z).view(-1, *self.out_shape)


class MinibatchStd(nn.Module):
    r"""Appends one feature to every example: the standard deviation of each feature across the
    batch, averaged over the features (the "minibatch standard deviation" of Karras et al. 2018, a
    simple form of Salimans et al.'s minibatch discrimination). A generator that puts many samples
    on one mode makes it small, and the discriminator can then reject the whole batch.
    """

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if h.shape[0] < 2:
            raise ValueError(f"the minibatch standard deviation needs a batch of at least 2, got {h.shape[0]}")
        s = h.std(0, unbiased=False).mean()
        return torch.cat([h, s.expand(h.shape[0], 1)], 1)


class MLPDiscriminator(nn.Module):
    r"""A discriminator: an MLP from ``in_shape`` to one logit per example; :math:`D(x) = \sigma(\cdot)`.

    With ``cond_dim`` > 0 it also takes a conditioning vector ``c`` (e.g. a one-hot label, chapter 02),
    concatenated to the flattened input.

    Two remedies for mode collapse change what the discriminator sees. ``pack`` = m > 1 (PacGAN, Lin
    et al. 2018) judges m samples at once: the batch is cut into groups of m consecutive examples,
    concatenated, and each group gets one logit (so ``N`` inputs give ``N / m`` logits; ``N`` must be
    a multiple of m). ``minibatch_std=True`` appends :class:`MinibatchStd` after the first hidden
    layer. Both let :math:`D` see the *diversity* of a batch, which no single-sample discriminator can.
    """

    def __init__(self, in_shape: int | Sequence[int] = (1, 28, 28), hidden: Sequence[int] = (512, 256),
                 cond_dim: int = 0, dropout: float = 0.0, pack: int = 1, minibatch_std: bool = False) -> None:
        super().__init__()
        self.in_shape = check_shape(in_shape, "in_shape")
        self.cond_dim = check_int(cond_dim, "cond_dim", minimum=0)
        self.pack = check_int(pack, "pack", minimum=1)
        self.minibatch_std = bool(minibatch_std)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if self.pack > 1 and self.cond_dim:
            raise ValueError("pack > 1 takes no condition (cond_dim must be 0)")
        hidden = check_hidden(hidden)
        if self.minibatch_std and not hidden:
            raise ValueError("minibatch_std needs at least one hidden layer")
        sizes = [self.pack * math.prod(self.in_shape) + self.cond_dim, *hidden, 1]
        act = nn.LeakyReLU(0.2)
        if self.minibatch_std:  # first hidden layer, the batch feature, then the rest
            self.net = nn.Sequential(_mlp(sizes[:2] + [1], act, dropout=dropout)[:-1],
                                     MinibatchStd(), _mlp([sizes[1] + 1, *sizes[2:]], act, dropout=dropout))
        else:
            self.net = _mlp(sizes, act, dropout=dropout)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        h = x.flatten(1)
        if h.shape[1] != math.prod(self.in_shape):
            raise ValueError(f"x must have {math.prod(self.in_shape)} features per example, got shape {tuple(x.shape)}")
        if self.pack > 1:
            if h.shape[0] % self.pack:
                raise ValueError(f"with pack={self.pack} the batch size must be a multiple of {self.pack}, "
                                 f"got {h.shape[0]}")
            h = h.reshape(h.shape[0] // self.pack, -1)
        return self.net(append_condition(h, c, self.cond_dim, "discriminator")).squeeze(1)


class ConvGenerator(nn.Module):
    """A small DCGAN generator for 1x28x28 images: linear to ``width x 7 x 7``, then two stride-2
    transposed convolutions (batch norm + ReLU between), sigmoid output.
    """

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
    then a linear layer to one logit.
    """

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


def mnist_gan(kind: str = "mlp", z_dim: int = 64, g_hidden: Sequence[int] | None = None,
              d_hidden: Sequence[int] | None = None, batch_norm: bool = False) -> tuple[nn.Module, nn.Module]:
    """A fresh ``(G, D)`` pair for MNIST: ``kind="mlp"`` (G ``z_dim``-``g_hidden``-784, default
    64-256-512-784, with batch norm if ``batch_norm``; D 784-``d_hidden``-1, default 784-512-256-1) or
    ``"conv"`` (the small DCGAN-style pair; the widths and ``batch_norm`` are the MLP pair's options).
    """
    if kind == "mlp":
        return (MLPGenerator(z_dim, (1, 28, 28), g_hidden or (256, 512), batch_norm=batch_norm),
                MLPDiscriminator((1, 28, 28), d_hidden or (512, 256)))
    if kind == "conv":
        if g_hidden is not None or d_hidden is not None or batch_norm:
            raise ValueError("g_hidden, d_hidden and batch_norm are options of kind 'mlp' only")
        return ConvGenerator(z_dim), ConvDiscriminator()
    raise ValueError(f"kind must be 'mlp' or 'conv', got {kind!r}")


def toy_gan(dim: int = 2, z_dim: int = 2, hidden: int = 128) -> tuple[MLPGenerator, MLPDiscriminator]:
    """A fresh ``(G, D)`` pair of two-hidden-layer MLPs for ``dim``-dimensional toy data.
    """
    check_int(hidden, "hidden", minimum=1)
    return (MLPGenerator(z_dim, (dim,), (hidden, hidden), out="linear"),
            MLPDiscriminator((dim,), (hidden, hidden)))
