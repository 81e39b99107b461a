r"""A ReLU multilayer perceptron classifier, the network of the VAT experiments (chapter 06).

.. math:: h(x) = W_{L+1}\, \mathrm{ReLU}(\mathrm{BN}(W_L \cdots \mathrm{ReLU}(\mathrm{BN}(W_1 \operatorname{vec}(x)))))

Inputs of any shape (N, ...) are flattened; pixels in [0, 1] enter as they are (no normalisation
layer: the VAT paper perturbs the raw inputs, and its eps is in their units). Miyato et al. used
784-1200-600-300-150-10 with batch normalisation on MNIST and 100-100-100-2 on the synthetic sets.
"""
from __future__ import annotations

import math
from typing import Sequence

from torch import nn

from ..utils import check_int
from .common import mlp_layers


def mlp_classifier(hidden: Sequence[int] = (1200, 600, 300, 150), in_features: int = 784, num_classes: int = 10, *,
                   dropout: float = 0.0, batch_norm: bool = False) -> nn.Sequential:
    """``Flatten -> [Linear -> (BatchNorm) -> ReLU -> (Dropout)] per hidden size -> Linear`` (logits).

    Args: hidden, the hidden layer sizes (positive ints; may be empty: logistic regression);
    in_features, the flattened input size; num_classes >= 2; dropout in [0, 1) after each hidden
    ReLU; batch_norm before each hidden ReLU. Chapter 06.

    Example: ``model = mlp_classifier([100, 100], in_features=100, num_classes=2)``
    """
    hidden = tuple(check_int(h, "hidden (each size)", minimum=1) for h in hidden)
    in_features = check_int(in_features, "in_features", minimum=1)
    num_classes = check_int(num_classes, "num_classes", minimum=2)
    if not (isinstance(dropout, (int, float)) and 0.0 <= dropout < 1.0) or math.isnan(dropout):
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    return nn.Sequential(nn.Flatten(), *mlp_layers([in_features, *hidden, num_classes], nn.ReLU(),
                                                   batch_norm=batch_norm, dropout=dropout))
