"""The headline evaluation, its flags (each raised by a model built to raise it, and not by a plain
one) and the evaluation cache (a second call does no attack work; a changed setting does)."""
import functools

import pandas as pd
import pytest
import torch
from torch import nn

from advlib import attacks, evaluate, large_eps, worst_case


def mlp(classes=10, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, classes)).eval()


def trained_mlp(classes=10):
    """A small MLP fitted to a separable problem, so that many examples are right clean."""
    x, y = data(200, classes)
    m = mlp(classes)
    opt = torch.optim.Adam(m.parameters(), 1e-2)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(m(x), y).backward()
        opt.step()
    return m.eval()


def data(n=64, classes=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    x = torch.rand(n, 1, 8, 8, generator=g) * 0.5
    x[torch.arange(n), 0, y % 8, (y * 3) % 8] = 1.0  # one bright pixel tells the class
    return x, y


def flags_of(model, x, y, **kw):
    return worst_case.evaluation_flags(model, x, y, **kw).set_index("flag")


def raised(table):
    return set(table.index[table.raised])


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVLIB_CACHE", str(tmp_path))


# ---------------------------------------------------------------------------------------- flags
def test_a_plain_model_raises_no_flag():
    m, (x, y) = trained_mlp(), data()
    sweep = pd.DataFrame({"eps": [0.0, 0.1, 0.2], "accuracy": [0.9, 0.5, 0.1]})
    t = flags_of(m, x, y, sweep=sweep)
    assert raised(t) == set(), t
    assert t.loc["gradient-free finds", "detail"].startswith("not checked")


def test_a_softmax_model_raises_probability_outputs():
    m = nn.Sequential(mlp(), nn.Softmax(dim=1)).eval()
    assert raised(flags_of(m, *data())) == {"probability outputs"}


def test_dropout_in_train_mode_raises_non_determinism_and_train_mode_and_changes_nothing():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.Dropout(0.5), nn.BatchNorm1d(32), nn.Linear(32, 10)).train()
    bn = m[3]
    before = (bn.running_mean.clone(), int(bn.num_batches_tracked))
    state = torch.random.get_rng_state()
    t = flags_of(m, *data())
    assert raised(t) == {"non-deterministic forward", "model in train mode"}
    assert torch.equal(bn.running_mean, before[0]) and int(bn.num_batches_tracked) == before[1]
    assert all(mod.training for mod in m.modules())
    assert torch.equal(torch.random.get_rng_state(), state)


def test_a_thresholding_model_raises_zero_gradient_and_square_finds_what_pgd_missed():
    """The textbook masking case: the threshold has zero gradient, so gradient steps do nothing and
    Square, which needs no gradient, breaks examples the gradient attacks left right."""
    m = large_eps.BinarizedClassifier(trained_mlp(), threshold=0.75).eval()
    x, y = data()
    h = worst_case.headline(m, x, y, eps=0.3, budget="smoke", cache=False)
    t = h.flags.set_index("flag")
    assert {"zero input gradient", "gradient-free finds"} <= raised(t)
    assert t.loc["zero input gradient", "value"] == 1.0
    assert h.table.loc["+ Square", "broken here"] > 0  # (the random starts of PGD and APGD break some too)


def test_accuracy_rising_with_eps_is_raised():
    sweep = pd.DataFrame({"eps": [0.2, 0.0, 0.1], "accuracy": [0.4, 0.9, 0.3]})  # sorted by eps: 0.9, 0.3, 0.4
    t = flags_of(trained_mlp(), *data(), sweep=sweep)
    assert "accuracy rises with eps" in raised(t)
    assert t.loc["accuracy rises with eps", "value"] == pytest.approx(0.1)


def test_too_few_classes_for_dlr_is_raised_and_the_headline_still_runs():
    m, (x, y) = trained_mlp(3), data(classes=3)
    h = worst_case.headline(m, x, y, eps=0.1, budget="smoke", cache=False)
    assert "too few classes for DLR" in raised(h.flags.set_index("flag"))
    assert list(h.report.masks) == ["clean", "PGD-10 x 1", "APGD-CE", "Square"]


# ------------------------------------------------------------------------------------- headline
def test_headline_stages_are_cumulative_and_extra_masks_join_the_worst_case():
    m, (x, y) = trained_mlp(), data()
    h = worst_case.headline(m, x, y, eps=0.01, budget="smoke", cache=False)
    assert list(h.report.masks) == ["clean", "PGD-10 x 1", "APGD-CE", "APGD-T (DLR)", "Square"]
    accs = h.table.accuracy.to_numpy()
    assert all(a >= b for a, b in zip(accs, accs[1:]))
    assert h.table["broken here"].sum() == int(h.report.masks["clean"].sum() - h.mask.sum())
    # an extra attack that breaks one more robust example lowers the worst case by exactly one
    extra = torch.ones_like(h.mask)
    survivors = h.mask.nonzero().flatten()
    assert len(survivors) > 0
    extra[survivors[0]] = False
    h2 = worst_case.headline(m, x, y, eps=0.01, budget="smoke", cache=False, extra={"study": extra})
    assert h2.worst.correct == h.worst.correct - 1
    assert h2.table.loc["+ study", "broken here"] == 1
    with pytest.raises(ValueError, match="mask must be a bool tensor of shape"):
        h.report.merge("bad", extra.float())


def test_headline_refuses_a_bad_budget_and_eps():
    m, (x, y) = mlp(), data()
    with pytest.raises(ValueError, match="budget must be one of"):
        worst_case.headline(m, x, y, eps=0.1, budget="huge")
    with pytest.raises(ValueError, match="eps must be a finite number >= 0"):
        worst_case.headline(m, x, y, eps=-1)


# -------------------------------------------------------------------------------- evaluation cache
class CountingAttack:
    """An attack with a config that counts the examples it is asked to attack."""

    def __init__(self, eps):
        self.config, self.calls = {"eps": eps}, 0
        self.__name__ = "counting PGD"

    def __call__(self, model, x, y):
        self.calls += len(x)
        return attacks.pgd(model, x, y, eps=self.config["eps"], steps=3, random_start=False)


def test_the_second_call_is_loaded_and_a_changed_setting_runs_again(tmp_path):
    m, (x, y) = trained_mlp(), data()
    atk = CountingAttack(0.1)
    first = worst_case.cached_robustness(m, x, y, {"pgd": atk})
    n_attacked = atk.calls
    assert n_attacked > 0 and list((tmp_path / "evaluations").glob("robustness-*.pt"))
    second = worst_case.cached_robustness(m, x, y, {"pgd": atk})
    assert atk.calls == n_attacked  # no attack work
    assert torch.equal(first.mask, second.mask) and second.table.equals(first.table)
    # a changed attack setting, other weights, other data: each runs the attack again
    atk.config["eps"] = 0.2
    worst_case.cached_robustness(m, x, y, {"pgd": atk})
    assert atk.calls > n_attacked
    calls = atk.calls
    m2 = trained_mlp()
    with torch.no_grad():
        m2[1].bias.add_(1e-3)
    worst_case.cached_robustness(m2, x, y, {"pgd": atk})
    assert atk.calls > calls
    calls = atk.calls
    worst_case.cached_robustness(m, x[:-1], y[:-1], {"pgd": atk})
    assert atk.calls > calls


def test_partials_are_described_exactly_and_generators_by_their_state():
    g = torch.Generator().manual_seed(1)
    a = worst_case.describe_attack(functools.partial(attacks.pgd, eps=0.1, generator=g))
    assert a["function"] == "advlib.attacks.pgd"
    b = worst_case.describe_attack(functools.partial(attacks.pgd, eps=0.1, generator=torch.Generator().manual_seed(2)))
    assert a != b
    aa = evaluate.autoattack_attacks(0.1, steps=5)
    assert worst_case.describe_attack(aa["APGD-CE"])["config"]["steps"] == 5
    with pytest.raises(ValueError, match="cannot be described for the evaluation cache"):
        worst_case.describe_attack(lambda m, x, y: x)


def test_a_torn_stored_evaluation_is_evaluated_again(tmp_path, capsys):
    m, (x, y) = trained_mlp(), data()
    atk = CountingAttack(0.1)
    worst_case.cached_robustness(m, x, y, {"pgd": atk})
    (path,) = (tmp_path / "evaluations").glob("robustness-*.pt")
    path.write_bytes(path.read_bytes()[:20])
    calls = atk.calls
    worst_case.cached_robustness(m, x, y, {"pgd": atk})
    assert atk.calls > calls and "could not be read" in capsys.readouterr().out


# ------------------------------------------------------------------------------- evaluation subset
def test_one_evaluation_subset_per_dataset_nested_and_equal_to_chapter_07s():
    from advlib import data

    x, y = data.eval_subset("mnist", 200, device="cpu")
    x7, y7 = data.mnist(train=False).subset(200, seed=2018).tensors(device="cpu")
    assert torch.equal(x, x7) and torch.equal(y, y7)
    xs, ys = data.eval_subset("mnist", 50, device="cpu")
    assert torch.equal(xs, x[:50]) and torch.equal(ys, y[:50])
    with pytest.raises(ValueError, match="name must be one of"):
        data.eval_subset("svhn", 10)
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        data.eval_subset("mnist", 0)
