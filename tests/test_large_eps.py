"""Chapter 10: eps schedules, the scheduled PGD adversary, binarisation and its BPDA attack, and the
large-eps zoo recipes on tiny fake data."""
import functools

import pytest
import torch
from torch import nn

from advlib import adversaries, attacks, cache, evaluate, large_eps, train, zoo
from tests.test_zoo import fake, tiny  # noqa: F401  (the fixture of fake MNIST/CIFAR and tiny recipes)
from advlib import data


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVLIB_CACHE", str(tmp_path))
    monkeypatch.setenv("ADVLIB_PROGRESS", "0")
    return tmp_path


# ------------------------------------------------------------------------------- eps schedules
def test_staircase_is_the_papers_schedule():
    eps_at = adversaries.staircase(0.4, 40)  # 40 stages of one "epoch": 0.01 (epoch + 1)
    for epoch in range(40):
        assert eps_at(epoch / 40) == pytest.approx(0.01 * (epoch + 1))
        assert eps_at((epoch + 0.99) / 40) == pytest.approx(0.01 * (epoch + 1))
    assert eps_at(0.999999) == pytest.approx(0.4) and eps_at(1.0) == pytest.approx(0.4)
    book = adversaries.staircase(0.4, 8)
    assert [round(book(k / 8), 4) for k in range(8)] == [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4]
    ramp = adversaries.staircase(0.4, 3, eps_min=0.3)
    assert [ramp(p) for p in (0.0, 0.4, 0.9)] == pytest.approx([0.3, 0.35, 0.4])
    assert adversaries.staircase(0.4, 1)(0.0) == 0.4


def test_schedules_reject_bad_arguments():
    with pytest.raises(ValueError, match="eps_max"):
        adversaries.staircase(0.0, 4)
    with pytest.raises(ValueError, match="stages"):
        adversaries.staircase(0.4, 0)
    with pytest.raises(ValueError, match="eps_min"):
        adversaries.staircase(0.4, 4, eps_min=0.5)
    with pytest.raises(ValueError, match="steps"):
        adversaries.pgd(0.3, steps=0)
    with pytest.raises(ValueError, match="alpha_ratio"):
        adversaries.pgd(0.3, alpha_ratio=0.0)
    with pytest.raises(ValueError, match="eps"):
        adversaries.pgd(-0.1)
    with pytest.raises(ValueError, match="norm"):
        adversaries.pgd(0.3, norm="1")
    with pytest.raises(ValueError, match=r"eps\(progress\) must be a finite number >= 0"):
        adversaries.pgd(lambda p: -0.1)(_mlp(), torch.rand(2, 1, 4, 4), torch.zeros(2, dtype=torch.long), 0.5)


def _mlp(d=16, classes=3, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(d, 32), nn.ReLU(), nn.Linear(32, classes))


def test_scheduled_adversary_attacks_at_the_eps_of_the_moment():
    model = _mlp()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 4, 4, generator=g)
    y = torch.randint(0, 3, (64,), generator=g)
    adversary = adversaries.pgd(adversaries.staircase(0.4, 4), steps=3, alpha_ratio=2.5 / 3)
    for progress, eps in [(0.0, 0.1), (0.3, 0.2), (0.99, 0.4)]:
        delta = (adversary(model, x, y, progress) - x).abs().amax()
        assert eps - 0.02 < delta <= eps + 1e-6  # reaches the ball's edge at that eps, no further
    # a constant schedule is PGD at that eps with step alpha_ratio * eps (same random start)
    torch.manual_seed(1)
    ours = adversaries.pgd(0.3, steps=4, alpha_ratio=0.5)(model, x, y, 0.5)
    torch.manual_seed(1)
    direct = attacks.pgd(model, x, y, eps=0.3, alpha=0.15, steps=4)
    assert torch.equal(ours, direct)
    assert torch.equal(adversaries.pgd(lambda p: 0.0)(model, x, y, 0.1), x)


# ------------------------------------------------------------------- binarisation and BPDA
def _binary_problem(n=200, d=16, seed=0):
    """Pixels at 0.3 or 0.7 (so eps 0.25 can flip every one); the label is 1 when most are bright.
    The classifier is exact on the binarised image."""
    g = torch.Generator().manual_seed(seed)
    bright = torch.rand(n, 1, 4, 4, generator=g) < torch.rand(n, 1, 1, 1, generator=g)
    x = torch.where(bright, 0.7, 0.3)
    y = (bright.flatten(1).float().mean(1) > 0.5).long()
    keep = (bright.flatten(1).float().mean(1) - 0.5).abs() > 0.1  # no ties near the boundary
    clf = nn.Sequential(nn.Flatten(), nn.Linear(d, 2))
    with torch.no_grad():
        clf[1].weight.copy_(torch.stack([-torch.ones(d), torch.ones(d)]))
        clf[1].bias.copy_(torch.tensor([d / 2, -d / 2]))
    return x[keep], y[keep], clf


def test_binarized_classifier_thresholds_and_has_no_gradient():
    x, y, clf = _binary_problem()
    model = large_eps.BinarizedClassifier(clf, 0.5)
    assert torch.equal(model(x), clf((x > 0.5).float()))
    assert evaluate.accuracy(model, x, y) == 1.0
    g, _ = attacks.input_gradient(model, x, y, lambda z, t: nn.functional.cross_entropy(z, t, reduction="none"))
    assert g.abs().max() == 0  # the threshold kills the gradient
    st = model.straight_through()
    assert st.classifier is clf and torch.equal(st(x), model(x))  # the same function forward
    g_st, _ = attacks.input_gradient(st, x, y, lambda z, t: nn.functional.cross_entropy(z, t, reduction="none"))
    assert g_st.abs().max() > 0
    with pytest.raises(ValueError, match="threshold"):
        large_eps.BinarizedClassifier(clf, 1.0)


def test_plain_pgd_overestimates_a_binarized_model_and_bpda_does_not():
    x, y, clf = _binary_problem()
    model = large_eps.BinarizedClassifier(clf, 0.5)
    pgd = functools.partial(attacks.pgd, eps=0.25, steps=10, random_start=False)
    assert torch.equal(pgd(model, x, y), x)  # zero gradient: PGD does not move
    plain = evaluate.robust_accuracy(model, x, y, pgd)
    honest = evaluate.robust_accuracy(model, x, y, large_eps.bpda(pgd))
    assert plain == 1.0 and honest == 0.0  # eps 0.25 flips every pixel: nothing is robust
    small = evaluate.robust_accuracy(model, x, y, large_eps.bpda(functools.partial(attacks.pgd, eps=0.15, steps=10)))
    assert small == 1.0  # below the distance to the threshold, binarisation undoes any perturbation
    with pytest.raises(TypeError, match="BinarizedClassifier"):
        large_eps.bpda(pgd)(clf, x, y)


def test_bpda_leaves_mode_gradients_and_buffers_alone():
    x, y, _ = _binary_problem()
    clf = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    model = large_eps.BinarizedClassifier(clf).train()
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    large_eps.bpda(functools.partial(attacks.pgd, eps=0.25, steps=3))(model, x, y)
    assert model.training and clf.training
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(buffers[k], v) for k, v in model.state_dict().items())


def test_flippable_fraction():
    x = torch.tensor([0.0, 1.0, 0.3, 0.7, 0.5, 0.95]).view(1, 1, 2, 3)
    assert large_eps.flippable_fraction(x, 0.0).item() == 0.0
    # eps 0.4: 0.3 -> 0.7 and 0.7 -> 0.3 and 0.5 -> 0.9 flip; 0, 1 and 0.95 cannot
    assert large_eps.flippable_fraction(x, 0.4).item() == pytest.approx(3 / 6)
    # eps 0.5: a white pixel can be pushed to 0.5 (not above the threshold), a black one only to 0.5
    assert large_eps.flippable_fraction(x, 0.5).item() == pytest.approx(5 / 6)
    assert large_eps.flippable_fraction(x, 1.0).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="eps"):
        large_eps.flippable_fraction(x, -0.1)


# ------------------------------------------------------------------------------- zoo recipes
@pytest.fixture
def tiny_large(tiny, monkeypatch):
    common = dict(n_train=100, n_val=20, batch_size=50, lr=1e-3, warmup=0.1, eps=0.4, amp=False, evals=2,
                  val_steps=1, seed=0, epochs=1, steps=1, step_ratio=1.5)
    for name, stages in [("plain_large_mnist", 1), ("extended_mnist", 1), ("iat_mnist", 4)]:
        monkeypatch.setitem(zoo.RECIPES[name], "smoke", dict(common, stages=stages))
    monkeypatch.setitem(zoo.RECIPES["extended_cifar"], "smoke",
                        dict(n_train=100, n_val=20, epochs=1, batch_size=50, lr=1e-3, optimizer="adam", warmup=0.1,
                             steps=1, step_ratio=1.5, amp=False, evals=2, val_steps=1, seed=0))


@pytest.mark.parametrize("name", ["plain_large_mnist", "extended_mnist", "iat_mnist"])
def test_large_eps_recipes_train_once_and_validate_at_the_large_eps(tiny_large, cache_in_tmp, monkeypatch, name):
    seen = []
    original = evaluate.attack
    monkeypatch.setattr(zoo._large_perturbations, "_attack", lambda kind, **kw: seen.append(kw["eps"]) or original(kind, **kw))
    model = getattr(zoo, name)(budget="smoke", verbose=False)
    assert model.meta["name"] == name and len(model.meta["history"]["val_robust_acc"]) == 2
    assert 0.4 in seen and not model.training
    again = getattr(zoo, name)(budget="smoke", verbose=False)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_extended_training_starts_from_the_robust_model(tiny_large, cache_in_tmp, monkeypatch):
    base = zoo.robust_mnist(budget="smoke", verbose=False)
    at_start = []
    original = train.fit

    def spy(model, *args, **kwargs):
        at_start.append({k: v.clone() for k, v in model.state_dict().items()})
        return original(model, *args, **kwargs)

    monkeypatch.setattr(zoo._large_perturbations, "fit", spy)
    ext = zoo.extended_mnist(budget="smoke", verbose=False)
    assert len(at_start) == 1  # the base model came from the cache; only the extension trained
    assert all(torch.equal(at_start[0][k], v) for k, v in base.state_dict().items())
    assert any(not torch.equal(ext.state_dict()[k], v) for k, v in base.state_dict().items())
    assert ext.meta["config"]["init"] == {"recipe": "robust_mnist", "config": base.meta["config"]}
    assert ext.meta["init_time_s"] == base.meta["history"]["time_s"][-1]
    # a change to the starting model's recipe is a new extended model
    monkeypatch.setitem(zoo.RECIPES["robust_mnist"]["smoke"], "steps", 2)
    zoo.extended_mnist(budget="smoke", verbose=False)
    names = sorted(p.name.split("-")[0] for p in cache_in_tmp.iterdir())
    assert names == ["extended_mnist", "extended_mnist", "robust_mnist", "robust_mnist"]


def test_extended_cifar_takes_its_eps(tiny_large, cache_in_tmp):
    m16 = zoo.extended_cifar(16 / 255, budget="smoke", verbose=False)
    assert m16.meta["name"] == "extended_cifar_16" and m16.meta["config"]["eps"] == pytest.approx(16 / 255)
    assert m16.meta["config"]["init"]["recipe"] == "robust_cifar"
    with pytest.raises(ValueError, match="eps must be one of"):
        zoo.extended_cifar(0.1, budget="smoke")


def test_command_line_trains_extended_cifar_at_its_eps(tiny_large, cache_in_tmp, capsys):
    from advlib.zoo.__main__ import main

    assert main(["train", "extended_cifar", "--eps", str(32 / 255), "--budget", "smoke"]) == 0
    assert "extended_cifar_32 (smoke) is cached at" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["train", "robust_mnist", "--eps", "0.4", "--budget", "smoke"])
    assert "--eps is an option of subset_mnist, extended_cifar and fast_cifar only" in capsys.readouterr().err
