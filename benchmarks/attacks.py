"""Speed of advlib's attacks, robust evaluation and adversarial training against their peers, in one run.

1. PGD on the Madry MNIST CNN against ``torchattacks.PGD`` on the same model object, every arm from
   a random start (what a user gets), run alternately for several rounds; for each round the ratio of
   images per second to torchattacks' in that round, and the median and range of those ratios:

   - *same computation*: advlib with ``select="last"`` (torchattacks' algorithm: the last iterate,
     the same forward and backward passes); target >= 1.15;
   - *default*: advlib's defaults (the best iterate, which costs one more forward pass to score the
     last one); target >= 1.1; also at ``--long-steps`` steps (any number of steps);
   - *default, cpu_kernels=False*: the model run as it comes (no target: shows what
     :mod:`advlib.kernels` brings);
   - *fastest*: the default plus bfloat16 autocast, only where bf16 is native; target >= 1.5.

   Agreement (checked, the script fails without it): from no random start, advlib's last iterate
   equals torchattacks' to 1e-5 on at least 95% of the examples, with and without the kernels.
2. Adversarial training throughput: ``advlib.train.fit`` with a PGD-7 adversary (random start, best
   iterate) on the Madry MNIST CNN and the small CIFAR-10 CNN, against a plain PyTorch loop doing
   the same training (``torchattacks.PGD`` from a random start, then an Adam step on the adversarial
   batch), same initial weights and batches; target >= 1.0. Where bf16 is native, also ``fit`` with
   ``amp=True`` (its gain is printed).
3. A full robust evaluation, PGD-50 with 3 restarts at eps 0.3, of a standard (non-robust) MNIST model:
   ``advlib.evaluate.robust_accuracy`` (examples wrong clean are skipped, restarts attack only the
   survivors, ``early_stop``) against the same through torchattacks (three random-start PGD-50 runs
   on every example, robust = right clean and under all three).
4. The evaluation cache (``advlib.worst_case.cached_robustness``): the evaluation of 3., run once
   (attacks, then stores the per-example masks) and again (loads them), in a fresh cache folder; the
   second call should cost under 5% of the first, and give the same masks (checked).

Speed ratios are printed with their targets but do not fail the run (machines are noisy); a
disagreement does. To see the AVX2-only path on a CPU with AVX512, run with
``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2``. Where the time of one PGD step goes, per CPU
kind, is in the book's scaling appendix (``book/scaling.md``), measured with ``--profile``.

    python benchmarks/attacks.py [--batch 128] [--steps 10] [--long-steps 40] [--rounds 5] [--batches 3]
                                 [--train-batches 6] [--train-rounds 3] [--n-eval 500] [--only pgd|train|eval]
                                 [--profile]
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
import torch.nn.functional as F

from advlib import adversaries, attacks, data, evaluate, models, train, worst_case
from advlib.utils import bf16_is_native


def alternate(fns: dict, rounds: int) -> dict[str, list[float]]:
    """Seconds per call of each function in each round, calling them in alternating order."""
    times = {k: [] for k in fns}
    for r in range(rounds):
        order = list(fns.items())
        if r % 2:
            order.reverse()
        for name, fn in order:
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return times


def ratios(times: dict[str, list[float]], peer: str) -> dict[str, tuple[float, float, float]]:
    """Per arm: (median, min, max) over rounds of the speed ratio to ``peer`` in the same round."""
    out = {}
    for name, ts in times.items():
        r = [p / t for p, t in zip(times[peer], ts)]
        out[name] = (statistics.median(r), min(r), max(r))
    return out


def show(label: str, ratio: tuple[float, float, float], target: float | None, note: str = "") -> None:
    med, lo, hi = ratio
    goal = f"target >= {target}: {'met' if med >= target else 'NOT met'}" if target else "no target"
    print(f"  {label:44s} ratio {med:5.2f} (rounds {lo:.2f}-{hi:.2f})  {goal}{note}")


def madry_batch(args):
    torch.manual_seed(0)
    model = models.mnist_cnn().eval()
    x = torch.rand(args.batch, 1, 28, 28)
    y = torch.randint(0, 10, (args.batch,))
    return model, x, y


def pgd_speed(args) -> bool:
    import torchattacks

    model, x, y = madry_batch(args)
    bf16 = bf16_is_native("cpu")
    kw = dict(eps=args.eps, alpha=args.alpha, steps=args.steps)
    # agreement, from no random start (the same start in both)
    theirs = torchattacks.PGD(model, random_start=False, **kw)(x, y)
    same = {}
    for kernels in (True, False):
        ours = attacks.pgd(model, x, y, select="last", random_start=False, cpu_kernels=kernels, **kw)
        same[kernels] = ((ours - theirs).flatten(1).abs().amax(1) < 1e-5).float().mean().item()

    def run(f, batches=args.batches):
        return lambda: [f() for _ in range(batches)]

    def fastest(steps=args.steps):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return attacks.pgd(model, x, y, eps=args.eps, alpha=args.alpha, steps=steps)

    ta = torchattacks.PGD(model, random_start=True, **kw)
    arms = {"torchattacks": run(lambda: ta(x, y)),
            "same": run(lambda: attacks.pgd(model, x, y, select="last", **kw)),
            "default": run(lambda: attacks.pgd(model, x, y, **kw)),
            "plain": run(lambda: attacks.pgd(model, x, y, cpu_kernels=False, **kw))}
    if bf16:
        arms["fastest"] = run(fastest)
    for f in arms.values():  # warm-up
        f()
    times = alternate(arms, args.rounds)
    r = ratios(times, "torchattacks")
    images = args.batches * args.batch
    print(f"PGD-{args.steps} from a random start, eps={args.eps}, batch {args.batch}, {torch.get_num_threads()} threads, "
          f"{args.rounds} alternating rounds of {args.batches} batches; bf16 native here: {bf16}")
    print(f"  last iterates identical to torchattacks' (no random start, to 1e-5): {100 * same[True]:.1f}% of "
          f"examples (cpu_kernels=False: {100 * same[False]:.1f}%)")
    print(f"  torchattacks.PGD: {images / statistics.median(times['torchattacks']):.1f} images/s")
    show("advlib, same computation (select='last')", r["same"], 1.15)
    extra = 100 * (statistics.median(times["default"]) / statistics.median(times["same"]) - 1)
    show("advlib, default (best iterate)", r["default"], 1.1,
         f"; {extra:+.1f}% time for the best iterate (one forward pass more than {args.steps} forward+backward)")
    show("advlib, default, cpu_kernels=False", r["plain"], None)
    if bf16:
        show("advlib, fastest (default + bf16 autocast)", r["fastest"], 1.5)
    else:
        print("  advlib, fastest: bf16 is emulated on this CPU, so the default (float32) is the fastest")
    if args.long_steps:
        long_kw = dict(kw, steps=args.long_steps)
        ta_long = torchattacks.PGD(model, random_start=True, **long_kw)
        arms = {"torchattacks": lambda: ta_long(x, y), "default": lambda: attacks.pgd(model, x, y, **long_kw)}
        if bf16:
            arms["fastest"] = lambda: fastest(args.long_steps)
        r = ratios(alternate(arms, max(2, args.rounds // 2)), "torchattacks")
        show(f"advlib, default, PGD-{args.long_steps}", r["default"], 1.1)
        if bf16:
            show(f"advlib, fastest, PGD-{args.long_steps}", r["fastest"], 1.5)
    return min(same.values()) >= 0.95  # a rounding difference at a ReLU kink may flip a sign in an odd example


def training_speed(args) -> None:
    """``fit``'s adversarial training against a plain loop doing the same training."""
    import torchattacks

    bf16 = bf16_is_native("cpu")
    steps, n = 7, args.train_batches * args.batch
    for name, build, shape, eps in [("Madry MNIST CNN", models.mnist_cnn, (1, 28, 28), 0.3),
                                    ("small CIFAR-10 CNN", models.small_cifar_cnn, (3, 32, 32), 8 / 255)]:
        gen = torch.Generator().manual_seed(0)
        x, y = torch.rand(n, *shape, generator=gen), torch.randint(0, 10, (n,), generator=gen)
        torch.manual_seed(0)
        init = build().state_dict()

        def fresh():
            model = build()
            model.load_state_dict(init)
            return model

        def with_fit(amp=False):
            train.fit(fresh(), (x, y), epochs=1, batch_size=args.batch, schedule="constant", amp=amp,
                      adversary=adversaries.pgd(eps, steps=steps), progress=False)

        def plain():
            model = fresh()
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            ta = torchattacks.PGD(model, eps=eps, alpha=2.5 * eps / steps, steps=steps, random_start=True)
            for xb, yb in zip(x.split(args.batch), y.split(args.batch)):
                x_adv = ta(xb, yb)  # runs the model in eval mode, then restores it
                model.train()
                loss = F.cross_entropy(model(x_adv), yb)
                opt.zero_grad()
                loss.backward()
                opt.step()

        arms = {"plain": plain, "fit": with_fit}
        if bf16:
            arms["fit bf16"] = lambda: with_fit(True)
        times = alternate(arms, args.train_rounds)
        r = ratios(times, "plain")
        print(f"adversarial training, PGD-{steps} from a random start, {name}, {args.train_batches} batches of "
              f"{args.batch}, {args.train_rounds} alternating rounds")
        print(f"  plain PyTorch loop (torchattacks.PGD + Adam): {n / statistics.median(times['plain']):.1f} images/s")
        show("advlib.train.fit (best iterate)", r["fit"], 1.0)
        if bf16:
            show("advlib.train.fit, amp=True (bf16 native)", r["fit bf16"], None)


def profile_step(args) -> None:
    """The kernels one PGD step spends its time in, with and without advlib's CPU kernels."""
    from torch.profiler import ProfilerActivity, profile

    model, x, y = madry_batch(args)
    for kernels in (False, True):
        attacks.pgd(model, x, y, eps=args.eps, alpha=args.alpha, steps=2, cpu_kernels=kernels)
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            attacks.pgd(model, x, y, eps=args.eps, alpha=args.alpha, steps=args.steps, select="last",
                        random_start=False, cpu_kernels=kernels)
        print(f"one PGD step of the Madry MNIST CNN, batch {args.batch}, cpu_kernels={kernels} "
              f"(self CPU time per call, averaged over {args.steps} steps)")
        print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=14,
                                                                 max_name_column_width=34, max_shapes_column_width=60))


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
    t = {k: statistics.median(v) for k, v in alternate({"advlib": lambda: result.__setitem__("advlib", evaluate.robust_accuracy(model, x, y, ours_attack)),
                   "torchattacks": lambda: result.__setitem__("torchattacks", theirs())}, max(1, args.rounds // 2)).items()}
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
    ap.add_argument("--long-steps", type=int, default=40, help="steps of the second PGD comparison (0: skip it)")
    ap.add_argument("--batches", type=int, default=3, help="batches per round and per attack")
    ap.add_argument("--train-batches", type=int, default=6, help="training batches per round and per arm")
    ap.add_argument("--train-rounds", type=int, default=3, help="alternating rounds of the training comparison")
    ap.add_argument("--only", choices=["pgd", "train", "eval"], default=None, help="run one section only")
    ap.add_argument("--profile", action="store_true", help="only print where one PGD step spends its time")
    ap.add_argument("--n-eval", type=int, default=500, help="test images in the robust-evaluation benchmark")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.profile:
        profile_step(args)
        return
    ok_pgd = pgd_speed(args) if args.only in (None, "pgd") else True
    if args.only in (None, "train"):
        training_speed(args)
    ok_eval = evaluation_speed(args) if args.only in (None, "eval") else True
    if not (ok_pgd and ok_eval):
        sys.exit("benchmark: advlib and torchattacks disagree (see above)")


if __name__ == "__main__":
    main()
