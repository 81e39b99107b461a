"""Chapter 06's recipe, zoo.vat_mnist: trained once then loaded, one cache entry per setting, batch norm
recomputed at the end, the supervised and labels-only variants, bad arguments."""
import pytest
import torch
from torch import nn

from advlib import cache, data, train, zoo


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVLIB_CACHE", str(tmp_path))
    monkeypatch.setenv("ADVLIB_PROGRESS", "0")
    return tmp_path


def fake(n, seed):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, 28, 28), generator=g, dtype=torch.uint8)
    return data.ImageData(images, torch.arange(n) % 10, data.MNIST_CLASSES, "fake")


@pytest.fixture
def tiny(monkeypatch):
    """Fake MNIST (300 training, 100 test images) and a smoke recipe that takes a second."""
    monkeypatch.setattr(data, "mnist", lambda train=True, root=None: fake(300 if train else 100, int(train)))
    monkeypatch.setitem(zoo.RECIPES["vat_mnist"], "smoke",
                        dict(hidden=[16], steps=6, batch_size=10, unl_batch=20, sup_n_train=100, sup_epochs=1,
                             sup_batch=50, lr=1e-3, warmup=0.1, eps=2.0, power_iterations=1, weight=1.0,
                             amp=False, evals=2, n_monitor=50, bn_stats="clean pass, recomputed", seed=0))


def test_the_book_recipe_has_the_reference_codes_supervised_network():
    cfg = zoo.recipe("vat_mnist", "book")
    assert cfg["hidden"] == [1200, 600, 300, 150] and cfg["eps"] == 2.0 and cfg["power_iterations"] == 1
    assert zoo.VAT_XI_PAPER == 1e-6 and zoo.VAT_LABELS == (100, 600, 1000, 3000)


def test_trains_once_then_loads_and_recomputes_batch_norm(tiny, cache_in_tmp, monkeypatch):
    model = zoo.vat_mnist(20, "vat", xi=1e-3, budget="smoke", verbose=False)
    assert not model.training and model.meta["name"] == "vat_mnist_20_vat_xi0.001"
    cfg = model.meta["config"]
    assert (cfg["n_labels"], cfg["method"], cfg["xi"], cfg["steps"]) == (20, "vat", 1e-3, 6)
    hist = model.meta["history"]
    assert hist["step"] == [3, 6] and all(0 <= a <= 1 for a in hist["val_acc"]) and "time_s" in hist
    bn = model.meta["bn_recomputed"]
    assert bn["batches"] == 1 and 0 <= bn["val_acc_after"] <= 1  # 300 images in one batch of 500
    # the stored running statistics are the ones recomputed over the 300 training images
    again = {k: v.clone() for k, v in model.state_dict().items()}
    train.recompute_batch_norm(model, data.mnist(train=True))
    for k, v in model.state_dict().items():
        assert torch.allclose(again[k].float(), v.float(), atol=1e-5), k
    assert [p.name for p in cache_in_tmp.iterdir()] == [cache.path_for(model.meta["name"], cfg, "smoke").name]

    def no_training(*args, **kwargs):
        raise AssertionError("a cached model must not be trained again")

    monkeypatch.setattr(zoo._vat, "fit", no_training)
    loaded = zoo.vat_mnist(20, "vat", xi=1e-3, budget="smoke", verbose=False)
    assert loaded.meta["history"] == hist and loaded.meta["bn_recomputed"] == bn
    assert all(torch.equal(a, b) for a, b in zip(again.values(), loaded.state_dict().values()))


def test_each_setting_is_its_own_cache_entry(tiny, cache_in_tmp):
    paper = zoo.vat_mnist(20, budget="smoke", verbose=False)
    true = zoo.vat_mnist(20, xi=1e-3, budget="smoke", verbose=False)
    ml = zoo.vat_mnist(20, "ml", budget="smoke", verbose=False)
    more = zoo.vat_mnist(50, "ml", budget="smoke", verbose=False)
    sup = zoo.vat_mnist(None, "vat", budget="smoke", verbose=False)
    assert paper.meta["config"]["xi"] == zoo.VAT_XI_PAPER and true.meta["config"]["xi"] == 1e-3
    assert not {"xi", "eps", "unl_batch", "weight"} & set(ml.meta["config"])  # what ML does not use
    assert more.meta["config"]["n_labels"] == 50
    assert sup.meta["name"] == "vat_mnist_all_vat_xi1e-06" and sup.meta["config"]["n_labels"] is None
    assert "steps" not in sup.meta["config"] and sup.meta["history"]["step"][-1] == 2  # 100 images, batch 50
    assert len(list(cache_in_tmp.iterdir())) == 5
    assert any(not torch.equal(a, b) for a, b in zip(paper.state_dict().values(), true.state_dict().values()))


def test_eps_and_the_direction_mode_are_settings_of_their_own(tiny, cache_in_tmp, monkeypatch):
    modes = []
    original = zoo._vat.adversaries.vat

    def spy(eps, **kwargs):
        modes.append((eps, kwargs["direction_mode"]))
        return original(eps, **kwargs)

    monkeypatch.setattr(zoo._vat.adversaries, "vat", spy)
    default = zoo.vat_mnist(20, "vat", xi=1e-3, budget="smoke", verbose=False)
    faithful = zoo.vat_mnist(20, "vat", xi=1e-3, eps=0.3, direction_mode="train", budget="smoke", verbose=False)
    assert modes == [(2.0, "eval"), (0.3, "train")]
    assert "direction_mode" not in default.meta["config"]  # the default keeps the recipe's cache key
    assert faithful.meta["config"]["direction_mode"] == "train" and faithful.meta["config"]["eps"] == 0.3
    assert faithful.meta["name"] == "vat_mnist_20_vat_xi0.001_eps0.3_train-direction"
    assert len(list(cache_in_tmp.iterdir())) == 2


def test_labels_only_trains_without_the_unlabelled_images(tiny, monkeypatch):
    seen = []
    original = train.fit

    def spy(model, labelled, **kwargs):
        seen.append((len(labelled), kwargs["unlabelled"], kwargs["regularizer"], kwargs["batch_size"]))
        return original(model, labelled, **kwargs)

    monkeypatch.setattr(zoo._vat, "fit", spy)
    zoo.vat_mnist(20, "ml", budget="smoke", verbose=False)
    zoo.vat_mnist(20, "vat", budget="smoke", verbose=False)
    (n0, unl0, reg0, b0), (n1, unl1, reg1, b1) = seen
    assert n0 == n1 == 20 and b0 == b1 == 10
    assert unl0 is None and reg0 is None and len(unl1) == 300 and reg1 is not None


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_labels=100, method="at"), "method"),
    (dict(n_labels=100, method="ml", xi=1e-3), "xi"),
    (dict(n_labels=105), "multiple of 10"),
    (dict(n_labels=5), "n_labels"),
    (dict(n_labels=100, xi=0.0), "xi"),
    (dict(n_labels=100, method="ml", eps=0.3), "eps"),
    (dict(n_labels=100, method="ml", direction_mode="train"), "direction_mode"),
    (dict(n_labels=100, direction_mode="batch"), "direction_mode must be one of"),
    (dict(n_labels=100, eps=-1.0), "eps"),
])
def test_bad_arguments_name_themselves(tiny, kwargs, match):
    with pytest.raises(ValueError, match=match):
        zoo.vat_mnist(**kwargs, budget="smoke", verbose=False)


def test_command_line_trains_the_default_vat_model(tiny, cache_in_tmp, capsys):
    from advlib.zoo.__main__ import main

    assert main(["train", "vat_mnist", "--budget", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "vat_mnist_100_vat_xi1e-06 (smoke) is cached at" in out
