"""Data-parallel PGD training on the CPU: one process against ``torchrun --nproc_per_node=N``.

Times ``--steps`` steps of PGD adversarial training (:func:`advlib.train.fit` with
:func:`advlib.adversaries.pgd`, random start off so that both runs compute the same thing; float32)
of the Madry MNIST CNN (SGD) at a global batch of ``--batch``, first in one process with all ``--cores``
threads, then in N processes under ``torchrun`` with ``cores / N`` threads each. Only ``fit`` is
timed (not the start of the processes nor the loading of the data); the two are run alternately,
``--rounds`` times, and the medians compared. It checks that the two runs end with the same weights
(to the larger of ``--atol`` and 3 times the rounding floor, the weight difference between
two single-process runs with different thread counts; exit status 1 if not) and prints the table of book/scaling.md, "Measured here".

    python benchmarks/distributed.py [--nproc 2] [--cores 2] [--steps 40] [--batch 100] [--pgd-steps 3] [--rounds 3]

MNIST is read from ``$ADVLIB_DATA`` (or downloaded) as in the chapters. Run it on an idle machine.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from advlib.utils import cpu_name


def options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nproc", type=int, default=2, help="processes of the data-parallel run")
    p.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="threads in all, in both runs")
    p.add_argument("--steps", type=int, default=40, help="training steps timed")
    p.add_argument("--batch", type=int, default=100, help="the global batch")
    p.add_argument("--pgd-steps", type=int, default=3, help="PGD steps of the adversary")
    p.add_argument("--rounds", type=int, default=3, help="runs of each, alternating; medians are compared")
    p.add_argument("--atol", type=float, default=1e-4, help="largest weight difference allowed")
    p.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)  # where a run saves its result
    return p


# ---------------------------------------------------------------------------------- one run
def worker(args) -> None:
    """One timed run (in one process, or as one rank under torchrun); rank 0 saves the result."""
    from advlib import data, distributed, models, train

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    mnist = data.mnist(train=True).subset(args.steps * args.batch, seed=0)
    torch.manual_seed(0)
    model = models.mnist_cnn()
    adversary = adversaries.pgd(0.3, alpha=0.1, steps=args.pgd_steps, random_start=False)
    distributed.init()
    distributed.barrier()
    start = time.perf_counter()
    train.fit(model, mnist, epochs=1, batch_size=args.batch, lr=0.01, optimizer="sgd", adversary=adversary, amp=False,
              evals=1, seed=0, progress=False)
    seconds = time.perf_counter() - start
    if distributed.is_main():
        torch.save({"seconds": seconds, "state": model.state_dict(), "world_size": distributed.world_size()},
                   args.worker)
    distributed.close()


# ------------------------------------------------------------------------------------ launcher
def run(args, nproc: int, out: Path, threads: int | None = None) -> dict:
    """Start one run of ``nproc`` processes with ``cores / nproc`` threads each (or ``threads``);
    return its result."""
    threads = max(1, args.cores // nproc) if threads is None else threads
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "ADVLIB_PROGRESS": "0", "ADVLIB_AMP": "0"}
    script = [str(Path(__file__).resolve()), "--worker", str(out), "--steps", str(args.steps),
              "--batch", str(args.batch), "--pgd-steps", str(args.pgd_steps)]
    launcher = [sys.executable] if nproc == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                    f"--nproc_per_node={nproc}"]
    subprocess.run(launcher + script, env=env, check=True)
    return torch.load(out, weights_only=True)


def main() -> int:
    args = options().parse_args()
    if args.worker is not None:
        worker(args)
        return 0
    if args.batch % args.nproc:
        raise SystemExit(f"--batch must be a multiple of --nproc ({args.nproc}), got {args.batch}")
    seconds: dict[int, list[float]] = {1: [], args.nproc: []}
    with tempfile.TemporaryDirectory() as folder:
        for r in range(args.rounds):
            order = [1, args.nproc] if r % 2 == 0 else [args.nproc, 1]
            results = {n: run(args, n, Path(folder) / f"run-{n}.pt") for n in order}
            for n, result in results.items():
                seconds[n].append(result["seconds"])
            one, many = results[1]["state"], results[args.nproc]["state"]
            diff = max((one[k] - many[k]).abs().max().item() for k in one)
            print(f"round {r + 1}: 1 process {seconds[1][-1]:.2f} s, {args.nproc} processes "
                  f"{seconds[args.nproc][-1]:.2f} s, largest weight difference {diff:.2g}", flush=True)
        # the rounding floor: the same single-process training with fewer threads sums in another
        # order, and the training steps carry float32 rounding differences into the weights
        floor_run = run(args, 1, Path(folder) / "run-1-thread.pt", threads=max(1, args.cores // args.nproc))
        floor = max((one[k] - floor_run["state"][k]).abs().max().item() for k in one)
        print(f"1 process with {args.cores} threads vs 1 process with {max(1, args.cores // args.nproc)}: "
              f"largest weight difference {floor:.2g} (float32 rounding alone)")
    t1, tn = statistics.median(seconds[1]), statistics.median(seconds[args.nproc])
    print(f"\n{cpu_name()}, {args.cores} cores, torch {torch.__version__}; "
          f"Madry MNIST CNN, PGD-{args.pgd_steps} without random start, float32, medians of {args.rounds} runs\n")
    print("| processes × threads | steps | global batch | seconds | steps / s | speed-up | largest weight difference |")
    print("|---|---|---|---|---|---|---|")
    print(f"| 1 × {args.cores} | {args.steps} | {args.batch} | {t1:.1f} | {args.steps / t1:.2f} | 1.00 | |")
    print(f"| {args.nproc} × {max(1, args.cores // args.nproc)} | {args.steps} | {args.batch} | {tn:.1f} | "
          f"{args.steps / tn:.2f} | {t1 / tn:.2f} | {diff:.1g} |")
    print(f"\nrounding floor (1 process, {args.cores} vs {max(1, args.cores // args.nproc)} threads): {floor:.1g}")
    limit = max(args.atol, 3 * floor)
    if diff > limit:
        print(f"the weights differ by {diff:.3g} > {limit:.3g} (the larger of --atol and 3x the rounding floor): "
              "the runs are not equivalent", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
