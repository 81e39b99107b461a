"""Honest robust evaluation: intervals, right clean AND under every attack, best iterates, restarts on
the survivors only, early stopping, and the independent AutoAttack-style evaluation."""
import functools
import pickle

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from advlib import adversaries, attacks, evaluate
from advlib.evaluate import Accuracy


# ----------------------------------------------------------------------------------- intervals
def test_accuracy_is_a_float_that_carries_n_and_interval():
    acc = Accuracy(910, 1000)
    assert acc == 0.91 and isinstance(acc, float) and f"{acc:.2f}" == "0.91" and 100 * acc == 91.0
    assert acc.n == 1000 and acc.correct == 910 and acc.low < 0.91 < acc.high
    assert str(acc) == f"91.0% [{100 * acc.low:.1f}, {100 * acc.high:.1f}], n=1000"
    again = pickle.loads(pickle.dumps(acc))
    assert again == acc and again.n == 1000 and again.interval == acc.interval
    assert Accuracy.of(torch.tensor([True, False, True, True])) == 0.75


# ------------------------------------------------------------------- right clean AND under attacks
class Fixed(nn.Module):
    """Predicts class 0 for images whose mean is < 0.5 and class 1 otherwise."""

    def forward(self, x):
        m = x.flatten(1).mean(1, keepdim=True)
        return torch.cat([0.5 - m, m - 0.5], dim=1) * 10


def test_an_example_wrong_clean_is_never_robust():
    model = Fixed()
    x = torch.cat([torch.full((4, 1, 4, 4), 0.2), torch.full((4, 1, 4, 4), 0.8)])
    y = torch.tensor([0, 0, 1, 1, 1, 1, 0, 0])  # examples 2, 3, 6, 7 are wrong clean
    flip = lambda m, xb, yb: 1 - xb  # an "attack" that moves every image to the other class
    # the accuracy on the adversarial examples alone would be 4/8 (the four wrong-clean ones become right)
    assert evaluate.accuracy(model, evaluate.adversarial_examples(model, x, y, flip), y) == 0.5
    assert evaluate.robust_accuracy(model, x, y, flip) == 0.0
    keep = lambda m, xb, yb: xb  # an attack that does nothing: robust = clean
    rep = evaluate.robustness(model, x, y, {"nothing": keep, "flip": flip})
    assert rep.table["accuracy"].tolist() == [0.5, 0.5, 0.0]
    assert rep.worst.n == 8 and rep.mask.sum() == 0
    assert torch.equal(rep.masks["nothing"], torch.tensor([1, 1, 0, 0, 1, 1, 0, 0], dtype=torch.bool))


def test_examples_wrong_clean_are_not_attacked():
    model = Fixed()
    x = torch.cat([torch.full((3, 1, 4, 4), 0.2), torch.full((5, 1, 4, 4), 0.8)])
    y = torch.zeros(8, dtype=torch.long)  # only the first three are right clean
    seen = []

    def spy(m, xb, yb):
        seen.append(xb.shape[0])
        return xb

    evaluate.robust_accuracy(model, x, y, [spy, spy])
    assert seen == [3, 3]


def _float64(model):
    import copy
    return copy.deepcopy(model).double().eval()


def test_worst_case_over_attacks_is_the_and_of_each(tiny, batch):
    model = _float64(tiny)
    x, y = batch[0].double(), batch[1]
    atks = {"fgsm": functools.partial(attacks.fgsm, eps=0.05),
            "pgd": functools.partial(attacks.pgd, eps=0.05, steps=5, random_start=False)}
    alone = [evaluate.robust_mask(model, x, y, a) for a in atks.values()]
    assert torch.equal(evaluate.robust_mask(model, x, y, atks), alone[0] & alone[1])


# ------------------------------------------------------------------------------- PGD's best iterate
def reference_pgd(model, x, y, *, eps, alpha, steps, restarts, generator):
    """The earlier advlib PGD: each restart's last iterate, the best of them (success, then loss)."""
    best_x, best_score = x.clone(), None
    for _ in range(restarts):
        delta = attacks.random_delta(x, eps, "inf", generator)
        delta = (x + delta).clamp(0, 1) - x
        for _ in range(steps):
            grad, _ = attacks.input_gradient(model, x + delta, y, lambda z, t: F.cross_entropy(z, t, reduction="none"))
            delta = (delta + alpha * grad.sign()).clamp(-eps, eps)
            delta = (x + delta).clamp(0, 1) - x
        x_adv = x + delta
        with torch.no_grad():
            logits = model(x_adv)
            score = F.cross_entropy(logits, y, reduction="none") + 1e6 * (logits.argmax(1) != y).double()
        if best_score is None:
            best_x, best_score = x_adv, score
        else:
            better = score > best_score
            best_x = torch.where(better.view(-1, 1, 1, 1), x_adv, best_x)
            best_score = torch.maximum(best_score, score)
    return best_x


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pgd_is_never_weaker_than_before(tiny, seed):
    model = _float64(tiny)
    g = torch.Generator().manual_seed(seed)
    x, y = torch.rand(64, 1, 12, 12, generator=g).double(), torch.randint(0, 10, (64,), generator=g)
    y = torch.where(torch.rand(64, generator=g) < 0.7, model(x).argmax(1), y)  # mostly right clean
    kw = dict(eps=0.03, alpha=0.01, steps=6)
    old = reference_pgd(model, x, y, restarts=3, generator=torch.Generator().manual_seed(seed), **kw)
    new = attacks.pgd(model, x, y, restarts=3, generator=torch.Generator().manual_seed(seed), **kw)
    with torch.no_grad():
        fooled_old, fooled_new = model(old).argmax(1) != y, model(new).argmax(1) != y
        loss_old = F.cross_entropy(model(old), y, reduction="none")
        loss_new = F.cross_entropy(model(new), y, reduction="none")
    assert (fooled_new | ~fooled_old).all(), "an example the old PGD fooled must stay fooled"
    assert fooled_new.sum() >= fooled_old.sum()
    both_right = ~fooled_new & ~fooled_old
    assert (loss_new[both_right] >= loss_old[both_right] - 1e-9).all(), "the best iterate's loss is at least the last's"
    assert ((new - x).abs().amax((1, 2, 3)) <= 0.03 + 1e-12).all() and new.min() >= 0 and new.max() <= 1


def test_best_iterate_beats_last_iterate_when_the_last_overshoots():
    # a 1-D problem where large steps jump back and forth over a narrow wrong-class region
    class Bump(nn.Module):
        def forward(self, x):
            v = x.flatten(1)[:, :1]
            wrong = torch.exp(-((v - 0.56) / 0.02) ** 2) * 20  # class 1 only near 0.56
            return torch.cat([torch.zeros_like(v) + 1.0, wrong], dim=1)

    model = Bump()
    x, y = torch.full((1, 1), 0.5), torch.tensor([0])
    # iterates 0.50 -> 0.55 (inside the bump: fooled) -> 0.60 (the ball's edge, past the bump: not fooled)
    last = attacks.pgd(model, x, y, eps=0.1, alpha=0.05, steps=2, random_start=False, select="last")
    best = attacks.pgd(model, x, y, eps=0.1, alpha=0.05, steps=2, random_start=False)
    with torch.no_grad():
        assert model(best).argmax(1).item() == 1, "the best iterate sits in the wrong-class bump"
        assert model(last).argmax(1).item() == 0


def test_restarts_attack_only_the_survivors(tiny, batch):
    x, y = batch
    sizes = []
    hook = tiny.register_forward_hook(lambda m, i, o: sizes.append(o.shape[0]))
    x_adv = attacks.pgd(tiny, x, y, eps=0.05, steps=2, restarts=3, generator=torch.Generator().manual_seed(0))
    hook.remove()
    # restart 1: 2 gradient passes + 1 final forward on all 16; later restarts on fewer
    assert sizes[:3] == [16, 16, 16]
    with torch.no_grad():
        still_right = (tiny(x_adv).argmax(1) == y).sum().item()
    assert all(s < 16 for s in sizes[3:]) and (not sizes[3:] or sizes[-1] >= still_right)


def test_early_stop_finds_the_same_examples(tiny, batch):
    model = _float64(tiny)
    x, y = batch[0].double(), batch[1]
    kw = dict(eps=0.05, alpha=0.01, steps=20, restarts=2)
    a = attacks.pgd(model, x, y, generator=torch.Generator().manual_seed(0), **kw)
    b = attacks.pgd(model, x, y, generator=torch.Generator().manual_seed(0), early_stop=True, **kw)
    with torch.no_grad():
        assert torch.equal(model(a).argmax(1) != y, model(b).argmax(1) != y)


def test_pgd_select_is_checked(tiny, batch):
    with pytest.raises(ValueError, match="select"):
        attacks.pgd(tiny, *batch, eps=0.1, select="first")


# ------------------------------------------------------------------------ independent evaluation
def test_autoattack_reports_each_attack_and_the_worst_case(tiny, batch, assert_leaves_model_untouched):
    x, y = batch
    with torch.no_grad():
        y = tiny.eval()(x).argmax(1)  # all right clean
    rep = evaluate.autoattack(tiny, x, y, eps=0.05, steps=5)
    assert list(rep.table.index) == ["clean", "+ APGD-CE", "+ APGD-T (DLR)"]
    acc = rep.table["accuracy"].tolist()
    assert acc[0] == 1.0 and acc[0] >= acc[1] >= acc[2] and rep.worst == acc[2]
    assert set(rep.table.columns) == {"accuracy", "n", "ci_low", "ci_high"}
    # the attacks' own examples stay in the ball: robust under them means the mask must agree
    assert_leaves_model_untouched(tiny, lambda: evaluate.autoattack(tiny, x, y, eps=0.05, steps=3))


def test_autoattack_at_least_as_strong_as_fgsm(tiny, batch):
    x, y = batch
    with torch.no_grad():
        y = tiny.eval()(x).argmax(1)
    fgsm_mask = evaluate.robust_mask(tiny, x, y, functools.partial(attacks.fgsm, eps=0.05))
    aa_mask = evaluate.autoattack(tiny, x, y, eps=0.05, steps=10).mask
    assert aa_mask.sum() <= fgsm_mask.sum()


def test_autoattack_bad_arguments():
    with pytest.raises(ValueError, match="version"):
        evaluate.autoattack_attacks(0.1, version="plus")
    with pytest.raises(ValueError, match="n_target_classes"):
        evaluate.autoattack_attacks(0.1, n_target_classes=10, num_classes=10)
    with pytest.raises(ValueError, match="norm"):
        evaluate.autoattack_attacks(0.1, norm="l1")


def test_robustness_bad_attacks(tiny, batch):
    with pytest.raises(ValueError, match="attacks must be"):
        evaluate.robustness(tiny, *batch, [])
    with pytest.raises(ValueError, match="attacks must be"):
        evaluate.robustness(tiny, *batch, {"a": "not callable"})


def test_eps_sweep_carries_intervals(tiny, batch):
    sweep = evaluate.eps_sweep(tiny, *batch, [0.0, 0.1], attack="fgsm")
    assert list(sweep.columns) == ["eps", "accuracy", "n", "ci_low", "ci_high"]
    assert (sweep.n == 16).all() and (sweep.ci_low <= sweep.accuracy).all() and (sweep.accuracy <= sweep.ci_high).all()


# ------------------------------------------------------------------------------- bf16 attacks
def test_bf16_attack_is_as_strong_as_fp32_on_a_robust_model():
    """bf16 autocast must not weaken an evaluation unnoticed: on a PGD-trained model, robust accuracy
    under the attack run in bf16 is within 0.5 points of the float32 attack on the same images."""
    from conftest import shared_data_root
    from advlib import data, models, train

    root = shared_data_root()
    if root is None:
        pytest.skip("needs MNIST (set ADVLIB_DATA)")
    torch.manual_seed(0)
    model = models.mlp_classifier([256, 256])
    train.fit(model, data.mnist(train=True, root=root).subset(6000, seed=0), epochs=3, batch_size=100,
              adversary=adversaries.pgd(0.1, steps=3), amp=False, progress=False)
    x, y = data.mnist(train=False, root=root).subset(1000, seed=1).tensors()
    pgd20 = functools.partial(attacks.pgd, eps=0.1, steps=20, restarts=1, generator=torch.Generator().manual_seed(0))
    fp32 = evaluate.robust_accuracy(model, x, y, pgd20, amp=False)
    pgd20 = functools.partial(attacks.pgd, eps=0.1, steps=20, restarts=1, generator=torch.Generator().manual_seed(0))
    bf16 = evaluate.robust_accuracy(model, x, y, pgd20, amp=True)
    clean = evaluate.accuracy(model, x, y)
    assert clean - fp32 > 0.05 and fp32 > 0.3, f"the check needs a model that is partly robust: {clean}, {fp32}"
    assert abs(bf16 - fp32) <= 0.005, f"bf16 attack {bf16} vs fp32 attack {fp32}"
