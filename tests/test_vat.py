"""Virtual adversarial training: the perturbation (norm, modes, grads, no labels, power iteration),
the KL helper, the regulariser and the fgm adversary for fit, the synthetic data and the
decision-boundary plot."""
import copy

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from advlib import adversaries, attacks, data, plots, train


def per_example_norm(r):
    return r.flatten(1).norm(dim=1)


@pytest.mark.parametrize("eps", [0.0, 0.3, 2.0])
@pytest.mark.parametrize("power_iterations", [0, 1, 3])
def test_norm_is_eps_for_every_example(tiny, batch, eps, power_iterations):
    x, _ = batch
    r = attacks.vat_perturbation(tiny, x, eps=eps, power_iterations=power_iterations,
                                 generator=torch.Generator().manual_seed(0))
    assert r.shape == x.shape and r.dtype == x.dtype
    assert torch.allclose(per_example_norm(r), torch.full((x.shape[0],), eps), atol=1e-5)
    assert not r.requires_grad and r.grad_fn is None


def test_any_range_and_any_shape():
    """No [0, 1] requirement: features of any sign and scale, (N, D) inputs, no clipping."""
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 3))
    x = 10 * torch.randn(7, 5)
    r = attacks.vat_perturbation(mlp, x, eps=4.0)
    assert torch.allclose(per_example_norm(r), torch.full((7,), 4.0), atol=1e-4)


def test_mode_restored_eval_used_and_parameter_grads_untouched(tiny, batch, assert_leaves_model_untouched):
    x, _ = batch
    seen = []
    hook = tiny.body[5].register_forward_hook(lambda m, i, o: seen.append(m.training))
    assert_leaves_model_untouched(tiny, lambda: attacks.vat_perturbation(tiny, x, eps=1.0, power_iterations=2))
    hook.remove()
    assert seen and not any(seen), "the model must run in eval mode"


def test_train_mode_finds_the_direction_with_the_batchs_statistics():
    """mode="train": batch norm normalises with the statistics of the batch (the reference code's
    forward_no_update_batch_stat), whatever the running statistics say, and updates nothing."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
    x = torch.randn(32, 6)
    with torch.no_grad():
        model[1].running_mean.fill_(3.0)  # running statistics far from this batch's
        model[1].running_var.fill_(0.05)
    model.eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    gen = lambda: torch.Generator().manual_seed(1)
    seen = []
    hook = model[1].register_forward_hook(lambda m, i, o: seen.append(m.training))
    r_train = attacks.vat_perturbation(model, x, eps=1.0, xi=1e-3, generator=gen(), mode="train")
    hook.remove()
    assert seen and all(seen), "the model must run in train mode"
    r_eval = attacks.vat_perturbation(model, x, eps=1.0, xi=1e-3, generator=gen())
    assert not model.training and not model[1].training and model[1].track_running_stats
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items()), "no buffer may move"
    # the reference: a copy whose batch norm keeps no running statistics normalises with the batch's
    ref = copy.deepcopy(model)
    ref[1].track_running_stats, ref[1].running_mean, ref[1].running_var = False, None, None
    r_ref = attacks.vat_perturbation(ref, x, eps=1.0, xi=1e-3, generator=gen())
    assert torch.allclose(r_train, r_ref, atol=1e-6)
    assert F.cosine_similarity(r_train.flatten(1), r_eval.flatten(1)).abs().median() < 0.9
    # a mixed-mode model keeps its modes; a model without batch norm or dropout gets one direction
    model.train()
    model[1].eval()
    attacks.vat_perturbation(model, x, eps=1.0, mode="train")
    assert model.training and not model[1].training
    plain = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3)).eval()
    assert torch.equal(attacks.vat_perturbation(plain, x, eps=1.0, generator=gen(), mode="train"),
                       attacks.vat_perturbation(plain, x, eps=1.0, generator=gen()))
    with pytest.raises(ValueError, match="mode must be one of"):
        attacks.vat_perturbation(model, x, eps=1.0, mode="batch")


def test_the_regularizer_passes_its_direction_mode(monkeypatch):
    modes = []
    original = attacks.vat_perturbation
    monkeypatch.setattr(attacks, "vat_perturbation", lambda *a, **kw: modes.append(kw["mode"]) or original(*a, **kw))
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)).train()
    x = torch.randn(16, 6)
    for mode in ("eval", "train"):
        assert adversaries.vat(1.0, direction_mode=mode)(model, x, 0.0).item() >= 0
    assert modes == ["eval", "train"]
    with pytest.raises(ValueError, match="direction_mode must be one of"):
        adversaries.vat(1.0, direction_mode="batch")


def test_needs_no_labels():
    import inspect

    params = inspect.signature(attacks.vat_perturbation).parameters
    assert "y" not in params and not any("label" in p for p in params)


def test_generator_makes_it_repeatable(tiny, batch):
    x, _ = batch
    a = attacks.vat_perturbation(tiny, x, eps=1.0, generator=torch.Generator().manual_seed(5))
    b = attacks.vat_perturbation(tiny, x, eps=1.0, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def _fisher(model, x1):
    """Exact Hessian of r -> KL(p(x) || p(x + r)) at r = 0 for one flat input x1: J^T (diag p - p p^T) J."""
    J = torch.autograd.functional.jacobian(lambda v: model(v[None])[0], x1)  # (K, D)
    p = model(x1[None])[0].softmax(0).detach()
    return J.T @ (torch.diag(p) - torch.outer(p, p)) @ J


def test_power_iteration_finds_dominant_eigenvector():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(6, 32), nn.Tanh(), nn.Linear(32, 5)).double()
    x = torch.randn(1, 6, dtype=torch.float64)
    evals, evecs = torch.linalg.eigh(_fisher(mlp, x[0]))
    top = evecs[:, -1]
    assert evals[-2] < 0.9 * evals[-1]  # a gap, so 80 iterations converge (0.9**80 < 3e-4)
    r = attacks.vat_perturbation(mlp, x, eps=1.0, xi=1e-6, power_iterations=80,
                                 generator=torch.Generator().manual_seed(1))
    assert abs(torch.dot(r[0], top).item()) > 0.999
    # and it beats a random direction of the same norm at raising the KL
    with torch.no_grad():
        kl_vadv = attacks.kl_divergence(mlp(x), mlp(x + r)).item()
        rand = attacks.vat_perturbation(mlp, x, eps=1.0, power_iterations=0)
        kl_rand = attacks.kl_divergence(mlp(x), mlp(x + rand)).item()
    assert kl_vadv > kl_rand


def test_binary_classifier_needs_one_iteration():
    """With two classes the Hessian has rank one: one power iteration is exact (up to sign)."""
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(6, 32), nn.Tanh(), nn.Linear(32, 2)).double()
    x = torch.randn(1, 6, dtype=torch.float64)
    top = torch.linalg.eigh(_fisher(mlp, x[0]))[1][:, -1]
    r = attacks.vat_perturbation(mlp, x, eps=1.0, power_iterations=1)
    assert abs(torch.dot(r[0], top).item()) > 0.9999


def test_kl_divergence():
    p = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    q = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    kl = attacks.kl_divergence(p, q)
    ref = F.kl_div(F.log_softmax(q, 1), F.log_softmax(p, 1), reduction="none", log_target=True).sum(1)
    assert torch.allclose(kl, ref, atol=1e-6)
    assert kl[1] == 0 and kl[0] > 0
    with pytest.raises(ValueError, match="logits_p"):
        attacks.kl_divergence(p, q[:, :2])


@pytest.mark.parametrize("bad, name", [
    (dict(eps=-1.0), "eps"), (dict(eps=float("nan")), "eps"), (dict(xi=0.0), "xi"), (dict(xi=-1e-6), "xi"),
    (dict(power_iterations=-1), "power_iterations"), (dict(power_iterations=1.5), "power_iterations"),
])
def test_bad_arguments_name_themselves(tiny, batch, bad, name):
    kw = dict(eps=1.0)
    kw.update(bad)
    with pytest.raises(ValueError, match=name):
        attacks.vat_perturbation(tiny, batch[0], **kw)


def test_bad_inputs(tiny, batch):
    x, _ = batch
    with pytest.raises(ValueError, match="model must be"):
        attacks.vat_perturbation("not a model", x, eps=1.0)
    with pytest.raises(ValueError, match="x must be a floating"):
        attacks.vat_perturbation(tiny, (x * 255).to(torch.uint8), eps=1.0)
    with pytest.raises(ValueError, match="x must have a batch"):
        attacks.vat_perturbation(tiny, torch.rand(12), eps=1.0)
    with pytest.raises(ValueError, match="NaN"):
        attacks.vat_perturbation(tiny, x * float("nan"), eps=1.0)


# ----------------------------------------------------------------------------- training pieces
def test_vat_regularizer_value_and_gradients(tiny, batch):
    x, _ = batch
    reg = adversaries.vat(1.0, weight=2.0)
    tiny.eval()
    value = reg(tiny, x, 0.0)
    assert value.dim() == 0 and value.item() > 0
    value.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in tiny.parameters())
    assert adversaries.vat(0.0)(tiny, x, 0.0).item() == 0.0  # eps = 0: no perturbation, no penalty
    with pytest.raises(ValueError, match="weight"):
        adversaries.vat(1.0, weight=-1.0)
    with pytest.raises(ValueError, match="xi"):
        adversaries.vat(1.0, xi=0.0)


def test_fit_with_vat_on_unlabelled_and_fgm():
    torch.manual_seed(0)
    ds = data.synthetic_2d("moons", n_train=16, n_test=200, dim=20, seed=0, device="cpu")
    model = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 2))
    vat = adversaries.vat(0.3)
    seen = []

    def spy(m, xu, progress, y=None):
        seen.append(xu)
        return vat(m, xu, progress)

    hist = train.fit(model, (ds.x_train, ds.y_train), epochs=20, batch_size=16, lr=1e-2, evals=1,
                     regularizer=spy, unlabelled=ds.x_test, progress=False)
    assert len(hist) == 1 and len(seen) == 20
    # every regularised batch is rows of the unlabelled set, never the labelled batch; a pass over the
    # 200 unlabelled rows is 12 batches of 16 and a last one of 8
    rows = {tuple(r.tolist()) for r in ds.x_test}
    assert [len(xu) for xu in seen] == [16] * 12 + [8] + [16] * 7
    assert all(tuple(r.tolist()) in rows for xu in seen for r in xu)
    x_in = adversaries.fgm(0.5)(model, ds.x_train, ds.y_train, 0.0)
    assert torch.allclose(per_example_norm(x_in - ds.x_train), torch.full((16,), 0.5), atol=1e-5)
    # FGM training with clean_weight 0.5: the logged first loss is (CE(x) + CE(x + r_adv)) / 2
    start = copy.deepcopy(model)
    hist = train.fit(model, (ds.x_train, ds.y_train), epochs=1, batch_size=16, lr=1e-2, evals=1,
                     adversary=adversaries.fgm(0.3), clean_weight=0.5, progress=False)
    x_adv = adversaries.fgm(0.3)(start, ds.x_train, ds.y_train, 0.0)
    with torch.no_grad():
        expected = 0.5 * (F.cross_entropy(start(ds.x_train), ds.y_train) + F.cross_entropy(start(x_adv), ds.y_train))
    assert hist.train_loss.iloc[0] == pytest.approx(expected.item(), rel=1e-5)
    # RPT: KL(p(x) || p(x + r)) for a random r of norm eps (the same draw of the global generator)
    torch.manual_seed(1)
    rpt = adversaries.rpt(0.3, weight=2.0)(model, ds.x_train, 0.0)
    torch.manual_seed(1)
    r = attacks.vat_perturbation(model, ds.x_train, eps=0.3, power_iterations=0)
    with torch.no_grad():
        ref = 2.0 * attacks.kl_divergence(model(ds.x_train), model(ds.x_train + r)).mean()
    assert torch.allclose(per_example_norm(r), torch.full((16,), 0.3), atol=1e-5)
    assert rpt.item() == pytest.approx(ref.item(), rel=1e-5) and rpt.item() > 0


# ------------------------------------------------------------------------------ data and plot
@pytest.mark.parametrize("name", ["moons", "circles"])
def test_synthetic_2d(name):
    ds = data.synthetic_2d(name, seed=3, device="cpu")
    assert ds.x_train.shape == (16, 100) and ds.x_test.shape == (1000, 100)
    assert ds.y_train.bincount().tolist() == [8, 8] and ds.y_test.bincount().tolist() == [500, 500]
    assert torch.allclose(ds.basis.T @ ds.basis, torch.eye(2), atol=1e-5)  # orthonormal: distances kept
    d2 = torch.cdist(ds.points_train, ds.points_train)
    d100 = torch.cdist(ds.x_train, ds.x_train)
    assert torch.allclose(d2, d100, atol=1e-4)
    again = data.synthetic_2d(name, seed=3, device="cpu")
    assert torch.equal(ds.x_train, again.x_train) and torch.equal(ds.y_test, again.y_test)
    assert not torch.equal(ds.x_train, data.synthetic_2d(name, seed=4, device="cpu").x_train)
    assert ds.x_unlabelled.shape == (0, 100) and "unlabelled" not in repr(ds)
    semi = data.synthetic_2d(name, seed=3, n_unlabelled=300, device="cpu")  # the other draws stay as they were
    assert torch.equal(semi.x_train, ds.x_train) and torch.equal(semi.x_test, ds.x_test)
    assert semi.x_unlabelled.shape == (300, 100) and "300 unlabelled" in repr(semi)
    assert torch.allclose(semi.x_unlabelled, semi.points_unlabelled @ semi.basis.T)
    assert not torch.equal(semi.points_unlabelled[:16], semi.points_train)  # a draw of its own
    assert torch.equal(semi.to("cpu").points_unlabelled, semi.points_unlabelled)
    # the same distribution as the test points: the same mean and spread in the plane
    for stat in (lambda p: p.mean(0), lambda p: p.std(0)):
        assert torch.allclose(stat(semi.points_unlabelled), stat(semi.points_test), atol=0.1)
    with pytest.raises(ValueError, match="n_unlabelled"):
        data.synthetic_2d(name, n_unlabelled=-1)
    with pytest.raises(ValueError, match="name"):
        data.synthetic_2d("spirals")
    with pytest.raises(ValueError, match="n_train"):
        data.synthetic_2d(name, n_train=1)


def test_decision_boundary_plot():
    ds = data.synthetic_2d("circles", n_test=50, dim=10, device="cpu")
    model = nn.Sequential(nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 2)).train()
    fig = plots.decision_boundary(model, ds.points_train, ds.y_train, embed=ds.embed, resolution=30,
                                  title="t", test_points=ds.points_test, test_labels=ds.y_test, colorbar=True)
    assert fig.axes and model.training
    with pytest.raises(ValueError, match="points"):
        plots.decision_boundary(model, ds.x_train, ds.y_train, embed=ds.embed)


# ------------------------------------------------------------------ batch norm on perturbed passes
BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def bn_mlp(seed=0, dropout=0.0):
    torch.manual_seed(seed)
    from advlib.models import mlp_classifier
    return mlp_classifier([32, 16], in_features=20, num_classes=3, batch_norm=True, dropout=dropout)


def bn_buffers(model):
    return {k: v.clone() for k, v in model.state_dict().items() if k.rsplit(".", 1)[-1] in BN_BUFFERS}


def assert_same_buffers(a, b):
    assert a.keys() == b.keys() and a
    for k in a:
        if k.endswith("num_batches_tracked"):
            assert a[k].item() == b[k].item(), f"{k}: {a[k].item()} passes tracked, expected {b[k].item()}"
        else:
            assert torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-6), k


def bn_data(n=64, n_unl=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 20, generator=g)
    y = torch.randint(0, 3, (n,), generator=g)
    return x, y, 3 * torch.randn(n_unl, 20, generator=g) + 1  # unlabelled: other statistics


def after_one_clean_pass(model, x):
    """The batch-norm buffers after one train-mode pass on x, from the model as it is."""
    ref = copy.deepcopy(model).train()
    with torch.no_grad():
        ref(x)
    return bn_buffers(ref)


def test_freeze_batch_norm_stats_keeps_buffers_and_uses_batch_statistics():
    from advlib.utils import freeze_batch_norm_stats
    model = bn_mlp().train()
    x = bn_data()[0]
    before = bn_buffers(model)
    expected = copy.deepcopy(model)(x)  # a train-mode pass: batch statistics
    with freeze_batch_norm_stats(model) as m:
        assert m is model
        out = model(x)
    assert torch.allclose(out, expected, atol=1e-6)
    assert_same_buffers(bn_buffers(model), before)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d)]
    assert bns and all(m.track_running_stats for m in bns) and model.training
    with pytest.raises(RuntimeError, match="inside"):
        with freeze_batch_norm_stats(model):
            raise RuntimeError("inside")
    assert all(m.track_running_stats for m in bns)  # restored after an error too
    model(x)  # and tracking again afterwards
    assert all(m.num_batches_tracked.item() == 1 for m in bns)
    model.eval()  # eval mode: the running statistics, as always
    with freeze_batch_norm_stats(model):
        frozen_eval = model(x)
    assert torch.equal(frozen_eval, model(x))


@pytest.mark.parametrize("make, semi", [
    (lambda: adversaries.vat(0.5, xi=1e-3), True),
    (lambda: adversaries.vat(0.5, xi=1e-6), False),
    (lambda: adversaries.rpt(0.5), True),
])
def test_vat_step_updates_batch_norm_on_the_clean_pass_only(make, semi):
    """The reference VAT code: the labelled (clean) pass updates the running statistics; the passes of
    the regulariser (clean unlabelled, power iteration, perturbed) do not. Before the fix fit ran them
    in train mode and each moved the statistics (num_batches_tracked 3 instead of 1)."""
    model = bn_mlp()
    x, y, xu = bn_data()
    expected = after_one_clean_pass(model, x)
    train.fit(model, (x, y), epochs=1, batch_size=len(x), lr=1e-3, regularizer=make(),
              unlabelled=xu if semi else None, unlabelled_batch_size=32, progress=False)
    assert_same_buffers(bn_buffers(model), expected)


def test_regularizer_called_alone_moves_no_statistics_and_trains():
    model = bn_mlp().train()
    xu = bn_data()[2]
    before = bn_buffers(model)
    value = adversaries.vat(0.5, xi=1e-3)(model, xu, 0.0)
    value.backward()
    assert value.item() > 0 and model.training
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    assert_same_buffers(bn_buffers(model), before)


def test_two_pass_adversarial_step_updates_batch_norm_on_the_clean_pass_only():
    model = bn_mlp()
    x, y, _ = bn_data()
    expected = after_one_clean_pass(model, x)
    train.fit(model, (x, y), epochs=1, batch_size=len(x), lr=1e-3, adversary=adversaries.fgm(0.5),
              clean_weight=0.5, progress=False)
    assert_same_buffers(bn_buffers(model), expected)


def test_one_pass_adversarial_step_still_updates_batch_norm_on_its_only_pass():
    """Madry-style training (clean_weight=0) has one pass, on x_adv: it must keep the statistics alive."""
    model = bn_mlp()
    x, y, _ = bn_data()
    x_adv = adversaries.fgm(0.5)(model, x, y, 0.0)  # deterministic: the same inputs fit will train on
    expected = after_one_clean_pass(model, x_adv)
    train.fit(model, (x, y), epochs=1, batch_size=len(x), lr=1e-3, adversary=adversaries.fgm(0.5),
              progress=False)
    assert_same_buffers(bn_buffers(model), expected)


def test_vat_perturbation_leaves_a_batch_norm_model_untouched():
    model = bn_mlp().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    r = attacks.vat_perturbation(model, bn_data()[2], eps=1.0, xi=1e-3)
    assert r.shape == (96, 20) and model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_recompute_batch_norm_sets_the_mean_of_the_batch_statistics():
    model = bn_mlp(dropout=0.5)
    x = bn_data()[2]
    modes = [m.training for m in model.train().modules()]
    bn = model[2]  # Flatten, Linear, BatchNorm1d, ...
    assert isinstance(bn, nn.BatchNorm1d)
    assert train.recompute_batch_norm(model, x, batch_size=len(x)) == 1
    h = model[1](x).detach()
    assert torch.allclose(bn.running_mean, h.mean(0), atol=1e-5)
    assert torch.allclose(bn.running_var, h.var(0, unbiased=True), rtol=1e-4)
    assert [m.training for m in model.modules()] == modes and bn.momentum == 0.1
    # several batches: the plain mean of the batch statistics, whatever was there before
    assert train.recompute_batch_norm(model, (x, None), batch_size=40) == 3  # 40 + 40 + 16
    means = torch.stack([model[1](x[i:i + 40]).detach().mean(0) for i in (0, 40, 80)])
    assert torch.allclose(bn.running_mean, means.mean(0), atol=1e-5)
    assert bn.num_batches_tracked.item() == 3
    # a last batch of one example is skipped (batch norm cannot normalise it)
    assert train.recompute_batch_norm(model, x[:81], batch_size=40) == 2
    # the dropout layers were off: the same statistics twice
    a = bn_buffers(model)
    train.recompute_batch_norm(model, x[:81], batch_size=40)
    assert_same_buffers(bn_buffers(model), a)
    # no batch norm: nothing to do
    plain = nn.Sequential(nn.Linear(20, 3))
    assert train.recompute_batch_norm(plain, x) == 0
    with pytest.raises(ValueError, match="data"):
        train.recompute_batch_norm(model, torch.zeros(0, 20))
