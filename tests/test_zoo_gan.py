"""Chapter 01's recipe, zoo.gan_mnist: trained once then loaded, with its judged class shares and
snapshots every half epoch; one cache entry per pair and seed; bad arguments."""
import pytest
import torch
from torch import nn

from advlib import data, gan, zoo


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVLIB_CACHE", str(tmp_path))
    monkeypatch.setenv("ADVLIB_PROGRESS", "0")
    return tmp_path


@pytest.fixture
def tiny(monkeypatch):
    """Fake MNIST (256 training images), a linear judge, and a smoke recipe that takes a second."""

    def fake_mnist(train=True, root=None):
        g = torch.Generator().manual_seed(int(train))
        images = torch.randint(0, 256, (256, 1, 28, 28), generator=g, dtype=torch.uint8)
        return data.ImageData(images, torch.arange(256) % 10, data.MNIST_CLASSES, "fake")

    def judge(budget=None, root=None, verbose=True):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).eval()
        model.meta = {"config": {"judge": "linear", "budget": budget}}
        return model

    monkeypatch.setattr(data, "mnist", fake_mnist)
    monkeypatch.setattr(zoo._gan, "standard_mnist", judge)
    monkeypatch.setitem(zoo.RECIPES["gan_mnist"], "smoke",
                        dict(n_train=256, epochs={"mlp": 1, "conv": 1}, batch_size=32, lr=1e-3, z_dim=8,
                             g_hidden=[16], d_hidden=[16], loss="ns", n_judge=50, seed=0))


def test_both_pairs_train_for_the_same_epochs_at_book():
    cfg = zoo.recipe("gan_mnist", "book")
    assert cfg["epochs"] == {"mlp": 6, "conv": 6} and cfg["lr"] == 2e-4 and cfg["loss"] == "ns"
    assert zoo.GAN_ARCHS == ("mlp", "conv")


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_trains_once_then_loads_with_its_record(tiny, arch, monkeypatch):
    pair = zoo.gan_mnist(arch, budget="smoke", verbose=False)
    assert isinstance(pair, nn.ModuleDict) and not pair["G"].training and not pair["D"].training
    assert pair.meta["name"] == f"gan_mnist_{arch}"
    cfg = pair.meta["config"]
    assert cfg["arch"] == arch and cfg["epochs"] == 1 and cfg["judge"]["judge"] == "linear"
    assert ("g_hidden" in cfg) == (arch == "mlp")  # the conv pair has no MLP widths
    hist = pair.meta["history"]
    assert hist["step"] == [4, 8] and hist["epoch"] == [0.5, 1.0]  # 8 steps an epoch, a row every 4
    shares = pair.meta["shares"]
    assert len(shares) == 2 and all(len(s) == 10 and abs(sum(s) - 1) < 1e-9 for s in shares)
    snaps = pair.meta["snapshots"]
    assert list(snaps) == ["0.5", "1.0"] and all(torch.tensor(s).shape == (16, 784) for s in snaps.values())
    # the last snapshot is what the trained generator makes of the fixed noise
    z = zoo._gan._fixed_noise(16, 8, 123)
    with torch.no_grad():
        assert torch.allclose(pair["G"](z).flatten(1), torch.tensor(snaps["1.0"]), atol=1e-6)

    def no_training(*args, **kwargs):
        raise AssertionError("a cached pair must not be trained again")

    monkeypatch.setattr(gan, "train_gan", no_training)
    again = zoo.gan_mnist(arch, budget="smoke", verbose=False)
    assert again.meta["shares"] == shares and again.meta["history"] == hist


def test_another_seed_is_another_run(tiny, cache_in_tmp):
    a = zoo.gan_mnist("mlp", budget="smoke", verbose=False)
    b = zoo.gan_mnist("mlp", budget="smoke", seed=1, verbose=False)
    assert b.meta["config"]["seed"] == 1 and len(list(cache_in_tmp.glob("gan_mnist_mlp-smoke-*.pt"))) == 2
    assert not torch.equal(next(a["G"].parameters()), next(b["G"].parameters()))


def test_bad_arch_is_refused():
    with pytest.raises(ValueError, match="arch must be one of"):
        zoo.gan_mnist("resnet", budget="smoke", verbose=False)


def test_command_line_trains_either_pair_and_another_seed(tiny, cache_in_tmp, capsys):
    from advlib.zoo.__main__ import main

    assert main(["train", "gan_mnist", "--arch", "conv", "--seed", "2", "--budget", "smoke"]) == 0
    assert "gan_mnist_conv (smoke) is cached at" in capsys.readouterr().out
    assert zoo.gan_mnist("conv", budget="smoke", seed=2, verbose=False).meta["config"]["seed"] == 2
    with pytest.raises(SystemExit):
        main(["train", "robust_mnist", "--arch", "conv", "--budget", "smoke"])
    assert "--arch is an option of gan_mnist only" in capsys.readouterr().err
