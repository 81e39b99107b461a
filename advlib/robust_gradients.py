r"""What robust models see (Tsipras et al., 2019, "Robustness may be at odds with accuracy").

Two parts, as in chapter 08.

**The trade-off, exactly.** Tsipras et al.'s distribution: a label :math:`y = \pm 1` with equal
probability, one *robust* feature that agrees with it with probability :math:`p`, and :math:`d`
weak, *non-robust* features,

.. math:: x_1 = \begin{cases} +y & \text{w.p. } p \\ -y & \text{w.p. } 1-p \end{cases}, \qquad
          x_2, \dots, x_{d+1} \overset{\text{i.i.d.}}{\sim} \mathcal{N}(\eta y, 1).

Averaging the weak features classifies almost perfectly when :math:`\eta\sqrt d` is large, yet an
L-inf adversary with :math:`\epsilon \ge 2\eta` can move every weak feature's mean to :math:`-\eta y`.
Their Theorem 2.1: a classifier with standard accuracy at least :math:`1-\delta` has robust accuracy
at most :math:`\frac{p}{1-p}\,\delta` there (:func:`tradeoff_bound`). For a linear classifier
:math:`f(x) = \mathrm{sign}(w^\top x)` both accuracies have closed forms (:func:`linear_accuracy`)
and so does its adversarial loss (:func:`linear_adversarial_loss`): the worst perturbation is
:math:`\delta = -\epsilon\, y\, \mathrm{sign}(w)`, so

.. math:: \max_{\|\delta\|_\infty \le \epsilon} \log\big(1 + e^{-y\, w^\top (x + \delta)}\big)
          = \log\big(1 + e^{-y\, w^\top x + \epsilon \|w\|_1}\big).

**Gradients and saliency.** The loss gradient of a robust model with respect to its input looks like
the digit; a standard model's looks like noise. :func:`rescale_gradient` maps a gradient to an
image the way the paper does (clip at 3 standard deviations, map to [0, 1]), :func:`saliency_maps`
computes vanilla gradients, SmoothGrad and integrated gradients with ``captum``, and
:func:`stroke_energy_share` and :func:`class_mean_alignment` turn what one sees into numbers.

Taught in :ref:`ch-robust-gradients`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
import torch.nn.functional as F

from . import attacks
from .utils import check_int, check_nonnegative, check_positive, draw, eval_mode

SALIENCY_METHODS = ("gradient", "saliency", "smoothgrad", "integrated_gradients")


# ------------------------------------------------------------------------ the toy distribution
@dataclass(frozen=True)
class TsiprasToy:
    r"""Tsipras et al.'s distribution: ``p`` (how often the robust feature :math:`x_1` agrees with the
    label), ``eta`` (the mean of each weak feature is :math:`\eta y`) and ``d`` (how many weak features).
    ``TsiprasToy.of(d, p, k)`` takes :math:`\eta = k / \sqrt d`, the paper's scaling.
    """

    p: float
    eta: float
    d: int

    def __post_init__(self):
        if not 0.5 < self.p < 1.0:
            raise ValueError(f"p must be in (0.5, 1), got {self.p!r}")
        check_positive(self.eta, "eta")
        check_int(self.d, "d", minimum=1)

    @classmethod
    def of(cls, d: int, p: float = 0.95, k: float = 3.0) -> "TsiprasToy":
        """The distribution with ``d`` weak features of mean ``k / sqrt(d)`` each."""
        check_int(d, "d", minimum=1)
        check_positive(k, "k")
        return cls(p=float(p), eta=float(k) / d ** 0.5, d=int(d))

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` draws: ``x`` of shape (n, d + 1) (column 0 is the robust feature) and ``y`` in {-1, +1}."""
        n = check_int(n, "n", minimum=1)
        y = draw(torch.randint, 0, 2, (n,), generator=generator, device="cpu").float() * 2 - 1
        agree = draw(torch.rand, n, generator=generator, device="cpu") < self.p
        x1 = torch.where(agree, y, -y)
        weak = self.eta * y[:, None] + draw(torch.randn, n, self.d, generator=generator, device="cpu")
        return torch.cat([x1[:, None], weak], dim=1), y


def linear_adversarial_loss(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    r"""The mean logistic loss of :math:`f(x) = w^\top x` under the worst L-inf perturbation of size
    ``eps``, in closed form: :math:`\log(1 + \exp(-y\, w^\top x + \epsilon \|w\|_1))` (``eps = 0``: the
    standard logistic loss). ``y`` in {-1, +1}.
    """
    eps = check_nonnegative(eps, "eps")
    return F.softplus(-y * (x @ w) + eps * w.abs().sum()).mean()


def train_linear(x: torch.Tensor, y: torch.Tensor, eps: float = 0.0, *, steps: int = 300, lr: float = 0.05
                 ) -> torch.Tensor:
    """A linear classifier ``w`` (no bias: the distribution is symmetric) fitted by full-batch Adam on
    :func:`linear_adversarial_loss` at ``eps`` (0: standard training), from ``w = 0``.
    """
    check_int(steps, "steps", minimum=1)
    check_positive(lr, "lr")
    w = torch.zeros(x.shape[1], dtype=x.dtype, requires_grad=True)
    opt = torch.optim.Adam([w], lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1 - t / steps)  # decay to 0: a settled w
    for _ in range(steps):
        opt.zero_grad()
        linear_adversarial_loss(w, x, y, eps).backward()
        opt.step()
        sched.step()
    return w.detach()


def linear_accuracy(w: torch.Tensor, toy: TsiprasToy, eps: float = 0.0) -> float:
    r"""The exact accuracy over the whole distribution of :math:`\mathrm{sign}(w^\top x)` under the worst
    L-inf perturbation of size ``eps`` (``eps = 0``: standard accuracy). No sampling: with
    :math:`w = (w_1, w_{2:})`, the margin :math:`y\, w^\top x - \epsilon\|w\|_1` is Gaussian given
    whether :math:`x_1` agrees with :math:`y`, so

    .. math:: \mathrm{acc} = p\, \Phi\Big(\tfrac{w_1 + m}{s}\Big) + (1-p)\, \Phi\Big(\tfrac{-w_1 + m}{s}\Big),
              \quad m = \eta \textstyle\sum_j w_j - \epsilon \|w\|_1,\; s = \|w_{2:}\|_2.
    """
    eps = check_nonnegative(eps, "eps")
    w = w.detach().double()
    if w.numel() != toy.d + 1:
        raise ValueError(f"w must have d + 1 = {toy.d + 1} entries, got {w.numel()}")
    w1, rest = w[0], w[1:]
    m = toy.eta * rest.sum() - eps * w.abs().sum()
    s = rest.norm()
    if s == 0:  # no weak feature: the margin is deterministic given x_1 (a tie counts as wrong)
        return float(toy.p * (w1 + m > 0) + (1 - toy.p) * (-w1 + m > 0))
    return float(toy.p * torch.special.ndtr((w1 + m) / s) + (1 - toy.p) * torch.special.ndtr((-w1 + m) / s))


def tradeoff_bound(p: float, standard_accuracy: float) -> float:
    r"""Tsipras et al.'s Theorem 2.1: against an L-inf adversary with :math:`\epsilon \ge 2\eta`, a
    classifier of standard accuracy :math:`1-\delta` has robust accuracy at most
    :math:`\min(1, \frac{p}{1-p}\,\delta)`.
    """
    if not 0.5 < p < 1.0:
        raise ValueError(f"p must be in (0.5, 1), got {p!r}")
    if not 0.0 <= standard_accuracy <= 1.0:
        raise ValueError(f"standard_accuracy must be in [0, 1], got {standard_accuracy!r}")
    return min(1.0, p / (1 - p) * (1 - standard_accuracy))


# ------------------------------------------------------------------------ gradients as images
def rescale_gradient(g: torch.Tensor, clip_std: float = 3.0) -> torch.Tensor:
    """Each image's gradient as an image in [0, 1], as Tsipras et al. show them: divided by
    ``clip_std`` times its own standard deviation, clipped to [-1, 1], mapped to [0, 1] (0.5 = zero
    gradient).
    """
    check_positive(clip_std, "clip_std")
    flat = g.flatten(1)
    scale = (clip_std * flat.std(dim=1, keepdim=True)).clamp_min(1e-12)
    return ((flat / scale).clamp(-1, 1) * 0.5 + 0.5).view_as(g)


def _frozen(model: nn.Module):
    """Parameters' ``requires_grad`` off for the duration (restored after), so attributions leave
    their ``.grad`` untouched."""

    class _Frozen:
        def __enter__(self):
            self.params = [p for p in model.parameters() if p.requires_grad]
            for p in self.params:
                p.requires_grad_(False)

        def __exit__(self, *exc):
            for p in self.params:
                p.requires_grad_(True)

    return _Frozen()


def saliency_maps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, methods=SALIENCY_METHODS, *,
                  smoothgrad_samples: int = 25, smoothgrad_std: float = 0.15, ig_steps: int = 64,
                  seed: int = 0) -> dict[str, torch.Tensor]:
    r"""Attributions of ``model``'s decision for class ``y`` on ``x``, one tensor per method (shape of ``x``):

    - ``"gradient"``: :math:`\nabla_x L(h(x), y)`, the loss gradient the paper visualises (and PGD
      follows) — :func:`advlib.attacks.input_gradient`;
    - ``"saliency"``: :math:`\nabla_x h_y(x)`, the gradient of the class logit (``captum`` Saliency);
    - ``"smoothgrad"``: the mean of that gradient over ``smoothgrad_samples`` noisy copies
      :math:`x + \mathcal{N}(0, \sigma^2)`, :math:`\sigma` = ``smoothgrad_std`` (captum NoiseTunnel);
    - ``"integrated_gradients"``: :math:`(x - x_0) \odot \int_0^1 \nabla h_y(x_0 + t(x - x_0))\,dt`
      from the black image :math:`x_0 = 0`, ``ig_steps`` Gauss-Legendre points (captum).

    The model is used in eval mode and its parameters' gradients are not touched (modes restored).
    SmoothGrad's noise is seeded by ``seed`` (the global random state is saved and restored).
    """
    from captum.attr import IntegratedGradients, NoiseTunnel, Saliency  # imported only when asked for

    methods = (methods,) if isinstance(methods, str) else tuple(methods)
    unknown = [m for m in methods if m not in SALIENCY_METHODS]
    if unknown:
        raise ValueError(f"methods must be among {list(SALIENCY_METHODS)}, got {unknown}")
    check_int(smoothgrad_samples, "smoothgrad_samples", minimum=1)
    check_nonnegative(smoothgrad_std, "smoothgrad_std")
    check_int(ig_steps, "ig_steps", minimum=2)
    out: dict[str, torch.Tensor] = {}
    x = x.detach()
    target = y.long()
    with eval_mode(model), _frozen(model):
        for method in methods:
            if method == "gradient":
                out[method] = attacks.input_gradient(model, x, target, lambda z, t: F.cross_entropy(
                    z.float(), t, reduction="none"))[0].detach()
            elif method == "saliency":
                out[method] = Saliency(model).attribute(x.clone().requires_grad_(True), target=target, abs=False).detach()
            elif method == "smoothgrad":
                with torch.random.fork_rng(devices=[x.device] if x.is_cuda else []):
                    torch.manual_seed(seed)
                    out[method] = NoiseTunnel(Saliency(model)).attribute(
                        x.clone().requires_grad_(True), nt_type="smoothgrad", nt_samples=smoothgrad_samples,
                        nt_samples_batch_size=smoothgrad_samples, stdevs=smoothgrad_std, target=target,
                        abs=False).detach()
            else:
                out[method] = IntegratedGradients(model).attribute(
                    x.clone().requires_grad_(True), baselines=torch.zeros_like(x), target=target, n_steps=ig_steps,
                    internal_batch_size=max(1, 4096 // max(1, x.shape[0])) * x.shape[0]).detach()
    return out


def stroke_mask(x: torch.Tensor, threshold: float = 0.1, border: int = 1) -> torch.Tensor:
    """Per pixel, whether it is on a digit's stroke (intensity above ``threshold``) or within ``border``
    pixels of one: a (N, 1, H, W) boolean mask of MNIST-like images in [0, 1].
    """
    check_int(border, "border", minimum=0)
    ink = (x.amax(dim=1, keepdim=True) > threshold).float()
    if border:
        ink = F.max_pool2d(ink, kernel_size=2 * border + 1, stride=1, padding=border)
    return ink > 0


def stroke_energy_share(g: torch.Tensor, x: torch.Tensor, threshold: float = 0.1, border: int = 1) -> torch.Tensor:
    r"""Per image, the share of the gradient's energy :math:`\sum g^2` that falls on the digit's strokes
    and their ``border`` (:func:`stroke_mask`): 1 when the gradient lives on the digit only; the mask's
    share of the pixels (about 0.3 on MNIST) for a gradient spread evenly.
    """
    mask = stroke_mask(x, threshold, border).expand_as(g)
    energy = g.detach().double() ** 2
    total = energy.flatten(1).sum(1).clamp_min(1e-30)
    return ((energy * mask).flatten(1).sum(1) / total).float()


def class_means(x: torch.Tensor, y: torch.Tensor, num_classes: int = 10) -> torch.Tensor:
    """The mean image of each class, a tensor of shape ``(num_classes, *image_shape)``.
    """
    check_int(num_classes, "num_classes", minimum=1)
    sums = torch.zeros(num_classes, *x.shape[1:], dtype=torch.float64, device=x.device)
    for start in range(0, len(x), 4096):  # in chunks: a float64 copy of all of CIFAR-10 is 1.2 GB
        sums.index_add_(0, y[start:start + 4096].long(), x[start:start + 4096].double())
    counts = torch.bincount(y.long(), minlength=num_classes).clamp_min(1)
    return (sums / counts.view(-1, *[1] * (x.dim() - 1))).float()


def class_mean_alignment(x: torch.Tensor, x_adv: torch.Tensor, source: torch.Tensor, target: torch.Tensor,
                         means: torch.Tensor) -> torch.Tensor:
    r"""Per example, the cosine between the perturbation :math:`x_{adv} - x` and the difference of class
    means :math:`\mu_{target} - \mu_{source}`: near 0 for a perturbation unrelated to what tells the two
    classes apart, positive when it adds the target's average strokes and removes the source's. A judge
    that no model is involved in.
    """
    delta = (x_adv - x).flatten(1).double()
    direction = (means[target.long()] - means[source.long()]).flatten(1).double()
    return F.cosine_similarity(delta, direction, dim=1, eps=1e-12).float()
