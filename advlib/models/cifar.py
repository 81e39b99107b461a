"""CIFAR-10 classifiers: a small, fast VGG-style CNN and PreAct-ResNet18 (He et al., 2016).

Inputs (N, 3, 32, 32) in [0, 1]; the CIFAR-10 normalisation is the first layer.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from .common import Normalize

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


def _conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class SmallCIFAR(nn.Module):
    """VGG-style CNN: [conv-bn-relu x2, pool] x 3 (32-64-128 channels), global pool, linear. ~0.29M params
    at width 32; ``width`` scales every layer.
    """

    def __init__(self, num_classes: int = 10, width: int = 32) -> None:
        super().__init__()
        w = width
        self.normalize = Normalize(CIFAR_MEAN, CIFAR_STD)
        self.features = nn.Sequential(
            *_conv_bn(3, w), *_conv_bn(w, w), nn.MaxPool2d(2),
            *_conv_bn(w, 2 * w), *_conv_bn(2 * w, 2 * w), nn.MaxPool2d(2),
            *_conv_bn(2 * w, 4 * w), *_conv_bn(4 * w, 4 * w), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * w, num_classes))

    def forward(self, x):
        return self.classifier(self.features(self.normalize(x)))


class PreActBlock(nn.Module):
    r"""A pre-activation residual block (He et al., 2016): :math:`x + F(x)` with
    :math:`F = \text{conv} \circ \text{ReLU} \circ \text{BN} \circ \text{conv} \circ \text{ReLU} \circ \text{BN}`,
    and a 1x1 convolution on the shortcut when the shape changes. The block of :class:`PreActResNet18`.
    """

    expansion = 1

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        out = F.relu(self.bn1(x))
        sc = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + sc


class PreActResNet18(nn.Module):
    """PreAct-ResNet18 (11.2M parameters), the usual CIFAR-10 model of fast adversarial training papers.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.normalize = Normalize(CIFAR_MEAN, CIFAR_STD)
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        layers, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers += [PreActBlock(cin, cout, stride), PreActBlock(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(512)
        self.linear = nn.Linear(512, num_classes)

    def forward(self, x):
        out = self.layers(self.conv1(self.normalize(x)))
        out = F.adaptive_avg_pool2d(F.relu(self.bn(out)), 1).flatten(1)
        return self.linear(out)


def small_cifar_cnn(num_classes: int = 10, width: int = 32) -> SmallCIFAR:
    """A fresh :class:`SmallCIFAR`.
    """
    return SmallCIFAR(num_classes, width)


def preact_resnet18(num_classes: int = 10) -> PreActResNet18:
    """A fresh :class:`PreActResNet18`.
    """
    return PreActResNet18(num_classes)
