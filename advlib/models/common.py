"""Layers shared by the models."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, as the first layer of a model (so inputs stay in [0, 1]).
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if any(s <= 0 for s in std):
            raise ValueError(f"std must be positive, got {list(std)}")
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def mlp_layers(sizes: Sequence[int], act: nn.Module, batch_norm: bool = False, dropout: float = 0.0) -> nn.Sequential:
    """Linear layers between ``sizes``; after each hidden one (not the last): batch norm if asked,
    the activation ``act``, dropout if ``dropout > 0``.
    """
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            if batch_norm:
                layers.append(nn.BatchNorm1d(sizes[i + 1]))
            layers.append(act)
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def check_shape(shape: int | Sequence[int], name: str) -> tuple[int, ...]:
    """``shape`` as a tuple of positive ints (an int ``n`` becomes ``(n,)``), or ``ValueError`` naming ``name``.
    """
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    if not shape or any((not isinstance(s, int)) or s < 1 for s in shape):
        raise ValueError(f"{name} must be a positive int or a tuple of positive ints, got {shape!r}")
    return shape


def check_hidden(hidden: Sequence[int], name: str = "hidden") -> tuple[int, ...]:
    """The hidden-layer widths ``hidden`` as a tuple of positive ints (may be empty), or ``ValueError``.
    """
    hidden = tuple(hidden)
    if any((not isinstance(h, int)) or h < 1 for h in hidden):
        raise ValueError(f"{name} must be a sequence of positive ints, got {hidden!r}")
    return hidden


def append_condition(h: torch.Tensor, c: torch.Tensor | None, cond_dim: int, who: str) -> torch.Tensor:
    """``[h, c]`` for a conditioned network (``c`` of shape ``(N, cond_dim)``, e.g. a one-hot label);
    ``h`` itself when ``cond_dim`` is 0, which takes no ``c``. ``who`` names the network in errors.
    """
    if cond_dim:
        if c is None or c.shape != (h.shape[0], cond_dim):
            raise ValueError(f"c must have shape ({h.shape[0]}, {cond_dim}), got {None if c is None else tuple(c.shape)}")
        return torch.cat([h, c.to(h.dtype)], 1)
    if c is not None:
        raise ValueError(f"this {who} has cond_dim=0 and takes no c")
    return h
