"""Speed of advlib's attacks and robust evaluation against torchattacks, measured in one run.

1. PGD-10 on the Madry MNIST CNN, random start off in both, on the same model object. The fp32
   target is judged on the same computation: advlib with ``select="last"`` returns torchattacks'
   last iterate (checked) with the same forward and backward passes. Also printed: advlib's default
   (the best iterate, which costs one more forward pass to score the last one), both with
   ``channels_last="auto"`` (on the CPU, convolutions run on detached channels-last copies of the
   weights); advlib in float32 with that turned off; and advlib's fastest honest setting (the default
   plus bfloat16 autocast where the CPU or GPU has it natively).
2. A full robust evaluation, PGD-50 with 3 restarts at eps 0.3, of a standard (non-robust) MNIST model:
   ``advlib.evaluate.robust_accuracy`` (examples wrong clean are skipped, restarts attack only the
   survivors, ``early_stop``) against the same through torchattacks (three random-start PGD-50 runs
   on every example, robust = right clean and under all three).

3. The evaluation cache (``advlib.worst_case.cached_robustness``): the evaluation of 2., run once
   (attacks, then stores the per-example masks) and again (loads them), in a fresh cache folder; the
   second call should cost under 5% of the first, and give the same masks (checked).

Each pair is run alternately, several rounds, and the medians are compared, so that a noisy machine
affects both alike. Agreement is checked, and the script exits with an error if it fails.

    python benchmarks/attacks.py [--batch 128] [--steps 10] [--rounds 5] [--batches 3] [--n-eval 500]
"""
from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
import time

import torch

from advlib import attacks, data, evaluate, models, train, worst_case
from advlib.utils import bf16_is_native


def alternate(fns: dict, rounds: int) -> dict[str, float]:
    """Median seconds per call of each function, calling them in alternating order."""
    times = {k: [] for k in fns}
    for r in range(rounds):
        order = list(fns.items())
        if r % 2:
            order.reverse()
        for name, fn in order:
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def pgd_speed(args) -> bool:
    import torchattacks

    torch.manual_seed(0)
    model = models.mnist_cnn().eval()
    bf16 = bf16_is_native("cpu")
    x = torch.rand(args.batch, 1, 28, 28)
    y = torch.randint(0, 10, (args.batch,))
    kw = dict(eps=args.eps, alpha=args.alpha, steps=args.steps, random_start=False)
    ta = torchattacks.PGD(model, eps=args.eps, alpha=args.alpha, steps=args.steps, random_start=False)

    def fast():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return attacks.pgd(model, x, y, **kw)

    ours, theirs = attacks.pgd(model, x, y, select="last", **kw), ta(x, y)  # also warm-ups
    plain = attacks.pgd(model, x, y, select="last", channels_last=False, **kw)
    fast()
    same = ((ours - theirs).flatten(1).abs().amax(1) < 1e-5).float().mean().item()
    same_plain = ((plain - theirs).flatten(1).abs().amax(1) < 1e-5).float().mean().item()
    run = lambda f: (lambda: [f() for _ in range(args.batches)])
    t = alternate({"advlib fp32": run(lambda: attacks.pgd(model, x, y, select="last", **kw)),
                   "torchattacks": run(lambda: ta(x, y)),
                   "advlib fp32 best": run(lambda: attacks.pgd(model, x, y, **kw)),
                   "advlib fp32 plain": run(lambda: attacks.pgd(model, x, y, select="last", channels_last=False,
                                                                **kw)),
                   "advlib fastest": run(fast)}, args.rounds)
    rate = {k: args.batches * args.batch / v for k, v in t.items()}
    print(f"PGD-{args.steps}, eps={args.eps}, batch {args.batch}, {torch.get_num_threads()} threads, "
          f"{args.rounds} alternating rounds of {args.batches} batches")
    print(f"  last iterates identical to torchattacks' (to 1e-5): {100 * same:.1f}% of examples "
          f"(channels-last off: {100 * same_plain:.1f}%)")
    print(f"  torchattacks.PGD                          : {rate['torchattacks']:8.1f} images/s")
    print(f"  advlib.attacks.pgd, fp32, select='last'   : {rate['advlib fp32']:8.1f} images/s   "
          f"ratio {rate['advlib fp32'] / rate['torchattacks']:.2f} (target >= 1.1; the same computation)")
    print(f"  advlib, fp32 default (best iterate)       : {rate['advlib fp32 best']:8.1f} images/s   "
          f"ratio {rate['advlib fp32 best'] / rate['torchattacks']:.2f} (one more forward pass)")
    print(f"  advlib, fp32, select='last', channels_last=False: {rate['advlib fp32 plain']:8.1f} images/s   "
          f"ratio {rate['advlib fp32 plain'] / rate['torchattacks']:.2f}")
    setting = "default + bf16 autocast" if bf16 else "default, fp32 (bf16 not native here)"
    print(f"  advlib fastest ({setting}): {rate['advlib fastest']:8.1f} images/s   "
          f"ratio {rate['advlib fastest'] / rate['torchattacks']:.2f} (target >= {'1.5' if bf16 else '1.1'})")
    same = min(same, same_plain)
    return same >= 0.95  # a rounding difference at a ReLU kink may flip a sign in an odd example


def evaluation_speed(args) -> bool:
    import torchattacks

    torch.manual_seed(0)
    train_set, test_set = data.mnist(train=True), data.mnist(train=False)
    model = models.mnist_cnn()
    train.fit(model, train_set.subset(4000, seed=0), epochs=1, batch_size=64, progress=False)
    x, y = test_set.subset(args.n_eval, seed=1).tensors()
    eps, alpha, steps, restarts = 0.3, 0.01, 50, 3
    ours_attack = functools.partial(attacks.pgd, eps=eps, alpha=alpha, steps=steps, restarts=restarts,
                                    early_stop=True)
    ta = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)

    def theirs() -> float:
        right = evaluate.predict(model, x).argmax(1) == y
        for _ in range(restarts):
            x_adv = torch.cat([ta(xb, yb) for xb, yb in zip(x.split(250), y.split(250))])
            right &= evaluate.predict(model, x_adv).argmax(1) == y
        return right.float().mean().item()

    result = {}
    t = alternate({"advlib": lambda: result.__setitem__("advlib", evaluate.robust_accuracy(model, x, y, ours_attack)),
                   "torchattacks": lambda: result.__setitem__("torchattacks", theirs())}, max(1, args.rounds // 2))
    clean = evaluate.accuracy(model, x, y)
    print(f"robust evaluation of a standard MNIST CNN (clean {clean}), PGD-{steps} x {restarts} restarts, "
          f"eps {eps}, n={len(y)}")
    print(f"  torchattacks (3 random-start runs on every example): {t['torchattacks']:6.2f} s, "
          f"robust accuracy {100 * result['torchattacks']:.1f}%")
    print(f"  advlib.evaluate.robust_accuracy                    : {t['advlib']:6.2f} s, "
          f"robust accuracy {100 * result['advlib']:.1f}%   speed-up {t['torchattacks'] / t['advlib']:.1f}x (target >= 3)")
    ok_cache = evaluation_cache_speed(model, x, y, ours_attack)
    return result["advlib"] <= result["torchattacks"] + 0.01 and ok_cache


def evaluation_cache_speed(model, x, y, attack) -> bool:
    """The first call of ``cached_robustness`` attacks and stores; the second, as a re-executed chapter
    cell would (the attack built anew, its generator seeded anew), only loads."""

    def seeded():
        return {"pgd": functools.partial(attack, generator=torch.Generator().manual_seed(0))}

    with tempfile.TemporaryDirectory() as folder:
        old = os.environ.get("ADVLIB_CACHE")
        os.environ["ADVLIB_CACHE"] = folder
        try:
            t0 = time.perf_counter()
            first = worst_case.cached_robustness(model, x, y, seeded())
            t1 = time.perf_counter()
            second = worst_case.cached_robustness(model, x, y, seeded())
            t2 = time.perf_counter()
        finally:
            if old is None:
                del os.environ["ADVLIB_CACHE"]
            else:
                os.environ["ADVLIB_CACHE"] = old
    ratio = (t2 - t1) / (t1 - t0)
    print(f"evaluation cache (worst_case.cached_robustness, the evaluation above, n={len(y)}): first call "
          f"{t1 - t0:6.2f} s, second call {t2 - t1:6.3f} s = {100 * ratio:.2f}% of the first (target < 5%)")
    same = torch.equal(first.mask, second.mask) and all(torch.equal(first.masks[k], second.masks[k]) for k in first.masks)
    if not same:
        print("  the loaded evaluation differs from the computed one")
    return same


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--eps", type=float, default=0.3)
    ap.add_argument("--alpha", type=float, default=0.01)
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds (medians are reported)")
    ap.add_argument("--batches", type=int, default=3, help="batches per round and per attack")
    ap.add_argument("--n-eval", type=int, default=500, help="test images in the robust-evaluation benchmark")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    ok_pgd = pgd_speed(args)
    ok_eval = evaluation_speed(args)
    if not (ok_pgd and ok_eval):
        sys.exit("benchmark: advlib and torchattacks disagree (see above)")


if __name__ == "__main__":
    main()
