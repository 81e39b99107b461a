"""Properties every attack must have, for every norm; agreement with torchattacks."""
import functools

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings, strategies as st

from advlib import attacks

NORMS = ["inf", 2]


def run(kind, model, x, y, **kw):
    if kind == "fgsm":
        kw.pop("steps", None), kw.pop("restarts", None), kw.pop("alpha", None)
        return attacks.fgsm(model, x, y, **kw)
    return attacks.pgd(model, x, y, **kw)


def dist(x_adv, x, norm):
    d = (x_adv - x).flatten(1)
    return d.abs().max(1).values if norm == "inf" else d.norm(dim=1)


@pytest.mark.parametrize("kind", ["fgsm", "pgd"])
@pytest.mark.parametrize("norm", NORMS)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(eps=st.floats(0.0, 2.0), seed=st.integers(0, 10_000), targeted=st.booleans())
def test_inside_ball_and_box(tiny, batch,  # the fixtures are only read here
                              kind, norm, eps, seed, targeted):
    x, y = batch
    torch.manual_seed(seed)
    x_adv = run(kind, tiny, x, y, eps=eps, norm=norm, steps=3, targeted=targeted)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert (dist(x_adv, x, norm) <= eps + 1e-5).all()
    assert not x_adv.requires_grad and x_adv.grad_fn is None


@pytest.mark.parametrize("norm", NORMS)
def test_fgsm_linf_moves_every_free_pixel_by_eps(tiny, batch, norm):
    x, y = batch
    x = x * 0.5 + 0.25  # stay away from the box so no clipping happens
    x_adv = attacks.fgsm(tiny, x, y, eps=0.1, norm=norm)
    d = dist(x_adv, x, norm)
    assert torch.allclose(d, torch.full_like(d, 0.1), atol=1e-5)


@pytest.mark.parametrize("kind", ["fgsm", "pgd"])
@pytest.mark.parametrize("norm", NORMS)
def test_mode_and_parameter_grads_untouched(tiny, batch, kind, norm, assert_leaves_model_untouched):
    x, y = batch
    assert_leaves_model_untouched(tiny, lambda: run(kind, tiny, x, y, eps=0.1, norm=norm, steps=2, restarts=2))


def test_attack_runs_model_in_eval_mode(tiny, batch):
    seen = []
    hook = tiny.body[5].register_forward_hook(lambda m, i, o: seen.append(m.training))
    tiny.train()
    attacks.pgd(tiny, *batch, eps=0.1, steps=2)
    hook.remove()
    assert seen and not any(seen)
    assert tiny.training


@pytest.mark.parametrize("norm", NORMS)
def test_pgd_eps_zero_is_clean(tiny, batch, norm):
    x, y = batch
    x_adv = attacks.pgd(tiny, x, y, eps=0.0, steps=5, norm=norm, restarts=3)
    assert torch.equal(x_adv, x)


@pytest.mark.parametrize("norm", NORMS)
def test_restarts_never_weaker_than_one_start(tiny, batch, norm):
    x, y = batch
    eps = 0.05 if norm == "inf" else 0.5
    kw = dict(eps=eps, steps=3, norm=norm, random_start=True)
    one = attacks.pgd(tiny, x, y, generator=torch.Generator().manual_seed(3), **kw)
    many = attacks.pgd(tiny, x, y, restarts=4, generator=torch.Generator().manual_seed(3), **kw)
    with torch.no_grad():
        wrong_one = tiny(one).argmax(1) != y
        wrong_many = tiny(many).argmax(1) != y
        loss_one = F.cross_entropy(tiny(one), y, reduction="none")
        loss_many = F.cross_entropy(tiny(many), y, reduction="none")
    assert (wrong_many | ~wrong_one).all()  # every example fooled by one start stays fooled
    still_right = ~wrong_many
    assert (loss_many[still_right] >= loss_one[still_right] - 1e-5).all()


@pytest.mark.parametrize("kind", ["fgsm", "pgd"])
@pytest.mark.parametrize("norm", NORMS)
def test_targeted_lowers_target_loss(tiny, batch, kind, norm):
    x, y = batch
    target = (y + 1) % 10
    x_adv = run(kind, tiny, x, target, eps=0.1 if norm == "inf" else 1.0, norm=norm, steps=10, targeted=True)
    with torch.no_grad():
        before = F.cross_entropy(tiny(x), target)
        after = F.cross_entropy(tiny(x_adv), target)
    assert after < before


def test_untargeted_pgd_raises_loss(tiny, batch):
    x, y = batch
    x_adv = attacks.pgd(tiny, x, y, eps=0.1, steps=10)
    with torch.no_grad():
        assert F.cross_entropy(tiny(x_adv), y) > F.cross_entropy(tiny(x), y)


def test_custom_loss_is_maximised(tiny, batch):
    x, y = batch
    target = (y + 3) % 10
    loss_fn = lambda logits, _: F.cross_entropy(logits, y, reduction="none") - F.cross_entropy(logits, target, reduction="none")
    x_adv = attacks.pgd(tiny, x, y, eps=0.1, steps=10, loss_fn=loss_fn, random_start=False)
    with torch.no_grad():
        assert loss_fn(tiny(x_adv), y).mean() > loss_fn(tiny(x), y).mean()


# ---------------------------------------------------------------- agreement with torchattacks
# Compared in float64: in float32 the two implementations differ by rounding (sum vs mean loss, where the
# small constants of the divisions sit), and after ~10 steps a ReLU or max-pool tie can send one example
# of 16 down another path (seen: 4.7e-3 on one example of PGD-L2). In float64 they agree to ~1e-8.
torchattacks = pytest.importorskip("torchattacks")


@pytest.fixture
def tiny64(tiny):
    return tiny.double()


@pytest.fixture
def batch64(batch):
    return batch[0].double(), batch[1]


def test_fgsm_matches_torchattacks(tiny64, batch64):
    x, y = batch64
    ours = attacks.fgsm(tiny64, x, y, eps=8 / 255)
    theirs = torchattacks.FGSM(tiny64, eps=8 / 255)(x, y)
    assert (ours - theirs).abs().max().item() <= 1e-5


def test_pgd_linf_matches_torchattacks(tiny64, batch64):
    x, y = batch64
    ours = attacks.pgd(tiny64, x, y, eps=0.1, alpha=0.01, steps=10, random_start=False, select="last")
    theirs = torchattacks.PGD(tiny64, eps=0.1, alpha=0.01, steps=10, random_start=False)(x, y)
    assert (ours - theirs).abs().max().item() <= 1e-5


def test_pgd_l2_matches_torchattacks(tiny64, batch64):
    x, y = batch64
    ours = attacks.pgd(tiny64, x, y, eps=1.0, alpha=0.2, steps=10, norm=2, random_start=False, select="last")
    theirs = torchattacks.PGDL2(tiny64, eps=1.0, alpha=0.2, steps=10, random_start=False)(x, y)
    assert (ours - theirs).abs().max().item() <= 1e-5


def test_targeted_pgd_matches_torchattacks(tiny64, batch64):
    x, y = batch64
    target = (y + 1) % 10
    ours = attacks.pgd(tiny64, x, target, eps=0.1, alpha=0.01, steps=10, random_start=False, targeted=True,
                       select="last")
    atk = torchattacks.PGD(tiny64, eps=0.1, alpha=0.01, steps=10, random_start=False)
    atk.set_mode_targeted_by_label(quiet=True)
    theirs = atk(x, target)
    assert (ours - theirs).abs().max().item() <= 1e-5


# --------------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("kind", ["fgsm", "pgd"])
@pytest.mark.parametrize("bad, name", [
    (dict(eps=-0.1), "eps"),
    (dict(eps=float("nan")), "eps"),
    (dict(norm="l1"), "norm"),
    (dict(norm=3), "norm"),
])
def test_bad_arguments_name_themselves(tiny, batch, kind, bad, name):
    kw = dict(eps=0.1)
    kw.update(bad)
    with pytest.raises(ValueError, match=name):
        run(kind, tiny, *batch, **kw)


@pytest.mark.parametrize("bad, name", [
    (dict(steps=-1), "steps"), (dict(steps=2.5), "steps"), (dict(restarts=0), "restarts"),
    (dict(alpha=0.0), "alpha"), (dict(alpha=-1.0), "alpha"),
])
def test_bad_pgd_arguments(tiny, batch, bad, name):
    with pytest.raises(ValueError, match=name):
        attacks.pgd(tiny, *batch, eps=0.1, **bad)


@pytest.mark.parametrize("kind", ["fgsm", "pgd"])
def test_bad_inputs(tiny, batch, kind):
    x, y = batch
    f = functools.partial(run, kind, tiny, eps=0.1)
    with pytest.raises(ValueError, match=r"x must lie in \[0"):
        f(x * 2, y)
    with pytest.raises(ValueError, match="x must be a floating"):
        f((x * 255).to(torch.uint8), y)
    with pytest.raises(ValueError, match="x must have a batch"):
        f(torch.rand(12), y)
    with pytest.raises(ValueError, match="y must have shape"):
        f(x, y[:3])
    with pytest.raises(ValueError, match="y must hold integer"):
        f(x, y.float())
    with pytest.raises(ValueError, match="y must hold class indices"):
        f(x, y - 20)
    with pytest.raises(ValueError, match=r"y must hold class indices in \[0, 9\]"):
        f(x, y + 10)
    with pytest.raises(ValueError, match="model must be"):
        run(kind, "not a model", x, y, eps=0.1)


@pytest.mark.parametrize("norm, eps, alpha, cls", [("inf", 0.1, 0.03, "PGD"), (2, 1.0, 0.4, "PGDL2")])
def test_pgd_matches_torchattacks_float32_few_steps(tiny, batch, norm, eps, alpha, cls):
    """In float32, over a few steps (before a rounding difference can cross a ReLU kink)."""
    x, y = batch
    ours = attacks.pgd(tiny, x, y, eps=eps, alpha=alpha, steps=3, norm=norm, random_start=False,
                       select="last")
    theirs = getattr(torchattacks, cls)(tiny, eps=eps, alpha=alpha, steps=3, random_start=False)(x, y)
    assert (ours - theirs).abs().max().item() <= 1e-5


@pytest.mark.parametrize("norm", NORMS)
def test_pgd_cpu_kernels_run_channels_last_and_agree(tiny, batch, norm):
    """``cpu_kernels="auto"`` runs the convolutions on channels-last copies of the weights (seen by a
    hook on the first convolution's output) and finds the same adversarial examples as the plain path."""
    x, y = batch
    seen = []
    hook = tiny.body[0].register_forward_hook(
        lambda m, i, o: seen.append(o.is_contiguous(memory_format=torch.channels_last) and not o.is_contiguous()))
    kw = dict(eps=0.1, steps=5, norm=norm, generator=torch.Generator().manual_seed(3))
    try:
        plain = attacks.pgd(tiny, x, y, cpu_kernels=False, **kw)
        plain_layout, seen[:] = list(seen), []
        kw["generator"] = torch.Generator().manual_seed(3)
        fast = attacks.pgd(tiny, x, y, **kw)
    finally:
        hook.remove()
    assert plain_layout and not any(plain_layout), "cpu_kernels=False must run the model as it comes"
    assert seen and all(seen), "cpu_kernels='auto' must run the convolutions channels-last on the CPU"
    # the same iterates up to float32 rounding; a rounding difference may tip a near-tie between two
    # iterates' losses (best-iterate selection) or a ReLU kink in an odd example
    same = ((plain - fast).flatten(1).abs().amax(1) <= 1e-5).float().mean().item()
    assert same >= 0.9, f"only {same:.0%} of the examples agree"
    assert all(p.is_contiguous() for p in tiny.parameters()), "the model's own weights keep their layout"


def test_pgd_cpu_kernels_auto_leaves_float64_alone(tiny, batch):
    seen = []
    model = tiny.double()
    hook = model.body[0].register_forward_hook(
        lambda m, i, o: seen.append(o.is_contiguous(memory_format=torch.channels_last) and not o.is_contiguous()))
    try:
        attacks.pgd(model, batch[0].double(), batch[1], eps=0.1, steps=2)
    finally:
        hook.remove()
    assert seen and not any(seen)


def test_bad_cpu_kernels(tiny, batch):
    with pytest.raises(ValueError, match="cpu_kernels must be 'auto', True or False"):
        attacks.pgd(tiny, *batch, eps=0.1, cpu_kernels="yes")


def test_pgd_scores_the_last_iterate_only_when_it_must():
    """Best-iterate PGD scores its last iterate with one forward pass (no backward); select="last"
    with one restart has nothing to compare it with, so it runs exactly one forward per step."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3)).eval()
    calls = []
    model.register_forward_hook(lambda m, i, o: calls.append(1))
    x, y = torch.rand(5, 1, 4, 4), torch.randint(0, 3, (5,))
    for select, restarts, expected in [("last", 1, 4), ("best", 1, 5), ("last", 2, None)]:
        calls.clear()
        attacks.pgd(model, x, y, eps=0.1, steps=4, select=select, restarts=restarts,
                    generator=torch.Generator().manual_seed(0))
        if expected is not None:
            assert len(calls) == expected, (select, restarts, len(calls))
        else:  # with restarts, each restart's last iterate is scored to pick the best
            assert len(calls) in (5, 10), len(calls)
