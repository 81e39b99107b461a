"""Model shapes, normalisation inside, parameter counts."""
import pytest
import torch

from advlib import models


@pytest.mark.parametrize("make, shape, n_params", [
    (models.mnist_cnn, (2, 1, 28, 28), 3_274_634),
    (models.small_cifar_cnn, (2, 3, 32, 32), None),
    (models.preact_resnet18, (2, 3, 32, 32), None),
])
def test_shapes(make, shape, n_params):
    m = make().eval()
    with torch.no_grad():
        assert m(torch.rand(shape)).shape == (2, 10)
    if n_params:
        assert models.count_parameters(m) == n_params
    assert isinstance(list(m.children())[0], models.Normalize)


def test_normalize_layer():
    norm = models.Normalize([0.5], [0.25])
    assert torch.allclose(norm(torch.ones(1, 1, 2, 2)), torch.full((1, 1, 2, 2), 2.0))
    with pytest.raises(ValueError, match="std"):
        models.Normalize([0.5], [0.0])


def test_imagenet_classifier_is_frozen_and_takes_unit_range():
    pytest.importorskip("efficientnet_lite_pytorch")
    m = models.imagenet_classifier(device="cpu")
    assert not m.training and not any(p.requires_grad for p in m.parameters())
    with torch.no_grad():
        assert m(torch.rand(1, 3, 100, 120)).shape == (1, 1000)
    with pytest.raises(ValueError, match="name"):
        models.imagenet_classifier("vgg")


def test_resnet50_offline_is_a_clear_error(tmp_path, monkeypatch):
    import advlib.data

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(advlib.data, "is_online", lambda *a, **k: False)
    with pytest.raises(RuntimeError, match="efficientnet_lite0"):
        models.imagenet_classifier("resnet50", device="cpu")


def test_mlp_classifier_layers_and_shapes():
    m = models.mlp_classifier([8, 4], in_features=12, num_classes=3, dropout=0.5, batch_norm=True)
    kinds = [type(layer).__name__ for layer in m]
    assert kinds == ["Flatten", "Linear", "BatchNorm1d", "ReLU", "Dropout", "Linear", "BatchNorm1d", "ReLU",
                     "Dropout", "Linear"]
    assert m.eval()(torch.rand(5, 3, 2, 2)).shape == (5, 3)
    assert models.count_parameters(models.mlp_classifier([], in_features=10, num_classes=2)) == 22


@pytest.mark.parametrize("kw, name", [
    (dict(hidden=[0]), "hidden"), (dict(hidden=[2.5]), "hidden"), (dict(in_features=0), "in_features"),
    (dict(num_classes=1), "num_classes"), (dict(dropout=1.0), "dropout"), (dict(dropout=-0.1), "dropout"),
])
def test_mlp_classifier_bad_arguments(kw, name):
    with pytest.raises(ValueError, match=name):
        models.mlp_classifier(**kw)


def test_resize_antialias_weighs_photo_pixels_evenly():
    """Shrinking 400 -> 224 without antialiasing gives the photo's pixels very unequal weights in the
    output (the gradient of the summed output: max/min about 20); the antialiased resize nearly equal
    ones (about 1.5). At 224 both are the identity."""
    from advlib.models.imagenet import ResizeNormalize

    x = torch.rand(1, 3, 400, 400, requires_grad=True)
    spread = {}
    for aa in (False, True):
        (g,) = torch.autograd.grad(ResizeNormalize(224, (0.5,) * 3, (0.5,) * 3, antialias=aa)(x).sum(), x)
        spread[aa] = (g.max() / g.min()).item()
    assert spread[False] > 10 and spread[True] < 2, spread
    small = torch.rand(1, 3, 224, 224)
    a, b = (ResizeNormalize(224, (0.5,) * 3, (0.5,) * 3, antialias=aa)(small) for aa in (False, True))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="antialias must be True or False"):
        models.imagenet_classifier(device="cpu", antialias="yes")
