"""Fast adversarial training (chapter 09): diagnostics of catastrophic overfitting and its cures."""
import math

import pytest
import torch
from torch import nn
import torch.nn.functional as F

from advlib import adversaries, evaluate, fast, train
from test_train import toy_data


class Linear(nn.Module):
    """Softmax regression on the flattened image: its loss is nearly linear in x over a small ball."""

    def __init__(self, d=144, k=10, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.fc = nn.Linear(d, k)

    def forward(self, x):
        return self.fc(x.flatten(1))


class Wiggly(nn.Module):
    """A model whose logits oscillate fast in x: its input gradient changes direction within any ball."""

    def __init__(self, d=144, k=10, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.fc = nn.Linear(d, k)

    def forward(self, x):
        return 3.0 * self.fc(torch.sin(30.0 * x.flatten(1)))


def test_gradient_alignment_is_one_at_zero_eps_and_falls_with_curvature(batch):
    x, y = batch
    lin, wig = Linear(), Wiggly()
    assert torch.allclose(fast.gradient_alignment(lin, x, y, 0.0), torch.ones(len(y)), atol=1e-5)
    g = torch.Generator().manual_seed(0)
    a_lin = fast.gradient_alignment(lin, x, y, 0.1, generator=g).mean().item()
    a_wig = fast.gradient_alignment(wig, x, y, 0.1, generator=g).mean().item()
    assert a_lin > 0.95 and a_wig < 0.3, (a_lin, a_wig)


def test_diagnostics_separate_a_linear_model_from_a_wiggly_one(batch):
    x, y = batch
    d_lin = fast.fgsm_diagnostics(Linear(), x, y, 0.1, pgd_steps=10)
    d_wig = fast.fgsm_diagnostics(Wiggly(), x, y, 0.1, pgd_steps=10)
    assert set(d_lin) == {"fgsm_acc", "pgd_acc", "cos_fgsm_pgd", "fgsm_loss_gain", "pgd_loss_gain",
                          "grad_alignment"}
    # on a nearly linear loss the single step goes where PGD goes and gains almost as much loss
    assert d_lin["cos_fgsm_pgd"] > 0.8 and d_lin["fgsm_loss_gain"] > 0.8 * d_lin["pgd_loss_gain"] > 0
    # on a wiggly one it points elsewhere and gains far less than PGD
    assert d_wig["cos_fgsm_pgd"] < 0.5 and d_wig["fgsm_loss_gain"] < 0.5 * d_wig["pgd_loss_gain"]
    for d in (d_lin, d_wig):
        assert 0.0 <= d["pgd_acc"] <= 1.0 and 0.0 <= d["fgsm_acc"] <= 1.0


def test_diagnostics_are_repeatable_and_leave_the_model_untouched(tiny, batch, assert_leaves_model_untouched):
    x, y = batch
    first = fast.fgsm_diagnostics(tiny, x, y, 0.1, pgd_steps=3, seed=5)
    assert_leaves_model_untouched(tiny, lambda: fast.fgsm_diagnostics(tiny, x, y, 0.1, pgd_steps=3, seed=5))
    assert_leaves_model_untouched(tiny, lambda: fast.gradient_alignment(tiny, x, y, 0.1))
    tiny.eval()
    assert fast.fgsm_diagnostics(tiny, x, y, 0.1, pgd_steps=3, seed=5) == pytest.approx(first, abs=1e-6)


def test_early_stopping_keeps_and_restores_the_best_weights(tiny):
    x, y = toy_data(128)
    es = fast.RobustEarlyStopping(x[:64], y[:64], eps=0.1, steps=2)
    with pytest.raises(RuntimeError, match="no evaluation"):
        es.restore(tiny)
    hist = train.fit(tiny, (x, y), epochs=4, batch_size=32, lr=1e-2, adversary=adversaries.fgsm_rs(0.1),
                     callback=es, progress=False)
    assert "es_pgd_acc" in hist and es.best_acc == pytest.approx(hist.es_pgd_acc.max())
    row = es.restore(tiny)
    assert row["step"] == int(hist.step[hist.es_pgd_acc.idxmax()])
    for k, v in tiny.state_dict().items():
        assert torch.equal(v, es.best_state[k])
    # the restored weights give the recorded accuracy again (same seed, same batch)
    again = fast.RobustEarlyStopping(x[:64], y[:64], eps=0.1, steps=2)
    again(tiny, {})
    assert again.best_acc == pytest.approx(es.best_acc)


def test_gradalign_penalty_is_bounded_differentiable_and_small_for_a_linear_model(batch):
    x, y = batch
    reg = adversaries.gradalign(0.1, weight=2.0)
    lin, wig = Linear(), Wiggly()
    r_lin, r_wig = reg(lin, x, 0.0, y), reg(wig, x, 0.0, y)
    assert 0.0 <= r_lin.item() < 0.1 and 0.5 < r_wig.item() <= 4.0
    r_wig.backward()
    assert wig.fc.weight.grad is not None and wig.fc.weight.grad.abs().sum() > 0  # double backprop


def test_fit_passes_labels_to_the_regularizer_and_gradalign_refuses_unlabelled(tiny):
    x, y = toy_data(64)
    seen = []
    inner = adversaries.gradalign(0.1, weight=0.5)

    def spy(model, xb, progress, y=None):
        seen.append(y is not None and y.shape[0] == xb.shape[0])
        return inner(model, xb, progress, y)

    hist = train.fit(tiny, (x, y), epochs=1, batch_size=32, adversary=adversaries.fgsm(0.1), regularizer=spy,
                     progress=False)
    assert seen == [True, True] and math.isfinite(hist.train_loss.iloc[-1])
    with pytest.raises(ValueError, match="gradalign needs the batch's labels"):
        train.fit(tiny, (x, y), epochs=1, regularizer=spy, unlabelled=x, progress=False)


def test_apart_adversary_stays_in_the_ball_and_ascends_on_its_parameters(tiny, batch):
    x, y = batch
    adv = adversaries.APART(0.1, lr=1e-2)
    x_in = adv(tiny, x, y, 0.0)
    assert x_in.requires_grad and (x_in - x).abs().max() <= 0.1 + 1e-6 and x_in.min() >= 0 and x_in.max() <= 1
    F.cross_entropy(tiny(x_in), y).backward()
    g_alpha, g_sigma = adv.alpha.grad.item(), adv.sigma.grad.item()
    a0, s0 = adv.alpha.item(), adv.sigma.item()
    adv(tiny, x, y, 0.0)  # takes the ascent step on the loss of the last call
    # Adam's first step moves each parameter by lr in the direction of its gradient (up: maximize)
    assert adv.alpha.item() - a0 == pytest.approx(math.copysign(1e-2, g_alpha), rel=1e-3)
    assert min(adv.sigma.item() - s0, 0.1) == pytest.approx(min(math.copysign(1e-2, g_sigma), 0.1 - s0), abs=1e-6)
    assert len(adv.history) == 1


def test_apart_adversary_trains_and_keeps_its_bounds(tiny):
    x, y = toy_data(64)
    adv = adversaries.APART(0.1, alpha=0.15, sigma=0.05, lr=0.05)
    train.fit(tiny, (x, y), epochs=3, batch_size=16, adversary=adv, progress=False)
    assert len(adv.history) == 11  # every step but the last has been followed by an ascent step
    assert all(0 < a <= 0.2 + 1e-6 and 0 <= s <= 0.1 + 1e-6 for a, s in adv.history)


def test_apart_weight_decay_pulls_its_parameters_down(tiny, batch):
    x, y = batch
    adv = adversaries.APART(0.1, alpha=0.1, sigma=0.05, lr=1e-2, weight_decay=1e6)
    F.cross_entropy(tiny(adv(tiny, x, y, 0.0)), y).backward()
    adv(tiny, x, y, 0.0)  # the ascent step: the decay (1e6 x parameter) outweighs the loss's pull
    assert adv.alpha.item() == pytest.approx(0.09, rel=1e-3) and adv.sigma.item() == pytest.approx(0.04, rel=1e-3)
    with pytest.raises(ValueError, match="weight_decay"):
        adversaries.APART(0.1, weight_decay=-1.0)


def test_apart_stored_starts_move_by_the_sign_of_the_gradient_at_the_adversarial_input(tiny, batch):
    x, y = batch
    adv = adversaries.APART(0.1, alpha=0.05, sigma=0.08, lr=1e-2, n_examples=40)
    assert adv.stored
    first = torch.arange(16) + 3
    x_in = adv(tiny, x, y, 0.0, index=first)
    starts = adv.starts.clone()
    assert starts.shape == (40, 1, 12, 12) and starts.abs().max() <= 1
    assert (x_in - x).abs().max() <= 0.1 + 1e-6
    F.cross_entropy(tiny(x_in), y, reduction="sum").backward()
    g = x_in.grad.clone()
    adv(tiny, x, y, 0.0, index=torch.arange(16) + 20)  # applies the first batch's update, then steps alpha
    moved = (starts[first] + (0.05 / 0.08) * g.sign()).clamp(-1, 1)
    assert torch.allclose(adv.starts[first], moved)
    untouched = torch.ones(40, dtype=torch.bool)
    untouched[first] = False
    assert torch.equal(adv.starts[untouched], starts[untouched])
    # the next call on those examples starts from sigma * u_i, u_i the stored start
    x_again = adv(tiny, x, y, 0.0, index=first)
    alpha, sigma, u = adv.alpha.item(), adv.sigma.item(), adv.starts[first]
    start = (x + sigma * u).clamp(0, 1)
    with torch.enable_grad():
        start.requires_grad_(True)
        tiny.eval()
        (grad,) = torch.autograd.grad(F.cross_entropy(tiny(start), y, reduction="sum"), start)
    expected = (x + (sigma * u + alpha * grad.sign()).clamp(-0.1, 0.1)).clamp(0, 1)
    assert torch.allclose(x_again, expected, atol=1e-6)


def test_apart_stored_starts_through_fit_get_each_example_its_own(tiny):
    x, y = toy_data(48)
    adv = adversaries.APART(0.1, lr=1e-2, n_examples=48)
    calls = []
    inner = adv.__call__

    class Spy:
        def __call__(self, model, xb, yb, progress, index=None):
            calls.append(index.clone())
            assert torch.equal(xb, x[index]) and torch.equal(yb, y[index])
            return inner(model, xb, yb, progress, index=index)

    train.fit(tiny, (x, y), epochs=2, batch_size=16, adversary=Spy(), progress=False)
    assert sorted(torch.cat(calls[:3]).tolist()) == list(range(48))  # an epoch sees every example once
    before = adv.starts.clone()
    train.fit(tiny, (x, y), epochs=1, batch_size=16, adversary=Spy(), progress=False)
    changed = (adv.starts != before).flatten(1).any(1)
    assert changed.sum() >= 32  # every batch but the last of the epoch has been updated


def test_apart_stored_starts_need_valid_indices(tiny, batch):
    x, y = batch
    adv = adversaries.APART(0.1, n_examples=16)
    with pytest.raises(ValueError, match="index="):
        adv(tiny, x, y, 0.0)
    with pytest.raises(ValueError, match=r"index must be in \[0, n_examples = 16\)"):
        adv(tiny, x, y, 0.0, index=torch.arange(16) + 1)
    with pytest.raises(ValueError, match="one long index per image"):
        adv(tiny, x, y, 0.0, index=torch.arange(8))
    with pytest.raises(ValueError, match="n_examples"):
        adversaries.APART(0.1, n_examples=0)


@pytest.mark.parametrize("bad, name", [
    (lambda: adversaries.gradalign(-0.1, 1.0), "eps"),
    (lambda: adversaries.gradalign(0.1, -1.0), "weight"),
    (lambda: adversaries.APART(0.0), "eps"),
    (lambda: adversaries.APART(0.1, lr=0), "lr"),
    (lambda: fast.RobustEarlyStopping(torch.rand(4, 1, 12, 12), torch.zeros(4, dtype=torch.long), eps=0.1,
                                      steps=0), "steps"),
])
def test_bad_arguments_name_themselves(bad, name):
    with pytest.raises(ValueError, match=name):
        bad()


def _rising_model(d: int) -> nn.Module:
    """Two classes; the loss of class 0 rises with every pixel (its input gradient is positive)."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(d, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.stack([-torch.ones(d), torch.ones(d)]))
        model[1].bias.zero_()
    return model


@pytest.mark.parametrize("clip_start", [True, False])
def test_fgsm_rs_start_clipping(clip_start):
    """On black images whose loss rises with every pixel, the step is +alpha = +1.25 eps everywhere.
    From a start clipped to the box (delta_0 >= 0 at black pixels) every pixel ends at eps; from the
    unclipped start (delta_0 uniform in [-eps, eps], as in Wong et al.'s code) only those with
    delta_0 >= -0.25 eps do, 62.5% of them, and the rest lie in [0.25 eps, eps)."""
    eps, d = 0.3, 100 * 100
    model, x, y = _rising_model(d), torch.zeros(1, 1, 100, 100), torch.zeros(1, dtype=torch.long)
    torch.manual_seed(0)
    x_adv = adversaries.fgsm_rs(eps, clip_start=clip_start)(model, x, y, 0.0)
    assert x_adv.shape == x.shape and (x_adv - x).abs().max() <= eps + 1e-6
    at_eps = ((x_adv - eps).abs() < 1e-6).float().mean().item()
    if clip_start:
        assert at_eps == 1.0
    else:
        assert 0.6 < at_eps < 0.65, at_eps
        assert x_adv.min().item() >= 0.25 * eps - 1e-6


def test_fgsm_rs_clip_start_must_be_a_bool():
    with pytest.raises(ValueError, match="clip_start must be True or False"):
        adversaries.fgsm_rs(0.3, clip_start="yes")
