"""Faults at the entry of the attacks: label dtypes, input dtypes and devices, non-tensor outputs."""
import pytest
import torch
from torch import nn

from advlib import attacks


def tiny_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).eval()


def batch(n=5):
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, 2, 2, generator=g), torch.randint(0, 3, (n,), generator=g)


ATTACKS = {"fgsm": lambda m, x, y: attacks.fgsm(m, x, y, eps=0.1),
           "pgd": lambda m, x, y: attacks.pgd(m, x, y, eps=0.1, steps=2)}


@pytest.mark.parametrize("kind", sorted(ATTACKS))
@pytest.mark.parametrize("dtype", [torch.int32, torch.int16, torch.uint8])
def test_labels_of_another_integer_dtype_are_refused_at_the_entry(kind, dtype):
    x, y = batch()
    with pytest.raises(ValueError, match=f"y must hold integer class indices as torch.long .*{dtype}"):
        ATTACKS[kind](tiny_model(), x, y.to(dtype))


@pytest.mark.parametrize("kind", sorted(ATTACKS))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_an_input_of_another_dtype_than_the_model_names_both(kind, dtype):
    x, y = batch()
    with pytest.raises(ValueError, match=f"x is {dtype} but the model's parameters are torch.float32"):
        ATTACKS[kind](tiny_model(), x.to(dtype), y)


@pytest.mark.parametrize("kind", sorted(ATTACKS))
def test_a_model_on_another_device_than_x_names_both(kind):
    x, y = batch()
    with pytest.raises(ValueError, match="x is on cpu but the model is on meta"):
        ATTACKS[kind](tiny_model().to("meta"), x, y)
    with pytest.raises(ValueError, match="y is on meta but x is on cpu"):
        ATTACKS[kind](tiny_model(), x, y.to("meta"))


class TupleModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x):
        return self.lin(x.flatten(1)), x


@pytest.mark.parametrize("kind", sorted(ATTACKS))
def test_a_model_returning_a_tuple_is_a_clear_error(kind):
    with pytest.raises(ValueError, match="model must return a tensor of logits .*got a tuple"):
        ATTACKS[kind](TupleModel(), *batch())


@pytest.mark.parametrize("kind", sorted(ATTACKS))
def test_matching_models_still_work(kind):
    x, y = batch()
    for model, xin in ((tiny_model(), x), (tiny_model().double(), x.double()), (nn.Flatten(), x)):
        x_adv = ATTACKS[kind](model, xin, y)
        assert x_adv.dtype == xin.dtype and (x_adv - xin).abs().max() <= 0.1 + 1e-6


def test_the_docstring_says_models_return_logits():
    assert "logits" in attacks.__doc__ and "probabilities" in attacks.__doc__
