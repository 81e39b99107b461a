"""advlib.robust_gradients: Tsipras et al.'s toy trade-off in closed form, and saliency of image models."""
import math

import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

from advlib import attacks, robust_gradients as rg

TOY = rg.TsiprasToy.of(d=500, p=0.95, k=3.0)


def test_toy_sample_has_the_stated_marginals():
    x, y = TOY.sample(200_000, torch.Generator().manual_seed(0))
    assert x.shape == (200_000, TOY.d + 1) and set(y.unique().tolist()) == {-1.0, 1.0}
    agree = (x[:, 0] == y).float().mean().item()
    assert abs(agree - TOY.p) < 0.003
    weak_mean = (x[:, 1:] * y[:, None]).mean().item()  # E[y x_j] = eta
    assert abs(weak_mean - TOY.eta) < 0.002
    assert abs((x[:, 1:] * y[:, None] - TOY.eta).std().item() - 1.0) < 0.002


@pytest.mark.parametrize("eps", [0.0, TOY.eta, 2 * TOY.eta])
def test_exact_accuracy_matches_monte_carlo_under_the_worst_perturbation(eps):
    g = torch.Generator().manual_seed(1)
    w = torch.randn(TOY.d + 1, generator=g) * 0.05 + torch.cat([torch.tensor([0.5]), torch.full((TOY.d,), 0.05)])
    x, y = TOY.sample(100_000, g)
    x_adv = x - eps * y[:, None] * w.sign()[None]  # the worst L-inf perturbation of a linear model
    monte_carlo = ((x_adv @ w) * y > 0).float().mean().item()
    exact = rg.linear_accuracy(w, TOY, eps)
    assert abs(exact - monte_carlo) < 4 * math.sqrt(exact * (1 - exact) / 100_000) + 1e-4


def test_closed_form_loss_equals_the_loss_at_the_worst_perturbation():
    g = torch.Generator().manual_seed(2)
    w = torch.randn(TOY.d + 1, generator=g)
    x, y = TOY.sample(64, g)
    eps = 0.1
    worst = x - eps * y[:, None] * w.sign()[None]
    direct = torch.nn.functional.softplus(-y * (worst @ w)).mean()
    assert torch.allclose(rg.linear_adversarial_loss(w, x, y, eps), direct, atol=1e-5)
    # and no other corner of the box does worse
    for _ in range(20):
        other = x + eps * (torch.randint(0, 2, x.shape, generator=g) * 2 - 1)
        assert torch.nn.functional.softplus(-y * (other @ w)).mean() <= direct + 1e-5


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), robust_weight=st.floats(0.0, 5.0), weak_weight=st.floats(0.0, 1.0),
       eps_factor=st.floats(2.0, 4.0))
def test_theorem_2_1_holds_for_any_linear_classifier(seed, robust_weight, weak_weight, eps_factor):
    # Tsipras et al.: standard accuracy 1 - delta => robust accuracy <= p / (1 - p) * delta, at eps >= 2 eta
    g = torch.Generator().manual_seed(seed)
    w = torch.cat([torch.tensor([robust_weight]), weak_weight * (1 + torch.randn(TOY.d, generator=g))])
    clean = rg.linear_accuracy(w, TOY)
    robust = rg.linear_accuracy(w, TOY, eps_factor * TOY.eta)
    assert robust <= rg.tradeoff_bound(TOY.p, clean) + 1e-9


def test_standard_training_uses_weak_features_and_adversarial_training_drops_them():
    g = torch.Generator().manual_seed(3)
    x, y = TOY.sample(20_000, g)
    eps = 2 * TOY.eta
    w_std = rg.train_linear(x, y, 0.0)
    w_rob = rg.train_linear(x, y, eps)
    assert rg.linear_accuracy(w_std, TOY) > 0.99
    assert rg.linear_accuracy(w_std, TOY, eps) < 0.01
    assert abs(rg.linear_accuracy(w_rob, TOY) - TOY.p) < 0.01
    assert abs(rg.linear_accuracy(w_rob, TOY, eps) - TOY.p) < 0.01
    # where the weight goes: almost all on x_1 for the robust model, spread for the standard one
    assert w_rob[0].abs() > 10 * w_rob[1:].abs().sum()
    assert w_std[1:].abs().sum() > w_std[0].abs()


def test_toy_validation_names_the_argument():
    with pytest.raises(ValueError, match="p must be"):
        rg.TsiprasToy(p=0.4, eta=0.1, d=10)
    with pytest.raises(ValueError, match="eta"):
        rg.TsiprasToy(p=0.9, eta=0.0, d=10)
    with pytest.raises(ValueError, match="w must have"):
        rg.linear_accuracy(torch.zeros(3), TOY)
    with pytest.raises(ValueError, match="standard_accuracy"):
        rg.tradeoff_bound(0.9, 1.5)
    assert rg.tradeoff_bound(0.95, 0.999) == pytest.approx(0.019)
    assert rg.tradeoff_bound(0.95, 0.5) == 1.0


def test_linear_accuracy_without_weak_weights_is_p():
    w = torch.zeros(TOY.d + 1)
    w[0] = 1.0
    assert rg.linear_accuracy(w, TOY) == pytest.approx(TOY.p)
    assert rg.linear_accuracy(w, TOY, 0.5) == pytest.approx(TOY.p)  # |x_1| = 1 > eps: not flipped
    assert rg.linear_accuracy(w, TOY, 1.5) == 0.0


# ---------------------------------------------------------------------------------- image models
def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Dropout(0.1), nn.Linear(4 * 8 * 8, 10))


def test_rescale_gradient_maps_to_unit_interval_with_zero_at_half():
    g = torch.randn(3, 1, 8, 8)
    g[1] *= 1000  # each image by its own scale
    r = rg.rescale_gradient(g)
    assert r.min() >= 0 and r.max() <= 1
    assert torch.allclose(rg.rescale_gradient(torch.zeros(2, 1, 4, 4)), torch.full((2, 1, 4, 4), 0.5))
    assert torch.allclose(r[1], rg.rescale_gradient(g[1:2] / 1000)[0], atol=1e-5)
    order = torch.argsort(g[0].flatten())
    assert (r[0].flatten()[order].diff() >= 0).all()  # monotone


def test_saliency_maps_agree_with_autograd_and_leave_the_model_alone():
    net = _net()
    net.train()
    x = torch.rand(5, 1, 8, 8)
    y = torch.tensor([0, 1, 2, 3, 4])
    before = {k: v.clone() for k, v in net.state_dict().items()}
    maps = rg.saliency_maps(net, x, y, smoothgrad_samples=4, ig_steps=64)
    assert set(maps) == set(rg.SALIENCY_METHODS) and all(m.shape == x.shape for m in maps.values())
    assert net.training and all(m.training for m in net.modules())
    assert all(p.grad is None and p.requires_grad for p in net.parameters())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    net.eval()
    grad, _ = attacks.input_gradient(net, x, y, lambda z, t: nn.functional.cross_entropy(z, t, reduction="none"))
    assert torch.allclose(maps["gradient"], grad, atol=1e-6)
    xr = x.clone().requires_grad_(True)
    (g_logit,) = torch.autograd.grad(net(xr).gather(1, y[:, None]).sum(), xr)
    assert torch.allclose(maps["saliency"], g_logit, atol=1e-6)
    # integrated gradients' completeness: the attributions sum to h_y(x) - h_y(0)
    with torch.no_grad():
        gap = (net(x) - net(torch.zeros_like(x))).gather(1, y[:, None]).squeeze(1)
    assert torch.allclose(maps["integrated_gradients"].flatten(1).sum(1), gap, atol=2e-2 * gap.abs().max().item())
    # SmoothGrad is seeded and leaves the global random state alone
    state = torch.random.get_rng_state()
    a = rg.saliency_maps(net, x, y, "smoothgrad", smoothgrad_samples=4)["smoothgrad"]
    assert torch.equal(state, torch.random.get_rng_state())
    b = rg.saliency_maps(net, x, y, "smoothgrad", smoothgrad_samples=4)["smoothgrad"]
    assert torch.equal(a, b) and not torch.allclose(a, maps["saliency"])


def test_saliency_maps_reject_unknown_methods():
    with pytest.raises(ValueError, match="methods must be among"):
        rg.saliency_maps(_net(), torch.rand(1, 1, 8, 8), torch.tensor([0]), ["gradcam"])


def test_stroke_energy_share():
    x = torch.zeros(2, 1, 10, 10)
    x[:, :, 4:6, 2:8] = 1.0  # a bar
    on_strokes = torch.zeros_like(x)
    on_strokes[:, :, 4:6, 2:8] = torch.randn(2, 1, 2, 6)
    assert torch.allclose(rg.stroke_energy_share(on_strokes, x), torch.ones(2))
    uniform = torch.ones_like(x)
    mask_share = rg.stroke_mask(x).float().mean().item()
    assert mask_share == pytest.approx(4 * 8 / 100)  # the bar and its 1-pixel border
    assert torch.allclose(rg.stroke_energy_share(uniform, x), torch.full((2,), mask_share))
    off = torch.zeros_like(x)
    off[:, :, 0, 0] = 1.0
    assert torch.allclose(rg.stroke_energy_share(off, x), torch.zeros(2))


def test_class_mean_alignment():
    x = torch.rand(6, 1, 4, 4)
    y = torch.tensor([0, 0, 0, 1, 1, 1])
    means = rg.class_means(x, y, num_classes=2)
    assert torch.allclose(means[0], x[:3].mean(0)) and torch.allclose(means[1], x[3:].mean(0))
    source, target = torch.zeros(2, dtype=torch.long), torch.ones(2, dtype=torch.long)
    toward = x[:2] + 0.1 * (means[1] - means[0])
    assert torch.allclose(rg.class_mean_alignment(x[:2], toward, source, target, means), torch.ones(2), atol=1e-5)
    assert torch.allclose(rg.class_mean_alignment(x[:2], 2 * x[:2] - toward, source, target, means), -torch.ones(2),
                          atol=1e-5)


def test_class_means_over_more_images_than_one_chunk():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(9000, 1, 2, 2, generator=gen)
    y = torch.randint(0, 3, (9000,), generator=gen)
    means = rg.class_means(x, y, num_classes=4)  # class 3 has no images: its mean is 0
    for c in range(3):
        assert torch.allclose(means[c], x[y == c].double().mean(0).float(), atol=1e-6)
    assert torch.equal(means[3], torch.zeros(1, 2, 2))
