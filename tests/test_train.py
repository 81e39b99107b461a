"""The training loop: standard and adversarial steps, schedules, the NaN guard, history."""
import copy
import math

import pytest
import torch
from torch import nn
import torch.nn.functional as F

from advlib import adversaries, attacks, evaluate, train
from conftest import TinyNet


def toy_data(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    x = torch.rand(n, 1, 12, 12, generator=g) * 0.3
    x[torch.arange(n), 0, y, y] = 1.0  # a learnable bright pixel per class
    return x, y


def test_standard_fit_learns_and_reports(tiny):
    x, y = toy_data()
    hist = train.fit(tiny, (x, y), epochs=6, batch_size=32, lr=1e-2, val=(x, y), progress=False, evals=3)
    assert list(hist.columns[:4]) == ["epoch", "step", "train_loss", "train_acc"]
    assert len(hist) == 3 and hist.val_acc.iloc[-1] > 0.9
    assert hist.train_loss.iloc[-1] < hist.train_loss.iloc[0]
    assert hist.lr.iloc[-1] == pytest.approx(0.0, abs=1e-9)  # linear decay ends at 0
    assert not tiny.training


@pytest.mark.parametrize("make", [
    lambda: adversaries.fgsm(0.1),
    lambda: adversaries.fgsm_rs(0.1),
    lambda: adversaries.pgd(adversaries.linear_ramp(0.1, 0.5), steps=2),
])
def test_adversarial_fit_runs_and_sees_perturbed_inputs(tiny, make):
    x, y = toy_data(64)
    seen = []
    base = make()

    def spy(model, xb, yb, progress, index=None):
        out = base(model, xb, yb, progress)
        seen.append(((out - xb).abs().max().item(), progress))
        return out

    hist = train.fit(tiny, (x, y), epochs=2, batch_size=32, lr=1e-3, adversary=spy, progress=False)
    assert len(hist) == 2 and all(math.isfinite(v) for v in hist.train_loss)
    assert all(d <= 0.1 + 1e-6 for d, _ in seen) and max(d for d, _ in seen) > 0.05
    assert [p for _, p in seen] == sorted(p for _, p in seen) and seen[0][1] == 0.0


def test_eps_ramp():
    ramp = adversaries.linear_ramp(0.3, 0.2)
    assert ramp(0.0) == 0.0 and ramp(0.1) == pytest.approx(0.15) and ramp(0.9) == 0.3
    assert adversaries.linear_ramp(0.3, 0.0)(0.0) == 0.3


def test_clean_weight_and_regularizer_enter_the_loss():
    # one step over the whole batch: the logged loss is the loss at the starting weights, which we
    # can recompute: w CE(h(x), y) + (1 - w) CE(h(x_adv), y) + R(h, x_u), with R on the unlabelled batch
    torch.manual_seed(0)
    x, y = toy_data(32)
    model = nn.Sequential(nn.Flatten(), nn.Linear(144, 10))  # no dropout or batch norm: the loss is deterministic
    start = copy.deepcopy(model)
    x_u = torch.rand(8, 1, 12, 12)
    seen = []

    def reg(m, xu, progress, y=None):
        seen.append(xu)
        return 0.1 * m(xu).pow(2).mean()

    hist = train.fit(model, (x, y), epochs=1, batch_size=32, adversary=adversaries.fgsm(0.05), clean_weight=0.3,
                     regularizer=reg, unlabelled=x_u, unlabelled_batch_size=8, schedule="constant", progress=False)
    x_adv = attacks.fgsm(start, x, y, eps=0.05)
    with torch.no_grad():
        expected = (0.3 * F.cross_entropy(start(x), y) + 0.7 * F.cross_entropy(start(x_adv), y)
                    + 0.1 * start(x_u).pow(2).mean()).item()
    assert hist.train_loss.iloc[0] == pytest.approx(expected, rel=1e-5)
    # the regulariser saw the unlabelled images (all 8, shuffled), not the labelled batch
    assert len(seen) == 1 and torch.equal(seen[0].sort(0).values, x_u.sort(0).values)
    # without the regulariser and clean weight, the loss is the adversarial one alone
    model = copy.deepcopy(start)
    hist = train.fit(model, (x, y), epochs=1, batch_size=32, adversary=adversaries.fgsm(0.05), progress=False)
    with torch.no_grad():
        assert hist.train_loss.iloc[0] == pytest.approx(F.cross_entropy(start(x_adv), y).item(), rel=1e-5)


def test_fit_keeps_the_partial_batch_and_logs_example_weighted_means():
    torch.manual_seed(0)
    x, y = toy_data(40)
    model = nn.Sequential(nn.Flatten(), nn.Linear(144, 10))
    sizes = []
    hist = train.fit(model, (x, y), epochs=1, batch_size=16, progress=False,
                     adversary=lambda m, xb, yb, p, index=None: sizes.append(len(xb)) or xb)
    assert sizes == [16, 16, 8] and list(hist.step) == [3] and hist.epoch.iloc[0] == 1.0
    assert not model.training


def test_nan_guard(tiny):
    x, y = toy_data(32)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="step 1"):
        train.fit(tiny, (x, y), epochs=1, batch_size=32, progress=False)


@pytest.mark.parametrize("bad, name", [
    (dict(epochs=0), "epochs"), (dict(lr=-1), "lr"), (dict(optimizer="rmsprop"), "optimizer"),
    (dict(schedule="step"), "schedule"), (dict(clean_weight=2.0), "clean_weight"),
])
def test_bad_fit_arguments(tiny, bad, name):
    kw = dict(epochs=1)
    kw.update(bad)
    with pytest.raises(ValueError, match=name):
        train.fit(tiny, toy_data(16), progress=False, **kw)


def test_amp_bf16_runs(tiny):
    x, y = toy_data(32)
    hist = train.fit(tiny, (x, y), epochs=1, batch_size=16, amp=True, adversary=adversaries.pgd(0.1, steps=1),
                     progress=False)
    assert math.isfinite(hist.train_loss.iloc[0])
    assert bool(hist.bf16.iloc[0]) is True


def test_amp_auto_resolves_to_the_hardware(tiny, monkeypatch):
    from advlib import utils

    assert utils.resolve_amp(False, "cpu") is False and utils.resolve_amp(True, "cpu") is True
    monkeypatch.setattr(utils, "bf16_is_native", lambda device=None: False)
    assert utils.resolve_amp("auto", "cpu") is False
    hist = train.fit(tiny, toy_data(16), epochs=1, batch_size=16, amp="auto", progress=False)
    assert bool(hist.bf16.iloc[0]) is False
    monkeypatch.setattr(utils, "bf16_is_native", lambda device=None: True)
    assert utils.resolve_amp("auto", "cpu") is True
    for bad in ("yes", 1, None):
        with pytest.raises(ValueError, match="amp"):
            utils.resolve_amp(bad, "cpu")


def test_evaluate_helpers(tiny):
    x, y = toy_data(40)
    acc = evaluate.accuracy(tiny, x, y, batch_size=7)
    tiny.eval()
    with torch.no_grad():
        right = (tiny(x).argmax(1) == y).sum().item()
    assert acc.n == 40 and acc.correct == right and float(acc) == right / 40
    assert evaluate.robust_accuracy(tiny, x, y, evaluate.attack("pgd", eps=0.0, steps=2)) == acc
    sweep = evaluate.eps_sweep(tiny, x, y, [0.0, 0.05, 0.5], steps=5, progress=False)
    assert list(sweep.eps) == [0.0, 0.05, 0.5] and sweep.accuracy.iloc[0] == acc
    assert sweep.accuracy.is_monotonic_decreasing
    assert evaluate.predict(tiny, x).shape == (40, 10)
    with pytest.raises(ValueError, match="attack"):
        evaluate.eps_sweep(tiny, x, y, [0.1], attack="cw")
    with pytest.raises(ValueError, match="name"):
        evaluate.attack("deepfool")
