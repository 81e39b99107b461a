"""advlib.kernels: the few-channel input-gradient convolution equals autograd's, is used exactly where
it may be, and leaves the model alone."""
import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn
import torch.nn.functional as F

from advlib import attacks, kernels


def autograd_input_grad(x, w, padding, g):
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad((F.conv2d(x, w, padding=padding) * g).sum(), x)
    return grad


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 3), c_in=st.integers(1, 4), c_out=st.integers(1, 5), k=st.sampled_from([(1, 1), (3, 3), (5, 5), (3, 5)]),
       size=st.tuples(st.integers(5, 9), st.integers(5, 9)), pad=st.tuples(st.integers(0, 2), st.integers(0, 2)),
       channels_last=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_conv2d_input_grad_equals_autograd_in_float64(n, c_in, c_out, k, size, pad, channels_last, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c_in, *size, generator=gen, dtype=torch.float64)
    w = torch.randn(c_out, c_in, *k, generator=gen, dtype=torch.float64)
    out_shape = F.conv2d(x, w, padding=pad).shape
    g = torch.randn(out_shape, generator=gen, dtype=torch.float64)
    if channels_last:
        g = g.contiguous(memory_format=torch.channels_last)
    ours = kernels.conv2d_input_grad(g, w, pad, size)
    assert ours.shape == x.shape
    torch.testing.assert_close(ours, autograd_input_grad(x, w, pad, g), rtol=1e-10, atol=1e-10)


class Net(nn.Module):
    def __init__(self, c_in=3, stride=1, groups=1):
        super().__init__()
        self.first = nn.Conv2d(c_in, 6 * groups, 3, padding=1, stride=stride, groups=groups)
        self.second = nn.Conv2d(6 * groups, 4, 3, padding=1)
        self.head = nn.Linear(4, 10)

    def forward(self, x):
        h = F.relu(self.second(F.relu(self.first(x))))
        return self.head(h.mean((2, 3)))


def routed(model, x, cpu_kernels=True):
    """The convolutions (by input channels) that went through the few-channel kernel, and the gradient."""
    seen = []
    original = kernels._FewChannelConv.apply

    def spy(inp, *rest):
        seen.append(inp.shape[1])
        return original(inp, *rest)

    kernels._FewChannelConv.apply = spy
    try:
        forward = kernels.input_gradient_model(model, x, cpu_kernels)
        xr = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(forward(xr), torch.zeros(len(x), dtype=torch.long)), xr)
    finally:
        kernels._FewChannelConv.apply = original
    return seen, grad


def plain_grad(model, x):
    xr = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(xr), torch.zeros(len(x), dtype=torch.long)), xr)
    return grad


@pytest.mark.parametrize("c_in", [1, 3])
def test_only_the_few_channel_first_layer_is_routed_and_the_gradient_agrees(c_in):
    torch.manual_seed(0)
    model, x = Net(c_in).eval(), torch.rand(4, c_in, 8, 8)
    seen, grad = routed(model, x, "auto")
    assert seen == [c_in], "the first convolution (few channels) only; the 6-channel one runs as it comes"
    torch.testing.assert_close(grad, plain_grad(model, x), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kw", [dict(c_in=4), dict(stride=2), dict(c_in=2, groups=2)])
def test_ineligible_convolutions_run_as_they_come(kw):
    torch.manual_seed(0)
    model = Net(**kw).eval()
    x = torch.rand(2, model.first.in_channels, 8, 8)
    seen, grad = routed(model, x, True)
    assert seen == []
    torch.testing.assert_close(grad, plain_grad(model, x), rtol=1e-4, atol=1e-6)


def test_auto_is_off_for_float64_and_models_without_convolutions():
    model = Net(1).double().eval()
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    assert kernels.input_gradient_model(model, x, "auto") is model
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    assert kernels.input_gradient_model(mlp, torch.rand(2, 1, 8, 8), True) is mlp
    assert kernels.input_gradient_model(model, x, False) is model


def test_bad_cpu_kernels():
    with pytest.raises(ValueError, match="cpu_kernels must be 'auto', True or False, got 'yes'"):
        kernels.input_gradient_model(Net(1), torch.rand(1, 1, 8, 8), "yes")


def test_pgd_with_the_kernels_leaves_the_model_alone_and_finds_the_plain_iterates():
    torch.manual_seed(0)
    model = Net(1).train()
    model.first.weight.grad = torch.ones_like(model.first.weight)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.rand(8, 1, 8, 8), torch.randint(0, 10, (8,))
    kw = dict(eps=0.1, steps=4, random_start=False, select="last")
    fast, plain = attacks.pgd(model, x, y, cpu_kernels=True, **kw), attacks.pgd(model, x, y, cpu_kernels=False, **kw)
    assert model.training and torch.equal(model.first.weight.grad, torch.ones_like(model.first.weight))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.is_contiguous() for p in model.parameters())
    same = ((fast - plain).flatten(1).abs().amax(1) <= 1e-5).float().mean().item()
    assert same >= 0.85, f"only {same:.0%} of the examples agree"  # a rounding difference may cross a ReLU kink


def test_match_memory_format_follows_the_models_first_weight():
    model = Net(3)
    x = torch.rand(2, 3, 8, 8)
    assert kernels.match_memory_format(x, model).is_contiguous()
    model = model.to(memory_format=torch.channels_last)
    out = kernels.match_memory_format(x, model)
    assert out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()
