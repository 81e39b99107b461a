"""Faults at the entry of the training loops: empty data (once an endless loop) and bad arguments."""
import re
import threading

import pytest
import torch
from torch import nn

from advlib import adversaries, aae, gan, train
from advlib.data import ImageData


def error_within(fn, seconds: float = 20.0) -> BaseException | None:
    """The exception ``fn()`` raises (None if none); fails the test if ``fn`` is still running after
    ``seconds`` (the defect was an endless loop, left to spin in a daemon thread)."""
    out = {}

    def run():
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 - handed back to the test
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"still running after {seconds} s: an endless loop"
    return out.get("error")


def tiny_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 3))


def pair(n=8, n_labels=None):
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, 2, 2, generator=g), torch.randint(0, 3, (n if n_labels is None else n_labels,), generator=g)


def empty_images():
    return ImageData(torch.zeros(0, 1, 2, 2, dtype=torch.uint8), torch.zeros(0, dtype=torch.long), ("a", "b", "c"))


def vat():
    return adversaries.vat(0.1)


@pytest.mark.parametrize("kwargs, match", [
    (dict(data=(torch.zeros(0, 1, 2, 2), torch.zeros(0, dtype=torch.long))), r"data\[0\] \(x\) is an empty batch"),
    (dict(data=empty_images()), "data is empty"),
    (dict(data=pair(), regularizer="vat", unlabelled=torch.zeros(0, 1, 2, 2)), "unlabelled is an empty batch"),
    (dict(data=pair(), regularizer="vat", unlabelled=empty_images()), "unlabelled is empty"),
])
def test_fit_on_empty_data_is_an_error_not_an_endless_loop(kwargs, match):
    kwargs = {**kwargs, "regularizer": vat()} if "regularizer" in kwargs else kwargs
    err = error_within(lambda: train.fit(tiny_model(), epochs=1, batch_size=4, progress=False, **kwargs))
    assert isinstance(err, ValueError) and re.search(match, str(err)), err


class Decoder(nn.Module):
    def forward(self, z):
        return torch.sigmoid(z[:, :4]).view(-1, 1, 2, 2)


class Generator(nn.Module):
    z_dim = 4

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, z):
        return torch.sigmoid(self.lin(z)).view(-1, 1, 2, 2)


@pytest.mark.parametrize("loop", ["autoencoder", "gan"])
def test_generative_loops_on_an_empty_dataset_are_an_error(loop):
    if loop == "autoencoder":
        run = lambda: aae.train_autoencoder(tiny_model(), Decoder(), empty_images(), steps=2, progress=False)  # noqa: E731
    else:
        run = lambda: gan.train_gan(Generator(), tiny_model(), empty_images(), steps=2, progress=False)  # noqa: E731
    err = error_within(run)
    assert isinstance(err, ValueError) and "data is empty" in str(err), err


@pytest.mark.parametrize("data, match", [
    (pair(100, n_labels=256), r"data\[1\] \(y\) must have shape \(100,\)"),
    ((pair()[0], pair()[1].float()), r"data\[1\] \(y\) must hold integer class indices as torch.long.*float32"),
    ((pair()[0], pair()[1].int()), r"data\[1\] \(y\).*torch.int32"),
    ((pair()[0], pair()[1].view(-1, 1)), r"data\[1\] \(y\) must have shape \(8,\).*\(8, 1\)"),
    (((pair()[0] * 255).to(torch.uint8), pair()[1]), r"data\[0\] \(x\) must be a floating-point tensor"),
    (pair()[0], "data must be an advlib.data.ImageData or an .x, y. pair"),
])
def test_fit_validates_its_data_at_the_entry(data, match):
    model = tiny_model()
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(ValueError, match=match):
        train.fit(model, data, epochs=1, batch_size=4, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters())), "fit trained before failing"


@pytest.mark.parametrize("kwargs, match", [
    (dict(batch_size=0), "batch_size must be an integer >= 1"),
    (dict(batch_size=2.5), "batch_size must be an integer >= 1"),
    (dict(unlabelled_batch_size=0, regularizer="vat", unlabelled=pair()[0]), "unlabelled_batch_size"),
    (dict(warmup=1.0), r"warmup must be a fraction of training in \[0, 1\)"),
    (dict(warmup=1.5), r"warmup must be a fraction of training in \[0, 1\)"),
    (dict(warmup=-0.1), "warmup must be a finite number >= 0"),
    (dict(unlabelled=pair()[0]), "unlabelled= is used only by a regularizer"),
])
def test_fit_validates_its_arguments_at_the_entry(kwargs, match):
    kwargs = {**kwargs, "regularizer": vat()} if "regularizer" in kwargs else kwargs
    with pytest.raises(ValueError, match=match):
        train.fit(tiny_model(), pair(), **{"epochs": 1, "batch_size": 4, "progress": False, **kwargs})


def test_fit_still_trains_on_good_data():
    hist = train.fit(tiny_model(), pair(), epochs=2, batch_size=4, warmup=0.0, progress=False,
                     regularizer=vat(), unlabelled=pair(6)[0])
    assert len(hist) == 2 and hist.step.iloc[-1] == 4
