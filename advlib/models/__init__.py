"""Models. Every classifier takes images in [0, 1] and carries its input normalisation inside,
so attack budgets (eps) are always in pixel units.

- ``mnist``: the Madry et al. MNIST CNN.
- ``cifar``: a small VGG-style CNN and PreAct-ResNet18 for CIFAR-10.
- ``mlp``: a ReLU multilayer perceptron (the VAT experiments).
- ``imagenet``: a pretrained ImageNet classifier (EfficientNet-Lite0 offline, ResNet-50 online).
- ``gan``: generators and discriminators (chapter 01); ``autoencoders``: the encoders and decoders of
  the adversarial autoencoders and the VAE (chapter 02).
"""
from .common import Normalize, count_parameters
from .mnist import MadryMNIST, mnist_cnn
from .cifar import PreActResNet18, SmallCIFAR, small_cifar_cnn, preact_resnet18
from .imagenet import imagenet_classifier
from .mlp import mlp_classifier
from . import autoencoders, gan

__all__ = ["Normalize", "count_parameters", "MadryMNIST", "mnist_cnn", "SmallCIFAR", "small_cifar_cnn",
           "PreActResNet18", "preact_resnet18", "imagenet_classifier", "mlp_classifier"]
