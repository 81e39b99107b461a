"""The MNIST CNN of Madry et al. (2018), "Towards Deep Learning Models Resistant to Adversarial Attacks".

conv 5x5 (32) -> ReLU -> max-pool 2 -> conv 5x5 (64) -> ReLU -> max-pool 2 -> fc 1024 -> ReLU -> fc 10,
3.27M parameters. Inputs (N, 1, 28, 28) in [0, 1]. Trained in chapter 00, attacked from chapter 04 on.
"""
from __future__ import annotations

from torch import nn

from .common import Normalize

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)


class MadryMNIST(nn.Module):
    """Madry et al.'s MNIST CNN with the MNIST normalisation as its first layer.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.normalize = Normalize(MNIST_MEAN, MNIST_STD)
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(7 * 7 * 64, 1024), nn.ReLU(),
                                        nn.Linear(1024, num_classes))

    def forward(self, x):
        return self.classifier(self.features(self.normalize(x)))


def mnist_cnn(num_classes: int = 10) -> MadryMNIST:
    """A fresh :class:`MadryMNIST`.
    """
    return MadryMNIST(num_classes)
