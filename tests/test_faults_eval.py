"""Reliability: silent wrong results and unclear errors of the attacks, the evaluation, chapter 09's
diagnostics, chapter 10's helpers and fit. Each test names the probe case it reproduces (the
reliability notes' IDs, e.g. A54)."""
import ast
import functools
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from advlib import adversaries, attacks, evaluate, fast, large_eps, train, utils

ADVLIB = Path(__file__).resolve().parents[1] / "advlib"


def mlp(classes=10, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, classes)).eval()


def batch(n=16, classes=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 4, 4, generator=g), torch.randint(0, classes, (n,), generator=g)


class SqrtModel(nn.Module):
    """Finite logits, but an infinite input gradient wherever a pixel is exactly 0."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.lin = nn.Linear(16, 10)

    def forward(self, x):
        return self.lin(x.flatten(1).sqrt())


def nan_model():
    m = mlp()
    with torch.no_grad():
        m[1].weight[0, 0] = float("nan")
    return m


# ------------------------------------------------------------------ F23: random draws on any device
RANDOM_FUNCTIONS = {"rand", "randn", "randint", "randperm", "rand_like", "randn_like", "randint_like",
                    "normal", "bernoulli", "multinomial", "poisson"}


def _calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def test_no_generator_is_made_on_a_tensors_device():
    """F23: a generator built on a tensor's device (CUDA on a GPU) crashes every CPU draw it is given;
    advlib makes CPU generators only (utils.new_generator) and draws through utils.draw."""
    offenders = []
    for path in sorted(ADVLIB.rglob("*.py")):
        for call in _calls(ast.parse(path.read_text())):
            name = ast.unparse(call.func)
            if name.endswith("Generator") and any(k.arg == "device" for k in call.keywords):
                offenders.append(f"{path.name}:{call.lineno} {ast.unparse(call)}")
    assert not offenders, offenders


def test_every_seeded_draw_goes_through_utils_draw():
    """F23: a torch random function called with generator= draws on that generator's device only if
    told to; utils.draw does so in one place, so nothing else may pass a generator to torch directly."""
    offenders = []
    for path in sorted(ADVLIB.rglob("*.py")):
        for call in _calls(ast.parse(path.read_text())):
            name = ast.unparse(call.func).split(".")[-1]
            if name in RANDOM_FUNCTIONS and any(k.arg == "generator" for k in call.keywords):
                where = f"{path.relative_to(ADVLIB)}:{call.lineno}"
                if not (path.name == "utils.py" and "sampler(" in ast.unparse(call)):
                    offenders.append(f"{where} {ast.unparse(call)}")
    assert not offenders, offenders


def test_draw_puts_seeded_numbers_on_the_requested_device():
    g1, g2 = utils.new_generator(3), utils.new_generator(3)
    a = utils.draw(torch.randn, (4, 2), generator=g1, device="meta", dtype=torch.float64)
    assert a.device.type == "meta" and a.dtype == torch.float64 and a.shape == (4, 2)
    b = utils.draw(torch.randn, (4, 2), generator=g2, dtype=torch.float64)
    assert torch.equal(b, torch.randn((4, 2), generator=torch.Generator().manual_seed(3), dtype=torch.float64))
    assert utils.draw(torch.rand, 5, device="meta").device.type == "meta"  # no generator: drawn in place
    with pytest.raises(ValueError, match="seed must be an integer"):
        utils.new_generator(1.5)


def test_seeded_diagnostics_are_unchanged_by_the_cpu_generator():
    """fgsm_diagnostics drew its PGD starts from a generator on x's device; on the CPU the CPU
    generator gives the same numbers, so cached results and chapter 09's tables do not move."""
    m, (x, y) = mlp(), batch()
    a = fast.fgsm_diagnostics(m, x, y, 0.1, seed=4)
    g = torch.Generator(device="cpu").manual_seed(4)
    x_pgd = attacks.pgd(m, x, y, eps=0.1, steps=10, generator=g)
    ok = evaluate.correct_mask(m, x, y) & evaluate.correct_mask(m, x_pgd, y)
    assert a["pgd_acc"] == pytest.approx(float(ok.float().mean()))


# ------------------------------------------------------------------------- A53 A54: no NaN images
@pytest.mark.parametrize("norm", ["inf", 2])
def test_an_infinite_input_gradient_never_yields_nan_images(norm):
    """A54: sqrt(x) has an infinite derivative at 0; L2 FGM and L2 PGD (last iterate) returned NaN."""
    x, y = batch(32)
    x[:4, :, 0] = 0.0  # a row of exact zeros in four images
    m = SqrtModel()
    outs = [attacks.fgsm(m, x, y, eps=0.5, norm=norm),
            attacks.pgd(m, x, y, eps=0.5, norm=norm, steps=3, select="last", random_start=False),
            attacks.pgd(m, x, y, eps=0.5, norm=norm, steps=3)]
    for out in outs:
        assert torch.isfinite(out).all()
        assert out.min() >= 0 and out.max() <= 1


def test_ascent_direction_is_finite_and_unit_for_infinite_and_nan_gradients():
    g = torch.tensor([[float("inf"), 1.0, 0.0, -float("inf")], [3.0, 4.0, 0.0, 0.0], [float("nan"), 1.0, 0.0, 0.0]])
    d = attacks.ascent_direction(g, "2")
    assert torch.isfinite(d).all()
    assert torch.allclose(d.norm(dim=1), torch.ones(3), atol=1e-6)
    assert torch.allclose(d[0], torch.tensor([1.0, 0.0, 0.0, -1.0]) / math.sqrt(2))
    assert torch.allclose(d[1], torch.tensor([0.6, 0.8, 0.0, 0.0]))
    assert torch.equal(attacks.ascent_direction(g, "inf")[2], torch.tensor([0.0, 1.0, 0.0, 0.0]))


@pytest.mark.parametrize("attack", [
    lambda m, x, y: attacks.fgsm(m, x, y, eps=0.1),
    lambda m, x, y: attacks.fgsm(m, x, y, eps=0.5, norm=2),
    lambda m, x, y: attacks.pgd(m, x, y, eps=0.1, steps=2),
    lambda m, x, y: attacks.pgd(m, x, y, eps=0.5, norm=2, steps=2, select="last"),
])
def test_nan_logits_are_a_clear_error_of_every_attack(attack):
    """A53: a NaN weight made every logit NaN; L2 attacks returned NaN images, L-inf ones returned x."""
    with pytest.raises(ValueError, match="model returned NaN or infinite logits for 16 of 16"):
        attack(nan_model(), *batch())


def test_a_loss_fn_must_give_one_loss_per_example():
    """A52: a scalar loss was accepted (the best iterate then compared batch means); (N, 1) failed deep."""
    m, (x, y) = mlp(), batch()
    for loss_fn, shape in [(lambda l, t: F.cross_entropy(l, t), r"\(\)"),
                           (lambda l, t: F.cross_entropy(l, t, reduction="none")[:, None], r"\(16, 1\)")]:
        with pytest.raises(ValueError, match=f"loss_fn must return one loss per example, shape \\(16,\\), got {shape}"):
            attacks.pgd(m, x, y, eps=0.1, steps=2, loss_fn=loss_fn)
        with pytest.raises(ValueError, match="loss_fn must return one loss per example"):
            attacks.fgsm(m, x, y, eps=0.1, loss_fn=loss_fn)


# ------------------------------------------------------------------------------------- evaluate
def test_accuracy_of_nan_logits_is_an_error_not_ten_percent():
    """E22: argmax of all-NaN logits is class 0, so label-0 examples counted as right."""
    with pytest.raises(ValueError, match="model returned NaN or infinite logits"):
        evaluate.accuracy(nan_model(), *batch())


class TupleModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(16, 10)

    def forward(self, x):
        return self.lin(x.flatten(1)), x


def test_accuracy_names_a_tuple_output_and_a_dtype_mismatch():
    """E20, E21."""
    x, y = batch()
    with pytest.raises(ValueError, match="model must return a tensor of logits .*got a tuple"):
        evaluate.accuracy(TupleModel(), x, y)
    with pytest.raises(ValueError, match="x is torch.float32 but the model's parameters are torch.float64"):
        evaluate.accuracy(mlp().double(), x, y)
    assert 0 <= evaluate.accuracy(mlp().double(), x.double(), y) <= 1  # matching dtypes still work


@pytest.mark.parametrize("bad, message", [
    (lambda m, x, y: x[1:], r"attack 'short' returned images of shape \((\d+), 1, 4, 4\) for a batch of shape \((?!\1)\d+, 1, 4, 4\)"),
    (lambda m, x, y: x * float("nan"), "attack 'short' returned images with NaN"),
    (lambda m, x, y: x.double(), "attack 'short' returned torch.float64 images for torch.float32 inputs"),
])
def test_robustness_names_an_attack_that_returns_bad_images(bad, message):
    """E16, E17, E18."""
    m, (x, y) = mlp(), batch()
    with pytest.raises(ValueError, match=message):
        evaluate.robustness(m, x, y, {"short": bad})


def test_accuracy_counts_must_be_whole_numbers():
    """E06: Accuracy(2.7, 3) was truncated to 2/3."""
    with pytest.raises(ValueError, match="correct must be a whole number >= 0, got 2.7"):
        evaluate.Accuracy(2.7, 3)
    with pytest.raises(ValueError, match="n must be a whole number"):
        evaluate.Accuracy(1, -2)
    with pytest.raises(ValueError, match="correct must be at most n=3"):
        evaluate.Accuracy(4, 3)
    assert evaluate.Accuracy(2.0, 4) == 0.5 and evaluate.Accuracy(torch.tensor(3), 4).correct == 3


def test_eps_sweep_needs_a_non_empty_list():
    """E09, E12."""
    m, (x, y) = mlp(), batch()
    with pytest.raises(ValueError, match="eps_values must be a non-empty list"):
        evaluate.eps_sweep(m, x, y, [])
    with pytest.raises(ValueError, match="eps_values must be a non-empty list of numbers, e.g."):
        evaluate.eps_sweep(m, x, y, 0.1)
    with pytest.raises(ValueError, match="eps_values must be a finite number >= 0"):
        evaluate.eps_sweep(m, x, y, [0.1, -1])
    assert list(evaluate.eps_sweep(m, x, y, [0.0, 0.1], attack="fgsm")["eps"]) == [0.0, 0.1]


@pytest.mark.parametrize("eps", [-0.1, float("nan"), float("inf")])
def test_autoattack_refuses_a_bad_eps(eps):
    """E32, E33: autoattack ran at eps=-0.1 or nan and reported a robust accuracy."""
    with pytest.raises(ValueError, match="eps must be a finite number >= 0"):
        evaluate.autoattack(mlp(), *batch(8), eps=eps)


def test_autoattack_refuses_too_few_classes_for_dlr():
    """E29, E30: DLR reads the 3rd and 4th largest logits; torchattacks failed with an IndexError."""
    for classes, targets in [(2, 1), (3, 2)]:
        x, y = batch(8, classes)
        with pytest.raises(ValueError, match=f"num_classes must be at least 4 for version='fast'.*got {classes}"):
            evaluate.autoattack(mlp(classes), x, y, eps=0.1, num_classes=classes, n_target_classes=targets, steps=2)


def test_autoattack_num_classes_must_match_the_model():
    """E31: the default num_classes=10 on a 5-class model failed inside torchattacks."""
    x, y = batch(8, 5)
    with pytest.raises(ValueError, match="num_classes must be the model's number of outputs, 5, for APGD-CE; got num_classes=10"):
        evaluate.autoattack(mlp(5), x, y, eps=0.1, steps=2)
    report = evaluate.autoattack(mlp(5), x, y, eps=0.1, steps=2, num_classes=5, n_target_classes=4)
    assert 0 <= report.worst <= 1


def test_mmd2_refuses_nan():
    """E38."""
    a, b = torch.randn(5, 2), torch.randn(6, 2)
    a[0, 0] = float("nan")
    with pytest.raises(ValueError, match="x contains NaN"):
        evaluate.mmd2(a, b)
    with pytest.raises(ValueError, match="y contains NaN"):
        evaluate.mmd2(b, a)


# ------------------------------------------------------------------------------- fast, large_eps
def test_gradient_alignment_refuses_nan_pixels():
    """F18: a NaN pixel gave NaN cosines silently."""
    x, y = batch()
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="x contains NaN"):
        fast.gradient_alignment(mlp(), x, y, 0.1)


def test_apart_names_a_shape_change_of_its_stored_starts():
    """F10: one APARTAdversary(n_examples=...) reused on inputs of another shape failed deep."""
    adv = adversaries.APART(0.1, n_examples=10)
    x, y = batch(4)
    adv(mlp(), x, y, 0.0, index=torch.arange(4))
    flat = nn.Sequential(nn.Linear(8, 10))
    with pytest.raises(ValueError, match=r"x must have the image shape .* \(1, 4, 4\), got \(8,\)"):
        adv(flat, torch.rand(4, 8), y, 0.1, index=torch.arange(4))


def test_staircase_refuses_progress_outside_training():
    """L04: negative progress gave a negative eps."""
    eps_at = adversaries.staircase(0.4, 4)
    assert eps_at(0.0) == pytest.approx(0.1) and eps_at(1.0) == pytest.approx(0.4)
    for p in (-0.1, -3, 1.5, float("nan")):
        with pytest.raises(ValueError, match="progress must be the share of training done, in \\[0, 1\\]"):
            eps_at(p)


def test_thresholds_are_named_when_bad():
    """L08, L13."""
    with pytest.raises(ValueError, match="threshold must be a number in \\(0, 1\\), got 'x'"):
        large_eps.BinarizedClassifier(mlp(), threshold="x")
    x, _ = batch()
    with pytest.raises(ValueError, match="threshold must be in \\(0, 1\\), got 1.5"):
        large_eps.flippable_fraction(x, 0.1, threshold=1.5)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="x contains NaN"):
        large_eps.flippable_fraction(x, 0.1)


# ----------------------------------------------------------------------------------------- fit
@pytest.mark.parametrize("grad_clip", [0, -1, float("nan"), "big"])
def test_fit_refuses_a_grad_clip_that_is_not_positive(grad_clip):
    """O10: grad_clip=-1 did gradient ascent and grad_clip=0 froze training, both silently."""
    m = mlp()
    before = [p.detach().clone() for p in m.parameters()]
    with pytest.raises(ValueError, match="grad_clip must be"):
        train.fit(m, batch(), epochs=1, batch_size=8, grad_clip=grad_clip, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, m.parameters()))
