"""The training runs of tests/test_distributed.py, small enough to take a second on the CPU.

``torchrun --standalone --nproc_per_node=2 tests/ddp_scenarios.py OUT`` runs each scenario data-parallel
(gloo) and saves, per rank, ``OUT/<scenario>-rank<r>.pt``; the test runs the same functions in one
process and compares. Everything is float32 (no bf16 autocast), so it holds on AVX2 and AVX512 CPUs.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from torch import nn

from advlib import adversaries, cache, distributed, train

N, BATCH = 64, 16


class MLP(nn.Module):
    """No batch norm, no dropout: one process and two compute the same function of the weights."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 3))

    def forward(self, x):
        return self.body(x)


class BNNet(nn.Module):
    """Batch norm and dropout: the case DistributedDataParallel's buffer broadcast is for."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                                  nn.Dropout(0.2), nn.Linear(4 * 8 * 8, 3))

    def forward(self, x):
        return self.body(x)


def dataset() -> tuple[torch.Tensor, torch.Tensor]:
    """N images 1x8x8 in [0, 1], 3 classes; pixel (0, 0) of image i is i / (N - 1), which names it."""
    g = torch.Generator().manual_seed(1)
    x = torch.rand(N, 1, 8, 8, generator=g)
    x[:, 0, 0, 0] = torch.arange(N) / (N - 1)
    return x, torch.randint(0, 3, (N,), generator=g)


def recording(adversary, seen: list):
    """``adversary``, noting the names of the examples of every step (and one random draw)."""

    def adv(model, x, y, progress, index=None):
        seen.append({"ids": (x[:, 0, 0, 0] * (N - 1)).round().long().tolist(), "draw": torch.rand(2).tolist()})
        return adversary(model, x, y, progress)

    return adv


def equivalence() -> dict:
    """PGD training without random start (deterministic), SGD, two epochs at a global batch of 16."""
    torch.manual_seed(0)
    model = MLP()
    seen: list = []
    adversary = recording(adversaries.pgd(0.1, steps=2, random_start=False), seen)
    history = train.fit(model, dataset(), epochs=2, batch_size=BATCH, lr=0.05, optimizer="sgd", schedule="constant",
                        adversary=adversary, evals=2, seed=0, progress=False)
    return {"state": model.state_dict(), "seen": seen,
            "history": history.drop(columns="time_s").to_dict("list")}


def random_start() -> dict:
    """PGD training from random starts, with batch norm, dropout and a clean term (two forwards a step)."""
    torch.manual_seed(0)
    model = BNNet()
    seen: list = []
    adversary = recording(adversaries.pgd(0.1, steps=2), seen)
    history = train.fit(model, dataset(), epochs=1, batch_size=BATCH, lr=1e-2, adversary=adversary,
                        clean_weight=0.5, seed=0, progress=False, val=dataset())
    return {"state": model.state_dict(), "seen": seen, "history": history.drop(columns="time_s").to_dict("list")}


def cached(folder: Path) -> dict:
    """The same recipe asked for twice through the cache: trained once (by every rank, together),
    written once (by rank 0), then loaded."""
    os.environ["ADVLIB_CACHE"] = str(folder)
    writes, trainings = [], []
    original_save = cache.save

    def counting_save(*args, **kwargs):
        writes.append(distributed.rank())
        return original_save(*args, **kwargs)

    def build() -> nn.Module:
        torch.manual_seed(0)
        return BNNet()

    def fit(model: nn.Module):
        trainings.append(distributed.rank())
        return train.fit(model, dataset(), epochs=1, batch_size=BATCH, adversary=adversaries.pgd(0.1, steps=1),
                         seed=0, progress=False)

    cache.save = counting_save
    try:
        first = cache.load_or_train("ddp_test", build, fit, {"n": N}, "smoke", device="cpu", verbose=False)
        again = cache.load_or_train("ddp_test", build, fit, {"n": N}, "smoke", device="cpu", verbose=False)
    finally:
        cache.save = original_save
    return {"state": first.state_dict(), "again": again.state_dict(), "writes": writes, "trainings": trainings,
            "history": first.meta["history"]}


def main(out: Path) -> None:
    torch.set_num_threads(1)
    results = {"equivalence": equivalence(), "random_start": random_start(), "cached": cached(out / "cache")}
    rank = distributed.rank()
    for name, result in results.items():
        result["rank"], result["world_size"] = rank, distributed.world_size()
        torch.save(result, out / f"{name}-rank{rank}.pt")
    distributed.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
