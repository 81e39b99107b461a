"""advlib.loops: the schedule, the batch stream, the step count, the history and the finite-loss guard."""
import math

import pytest
import torch

from advlib import data, loops


def test_lr_factor_warmup_then_decay():
    # 10 steps, 20% warm-up: 1/2, 2/2, then decay over the remaining 8 steps
    assert [loops.lr_factor("linear", t, 10, 0.2) for t in range(3)] == [0.5, 1.0, 1.0]
    assert loops.lr_factor("linear", 6, 10, 0.2) == pytest.approx(0.5)
    assert loops.lr_factor("cosine", 6, 10, 0.2) == pytest.approx(0.5)
    assert loops.lr_factor("cosine", 4, 10, 0.2) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert loops.lr_factor("linear", 10, 10) == 0.0
    assert all(loops.lr_factor("constant", t, 10, 0.5) == 1.0 for t in range(10))
    # piecewise: 1 for the first half of the steps after the warm-up, then 0.1, then 0.01 from 3/4
    assert [loops.lr_factor("piecewise", t, 10) for t in range(10)] == [1.0] * 5 + [0.1] * 3 + [0.01] * 2
    assert [loops.lr_factor("piecewise", t, 12, 1 / 6) for t in (0, 1, 2, 6, 7, 9, 10, 11)] == [
        0.5, 1.0, 1.0, 1.0, 0.1, 0.1, 0.01, 0.01]
    with pytest.raises(ValueError, match="schedule must be one of .*'piecewise'.*, got 'step'"):
        loops.lr_factor("step", 0, 10)
    with pytest.raises(ValueError, match="warmup"):
        loops.lr_schedulers([], "linear", 10, warmup=1.0)


def test_lr_schedulers_drive_the_optimizers():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    (sched,) = loops.lr_schedulers([opt], "linear", 4)
    rates = []
    for _ in range(4):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert rates == pytest.approx([1.0, 0.75, 0.5, 0.25])


def test_batches_of_tensors_shuffle_reproducibly_and_drop_or_keep_the_last():
    x, y = torch.arange(10.0).view(10, 1), torch.arange(10)
    kept, per_epoch = loops.batches((x, y), 4, seed=0, device="cpu", labels=True)
    assert per_epoch == 3
    sizes = [len(next(kept)[0]) for _ in range(6)]
    assert sizes == [4, 4, 2, 4, 4, 2]
    dropped, per_epoch = loops.batches((x, y), 4, seed=0, device="cpu", drop_last=True)
    assert per_epoch == 2
    first = torch.cat([next(dropped)[1] for _ in range(2)])
    again, _ = loops.batches((x, y), 4, seed=0, device="cpu", drop_last=True)
    assert torch.equal(first, torch.cat([next(again)[1] for _ in range(2)]))  # the seed fixes the order
    assert len(set(first.tolist())) == 8                                     # a pass draws without replacement
    xb, yb = next(loops.batches((x, y), 4, seed=0, device="cpu")[0])
    assert torch.equal(xb.squeeze(1).long(), yb)                             # x and y stay paired
    # fewer examples than a batch: one batch of all of them
    small, per_epoch = loops.batches(x[:3], 8, seed=0, device="cpu", drop_last=True)
    assert per_epoch == 1 and next(small)[0].shape == (3, 1) and next(small)[1] is None


def test_batches_of_images_and_samplers():
    images = data.ImageData(torch.zeros(10, 1, 2, 2, dtype=torch.uint8), torch.arange(10), tuple("0123456789"))
    stream, per_epoch = loops.batches(images, 4, seed=0, device="cpu", drop_last=True)
    assert per_epoch == 2 and next(stream)[0].shape == (4, 1, 2, 2)
    stream, per_epoch = loops.batches(lambda n: torch.ones(n, 3), 5, seed=0, device="cpu")
    assert per_epoch is None and next(stream)[0].shape == (5, 3)


def test_batches_with_indices_name_the_rows_they_hold():
    x, y = torch.arange(10.0).view(10, 1) * 3, torch.arange(10) + 100
    stream, _ = loops.batches((x, y), 4, seed=0, device="cpu", labels=True, indices=True)
    seen = []
    for _ in range(3):  # one pass
        xb, yb, idx = next(stream)
        assert torch.equal(xb, x[idx]) and torch.equal(yb, y[idx]) and idx.dtype == torch.long
        seen += idx.tolist()
    assert sorted(seen) == list(range(10))
    plain, _ = loops.batches((x, y), 4, seed=0, device="cpu", labels=True)
    assert torch.equal(next(plain)[0], x[seen[:4]])  # asking for indices does not change the order
    pixels = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 1, 2, 2).contiguous()
    images = data.ImageData(pixels, torch.arange(10), tuple("0123456789"))
    xb, yb, idx = next(loops.batches(images, 4, seed=0, device="cpu", indices=True)[0])
    assert torch.equal(yb, idx) and torch.equal(xb[:, 0, 0, 0] * 255, idx.float())
    with pytest.raises(ValueError, match="sampler n -> x has no example indices"):
        loops.batches(lambda n: torch.ones(n, 3), 5, seed=0, device="cpu", indices=True)


@pytest.mark.parametrize("data_, kw, match", [
    (torch.zeros(4, 1, 2, 2), dict(labels=True), r"data must be an advlib.data.ImageData or an \(x, y\) pair"),
    ((torch.zeros(4, 1, 2, 2), torch.zeros(3)), dict(), r"data: x and y must be tensors of the same length, got 4"),
    ((torch.zeros(4, 1, 2, 2), torch.zeros(3, dtype=torch.long)), dict(labels=True, name="train"),
     r"train\[1\] \(y\) must have shape \(4,\)"),
    ("images", dict(), r"data must be an advlib.data.ImageData, an \(x, y\) pair of tensors, a tensor x or a sampler"),
    (torch.zeros(0, 1, 2, 2), dict(), "data is an empty batch"),
])
def test_batches_reject_bad_data_naming_the_argument(data_, kw, match):
    with pytest.raises(ValueError, match=match):
        loops.batches(data_, 2, seed=0, device="cpu", **kw)


def test_total_and_log_steps():
    assert loops.total_steps(None, 2.5, 4) == 10 and loops.total_steps(7, None, 4) == 7
    assert loops.total_steps(None, 0.01, 4) == 1
    with pytest.raises(ValueError, match="exactly one of steps and epochs"):
        loops.total_steps(3, 1, 4)
    with pytest.raises(ValueError, match="with a sampler give steps"):
        loops.total_steps(None, 1, None)
    assert loops.log_steps(10, None, 4) == {4, 8, 10}
    assert loops.log_steps(10, 3, None) == {3, 6, 9, 10}
    assert loops.log_steps(25, None, None) == {2 * k for k in range(1, 13)} | {25}


def test_history_weighted_means_and_reset():
    h = loops.History(per_epoch=4)
    h.add(weight=3, loss=1.0, acc=1.0)
    h.add(weight=1, loss=5.0, acc=0.0)
    row = h.row(2, lr=0.1)
    assert row["loss"] == pytest.approx(2.0) and row["acc"] == pytest.approx(0.75)
    assert list(row)[:2] == ["epoch", "step"] and row["epoch"] == 0.5 and row["lr"] == 0.1
    h.add(loss=4.0)
    assert h.row(4)["loss"] == 4.0                      # the sums start afresh after each row
    assert list(h.frame().step) == [2, 4]
    assert "epoch" not in loops.History().row(1)        # a sampler has no epochs


def test_finite_guard_and_step():
    p = torch.nn.Parameter(torch.ones(1))
    opt = torch.optim.SGD([p], lr=0.5)
    loops.optimizer_step(opt, (2 * p).sum(), "toy", 1, 3)
    assert p.item() == pytest.approx(0.0)
    with pytest.raises(FloatingPointError, match="the toy loss became nan at step 2 of 3"):
        loops.optimizer_step(opt, p.sum() * float("nan"), "toy", 2, 3)
    assert p.item() == pytest.approx(0.0)               # no step was taken
