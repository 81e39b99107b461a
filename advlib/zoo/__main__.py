"""The zoo's command line: train a recipe and cache it (or find it in the cache), in one process or
data-parallel under ``torchrun``::

    python -m advlib.zoo train robust_mnist --budget smoke
    torchrun --nproc_per_node=4 -m advlib.zoo train robust_cifar --budget paper
"""
from __future__ import annotations

import argparse
import sys

from .. import budget as _budget
from .. import cache, distributed, zoo


def parser() -> argparse.ArgumentParser:
    """The arguments of ``python -m advlib.zoo``."""
    p = argparse.ArgumentParser(prog="python -m advlib.zoo", description="Train and cache the book's model recipes.")
    commands = p.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train a recipe (or load it from the cache) and print where it is cached")
    train.add_argument("name", choices=sorted(zoo.RECIPES), help="the recipe")
    train.add_argument("--budget", choices=_budget.BUDGETS, default=None,
                       help="smoke, book or paper (default: $ADVLIB_BUDGET, else book)")
    train.add_argument("--method", choices=sorted({*zoo.FAST_METHODS, *zoo.ARAE_VARIANTS}), default=None,
                       help="fast_mnist and fast_cifar: which fast-training method (default fgsm_rs on MNIST, fgsm "
                            "on CIFAR-10); arae_sentiment: which weights of the two adversaries (default arae)")
    train.add_argument("--n-train", type=int, default=None, dest="n_train",
                       help="subset_mnist only (required there): how many training images")
    train.add_argument("--eps", type=float, default=None,
                       help="subset_mnist: the L2 eps of adversarial training (default 0, standard training); "
                            "extended_cifar: the L-inf eps, 16/255 or 32/255 (default 16/255); "
                            "fast_cifar: the L-inf eps (default the recipe's)")
    train.add_argument("--width", type=int, default=None,
                       help="fast_cifar only: the small CNN's first-layer channels (default 32)")
    train.add_argument("--arch", choices=zoo.GAN_ARCHS, default=None,
                       help="gan_mnist only: the MLP pair or the DCGAN-style pair (default mlp)")
    train.add_argument("--seed", type=int, default=None,
                       help="another run of the recipe, cached under its own key (default: the recipe's seed)")
    train.add_argument("--retrain", action="store_true", help="train again even if the model is cached")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = parser().parse_args(argv)
    if args.method is not None and args.name not in ("fast_mnist", "fast_cifar", "arae_sentiment"):
        parser().error(f"--method is an option of fast_mnist, fast_cifar and arae_sentiment only, not of {args.name}")
    if args.name != "subset_mnist" and args.n_train is not None:
        parser().error(f"--n-train is an option of subset_mnist only, not of {args.name}")
    if args.name not in ("subset_mnist", "extended_cifar", "fast_cifar") and args.eps is not None:
        parser().error(f"--eps is an option of subset_mnist, extended_cifar and fast_cifar only, not of {args.name}")
    if args.width is not None and args.name != "fast_cifar":
        parser().error(f"--width is an option of fast_cifar only, not of {args.name}")
    if args.arch is not None and args.name != "gan_mnist":
        parser().error(f"--arch is an option of gan_mnist only, not of {args.name}")
    if args.name == "subset_mnist" and args.n_train is None:
        parser().error("subset_mnist needs --n-train (how many training images)")
    budget = _budget.resolve(args.budget)
    options = {"method": args.method} if args.method is not None else {}
    if args.name == "subset_mnist":
        options.update(n_train=args.n_train, eps=0.0 if args.eps is None else args.eps)
    if args.name in ("extended_cifar", "fast_cifar") and args.eps is not None:
        options["eps"] = args.eps
    if args.width is not None:
        options["width"] = args.width
    if args.arch is not None:
        options["arch"] = args.arch
    if args.seed is not None:
        options["seed"] = args.seed
    distributed.init()
    try:
        model = getattr(zoo, args.name)(budget=budget, retrain=args.retrain, **options)
        if distributed.is_main():
            meta = model.meta
            path = cache.path_for(meta["name"], meta["config"], meta["budget"])
            print(f"{meta['name']} ({meta['budget']}) is cached at {path}")
            history = meta.get("history") or {}
            if isinstance(history, dict) and history:
                last = {k: v[-1] for k, v in history.items() if isinstance(v, list) and v}
                print("last row of its history: " + ", ".join(
                    f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in last.items()))
    finally:
        distributed.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
