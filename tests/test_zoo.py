"""The model zoo: recipe settings, the chapter-07 recipes on tiny fake data, cache round trips."""
import pytest
import torch

from advlib import adversaries, cache, data, evaluate, zoo


def full_eps(eps):
    """A recipe's eps at the end of training: the number, or a schedule's value there."""
    return eps(1.0) if callable(eps) else eps


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVLIB_CACHE", str(tmp_path))
    monkeypatch.setenv("ADVLIB_PROGRESS", "0")
    return tmp_path


def fake(n, shape, classes):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8)
    return data.ImageData(images, torch.arange(n) % len(classes), tuple(classes), "fake")


@pytest.fixture
def tiny(monkeypatch):
    """Fake MNIST/CIFAR-10 of a few hundred images, and smoke recipes that take a second."""
    monkeypatch.setattr(data, "mnist", lambda train=True, root=None: fake(300, (1, 28, 28), data.MNIST_CLASSES))
    monkeypatch.setattr(data, "cifar10", lambda train=True, root=None: fake(200, (3, 32, 32), data.CIFAR10_CLASSES))
    common = dict(batch_size=50, lr=1e-3, optimizer="adam", weight_decay=0.0, schedule="linear", warmup=0.1,
                  amp=False, evals=2, seed=0)
    adv = dict(eps_ramp=0.5, val_steps=1, steps=1)
    monkeypatch.setitem(zoo.RECIPES["robust_mnist"], "smoke",
                        dict(n_train=100, n_val=20, epochs=1, eps=0.3, alpha=0.15, **adv, **common))
    monkeypatch.setitem(zoo.RECIPES["robust_mnist_l2"], "smoke",
                        dict(n_train=100, n_val=20, epochs=1, norm="2", eps=2.0, alpha=1.0, **adv, **common))
    monkeypatch.setitem(zoo.RECIPES["subset_mnist"], "smoke",
                        dict(steps=6, batch_size=50, lr=1e-3, warmup=0.1, pgd_steps=1, amp=False, seed=0))
    monkeypatch.setitem(zoo.RECIPES["standard_cifar"], "smoke",
                        dict(arch="small_cnn", n_train=100, n_val=20, epochs=1, **common))
    monkeypatch.setitem(zoo.RECIPES["robust_cifar"], "smoke",
                        dict(arch="small_cnn", n_train=100, n_val=20, epochs=1, eps=8 / 255, alpha=6 / 255, **adv, **common))
    monkeypatch.setitem(zoo.RECIPES["robust_cifar_l2"], "smoke",
                        dict(arch="small_cnn", n_train=100, n_val=20, epochs=1, norm="2", eps=0.5, alpha=0.375,
                             **adv, **common))


def test_every_recipe_lists_the_same_settings_at_every_budget():
    for name, budgets in zoo.RECIPES.items():
        assert set(budgets) == {"smoke", "book", "paper"}, name
        keys = {b: set(cfg) for b, cfg in budgets.items()}
        assert keys["smoke"] == keys["book"] == keys["paper"], name
    cfg = zoo.recipe("robust_mnist", "book")
    assert cfg["budget"] == "book" and cfg["eps"] == 0.3 and cfg["n_train"] + cfg["n_val"] <= 60000
    assert zoo.recipe("robust_cifar", "paper")["steps"] == 7


def test_bad_names_raise():
    with pytest.raises(ValueError, match="name"):
        zoo.recipe("robust_imagenet")
    with pytest.raises(ValueError, match="budget"):
        zoo.recipe("robust_mnist", "huge")


@pytest.mark.parametrize("name", ["robust_mnist", "robust_mnist_l2", "standard_cifar", "robust_cifar",
                                  "robust_cifar_l2"])
def test_recipe_trains_once_then_loads_from_the_cache(tiny, cache_in_tmp, name):
    recipe_fn = getattr(zoo, name)
    model = recipe_fn(budget="smoke", verbose=False)
    assert not model.training
    hist = model.meta["history"]
    assert model.meta["name"] == name and model.meta["budget"] == "smoke"
    assert len(hist["step"]) == 2 and all(0 <= a <= 1 for a in hist["val_acc"])
    assert ("val_robust_acc" in hist) == name.startswith("robust")
    path = cache.path_for(name, zoo.recipe(name, "smoke"), "smoke")
    assert path.exists() and [p.name for p in cache_in_tmp.iterdir()] == [path.name]

    def no_training(*args, **kwargs):
        raise AssertionError("a cached model must not be trained again")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(zoo._common, "fit", no_training)  # where these recipes train
        again = recipe_fn(budget="smoke", verbose=False)
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a.cpu(), b.cpu())
    assert again.meta["history"] == hist


def test_robust_recipe_changes_with_its_settings(tiny, cache_in_tmp, monkeypatch):
    zoo.robust_mnist(budget="smoke", verbose=False)
    monkeypatch.setitem(zoo.RECIPES["robust_mnist"]["smoke"], "steps", 2)
    zoo.robust_mnist(budget="smoke", verbose=False)
    assert len(list(cache_in_tmp.iterdir())) == 2  # a new setting is a new cache entry


def test_l2_recipe_trains_and_validates_against_the_l2_adversary(tiny, monkeypatch):
    seen = []
    original = adversaries.pgd

    def spy(eps, **kwargs):
        seen.append(("adversary", full_eps(eps), kwargs["norm"]))
        return original(eps, **kwargs)

    original_attack = evaluate.attack

    def spy_attack(name, **kwargs):
        seen.append(("val", kwargs["eps"], kwargs["norm"]))
        return original_attack(name, **kwargs)

    monkeypatch.setattr(adversaries, "pgd", spy)  # what the chapter 07/08 recipes train against
    monkeypatch.setattr(zoo._common, "_attack", spy_attack)
    zoo.robust_mnist_l2(budget="smoke", verbose=False)
    zoo.robust_mnist(budget="smoke", verbose=False)
    zoo.robust_cifar_l2(budget="smoke", verbose=False)
    assert seen == [("adversary", 2.0, "2"), ("val", 2.0, "2"), ("adversary", 0.3, "inf"), ("val", 0.3, "inf"),
                    ("adversary", 0.5, "2"), ("val", 0.5, "2")]
    assert zoo.recipe("robust_mnist_l2", "book")["norm"] == "2" and "norm" not in zoo.recipe("robust_mnist", "book")
    # the L2 CIFAR recipe is robust_cifar's with the ball changed, nothing else
    l2, linf = zoo.recipe("robust_cifar_l2", "book"), zoo.recipe("robust_cifar", "book")
    changed = {k for k in l2 if l2.get(k) != linf.get(k)}
    assert changed == {"norm", "eps", "alpha"} and l2["alpha"] / l2["eps"] == linf["alpha"] / linf["eps"]


def test_subset_recipe_trains_for_its_steps_on_its_images(tiny, cache_in_tmp):
    std = zoo.subset_mnist(100, budget="smoke", verbose=False)
    rob = zoo.subset_mnist(100, eps=1.0, budget="smoke", verbose=False)
    few = zoo.subset_mnist(30, budget="smoke", verbose=False)  # fewer images than a batch
    for m in (std, rob, few):
        assert m.meta["history"]["step"] == [6] and not m.training
    assert (std.meta["config"]["n_train"], std.meta["config"]["eps"]) == (100, 0.0)
    assert rob.meta["config"]["eps"] == 1.0 and few.meta["config"]["n_train"] == 30
    assert len(list(cache_in_tmp.iterdir())) == 3
    assert any(not torch.equal(a, b) for a, b in zip(std.state_dict().values(), rob.state_dict().values()))
    with pytest.raises(ValueError, match="n_train must be at most"):
        zoo.subset_mnist(301, budget="smoke", verbose=False)
    with pytest.raises(ValueError, match="eps"):
        zoo.subset_mnist(100, eps=-1.0, budget="smoke", verbose=False)
    with pytest.raises(ValueError, match="n_train"):
        zoo.subset_mnist(0, budget="smoke", verbose=False)


def test_bad_recipe_settings_raise(tiny, monkeypatch):
    monkeypatch.setitem(zoo.RECIPES["robust_cifar"]["smoke"], "arch", "vgg99")
    with pytest.raises(ValueError, match="arch"):
        zoo.robust_cifar(budget="smoke", verbose=False)
    monkeypatch.setitem(zoo.RECIPES["robust_mnist"]["smoke"], "n_train", 10_000)
    with pytest.raises(ValueError, match="n_train"):
        zoo.robust_mnist(budget="smoke", verbose=False)


@pytest.fixture
def tiny_fast(tiny, monkeypatch):
    monkeypatch.setitem(zoo.RECIPES["fast_mnist"], "smoke",
                        dict(n_train=100, n_val=20, epochs=1, batch_size=50, lr=5e-3, warmup=0.4, eps=0.3, amp=False,
                             evals=2, diag_steps=2, es_steps=1, n_snapshots=2, seed=0))
    monkeypatch.setitem(zoo.RECIPES["fast_cifar"], "smoke",
                        dict(arch="small_cnn", n_train=100, n_val=20, epochs=1, batch_size=50, lr=2e-3, warmup=0.4,
                             eps=8 / 255, amp=False, evals=2, diag_steps=2, es_steps=1, n_snapshots=2, seed=0))


@pytest.mark.parametrize("method", sorted(zoo.FAST_METHODS))
def test_fast_recipe_records_its_diagnostics(tiny_fast, cache_in_tmp, method):
    model = zoo.fast_mnist(method, budget="smoke", verbose=False)
    hist = model.meta["history"]
    assert model.meta["name"] == f"fast_mnist_{method}" and len(hist["step"]) == 2
    for key in ("val_acc", "fgsm_acc", "pgd_acc", "cos_fgsm_pgd", "grad_alignment", "time_s"):
        assert len(hist[key]) == 2, key
    assert all(0 <= a <= 1 for a in hist["pgd_acc"]) and all(-1 <= c <= 1 for c in hist["cos_fgsm_pgd"])
    signs = torch.tensor(hist["fgsm_sign"])  # evaluations x images x 1 x 28 x 28, each -1, 0 or 1
    assert signs.shape == (2, 2, 1, 28, 28) and set(signs.unique().tolist()) <= {-1, 0, 1}
    assert hist["time_s"][0] <= hist["time_s"][1]
    assert ("es_pgd_acc" in hist) == (method == "fgsm_rs_es")
    assert ("alpha" in hist) == method.startswith("apart")
    if method == "fgsm_rs_es":
        row = model.meta["early_stopping"]
        assert row["es_pgd_acc"] == max(hist["es_pgd_acc"])
        again = zoo.fast_mnist(method, budget="smoke", verbose=False)  # from the cache: unpacked the same way
        assert again.meta["early_stopping"] == row and again.meta["history"] == hist


def test_fast_recipe_overrides_are_new_cache_entries(tiny_fast, cache_in_tmp):
    a = zoo.fast_mnist("fgsm_rs", budget="smoke", verbose=False)
    b = zoo.fast_mnist("fgsm_rs", alpha=2.0, budget="smoke", verbose=False)
    assert a.meta["config"]["alpha"] == 1.25 and b.meta["config"]["alpha"] == 2.0
    assert len(list(cache_in_tmp.iterdir())) == 2
    c = zoo.fast_mnist("gradalign", gradalign=10.0, budget="smoke", verbose=False)
    assert c.meta["config"]["gradalign"] == 10.0 and len(list(cache_in_tmp.iterdir())) == 3
    with pytest.raises(ValueError, match="method"):
        zoo.fast_mnist("free", budget="smoke")
    with pytest.raises(ValueError, match="gradalign"):
        zoo.fast_mnist("fgsm_rs", gradalign=1.0, budget="smoke")


def test_fast_cifar_recipe_records_colour_snapshots_and_takes_eps(tiny_fast, cache_in_tmp):
    model = zoo.fast_cifar("fgsm", budget="smoke", verbose=False)
    hist = model.meta["history"]
    assert model.meta["name"] == "fast_cifar_fgsm" and model.meta["config"]["eps"] == 8 / 255
    signs = torch.tensor(hist["fgsm_sign"])
    assert signs.shape == (2, 2, 3, 32, 32) and set(signs.unique().tolist()) <= {-1, 0, 1}
    assert all(0 <= a <= 1 for a in hist["pgd_acc"]) and len(hist["grad_alignment"]) == 2
    big = zoo.fast_cifar("fgsm", eps=16 / 255, budget="smoke", verbose=False)
    assert big.meta["config"]["eps"] == 16 / 255 and len(list(cache_in_tmp.iterdir())) == 2
    stored = zoo.fast_cifar("apart_stored", budget="smoke", verbose=False)
    assert stored.meta["config"]["stored_starts"] and "alpha" in stored.meta["history"]
    assert "width" not in model.meta["config"]  # the default leaves the cache key as it was
    with pytest.raises(ValueError, match="method"):
        zoo.fast_cifar("free", budget="smoke")


def test_fast_cifar_width_builds_a_wider_cnn_under_its_own_cache_key(tiny_fast, cache_in_tmp):
    narrow = zoo.fast_cifar("fgsm", budget="smoke", verbose=False)
    wide = zoo.fast_cifar("fgsm", width=8, budget="smoke", verbose=False)
    assert wide.meta["config"]["width"] == 8 and len(list(cache_in_tmp.iterdir())) == 2
    assert wide.features[0].out_channels == 8 and narrow.features[0].out_channels == 32
    again = zoo.fast_cifar("fgsm", width=8, budget="smoke", verbose=False)  # from the cache
    assert again.features[0].out_channels == 8 and again.meta["history"] == wide.meta["history"]
    for bad in (0, 2.5):
        with pytest.raises(ValueError, match="width"):
            zoo.fast_cifar("fgsm", width=bad, budget="smoke")
    with pytest.raises(ValueError, match="width is an option of arch 'small_cnn' only"):
        zoo._common._cifar_model({"arch": "preact_resnet18", "width": 64, "seed": 0})


def test_apart_stored_recipe_gives_its_adversary_one_start_per_training_image(tiny_fast, monkeypatch):
    made = []

    class Spy(adversaries.APART):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(adversaries, "APART", Spy)
    zoo.fast_mnist("apart_stored", budget="smoke", verbose=False)
    zoo.fast_mnist("apart", budget="smoke", verbose=False)
    zoo.fast_mnist("apart_wd", budget="smoke", verbose=False)
    assert [a.n_examples for a in made] == [100, None, 100]
    assert [a.optimizer.param_groups[0]["weight_decay"] for a in made] == [0.0, 0.0, 0.4]
    assert made[0].starts.shape == (100, 1, 28, 28)


def test_command_line_trains_a_fast_method_and_refuses_method_elsewhere(tiny_fast, cache_in_tmp, capsys):
    from advlib.zoo.__main__ import main

    assert main(["train", "fast_mnist", "--method", "apart", "--budget", "smoke"]) == 0
    assert "fast_mnist_apart (smoke) is cached at" in capsys.readouterr().out
    assert [p.name.startswith("fast_mnist_apart-smoke-") for p in cache_in_tmp.iterdir()] == [True]
    with pytest.raises(SystemExit):
        main(["train", "robust_mnist", "--method", "apart", "--budget", "smoke"])
    assert "--method is an option of fast_mnist, fast_cifar and arae_sentiment only" in capsys.readouterr().err
    assert main(["train", "fast_cifar", "--width", "8", "--budget", "smoke"]) == 0
    assert "fast_cifar_fgsm (smoke) is cached at" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["train", "fast_mnist", "--width", "8", "--budget", "smoke"])
    assert "--width is an option of fast_cifar only" in capsys.readouterr().err


def test_command_line_trains_a_subset_model_and_needs_its_size(tiny, cache_in_tmp, capsys):
    from advlib.zoo.__main__ import main

    assert main(["train", "subset_mnist", "--n-train", "100", "--eps", "1.0", "--budget", "smoke"]) == 0
    assert "subset_mnist_100_eps1 (smoke) is cached at" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["train", "subset_mnist", "--budget", "smoke"])
    assert "subset_mnist needs --n-train" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "robust_mnist", "--n-train", "100", "--budget", "smoke"])
    assert "--n-train is an option of subset_mnist only" in capsys.readouterr().err


def test_robust_overfitting_cifar_recipe_has_the_same_curves(tiny, monkeypatch, cache_in_tmp):
    monkeypatch.setitem(zoo.RECIPES["robust_overfitting_cifar"], "smoke",
                        dict(arch="small_cnn", n_train=60, n_val=20, n_curve=30, n_test=40, epochs=2, batch_size=20,
                             lr=1e-3, eps=8 / 255, eps_ramp=0.2, steps=1, eval_steps=1, amp=False, evals=2, seed=0))
    model = zoo.robust_overfitting_cifar(budget="smoke", verbose=False)
    hist = model.meta["history"]
    assert model.meta["name"] == "robust_overfitting_cifar" and hist["step"] == [3, 6]
    assert all(c == round(a * 40) for c, a in zip(hist["test_pgd_correct"], hist["test_pgd_acc"]))
    assert all(r <= c for r, c in zip(hist["test_pgd_acc"], hist["test_acc"])) and len(hist["train_pgd_acc"]) == 2


def test_robust_overfitting_recipe_records_train_val_and_test_curves(tiny, monkeypatch, cache_in_tmp):
    monkeypatch.setitem(zoo.RECIPES["robust_overfitting_mnist"], "smoke",
                        dict(n_train=60, n_val=20, n_curve=30, n_test=40, epochs=2, batch_size=20, lr=1e-3,
                             eps=0.3, eps_ramp=0.2, steps=1, eval_steps=1, amp=False, evals=2, seed=0))
    model = zoo.robust_overfitting_mnist(budget="smoke", verbose=False)
    hist = model.meta["history"]
    assert model.meta["name"] == "robust_overfitting_mnist" and hist["step"] == [3, 6]
    for key in ("val_pgd_acc", "train_pgd_acc", "test_acc", "test_pgd_acc", "time_s"):
        assert len(hist[key]) == 2 and all(0 <= v for v in hist[key]), key
    assert all(c == round(a * 40) and 0 <= c <= 40 for c, a in zip(hist["test_pgd_correct"], hist["test_pgd_acc"]))
    # robust accuracy counts only images that are also right clean
    assert all(r <= c for r, c in zip(hist["test_pgd_acc"], hist["test_acc"]))
    assert model.meta["config"]["epochs"] == 2 and not model.training


def test_trades_recipes_train_with_the_kl_regularizer_and_name_their_beta(tiny, cache_in_tmp, monkeypatch):
    """TRADES: robust_mnist's settings plus beta; trained on clean CE + beta KL (no PGD adversary)."""
    monkeypatch.setitem(zoo.RECIPES["trades_mnist"], "smoke", {**zoo.RECIPES["robust_mnist"]["smoke"], "beta": 1.0})
    seen = []
    original = adversaries.trades

    def spy(eps, beta, **kwargs):
        step = kwargs["alpha"] if kwargs.get("alpha") is not None else kwargs["alpha_ratio"] * full_eps(eps)
        seen.append((full_eps(eps), beta, kwargs["steps"], step))
        return original(eps, beta, **kwargs)

    monkeypatch.setattr(adversaries, "trades", spy)
    monkeypatch.setattr(adversaries, "pgd", lambda *a, **k: pytest.fail("TRADES trains without PGD"))
    model = zoo.trades_mnist(budget="smoke", verbose=False)
    other = zoo.trades_mnist(3.0, budget="smoke", verbose=False)
    assert seen == [(0.3, 1.0, 1, 0.15), (0.3, 3.0, 1, 0.15)]
    assert model.meta["name"] == "trades_mnist_beta1" and other.meta["name"] == "trades_mnist_beta3"
    assert model.meta["history"]["val_robust_acc"]  # validated under PGD like robust_mnist
    settings = {k: v for k, v in zoo.recipe("trades_mnist", "book").items() if k != "beta"}
    assert settings == zoo.recipe("robust_mnist", "book")  # the same budget as PGD training
    with pytest.raises(ValueError, match="beta must be a finite number > 0"):
        zoo.trades_mnist(0.0, budget="smoke")
