"""Images per second of advlib.attacks.pgd against torchattacks.PGD on the Madry MNIST CNN.

Same model, batch, eps, step size and number of steps; the random start is off in both so they compute
the same thing (the script checks that they agree). The two are run alternately, several rounds, and
the medians are compared, so that a noisy machine affects both alike.

    python benchmarks/attacks.py [--batch 128] [--steps 10] [--rounds 5] [--batches 3]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from advlib import attacks, models


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--eps", type=float, default=0.3)
    ap.add_argument("--alpha", type=float, default=0.01)
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds (medians are reported)")
    ap.add_argument("--batches", type=int, default=3, help="batches per round and per attack")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    import torchattacks

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = models.mnist_cnn().eval()
    x = torch.rand(args.batch, 1, 28, 28)
    y = torch.randint(0, 10, (args.batch,))
    ours = lambda: attacks.pgd(model, x, y, eps=args.eps, alpha=args.alpha, steps=args.steps, random_start=False)
    ta = torchattacks.PGD(model, eps=args.eps, alpha=args.alpha, steps=args.steps, random_start=False)
    theirs = lambda: ta(x, y)

    diff = (ours() - theirs()).abs().max().item()  # also a warm-up of both
    rates = {"advlib": [], "torchattacks": []}
    for r in range(args.rounds):
        order = [("advlib", ours), ("torchattacks", theirs)]
        if r % 2:
            order.reverse()
        for name, fn in order:
            t = time.perf_counter()
            for _ in range(args.batches):
                fn()
            rates[name].append(args.batches * args.batch / (time.perf_counter() - t))
    a, b = statistics.median(rates["advlib"]), statistics.median(rates["torchattacks"])
    print(f"PGD-{args.steps}, eps={args.eps}, batch {args.batch}, {torch.get_num_threads()} threads, "
          f"{args.rounds} alternating rounds of {args.batches} batches; max |advlib - torchattacks| = {diff:.1e}")
    print(f"advlib.attacks.pgd : {a:8.1f} images/s (median; rounds: {', '.join(f'{v:.0f}' for v in rates['advlib'])})")
    print(f"torchattacks.PGD   : {b:8.1f} images/s (median; rounds: {', '.join(f'{v:.0f}' for v in rates['torchattacks'])})")
    print(f"ratio advlib / torchattacks = {a / b:.3f}")


if __name__ == "__main__":
    main()
