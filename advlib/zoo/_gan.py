"""Chapter 01's recipe, ``gan_mnist``: a GAN on MNIST, an MLP pair or a small DCGAN-style pair,
judged along the way by chapter 00's classifier (taught in chapter 01), with its settings.
"""
from __future__ import annotations

import torch
from torch import nn

from .. import cache, data, gan
from ..models import gan as nets
from ..utils import draw, get_device, new_generator, seed_everything
from ._common import RECIPES, cache_name, recipe
from ._standard import standard_mnist

GAN_ARCHS = ("mlp", "conv")  # the MLP pair; the DCGAN-style pair (convolutions in both players)
# Chapter 01. Both pairs: Adam (2e-4 at book, beta_1 0.5), the non-saturating loss, batch norm in the
# generator, no batch norm in the discriminator, sigmoid output; ``epochs`` per pair (the same at
# book and paper, so the two pairs see the same images). Every half epoch the generator draws 16
# fixed noise vectors (kept as snapshots) and ``n_judge`` fixed ones, whose digits chapter 00's
# classifier (``standard_mnist`` at the same budget) counts (kept as class shares).
RECIPES["gan_mnist"] = {
    "smoke": dict(n_train=12000, epochs={"mlp": 8, "conv": 2}, batch_size=64, lr=5e-4, z_dim=64,
                  g_hidden=[128, 256], d_hidden=[256, 128], loss="ns", n_judge=500, seed=0),
    "book": dict(n_train=60000, epochs={"mlp": 6, "conv": 6}, batch_size=64, lr=2e-4, z_dim=64,
                 g_hidden=[256, 512], d_hidden=[512, 256], loss="ns", n_judge=2000, seed=0),
    "paper": dict(n_train=60000, epochs={"mlp": 50, "conv": 50}, batch_size=100, lr=2e-4, z_dim=64,
                  g_hidden=[256, 512], d_hidden=[512, 256], loss="ns", n_judge=2000, seed=0),
}
N_SNAPSHOT = 16  # noise vectors drawn at every judged step, kept as images


def _fixed_noise(n: int, z_dim: int, seed: int) -> torch.Tensor:
    return draw(torch.randn, n, z_dim, generator=new_generator(seed))


def gan_mnist(arch: str = "mlp", *, budget: str | None = None, seed: int | None = None, retrain: bool = False,
              root=None, verbose: bool = True) -> nn.ModuleDict:
    r"""A GAN trained on MNIST (Goodfellow et al. 2014, Algorithm 1 with Adam and the non-saturating
    generator loss :math:`-\log D(G(z))`; see :func:`advlib.gan.train_gan`). Chapter 01.

    ``arch="mlp"``: generator ``z_dim``-256-512-784 with batch norm, discriminator 784-512-256-1 with
    LeakyReLU (at ``book``); ``arch="conv"``: the DCGAN-style pair of
    :class:`~advlib.models.gan.ConvGenerator` and :class:`~advlib.models.gan.ConvDiscriminator`
    (strided and transposed convolutions, batch norm in the generator only, a sigmoid output).

    Returns ``nn.ModuleDict({"G": ..., "D": ...})`` in eval mode. Beside ``meta["history"]`` (the
    losses every half epoch; ``time_s`` counts training only, the judging is paused out of it):
    ``meta["shares"]``, the classifier's class shares of ``n_judge`` samples of fixed noise at each
    history row, and ``meta["snapshots"]``, the 16 images of fixed noise at each row (flattened,
    keyed by the epoch as ``"2.5"``).
    """
    if arch not in GAN_ARCHS:
        raise ValueError(f"arch must be one of {GAN_ARCHS}, got {arch!r}")
    settings = recipe("gan_mnist", budget, seed)
    judge = standard_mnist(budget=settings["budget"], root=root, verbose=verbose)
    cfg = {**settings, "arch": arch, "epochs": settings["epochs"][arch], "judge": judge.meta["config"]}
    if arch == "conv":  # the MLP pair's widths do not apply
        del cfg["g_hidden"], cfg["d_hidden"]

    widths = {} if arch == "conv" else dict(g_hidden=cfg["g_hidden"], d_hidden=cfg["d_hidden"], batch_norm=True)

    def build() -> nn.Module:
        torch.manual_seed(cfg["seed"])
        G, D = nets.mnist_gan(arch, cfg["z_dim"], **widths)
        return nn.ModuleDict({"G": G, "D": D})

    def train(pair: nn.Module) -> dict:
        seed_everything(cfg["seed"])
        device = get_device()
        train_set = data.mnist(train=True, root=root)
        if cfg["n_train"] < len(train_set):
            train_set = train_set.subset(cfg["n_train"], seed=0)
        z_show = _fixed_noise(N_SNAPSHOT, cfg["z_dim"], 123).to(device)
        z_judge = _fixed_noise(cfg["n_judge"], cfg["z_dim"], 321).to(device)
        snapshots, shares = {}, []

        @torch.no_grad()
        def keep(G: nn.Module, D: nn.Module, row: dict) -> None:
            G.eval()
            snapshots[f"{row['epoch']:.1f}"] = G(z_show).flatten(1).cpu().tolist()
            labels = torch.cat([judge(G(z)).argmax(1).cpu() for z in z_judge.split(1000)])
            shares.append(gan.class_balance(labels)["shares"].tolist())

        per_epoch = len(train_set) // cfg["batch_size"]
        table = gan.train_gan(pair["G"], pair["D"], train_set, epochs=cfg["epochs"], batch_size=cfg["batch_size"],
                              lr_g=cfg["lr"], lr_d=cfg["lr"], loss=cfg["loss"], log_every=max(1, per_epoch // 2),
                              seed=cfg["seed"], callback=keep, progress=False)
        return {"history": table, "shares": shares, "snapshots": snapshots}

    return cache.load_or_train(cache_name("gan_mnist", arch), build, train, cfg, cfg["budget"], retrain,
                               verbose=verbose)
