"""Every zoo recipe's cache key at every budget, without training anything: ``cache.load_or_train`` is
replaced by a recorder. ``tests/test_zoo_keys.py`` compares them with ``tests/data/cache_keys.json``,
so a change that moves a key (and would orphan every cached model) fails a test.

    python tests/cache_keys.py --write     # record the keys of the code as it is
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from torch import nn

RECORD = Path(__file__).resolve().parent / "data" / "cache_keys.json"
CALLS = [  # (label, recipe, args, kwargs): every recipe, and the variants the chapters ask for
    ("standard_mnist", "standard_mnist", (), {}),
    ("gan_mnist('mlp')", "gan_mnist", ("mlp",), {}),
    ("gan_mnist('conv')", "gan_mnist", ("conv",), {}),
    ("robust_mnist", "robust_mnist", (), {}),
    ("standard_cifar", "standard_cifar", (), {}),
    ("robust_cifar", "robust_cifar", (), {}),
    ("robust_mnist_l2", "robust_mnist_l2", (), {}),
    ("robust_cifar_l2", "robust_cifar_l2", (), {}),
    ("subset_mnist(100)", "subset_mnist", (100,), {}),
    ("subset_mnist(1000, 2.0)", "subset_mnist", (1000, 2.0), {}),
    *[(f"fast_mnist({m!r})", "fast_mnist", (m,), {}) for m in
      ("fgsm", "fgsm_rs", "fgsm_rs_unclipped", "fgsm_rs_es", "pgd3", "pgd7", "gradalign", "apart", "apart_stored",
       "apart_wd", "nfgsm")],
    ("fast_mnist('fgsm_rs', alpha=1.5, seed=1)", "fast_mnist", ("fgsm_rs",), {"alpha": 1.5, "seed": 1}),
    ("fast_cifar('fgsm')", "fast_cifar", ("fgsm",), {}),
    ("fast_cifar('fgsm', eps=16/255, width=64)", "fast_cifar", ("fgsm",), {"eps": 16 / 255, "width": 64}),
    ("robust_overfitting_mnist", "robust_overfitting_mnist", (), {}),
    ("robust_overfitting_cifar", "robust_overfitting_cifar", (), {}),
    ("plain_large_mnist", "plain_large_mnist", (), {}),
    ("extended_mnist", "extended_mnist", (), {}),
    ("iat_mnist", "iat_mnist", (), {}),
    ("extended_cifar(16/255)", "extended_cifar", (16 / 255,), {}),
    ("extended_cifar(32/255)", "extended_cifar", (32 / 255,), {}),
    *[(f"arae_sentiment({v!r})", "arae_sentiment", (v,), {}) for v in ("ae", "ae_classifier", "arae", "arae_x10")],
    ("sentiment_language_model", "sentiment_language_model", (), {}),
    ("vat_mnist(100, 'vat')", "vat_mnist", (100, "vat"), {}),
    ("vat_mnist(100, 'ml')", "vat_mnist", (100, "ml"), {}),
    ("vat_mnist(100, 'vat', xi=1e-3)", "vat_mnist", (100, "vat"), {"xi": 1e-3}),
    ("vat_mnist(None, 'vat')", "vat_mnist", (None, "vat"), {}),
    ("vat_mnist(100, 'vat', xi=1e-3, direction_mode='train')", "vat_mnist", (100, "vat"),
     {"xi": 1e-3, "direction_mode": "train"}),
    ("vat_mnist(100, 'vat', eps=0.3, direction_mode='train')", "vat_mnist", (100, "vat"),
     {"eps": 0.3, "direction_mode": "train"}),
    ("trades_mnist", "trades_mnist", (), {}),
    ("trades_mnist(6.0)", "trades_mnist", (6.0,), {}),
    ("trades_cifar", "trades_cifar", (), {}),
]
BUDGETS = ("smoke", "book", "paper")


class _Recorded(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        self.meta = {"config": config, "history": {"time_s": [0.0]}}


def record_keys(calls=CALLS) -> dict[str, dict[str, list[str]]]:
    """``{label: {budget: [cache keys, in the order the recipe asked for them]}}``."""
    from advlib import cache, zoo

    keys: list[str] = []

    def recorder(name, build, train, config, budget=None, retrain=False, **kwargs):
        keys.append(cache.key(name, config, budget))
        return _Recorded(config)

    real = cache.load_or_train
    cache.load_or_train = recorder
    try:
        out = {}
        for label, fn, args, kwargs in calls:
            out[label] = {}
            for budget in BUDGETS:
                keys.clear()
                try:
                    getattr(zoo, fn)(*args, budget=budget, verbose=False, **kwargs)
                except ValueError as e:  # a variant a budget does not have: its refusal is recorded too
                    keys.append(f"ValueError: {e}")
                out[label][budget] = list(keys)
        return out
    finally:
        cache.load_or_train = real


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit(__doc__)
    RECORD.parent.mkdir(exist_ok=True)
    RECORD.write_text(json.dumps(record_keys(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {RECORD}")
