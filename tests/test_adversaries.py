"""advlib.adversaries: the eps schedules and step sizes every factory shares; the old names against
the new ones; TRADES and N-FGSM: the loss against a direct implementation of the paper's, the inner
maximisation, the unprojected noisy step, and one epoch of fit with each."""
import math

import pytest
import torch
from torch import nn
import torch.nn.functional as F
from scipy import stats

from advlib import _aliases, adversaries, attacks, fast, large_eps, train
from advlib.utils import eval_mode
from test_train import toy_data


def tiny_mlp(dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.Tanh(), nn.Linear(12, 5)).to(dtype).eval()


def kl_by_hand(logits_p, logits_q):
    """KL(softmax(p) || softmax(q)) per example, straight from the definition."""
    p, q = logits_p.softmax(1), logits_q.softmax(1)
    return (p * (p.log() - q.log())).sum(1)


# ------------------------------------------------------------------------------------------ TRADES
def test_trades_value_matches_the_papers_loss_for_a_fixed_perturbation(monkeypatch):
    model = tiny_mlp()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 1, 4, 4, generator=g, dtype=torch.float64)
    x_fixed = (x + 0.05 * (2 * torch.rand(x.shape, generator=g, dtype=torch.float64) - 1)).clamp(0, 1)
    y = torch.randint(0, 5, (8,), generator=g)
    monkeypatch.setattr(adversaries._regularizers, "trades_perturbation", lambda *a, **k: x_fixed)
    beta = 6.0
    reg = adversaries.trades(0.1, beta, steps=3, alpha=0.02)
    value = reg(model, x, 0.5, y)
    with torch.no_grad():
        want = beta * (1 / 8) * kl_by_hand(model(x), model(x_fixed)).sum()
        # the reference's form: (1/B) * KLDivLoss(sum)(log_softmax(f(x')), softmax(f(x)))
        ref = (1 / 8) * nn.KLDivLoss(reduction="sum")(F.log_softmax(model(x_fixed), 1), F.softmax(model(x), 1))
    assert value.dtype == torch.float64
    assert value.item() == pytest.approx(want.item(), rel=1e-12, abs=1e-15)
    assert value.item() == pytest.approx(beta * ref.item(), rel=1e-12, abs=1e-15)
    # the gradient flows through both predictions, as in the reference (the clean one is not detached)
    params = list(model.parameters())
    got = torch.autograd.grad(value, params)
    logits_p = model(x)
    ref_loss = beta / 8 * nn.KLDivLoss(reduction="sum")(F.log_softmax(model(x_fixed), 1), F.softmax(logits_p, 1))
    expected = torch.autograd.grad(ref_loss, params)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_trades_regularizer_freezes_batch_norm_and_is_zero_at_zero_eps(tiny):
    x, y = toy_data(16)
    tiny.train()
    before = [b.clone() for b in tiny.buffers()]
    reg = adversaries.trades(adversaries.linear_ramp(0.1, 0.5), 1.0, steps=2, alpha_ratio=0.5)
    assert reg(tiny, x, 0.0, y).item() == 0.0  # eps ramped to 0: x' = x
    value = reg(tiny, x, 0.6, y)
    assert value.item() > 0 and value.requires_grad
    assert all(torch.equal(a, b) for a, b in zip(before, tiny.buffers()))
    assert tiny.training and all(p.grad is None for p in tiny.parameters())


@pytest.mark.parametrize("norm, eps, alpha", [("inf", 0.1, 0.02), (2, 0.5, 0.1)])
def test_trades_inner_maximisation_increases_the_kl_and_stays_in_the_ball(tiny, norm, eps, alpha):
    x, _ = toy_data(32)
    tiny.train()
    modes = [m.training for m in tiny.modules()]
    buffers = [b.clone() for b in tiny.buffers()]
    g = torch.Generator().manual_seed(3)
    start = x + 0.001 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    x_adv = adversaries.trades_perturbation(tiny, x, eps=eps, alpha=alpha, steps=10, norm=norm, generator=g)
    assert not x_adv.requires_grad and x_adv.shape == x.shape
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    delta = (x_adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "inf" else delta.norm(dim=1)
    assert (size <= eps + 1e-6).all()
    with torch.no_grad(), eval_mode(tiny):
        clean = tiny(x)
        kl_start = kl_by_hand(clean, tiny(start.clamp(0, 1)))
        kl_end = kl_by_hand(clean, tiny(x_adv))
    assert (kl_end > kl_start).float().mean() > 0.9 and kl_end.mean() > 10 * kl_start.mean()
    assert [m.training for m in tiny.modules()] == modes
    assert all(torch.equal(a, b) for a, b in zip(buffers, tiny.buffers()))
    assert all(p.grad is None for p in tiny.parameters())


def test_trades_start_is_the_references_small_gaussian(tiny):
    """One step from x + 0.001 N(0, I), seeded: the same point as the reference's update."""
    x, _ = toy_data(8)
    noise = 0.001 * torch.randn(x.shape, generator=torch.Generator().manual_seed(5))
    got = adversaries.trades_perturbation(tiny, x, eps=0.1, alpha=0.01, steps=1,
                                         generator=torch.Generator().manual_seed(5))
    with eval_mode(tiny):
        x0 = (x + noise).requires_grad_(True)
        loss = nn.KLDivLoss(reduction="sum")(F.log_softmax(tiny(x0), 1), F.softmax(tiny(x), 1).detach())
        (grad,) = torch.autograd.grad(loss, x0)
    want = torch.min(torch.max(x0.detach() + 0.01 * grad.sign(), x - 0.1), x + 0.1).clamp(0, 1)
    torch.testing.assert_close(got, want)


def test_fit_with_trades_trains_one_epoch_and_lowers_the_loss(tiny):
    x, y = toy_data(128)
    reg = adversaries.trades(0.05, 1.0, steps=2, alpha=0.02)
    hist = train.fit(tiny, (x, y), epochs=1, batch_size=16, lr=1e-2, regularizer=reg, evals=2, progress=False)
    assert len(hist) == 2 and all(math.isfinite(v) for v in hist.train_loss)
    assert hist.train_loss.iloc[-1] < hist.train_loss.iloc[0]
    assert not tiny.training
    # semi-supervised TRADES: the KL term on unlabelled batches (it needs no labels)
    hist = train.fit(tiny, (x[:32], y[:32]), epochs=1, batch_size=16, regularizer=reg, unlabelled=x, progress=False)
    assert math.isfinite(hist.train_loss.iloc[0])


@pytest.mark.parametrize("kwargs, name", [
    (dict(eps=-0.1), "eps"), (dict(beta=-1.0), "beta"), (dict(beta="big"), "beta"), (dict(steps=0), "steps"),
    (dict(steps=2.5), "steps"), (dict(alpha=0.0), "alpha"), (dict(alpha=float("nan")), "alpha"),
    (dict(norm=1), "norm"), (dict(alpha=None), "step size"), (dict(alpha_ratio=0.5), "not both"),
    (dict(alpha=None, alpha_ratio=0.0), "alpha_ratio"),
])
def test_trades_bad_arguments(kwargs, name):
    args = dict(eps=0.1, beta=1.0, steps=3, alpha=0.02) | kwargs
    with pytest.raises(ValueError, match=name):
        adversaries.trades(args.pop("eps"), args.pop("beta"), **args)


def test_trades_perturbation_bad_arguments(tiny):
    x, _ = toy_data(4)
    for kwargs, name in [(dict(eps=-1), "eps"), (dict(alpha=0), "alpha"), (dict(steps=0), "steps")]:
        with pytest.raises(ValueError, match=name):
            adversaries.trades_perturbation(tiny, x, **(dict(eps=0.1, alpha=0.01, steps=2) | kwargs))
    with pytest.raises(ValueError, match="x"):
        adversaries.trades_perturbation(tiny, x + 2, eps=0.1, alpha=0.01, steps=2)


# ------------------------------------------------------------------------------------------ N-FGSM
def test_nfgsm_goes_beyond_the_ball_up_to_k_plus_one_eps(tiny):
    x, y = toy_data(64)
    x = 0.2 + 0.6 * x  # room on both sides, so that clipping to [0, 1] does not hide the reach
    eps = 0.05
    torch.manual_seed(0)
    tiny.train()
    modes = [m.training for m in tiny.modules()]
    buffers = [b.clone() for b in tiny.buffers()]
    x_in = adversaries.nfgsm(eps)(tiny, x, y, 0.0)
    delta = (x_in - x).abs()
    assert not x_in.requires_grad and x_in.min() >= 0 and x_in.max() <= 1
    assert delta.max() <= 3 * eps + 1e-6          # (k + 1) eps with k = 2
    assert (delta > eps + 1e-6).float().mean() > 0.2  # no projection back onto the eps-ball
    assert delta.max() > 2.5 * eps
    assert [m.training for m in tiny.modules()] == modes
    assert all(torch.equal(a, b) for a, b in zip(buffers, tiny.buffers()))
    assert all(p.grad is None for p in tiny.parameters())
    # k and alpha: the reach is k eps + alpha
    x_in = adversaries.nfgsm(eps, k=1.0, alpha=0.02)(tiny, x, y, 0.0)
    assert (x_in - x).abs().max() <= eps + 0.02 + 1e-6 and (x_in - x).abs().max() > eps + 0.01


def test_nfgsm_clips_to_the_image_box(tiny):
    x, y = toy_data(32)  # most pixels in [0, 0.3], some at 1
    torch.manual_seed(1)
    x_in = adversaries.nfgsm(0.2)(tiny, x, y, 0.0)
    assert x_in.min() == 0.0 and x_in.max() == 1.0


def test_nfgsm_noise_is_uniform_on_k_eps():
    """A linear two-class model whose input gradient has a known sign everywhere: x_in - x - alpha *
    sign(w1 - w0) is the noise itself, which must be U[-k eps, k eps]."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 2)).eval()
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(2, 64))
    x = torch.full((200, 1, 8, 8), 0.5)
    y = torch.zeros(200, dtype=torch.long)  # CE to class 0 rises along w1 - w0
    eps, k, alpha = 0.04, 2.0, 0.03  # k eps + alpha < 0.5: nothing is clipped
    torch.manual_seed(7)
    x_in = adversaries.nfgsm(eps, k=k, alpha=alpha)(model, x, y, 0.0)
    direction = (model[1].weight[1] - model[1].weight[0]).detach().sign().view(1, 1, 8, 8)
    eta = (x_in - x - alpha * direction).flatten()
    assert eta.abs().max() <= k * eps + 1e-6
    result = stats.kstest(eta.double().numpy(), stats.uniform(loc=-k * eps, scale=2 * k * eps).cdf)
    assert result.pvalue > 1e-3
    assert abs(eta.mean().item()) < 0.01 * k * eps * 3
    # the global random state drives the noise: same seed, same inputs
    torch.manual_seed(7)
    again = adversaries.nfgsm(eps, k=k, alpha=alpha)(model, x, y, 0.0)
    assert torch.equal(again, x_in)


def test_nfgsm_eps_ramp_and_defaults(tiny):
    x, y = toy_data(16)
    x = 0.2 + 0.6 * x
    adv = adversaries.nfgsm(adversaries.linear_ramp(0.1, 0.5))
    assert torch.equal(adv(tiny, x, y, 0.0), x)  # eps ramped to 0
    torch.manual_seed(0)
    quarter = adv(tiny, x, y, 0.125)  # eps 0.025: reach up to 3 * 0.025
    assert (quarter - x).abs().max() <= 0.075 + 1e-6 and (quarter - x).abs().max() > 0.05


@pytest.mark.parametrize("kwargs, name", [
    (dict(eps=-0.1), "eps"), (dict(eps="x"), "eps"), (dict(k=-1.0), "k"), (dict(alpha=0.0), "alpha"),
    (dict(alpha=-0.1), "alpha"), (dict(alpha_ratio=-1.0), "alpha_ratio"),
])
def test_nfgsm_bad_arguments(kwargs, name):
    args = dict(eps=0.1) | kwargs
    with pytest.raises(ValueError, match=name):
        adversaries.nfgsm(args.pop("eps"), **args)


def test_fit_with_nfgsm_runs_one_epoch(tiny):
    x, y = toy_data(128)
    seen = []
    base = adversaries.nfgsm(0.05)

    def spy(model, xb, yb, progress, index=None):
        out = base(model, xb, yb, progress)
        seen.append((out - xb).abs().max().item())
        return out

    hist = train.fit(tiny, (x, y), epochs=1, batch_size=32, lr=1e-2, adversary=spy, progress=False)
    assert len(hist) == 1 and math.isfinite(hist.train_loss.iloc[0])
    assert len(seen) == 4 and max(seen) > 0.05 and max(seen) <= 0.15 + 1e-6
    assert not tiny.training


# ---------------------------------------------------------------- the protocol: schedules and steps
def test_linear_ramp_and_constant_eps():
    ramp = adversaries.linear_ramp(0.3, 0.2)
    assert [ramp(p) for p in (0.0, 0.1, 0.2, 0.7)] == pytest.approx([0.0, 0.15, 0.3, 0.3])
    assert adversaries.linear_ramp(0.3, 0.0)(0.0) == 0.3  # no ramp: eps from the start
    assert adversaries.as_schedule(0.25)(0.9) == 0.25
    with pytest.raises(ValueError, match="fraction"):
        adversaries.linear_ramp(0.3, 1.5)
    with pytest.raises(ValueError, match="eps"):
        adversaries.as_schedule(-0.1)
    with pytest.raises(ValueError, match=r"eps\(progress\) must return a number"):
        adversaries.as_schedule(lambda p: "big")(0.5)


def test_step_size_is_absolute_or_a_multiple_of_the_eps_of_the_moment():
    absolute = adversaries.step_size(0.01, None, 0.5)
    ratio = adversaries.step_size(None, 0.5, 2.0)
    default = adversaries.step_size(None, None, 1.25)
    assert absolute(0.1) == absolute(0.3) == 0.01
    assert ratio(0.1) == pytest.approx(0.05) and ratio(0.3) == pytest.approx(0.15)
    assert default(0.2) == pytest.approx(0.25) and adversaries.step_size(None, None, None)(0.2) is None
    with pytest.raises(ValueError, match="not both"):
        adversaries.step_size(0.01, 0.5, None)
    with pytest.raises(ValueError, match="alpha_ratio"):
        adversaries.step_size(None, -1.0, None)


def test_a_ramped_pgd_steps_with_the_ratio_at_the_eps_of_the_moment(tiny):
    x, y = toy_data(16)
    adv = adversaries.pgd(adversaries.linear_ramp(0.2, 0.5), steps=3, alpha_ratio=0.5)
    torch.manual_seed(3)
    got = adv(tiny, x, y, 0.25)  # eps 0.1, step 0.05
    torch.manual_seed(3)
    want = attacks.pgd(tiny, x, y, eps=0.1, alpha=0.05, steps=3)
    torch.testing.assert_close(got, want)
    assert torch.equal(adv(tiny, x, y, 0.0), x)  # eps 0: the batch itself


def test_fit_hands_index_and_labels_to_whatever_takes_them(tiny):
    x, y = toy_data(48)
    seen = []

    def adversary(model, xb, yb, progress, index=None):
        assert torch.equal(xb, x[index]) and torch.equal(yb, y[index])
        seen.append("adversary")
        return xb

    def regularizer(model, xb, progress, y=None):
        seen.append("labelled" if y is not None and y.shape == xb.shape[:1] else "unlabelled")
        return model(xb).sum() * 0

    train.fit(tiny, (x, y), epochs=1, batch_size=16, adversary=adversary, regularizer=regularizer, progress=False)
    train.fit(tiny, (x, y), epochs=1, batch_size=16, regularizer=regularizer, unlabelled=x, progress=False)
    assert seen == ["adversary", "labelled"] * 3 + ["unlabelled"] * 3
    # hand-written ones that take neither (as a chapter writes them) are called without them
    plain = []
    train.fit(tiny, (x, y), epochs=1, batch_size=16, progress=False,
              adversary=lambda model, xb, yb, progress: plain.append(len(xb)) or xb,
              regularizer=lambda model, xb, progress: plain.append(-len(xb)) or model(xb).sum() * 0)
    assert plain == [16, -16] * 3
    assert adversaries.accepts(adversaries.APART(0.1), "index") and not adversaries.accepts(print, "index")
    assert adversaries.accepts(adversaries.gradalign(0.1, 1.0), "y")


# ------------------------------------------------------------- the old names, until the chapters move
OLD_AND_NEW = [
    (lambda: train.pgd_adversary(0.3, alpha=0.15, steps=3, eps_ramp=0.2),
     lambda: adversaries.pgd(adversaries.linear_ramp(0.3, 0.2), alpha_ratio=0.5, steps=3)),
    (lambda: train.pgd_adversary(0.3, alpha=0.1, steps=2),
     lambda: adversaries.pgd(0.3, alpha=0.1, steps=2)),
    (lambda: train.fgsm_adversary(0.2, eps_ramp=0.5), lambda: adversaries.fgsm(adversaries.linear_ramp(0.2, 0.5))),
    (lambda: train.fgsm_rs_adversary(0.2, alpha=0.25), lambda: adversaries.fgsm_rs(0.2, alpha=0.25)),
    (lambda: train.fgm_adversary(0.5), lambda: adversaries.fgm(0.5)),
    (lambda: large_eps.scheduled_pgd_adversary(large_eps.staircase_eps(0.4, 4), steps=4, step_ratio=2.0),
     lambda: adversaries.pgd(adversaries.staircase(0.4, 4), steps=4, alpha_ratio=0.5)),
]


@pytest.mark.parametrize("old, new", OLD_AND_NEW)
def test_an_old_name_computes_what_its_new_one_does(tiny, old, new):
    x, y = toy_data(16)
    for progress in (0.1, 0.6):
        torch.manual_seed(5)
        a = old()(tiny, x, y, progress)
        torch.manual_seed(5)
        b = new()(tiny, x, y, progress)
        torch.testing.assert_close(a, b)


def test_every_old_name_is_listed_and_points_at_its_new_one():
    import advlib
    import importlib
    for old, new in _aliases.ALIASES.items():
        module, name = old.rsplit(".", 1)
        obj = getattr(importlib.import_module(module), name)
        target = getattr(importlib.import_module(new.rsplit(".", 1)[0]), new.rsplit(".", 1)[1])
        assert getattr(obj, "alias_of", obj) is target, old
    vat = train.vat_regularizer(0.5, xi=1e-3)  # the old call with three arguments still works
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    assert vat(model, torch.rand(4, 1, 4, 4), 0.0).item() >= 0
    assert fast.APARTAdversary is adversaries.APART and advlib.large_eps.staircase_eps is adversaries.staircase
