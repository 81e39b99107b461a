"""APART's adversary: FGSM whose step size and start scale are learned during training."""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from .. import attacks
from ..utils import check_int, check_nonnegative, check_positive, eval_mode


def _ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y, reduction="none")


class APART:
    r"""An APART-style adversary (Li, Liu, Dong and Shang, 2020): FGSM from a start whose *step size*
    :math:`\alpha` and *start scale* :math:`\sigma` are parameters, learned by gradient ascent on the
    training loss as the model trains,

    .. math:: \delta = \Pi_{[-\epsilon,\epsilon]^d}\big(\sigma\,u + \alpha\,\mathrm{sign}(\nabla_x L(h(x + \sigma u), y))\big),
              \qquad \alpha \leftarrow \alpha + \eta_\alpha\, \partial_\alpha L(h(x + \delta), y)

    (and the same for :math:`\sigma`), each kept in ``[0, 2 eps]`` and ``[0, eps]``. With
    ``weight_decay`` :math:`\lambda > 0` the ascent is on :math:`L - \tfrac{\lambda}{2}(\alpha^2 + \sigma^2)`,
    which holds each parameter where the loss's pull :math:`\partial_\alpha L` equals
    :math:`\lambda\alpha` instead of letting it run to the bound (the paper's code uses a weight
    decay of 400 on its SGD steps, for the same reason). The returned
    input carries the graph back to :math:`\alpha` and :math:`\sigma`, so the training step's backward
    fills their gradients; the adversary takes its ascent step (Adam, learning rate ``lr``) at its
    next call. ``history`` records ``(alpha, sigma)`` after every step.

    The start direction :math:`u \in [-1, 1]^d` is fresh uniform noise for every batch, or, with
    ``n_examples`` (the size of the training set), the paper's *per-example stored initialisation*:
    one :math:`u_i` per training example (uniform at first), carried from epoch to epoch and, after
    each step on example :math:`i`, moved by the sign of the input gradient at its adversarial input
    (which the training step's backward computes anyway):

    .. math:: u_i \leftarrow \mathrm{clip}_{[-1, 1]}\big(u_i + (\alpha / \sigma)\,
              \mathrm{sign}(\nabla_x L(h(x_i + \delta_i), y_i))\big),

    so the start :math:`\sigma u_i` accumulates one more ascent step per epoch (as ATTA's
    accumulated perturbations, on which the paper's code builds). It reads the batch's example
    indices from ``index`` (which :func:`advlib.train.fit` hands every adversary); the update of a
    batch is applied at the next call, once the step's backward has filled the gradient.

    Where it differs from the paper's code: their steps are SGD with momentum on :math:`\alpha` and
    :math:`\sigma` with a cyclic learning rate (up to :math:`5\cdot10^{-8}`) and weight decay 400,
    from :math:`10^{-4}`; here Adam from ``alpha`` and ``sigma`` (default eps each), with
    ``weight_decay`` (default 0) as above. Their learned layer-wise perturbations (a signed
    step inside each residual block) are not here: the chapter's CNN has no residual blocks, and
    the input perturbation is the one every evaluation attacks. What is here is the idea the paper
    names first: the perturbation generator has parameters (and, with ``n_examples``, a memory) that
    strengthen as training goes on.
    """

    def __init__(self, eps: float, *, alpha: float | None = None, sigma: float | None = None,
                 lr: float = 1e-3, weight_decay: float = 0.0, n_examples: int | None = None) -> None:
        self.eps = check_positive(eps, "eps")
        a0 = 1.0 * self.eps if alpha is None else check_positive(alpha, "alpha")
        s0 = 1.0 * self.eps if sigma is None else check_nonnegative(sigma, "sigma")
        self.alpha = torch.tensor(float(a0), requires_grad=True)
        self.sigma = torch.tensor(float(s0), requires_grad=True)
        # maximize=True negates the loss's gradient before the decay is added: ascent on L - wd/2 |p|^2
        self.optimizer = torch.optim.Adam([self.alpha, self.sigma], lr=check_positive(lr, "lr"),
                                          maximize=True, weight_decay=check_nonnegative(weight_decay, "weight_decay"))
        self.history: list[tuple[float, float]] = []
        self.n_examples = None if n_examples is None else check_int(n_examples, "n_examples", minimum=1)
        self.stored = self.n_examples is not None  # a start per training example
        self.starts: torch.Tensor | None = None  # u_i of every example, made at the first call
        self._pending: tuple[torch.Tensor, torch.Tensor] | None = None  # (indices, adversarial input)

    def _ascend(self) -> None:
        if self.alpha.grad is not None or self.sigma.grad is not None:
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            with torch.no_grad():
                self.alpha.clamp_(1e-4, 2 * self.eps)
                self.sigma.clamp_(0.0, self.eps)
            self.history.append((self.alpha.item(), self.sigma.item()))

    def _update_starts(self) -> None:
        """Move the stored starts of the last batch by the sign of the gradient at its adversarial
        input (when the training step's backward filled it)."""
        if self._pending is None:
            return
        index, x_in = self._pending
        self._pending = None
        if x_in.grad is not None:
            ratio = self.alpha.item() / max(self.sigma.item(), 1e-7)
            step = ratio * x_in.grad.sign().to(self.starts.device, self.starts.dtype)
            self.starts[index] = (self.starts[index] + step).clamp_(-1.0, 1.0)

    def _start_directions(self, x: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
        if not self.stored:
            return torch.empty_like(x).uniform_(-1.0, 1.0)
        if index is None:
            raise ValueError("this APART adversary stores a start per example (n_examples was given): call it "
                             "with index= (advlib.train.fit does)")
        index = index.to(x.device)
        if index.shape != x.shape[:1] or index.dtype != torch.long:
            raise ValueError(f"index must hold one long index per image ({x.shape[0]}), got "
                             f"{tuple(index.shape)} {index.dtype}")
        if self.starts is None:
            self.starts = torch.empty((self.n_examples, *x.shape[1:]), device=x.device).uniform_(-1.0, 1.0)
        elif self.starts.shape[1:] != x.shape[1:]:
            raise ValueError(f"x must have the image shape this APART adversary stores starts for, "
                             f"{tuple(self.starts.shape[1:])}, got {tuple(x.shape[1:])}; use one adversary per data set")
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= self.n_examples):
            raise ValueError(f"index must be in [0, n_examples = {self.n_examples}), got "
                             f"[{int(index.min())}, {int(index.max())}]")
        return self.starts[index].to(x.dtype)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, progress: float,
                 index: torch.Tensor | None = None) -> torch.Tensor:
        if self.stored:
            self._update_starts()  # before the ascent step: the update reads the alpha it was made with
        self._ascend()
        alpha, sigma = self.alpha.to(x.device), self.sigma.to(x.device)
        u = self._start_directions(x, index)
        start = torch.clamp(x + sigma.detach() * u, 0.0, 1.0)
        with eval_mode(model):
            grad = attacks.input_gradient(model, start, y, _ce)[0]
        delta = torch.clamp(sigma * u + alpha * grad.sign(), -self.eps, self.eps)
        x_in = torch.clamp(x + delta, 0.0, 1.0)
        if self.stored:
            x_in.retain_grad()  # the training step's backward fills x_in.grad, read at the next call
            self._pending = (index, x_in)
        return x_in
