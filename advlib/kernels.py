r"""CPU kernels for the attacks' input gradients: same numbers (to float rounding), less time.

An attack differentiates its loss with respect to the *input* only, never the weights. On the CPU,
:func:`input_gradient_model` runs a float32 convolutional model for that purpose in two ways that
oneDNN and MKL do faster than the model as it comes:

1. **Channels-last weights.** The convolutions run on detached channels-last (NHWC) copies of the
   4-D weights (``torch.func.functional_call``), so activations stay NHWC, where oneDNN's
   convolutions and PyTorch's max-pooling are fastest. The model, its parameters, their ``.grad``
   and its buffers are never touched.
2. **The input gradient of a few-channel convolution** (the first layer of an image model: 1 or 3
   channels) as one matrix product and a sum of shifted slices. For a stride-1 convolution with zero
   padding :math:`(p_h, p_w)`,

   .. math:: y_{n,o,u,v} = b_o + \sum_{c,a,b} W_{o,c,a,b}\, x_{n,c,\,u+a-p_h,\,v+b-p_w},

   so :math:`\partial L/\partial x_{n,c,i,j} = \sum_{a,b} P_{a,b,c,n,\,i+p_h-a,\,j+p_w-b}` with
   :math:`P_{a,b,c,n,u,v} = \sum_o W_{o,c,a,b}\,(\partial L/\partial y)_{n,o,u,v}`: one GEMM of size
   :math:`(k_h k_w C_{in}) \times C_{out} \times (N H_o W_o)` and :math:`k_h k_w` slice additions
   (:func:`conv2d_input_grad`). oneDNN's backward-data kernel is slow when :math:`C_{in}` is small
   (the scaling appendix gives the times measured on the Madry MNIST CNN's first layer;
   ``benchmarks/attacks.py`` measures the whole attack).

Both are used by :func:`advlib.attacks.pgd` (``cpu_kernels="auto"``: float32 4-D inputs on the CPU)
and so by every attack, evaluation and adversarial training built on it. The gradient they give
agrees with autograd's to float rounding (``tests/test_kernels.py``).

Taught in :ref:`app-scaling`.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

FEW_CHANNELS = 3  # a convolution with at most this many input channels gets conv2d_input_grad


def conv2d_input_grad(grad_out: torch.Tensor, weight: torch.Tensor, padding: tuple[int, int],
                      input_size: tuple[int, int]) -> torch.Tensor:
    r"""The input gradient of ``F.conv2d(x, weight, padding=padding)`` (stride 1, dilation 1, one
    group, zero padding) for an output gradient ``grad_out`` of shape (N, C_out, H_o, W_o): one
    matrix product :math:`P = W^\top g` and a sum of :math:`k_h k_w` shifted slices of :math:`P` (the
    module docstring has the formula). ``input_size`` is ``(H, W)`` of ``x``. Returns (N, C_in, H, W).
    """
    n, c_out, h_out, w_out = grad_out.shape
    _, c_in, kh, kw = weight.shape
    ph, pw = padding
    g = grad_out.permute(0, 2, 3, 1).reshape(-1, c_out)  # a view when grad_out is channels-last
    p = (weight.permute(2, 3, 1, 0).reshape(kh * kw * c_in, c_out) @ g.t()).view(kh, kw, c_in, n, h_out, w_out)
    acc = grad_out.new_zeros(c_in, n, h_out + kh - 1, w_out + kw - 1)
    for a in range(kh):
        for b in range(kw):
            acc[:, :, a:a + h_out, b:b + w_out] += p[a, b]
    return acc[:, :, ph:ph + input_size[0], pw:pw + input_size[1]].permute(1, 0, 2, 3)


class _FewChannelConv(torch.autograd.Function):
    """``F.conv2d`` whose backward gives the input gradient by :func:`conv2d_input_grad` (and none
    for the weight and bias, which the mode below only lets in when they do not require one)."""

    @staticmethod
    def forward(ctx, x, weight, bias, padding):
        ctx.save_for_backward(weight)
        ctx.padding, ctx.input_size = padding, tuple(x.shape[-2:])
        return F.conv2d(x, weight, bias, 1, padding)

    @staticmethod
    def backward(ctx, grad_out):
        (weight,) = ctx.saved_tensors
        return conv2d_input_grad(grad_out, weight, ctx.padding, ctx.input_size), None, None, None


def _pair(v) -> tuple[int, int] | None:
    if isinstance(v, int):
        return (v, v)
    if isinstance(v, (tuple, list)) and len(v) == 2 and all(isinstance(i, int) for i in v):
        return tuple(v)
    return None  # e.g. padding="same": left to PyTorch


class _InputGradientConvolutions(TorchFunctionMode):
    """Routes each eligible ``F.conv2d`` call (input needs a gradient, at most ``FEW_CHANNELS``
    input channels, weight and bias need none, stride 1, dilation 1, one group, numeric padding)
    through :class:`_FewChannelConv`; every other call runs as it comes."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.conv2d or func is torch.conv2d:
            names = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
            a = dict(zip(names, args), **kwargs)
            x, w, b = a["input"], a["weight"], a.get("bias")
            padding = _pair(a.get("padding", 0))
            if (x.dim() == 4 and x.requires_grad and x.shape[1] <= FEW_CHANNELS and not w.requires_grad
                    and (b is None or not b.requires_grad) and _pair(a.get("stride", 1)) == (1, 1)
                    and _pair(a.get("dilation", 1)) == (1, 1) and a.get("groups", 1) == 1 and padding is not None):
                return _FewChannelConv.apply(x, w, b, padding)
        return func(*args, **kwargs)


def input_gradient_model(model: nn.Module, x: torch.Tensor,
                         cpu_kernels: bool | str = "auto") -> nn.Module | Callable[[torch.Tensor], torch.Tensor]:
    """``model`` itself, or a function computing ``model(inputs)`` with detached channels-last copies
    of its 4-D weights and the few-channel input-gradient convolution (module docstring), for
    attacks that differentiate with respect to the input only (a gradient with respect to the
    weights through it is not available: the copies are detached).

    ``cpu_kernels``: ``"auto"`` uses them for 4-D float32 inputs ``x`` on the CPU when the model has
    4-D weights; ``True`` on any device and dtype (for tests); ``False`` never.
    """
    if cpu_kernels not in ("auto", True, False):
        raise ValueError(f"cpu_kernels must be 'auto', True or False, got {cpu_kernels!r}")
    if cpu_kernels is False or x.dim() != 4:
        return model
    params = dict(model.named_parameters())
    if not any(p.dim() == 4 for p in params.values()):
        return model
    if cpu_kernels == "auto" and (x.device.type != "cpu" or x.dtype != torch.float32):
        return model
    # empty_like restrides even where .contiguous() would not (a weight with one input channel counts
    # as both layouts, and convolutions then fall back to the default one)
    swapped = {k: torch.empty_like(p, memory_format=torch.channels_last).copy_(p.detach()) if p.dim() == 4
               else p.detach() for k, p in params.items()}

    def forward(inputs: torch.Tensor) -> torch.Tensor:
        with _InputGradientConvolutions():
            return torch.func.functional_call(model, swapped, (inputs,))

    return forward


def match_memory_format(x: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """``x`` in channels-last layout when the model's first 4-D weight is (a model converted with
    ``model.to(memory_format=torch.channels_last)``), so that its convolutions skip a reorder;
    otherwise ``x`` unchanged.
    """
    if x.dim() == 4:
        for p in model.parameters():
            if p.dim() == 4:
                if p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous():
                    return x.contiguous(memory_format=torch.channels_last)
                break
    return x
