r"""Encoders and decoders for chapter 02 (adversarial autoencoders, and the VAE they are compared with).

- :class:`Encoder`: deterministic :math:`z = f(x)`, the AAE's :math:`q(z|x)`;
- :class:`GaussianEncoder`: :math:`q(z|x) = \mathcal N(\mu(x), \operatorname{diag}\sigma^2(x))`, the VAE's;
- :class:`SemiSupervisedEncoder`: a categorical head :math:`q(y|x)` and a style head :math:`q(z|x)`;
- :class:`Decoder`: :math:`p(x|z)`, optionally also fed a one-hot label, ending in a sigmoid;
- :class:`ClassifierView`: the categorical head alone, as a classifier.

The discriminators on the codes are :class:`advlib.models.gan.MLPDiscriminator`. Taught in chapter 02.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from ..utils import check_int
from .common import append_condition, check_hidden, check_shape, mlp_layers as _mlp


class Encoder(nn.Module):
    r"""A deterministic encoder :math:`z = f(x)`: an MLP from ``in_shape`` to ``z_dim`` (the AAE's
    :math:`q(z|x)`, a point mass; chapter 02).
    """

    outputs_per_dim = 1  # the net's outputs per code dimension

    def __init__(self, in_shape: int | Sequence[int] = (1, 28, 28), z_dim: int = 2,
                 hidden: Sequence[int] = (512, 512)) -> None:
        super().__init__()
        self.in_shape = check_shape(in_shape, "in_shape")
        self.z_dim = check_int(z_dim, "z_dim", minimum=1)
        self.net = _mlp([math.prod(self.in_shape), *check_hidden(hidden), self.outputs_per_dim * self.z_dim],
                        nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


class GaussianEncoder(Encoder):
    r"""The VAE's encoder :math:`q(z|x) = \mathcal N(\mu(x), \operatorname{diag}\exp(\text{logvar}(x)))`:
    an :class:`Encoder` with two outputs per code dimension; ``forward`` returns ``(mu, logvar)``, each
    ``(N, z_dim)``.
    """

    outputs_per_dim = 2  # mu and logvar

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.net(x.flatten(1)).chunk(2, dim=1)
        return mu, logvar.clamp(-12, 8)


class SemiSupervisedEncoder(nn.Module):
    r"""The semi-supervised AAE's encoder: a shared MLP trunk with a categorical head (logits of
    :math:`q(y|x)`, ``num_classes``) and a style head (:math:`z`, ``z_dim``). ``forward`` returns
    ``(logits, z)``. With ``batch_norm``, batch normalisation before every ReLU of the trunk.
    """

    def __init__(self, in_shape: int | Sequence[int] = (1, 28, 28), num_classes: int = 10, z_dim: int = 10,
                 hidden: Sequence[int] = (512, 512), batch_norm: bool = False) -> None:
        super().__init__()
        self.in_shape = check_shape(in_shape, "in_shape")
        self.num_classes = check_int(num_classes, "num_classes", minimum=2)
        self.z_dim = check_int(z_dim, "z_dim", minimum=1)
        hidden = check_hidden(hidden)
        if not hidden:
            raise ValueError("hidden must have at least one layer")
        last = [nn.BatchNorm1d(hidden[-1])] if batch_norm else []
        self.trunk = nn.Sequential(_mlp([math.prod(self.in_shape), *hidden], nn.ReLU(), batch_norm), *last,
                                   nn.ReLU())
        self.head_y = nn.Linear(hidden[-1], self.num_classes)
        self.head_z = nn.Linear(hidden[-1], self.z_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(x.flatten(1))
        return self.head_y(h), self.head_z(h)


class Decoder(nn.Module):
    r"""A decoder :math:`p(x|z)` (or :math:`p(x|z, y)` with ``cond_dim`` > 0, the one-hot label of
    the supervised AAE): an MLP ending in a sigmoid, output ``(N, *out_shape)`` in [0, 1].
    """

    def __init__(self, z_dim: int = 2, out_shape: int | Sequence[int] = (1, 28, 28),
                 hidden: Sequence[int] = (512, 512), cond_dim: int = 0) -> None:
        super().__init__()
        self.z_dim = check_int(z_dim, "z_dim", minimum=1)
        self.cond_dim = check_int(cond_dim, "cond_dim", minimum=0)
        self.out_shape = check_shape(out_shape, "out_shape")
        self.net = nn.Sequential(_mlp([self.z_dim + self.cond_dim, *check_hidden(hidden), math.prod(self.out_shape)],
                                      nn.ReLU()), nn.Sigmoid())

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must have shape (N, {self.z_dim}), got {tuple(z.shape)}")
        return self.net(append_condition(z, c, self.cond_dim, "decoder")).view(-1, *self.out_shape)


class ClassifierView(nn.Module):
    """The categorical head of a :class:`SemiSupervisedEncoder` as a plain classifier ``x -> logits``
    (shares the encoder's parameters), so :func:`advlib.train.fit` and :mod:`advlib.evaluate` can use
    it, e.g. for the labels-only baseline of
    """

    def __init__(self, encoder: SemiSupervisedEncoder) -> None:
        super().__init__()
        if not isinstance(encoder, SemiSupervisedEncoder):
            raise ValueError(f"encoder must be a SemiSupervisedEncoder, got {type(encoder).__name__}")
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)[0]
