"""advlib.stats against known values and against the formulas written out by hand: Wilson intervals,
the exact McNemar test, Newcombe's paired interval, the cluster bootstrap and the t interval over seeds."""
import math
import statistics

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from advlib import evaluate, stats
from advlib.stats import clustered_interval, paired_comparison, seed_mean, wilson_interval


# ------------------------------------------------------------------------------- reference formulas
def reference_wilson(correct, n, confidence=0.95):
    """The Wilson score interval written out: centre +- half, divided by 1 + z^2/n."""
    z = statistics.NormalDist().inv_cdf(0.5 + confidence / 2)
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    low = 0.0 if correct == 0 else max(0.0, centre - half)
    high = 1.0 if correct == n else min(1.0, centre + half)
    return low, high


def reference_newcombe(n11, n10, n01, n00, confidence=0.95):
    """Newcombe's (1998) method 10 for the paired difference, from the counts, with reference_wilson."""
    n = n11 + n10 + n01 + n00
    p1, p2 = (n11 + n10) / n, (n11 + n01) / n
    l1, u1 = reference_wilson(n11 + n10, n, confidence)
    l2, u2 = reference_wilson(n11 + n01, n, confidence)
    A = n11 * n00 - n10 * n01
    if A > n / 2:
        C = A - n / 2
    elif A >= 0:
        C = 0.0
    else:
        C = A
    margins = (n11 + n10) * (n01 + n00) * (n11 + n01) * (n10 + n00)
    phi = 0.0 if margins == 0 else C / math.sqrt(margins)
    d = p1 - p2
    low = d - math.sqrt((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2)
    return max(-1.0, low), min(1.0, high)


def masks(n11, n10, n01, n00, shuffle_seed=None):
    """Two boolean masks over the same points with the given paired counts."""
    a = np.array([True] * n11 + [True] * n10 + [False] * n01 + [False] * n00)
    b = np.array([True] * n11 + [False] * n10 + [True] * n01 + [False] * n00)
    if shuffle_seed is not None:
        perm = np.random.default_rng(shuffle_seed).permutation(a.size)
        a, b = a[perm], b[perm]
    return a, b


# ------------------------------------------------------------------------------------------ Wilson
def test_wilson_from_scipy_equals_the_formula_on_a_grid():
    grid = [(k, n) for n in range(1, 61) for k in range(n + 1)]
    grid += [(k, n) for n in (100, 999, 1000, 10_000, 123_457, 10**6, 10**9)
             for k in (0, 1, 2, n // 3, n // 2, n - 2, n - 1, n)]
    worst = 0.0
    for confidence in (0.95, 0.9, 0.99):
        for k, n in grid if confidence == 0.95 else [(k, n) for k, n in grid if n <= 20 or n >= 100]:
            got, want = wilson_interval(k, n, confidence), reference_wilson(k, n, confidence)
            worst = max(worst, abs(got[0] - want[0]), abs(got[1] - want[1]))
    assert worst <= 1e-12, worst


def test_an_accuracy_carries_the_stats_wilson_interval():
    """One Wilson interval in the library (stats): evaluate.Accuracy uses it and has no copy of its own."""
    assert not hasattr(evaluate, "wilson_interval")
    for k, n in [(0, 1), (3, 7), (50, 100), (910, 1000), (1000, 1000)]:
        acc = evaluate.Accuracy(k, n)
        assert (acc.low, acc.high) == wilson_interval(k, n)


def test_wilson_known_values():
    z2 = 1.959963984540054 ** 2
    assert wilson_interval(0, 10) == pytest.approx((0.0, z2 / (10 + z2)), abs=1e-12)
    assert wilson_interval(10, 10) == pytest.approx((10 / (10 + z2), 1.0), abs=1e-12)
    assert wilson_interval(50, 100) == pytest.approx((0.40383, 0.59617), abs=1e-5)


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 100000), frac=st.floats(0, 1))
def test_wilson_contains_the_estimate_and_shrinks(n, frac):
    k = round(frac * n)
    lo, hi = wilson_interval(k, n)
    assert 0.0 <= lo <= k / n <= hi <= 1.0
    lo4, hi4 = wilson_interval(4 * k, 4 * n)
    assert hi4 - lo4 < hi - lo


def test_wilson_bad_input():
    for args, name in [((5, 0), "n"), ((6, 5), "correct"), ((-1, 5), "correct"), ((1.5, 5), "correct"),
                       ((True, 5), "correct"), ((1, 5, 1.0), "confidence"), ((1, 5, 0), "confidence"),
                       ((1, 5, "high"), "confidence")]:
        with pytest.raises(ValueError, match=name):
            wilson_interval(*args)


# ------------------------------------------------------------------------------- paired comparison
def test_mcnemar_exact_known_value():
    a, b = masks(20, 1, 9, 5)
    cmp = paired_comparison(a, b)
    assert (cmp.a_only, cmp.b_only, cmp.n) == (1, 9, 35)
    assert cmp.p_value == pytest.approx(0.021484375, abs=1e-15)  # 2 * P(Bin(10, 1/2) <= 1) = 2 * 11 / 1024
    assert paired_comparison(b, a).p_value == pytest.approx(0.021484375, abs=1e-15)


@pytest.mark.parametrize("n10,n01", [(0, 1), (3, 3), (2, 7), (14, 45), (0, 20), (12, 0)])
def test_mcnemar_equals_the_binomial_sum(n10, n01):
    m = n10 + n01
    tail = sum(math.comb(m, i) for i in range(min(n10, n01) + 1)) / 2 ** m
    want = min(1.0, 2 * tail) if n10 != n01 else 1.0
    assert paired_comparison(*masks(30, n10, n01, 11)).p_value == pytest.approx(want, rel=1e-12)


def test_no_discordant_points():
    a = np.array([True] * 70 + [False] * 30)
    cmp = paired_comparison(a, a.copy())
    assert cmp.p_value == 1.0 and cmp.diff == 0.0 and (cmp.a_only, cmp.b_only) == (0, 0)
    lo, hi = wilson_interval(70, 100)  # the two agree everywhere: far narrower than either accuracy's interval
    assert cmp.low < 0.0 < cmp.high and cmp.high - cmp.low < 0.3 * (hi - lo)
    assert (cmp.low, cmp.high) == pytest.approx((-cmp.high, -cmp.low), abs=1e-12)
    assert cmp.acc_a == cmp.acc_b == 0.7
    every = paired_comparison(np.ones(50, bool), np.ones(50, bool))  # empty margins: phi = 0
    assert every.diff == 0.0 and every.low < 0.0 < every.high and every.p_value == 1.0


def test_newcombe_published_example():
    """Cavo et al. (2012), the paired example of Fagerland, Lydersen and Laake, *Statistical Analysis
    of Contingency Tables* (2017), chapter 8: table [[59, 6], [16, 80]], Newcombe's square-and-add
    interval -0.0621 (95% CI -0.1186 to -0.0046)."""
    cmp = paired_comparison(*masks(59, 6, 16, 80))
    assert round(cmp.diff, 4) == -0.0621
    assert (round(cmp.low, 4), round(cmp.high, 4)) == (-0.1186, -0.0046)


@pytest.mark.parametrize("counts", [(59, 6, 16, 80), (1, 1, 7, 12), (8, 5, 4, 9), (0, 3, 0, 7), (36, 12, 2, 0),
                                    (500, 45, 14, 441), (0, 0, 0, 10), (10, 0, 0, 0), (0, 10, 0, 0), (0, 5, 5, 0),
                                    (3, 0, 0, 4), (400, 0, 1, 99)])
@pytest.mark.parametrize("confidence", [0.95, 0.9])
def test_newcombe_equals_the_formula(counts, confidence):
    cmp = paired_comparison(*masks(*counts, shuffle_seed=1), confidence=confidence)
    n11, n10, n01, n00 = counts
    n = sum(counts)
    assert cmp.n == n and cmp.acc_a == pytest.approx((n11 + n10) / n) and cmp.acc_b == pytest.approx((n11 + n01) / n)
    assert cmp.diff == pytest.approx((n10 - n01) / n, abs=1e-15)
    assert (cmp.low, cmp.high) == pytest.approx(reference_newcombe(*counts, confidence), abs=1e-12)
    assert -1.0 <= cmp.low <= cmp.diff <= cmp.high <= 1.0


def test_paired_interval_properties():
    rng = np.random.default_rng(0)
    for _ in range(60):
        n = int(rng.integers(1, 300))
        a, b = rng.random(n) < rng.random(), rng.random(n) < rng.random()
        cmp, flipped = paired_comparison(a, b), paired_comparison(b, a)
        assert -1.0 <= cmp.low <= cmp.diff <= cmp.high <= 1.0
        assert (flipped.low, flipped.high) == pytest.approx((-cmp.high, -cmp.low), abs=1e-12)
        assert flipped.p_value == pytest.approx(cmp.p_value, rel=1e-12)
        wide = paired_comparison(a, b, confidence=0.99)
        assert wide.low <= cmp.low and cmp.high <= wide.high


def test_pairing_narrows_the_interval():
    """Two models that agree on most points: the paired interval is far narrower than the two
    separate Wilson intervals would suggest."""
    cmp = paired_comparison(*masks(500, 45, 14, 441))
    (la, ua), (lb, ub) = wilson_interval(545, 1000), wilson_interval(514, 1000)
    assert cmp.high - cmp.low < 0.5 * math.hypot(ua - la, ub - lb)
    assert cmp.low > 0 and cmp.p_value < 0.001


def test_paired_comparison_takes_tensors_and_reads_well():
    a, b = masks(500, 45, 14, 441)
    from_tensors = paired_comparison(torch.from_numpy(a), torch.from_numpy(b).int())
    assert from_tensors == paired_comparison(a, b)
    text = str(from_tensors)
    assert text.startswith("A - B = +3.1 points [") and "McNemar exact p = " in text
    assert text.endswith("n = 1000 (A only 45, B only 14)")
    assert "p = 0.021" in str(paired_comparison(*masks(20, 1, 9, 5)))
    with pytest.raises(Exception):
        from_tensors.diff = 0.0  # frozen


def test_paired_comparison_bad_input():
    a = np.ones(5, bool)
    for args, kwargs, name in [((a, np.ones(4, bool)), {}, "a and b"), ((np.zeros(0, bool), np.zeros(0, bool)), {}, "a"),
                               ((np.full(5, 0.5), a), {}, "a"), ((a, np.array(list("abcde"))), {}, "b"),
                               ((a, np.ones((5, 1), bool)), {}, "b"), ((a, a), {"confidence": 95}, "confidence")]:
        with pytest.raises(ValueError, match=name):
            paired_comparison(*args, **kwargs)


# ------------------------------------------------------------------------------ clustered interval
def test_identical_copies_widen_the_interval_by_sqrt_k():
    """60 sources, 9 identical copies each: only 60 independent results, so the cluster bootstrap is
    about sqrt(9) = 3 times wider than a Wilson interval that counts 540 examples."""
    per_source = np.arange(60) < 36
    values, clusters = np.repeat(per_source, 9), np.repeat(np.arange(60), 9)
    ci = clustered_interval(values, clusters)
    lo, hi = wilson_interval(int(values.sum()), values.size)
    assert ci.mean == pytest.approx(0.6) and (ci.n_examples, ci.n_clusters) == (540, 60)
    assert ci.low < 0.6 < ci.high
    assert 2.6 < (ci.high - ci.low) / (hi - lo) < 3.4
    lo60, hi60 = wilson_interval(36, 60)  # ... and about as wide as the Wilson interval of the 60 sources
    assert (ci.high - ci.low) / (hi60 - lo60) == pytest.approx(1.0, abs=0.15)


def test_one_example_per_source_is_close_to_wilson():
    values = np.random.default_rng(3).random(540) < 0.6
    ci = clustered_interval(values, np.arange(540))
    lo, hi = wilson_interval(int(values.sum()), 540)
    assert ci.low == pytest.approx(lo, abs=0.01) and ci.high == pytest.approx(hi, abs=0.01)
    assert (ci.high - ci.low) / (hi - lo) == pytest.approx(1.0, abs=0.1)


def test_clustered_interval_pools_unequal_sources_and_is_seeded():
    values = torch.tensor([1.0, 0.0, 0.0, 2.0, 2.0, 2.0, 5.0])
    clusters = ["x", "x", "y", "z", "z", "z", "w"]
    ci = clustered_interval(values, clusters, n_resamples=500, seed=7)
    assert ci.mean == pytest.approx(12 / 7) and (ci.n_examples, ci.n_clusters) == (7, 4)
    assert ci == clustered_interval(values, clusters, n_resamples=500, seed=7)
    assert 0.0 <= ci.low <= ci.mean <= ci.high <= 5.0
    flat = clustered_interval(np.full(20, 0.25), np.arange(20) // 4)
    assert (flat.mean, flat.low, flat.high) == pytest.approx((0.25, 0.25, 0.25))
    assert str(ci).endswith("n = 7 examples from 4 sources")


def test_clustered_interval_bad_input():
    v, c = np.ones(6), np.arange(6) // 2
    for args, kwargs, name in [((v, c[:5]), {}, "clusters"), ((v, np.zeros(6)), {}, "clusters"),
                               ((np.array([1.0, np.nan, 0, 0, 0, 0]), c), {}, "values"),
                               ((np.array(list("abcdef")), c), {}, "values"), ((v, c), {"confidence": 0}, "confidence"),
                               ((v, c), {"n_resamples": 10}, "n_resamples"), ((v, c), {"seed": -1}, "seed")]:
        with pytest.raises(ValueError, match=name):
            clustered_interval(*args, **kwargs)


# ------------------------------------------------------------------------------------- over seeds
def test_seed_mean_known_values():
    m = seed_mean([1, 2, 3, 4, 5])  # sd = sqrt(2.5), t(0.975, 4) = 2.776445
    half = 2.7764451051977987 * math.sqrt(2.5) / math.sqrt(5)
    assert (m.mean, m.n, m.sd) == (3.0, 5, pytest.approx(math.sqrt(2.5), abs=1e-12))
    assert (m.low, m.high) == pytest.approx((3 - half, 3 + half), abs=1e-9)
    assert (m.low, m.high) == pytest.approx((1.036757, 4.963243), abs=1e-6)
    two = seed_mean(torch.tensor([0.90, 0.92], dtype=torch.float64))  # t(0.975, 1) = 12.7062; sd / sqrt(2) = 0.01
    assert (two.low, two.high) == pytest.approx((0.91 - 0.127062, 0.91 + 0.127062), abs=1e-6)
    ninety = seed_mean(np.array([1, 2, 3, 4, 5]), confidence=0.9)  # t(0.95, 4) = 2.131847
    assert ninety.high == pytest.approx(3 + 2.131847 * math.sqrt(0.5), abs=1e-6)
    assert seed_mean([0.5, 0.5, 0.5]) == stats.SeedMean(mean=0.5, low=0.5, high=0.5, n=3, sd=0.0)
    assert str(m) == "3.000 [1.037, 4.963], sd 1.581 over 5 seeds"


def test_seed_mean_bad_input():
    for args, name in [(([0.9],), "values"), (([],), "values"), (([0.9, float("inf")],), "values"),
                       ((["a", "b"],), "values"), (([[1, 2], [3, 4]],), "values"), (([1, 2], 1.5), "confidence")]:
        with pytest.raises(ValueError, match=name):
            seed_mean(*args)
