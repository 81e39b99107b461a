r"""Statistics for honest comparisons: intervals for an accuracy, for the difference between two models
measured on the same test points, for examples that share a source, and for a mean over seeds.
Everything is computed with ``scipy.stats``; the formulas are written out here so that each
number in the book can be checked by hand.

**One accuracy.** ``k`` right out of ``n`` has the Wilson score interval (:func:`wilson_interval`),

.. math:: \frac{\hat p + \frac{z^2}{2n} \pm z\sqrt{\frac{\hat p(1-\hat p)}{n} + \frac{z^2}{4n^2}}}{1 + \frac{z^2}{n}},
          \qquad \hat p = k / n, \quad z = \Phi^{-1}\!\left(\tfrac{1 + \text{confidence}}{2}\right),

which stays inside [0, 1] and is sensible at 0% and 100%.

**Two models on the same points** (:func:`paired_comparison`). Their per-example results form a
paired 2 x 2 table: :math:`n_{11}` points both get right, :math:`n_{10}` only A, :math:`n_{01}` only B,
:math:`n_{00}` neither. Only the discordant points say which model is better: under "A and B are
equally good" each of the :math:`n_{10} + n_{01}` discordant points is A's with probability 1/2, so
the exact McNemar test is the two-sided binomial test of :math:`n_{10}` out of
:math:`n_{10} + n_{01}` at :math:`p = 1/2`. The difference
:math:`\hat D = \hat p_A - \hat p_B = (n_{10} - n_{01}) / n` gets Newcombe's (1998) hybrid score
interval for paired data (his method 10): with Wilson intervals :math:`(l_A, u_A)`,
:math:`(l_B, u_B)` for the two accuracies and their estimated correlation :math:`\hat\phi`,

.. math:: \Bigl[\hat D - \sqrt{(\hat p_A - l_A)^2 - 2\hat\phi(\hat p_A - l_A)(u_B - \hat p_B) + (u_B - \hat p_B)^2},\;
          \hat D + \sqrt{(u_A - \hat p_A)^2 - 2\hat\phi(u_A - \hat p_A)(\hat p_B - l_B) + (\hat p_B - l_B)^2}\Bigr].

Two models are evaluated on the same points, so their results are correlated and the paired
interval is much narrower than two separate intervals would suggest.

**Several examples per source** (:func:`clustered_interval`). Examples made from one source image
(augmented copies, several attack targets) are not independent, and an interval that counts each of
them as a fresh draw is too narrow. The percentile bootstrap resamples whole sources: each resample
draws :math:`m` of the :math:`m` sources with replacement and takes the mean over all of their
examples; the interval is the central ``confidence`` share of those means.

**Over seeds** (:func:`seed_mean`). The mean of :math:`n \ge 2` runs :math:`x_1, \dots, x_n` has the
Student-t interval

.. math:: \bar x \pm t_{n-1,\,(1 + \text{confidence})/2} \, \frac{s}{\sqrt n}, \qquad
          s^2 = \frac{1}{n - 1} \sum_i (x_i - \bar x)^2.

Taught in chapter 07 (comparing models and settings honestly).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import stats as _scipy_stats

from .utils import check_int

__all__ = ["wilson_interval", "PairedComparison", "paired_comparison", "ClusteredInterval",
           "clustered_interval", "SeedMean", "seed_mean"]


# ----------------------------------------------------------------------------------------- helpers
def _check_confidence(confidence: float) -> float:
    """``float(confidence)`` if it lies strictly between 0 and 1, else ``ValueError``."""
    try:
        inside = not isinstance(confidence, bool) and 0.0 < float(confidence) < 1.0
    except (TypeError, ValueError):
        inside = False
    if not inside:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    return float(confidence)


def _as_1d(values, name: str) -> np.ndarray:
    """``values`` (a tensor, an array or a sequence) as a non-empty 1-D numpy array."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    try:
        arr = np.asarray(values)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a 1-D tensor or array, got {type(values).__name__}") from None
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D tensor or array, got shape {arr.shape}")
    return arr


def _as_mask(values, name: str) -> np.ndarray:
    """``values`` as a 1-D bool array; accepts bools, or numbers that are all 0 or 1."""
    arr = _as_1d(values, name)
    if arr.dtype == bool:
        return arr
    if arr.dtype.kind in "iuf" and np.isin(arr, (0, 1)).all():
        return arr.astype(bool)
    raise ValueError(f"{name} must be a boolean mask (True/False or 0/1 per example), got dtype {arr.dtype}")


def _as_numbers(values, name: str) -> np.ndarray:
    """``values`` as a 1-D float64 array of finite numbers (bools count as 0 and 1)."""
    arr = _as_1d(values, name)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold numbers or bools, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must hold finite numbers, got NaN or infinite values")
    return arr


# ------------------------------------------------------------------------------------ one accuracy
def wilson_interval(correct: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    r"""The Wilson score interval ``(low, high)`` for the proportion ``correct / n`` at
    ``confidence`` (default 95%), from ``scipy.stats.binomtest``:

    .. math:: \frac{\hat p + \frac{z^2}{2n} \pm z\sqrt{\frac{\hat p(1-\hat p)}{n} + \frac{z^2}{4n^2}}}{1 + \frac{z^2}{n}},
              \qquad z = \Phi^{-1}\!\left(\tfrac{1 + \text{confidence}}{2}\right),

    with ``low = 0`` at ``correct = 0`` and ``high = 1`` at ``correct = n``. Unlike the normal
    approximation it stays inside [0, 1] and is sensible at 0% and 100%. ``correct`` must be an
    integer in ``0..n``, ``n`` an integer >= 1 and ``confidence`` in (0, 1); anything else raises
    ``ValueError``.
    """
    correct, n = check_int(correct, "correct"), check_int(n, "n", minimum=1)
    if correct > n:
        raise ValueError(f"correct must be at most n={n}, got {correct}")
    confidence = _check_confidence(confidence)
    ci = _scipy_stats.binomtest(correct, n).proportion_ci(confidence_level=confidence, method="wilson")
    return max(0.0, float(ci.low)), min(1.0, float(ci.high))


# ---------------------------------------------------------------------------- two models, paired
@dataclass(frozen=True)
class PairedComparison:
    """What :func:`paired_comparison` found for models A and B on the same ``n`` test points:
    the accuracies ``acc_a`` and ``acc_b``, their difference ``diff = acc_a - acc_b`` with its
    Newcombe interval ``low``, ``high`` at ``confidence``, the discordant counts ``a_only`` (A right,
    B wrong) and ``b_only`` (A wrong, B right), and ``p_value``, the exact McNemar test of "A and B
    are equally accurate". ``str(cmp)`` reads
    ``"A - B = +3.1 points [1.2, 5.0], McNemar exact p = 0.002, n = 1000 (A only 45, B only 14)"``.
    """

    n: int
    acc_a: float
    acc_b: float
    diff: float
    low: float
    high: float
    a_only: int
    b_only: int
    p_value: float
    confidence: float = 0.95

    def __str__(self) -> str:
        p = f"{self.p_value:.3f}" if self.p_value >= 0.001 else f"{self.p_value:.1e}"
        level = "" if self.confidence == 0.95 else f" ({100 * self.confidence:g}% interval)"
        return (f"A - B = {100 * self.diff:+.1f} points [{100 * self.low:.1f}, {100 * self.high:.1f}]{level}, "
                f"McNemar exact p = {p}, n = {self.n} (A only {self.a_only}, B only {self.b_only})")


def paired_comparison(a, b, confidence: float = 0.95) -> PairedComparison:
    r"""Compare two models (or two settings) on the same test points from their per-example results
    ``a`` and ``b``: boolean masks (tensors or arrays, ``True`` = right, e.g. right under attack) of
    one length, entry ``i`` of both for the same point. Returns a :class:`PairedComparison`.

    With :math:`n_{11}` points both right, :math:`n_{10}` only A right, :math:`n_{01}` only B right
    and :math:`n_{00}` neither, the accuracies are :math:`\hat p_A = (n_{11} + n_{10}) / n` and
    :math:`\hat p_B = (n_{11} + n_{01}) / n`, and their difference is
    :math:`\hat D = (n_{10} - n_{01}) / n`.

    The exact McNemar p-value is the two-sided binomial test (``scipy.stats.binomtest``) of
    :math:`n_{10}` successes in :math:`n_{10} + n_{01}` trials at :math:`p = 1/2`; it is 1 when there
    is no discordant point.

    The interval for :math:`\hat D` is Newcombe's (1998) hybrid score interval for paired data
    (method 10). Take the Wilson intervals :math:`(l_A, u_A)` and :math:`(l_B, u_B)` of the two
    accuracies and the correlation

    .. math:: \hat\phi = \frac{C}{\sqrt{(n_{11} + n_{10})(n_{01} + n_{00})(n_{11} + n_{01})(n_{10} + n_{00})}},
              \qquad C = \begin{cases} A - n/2 & A > n/2 \\ 0 & 0 \le A \le n/2 \\ A & A < 0 \end{cases},
              \qquad A = n_{11} n_{00} - n_{10} n_{01}

    (:math:`\hat\phi = 0` when a margin is empty). Then

    .. math:: L = \hat D - \sqrt{(\hat p_A - l_A)^2 - 2\hat\phi(\hat p_A - l_A)(u_B - \hat p_B) + (u_B - \hat p_B)^2},

    .. math:: U = \hat D + \sqrt{(u_A - \hat p_A)^2 - 2\hat\phi(u_A - \hat p_A)(\hat p_B - l_B) + (\hat p_B - l_B)^2},

    kept inside [-1, 1]. The interval contains :math:`\hat D`, and it is narrow when the two models
    agree on most points.

    Newcombe, R. G. (1998). Improved confidence intervals for the difference between binomial
    proportions based on paired data. Statistics in Medicine 17, 2201-2212.

    ``a`` and ``b`` must be non-empty 1-D masks of one length (bools, or numbers that are all 0 or 1)
    and ``confidence`` in (0, 1); anything else raises ``ValueError``.
    """
    a, b = _as_mask(a, "a"), _as_mask(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same length (the same test points), got {a.size} and {b.size}")
    confidence = _check_confidence(confidence)
    n = int(a.size)
    n11, n10 = int((a & b).sum()), int((a & ~b).sum())
    n01, n00 = int((~a & b).sum()), int((~a & ~b).sum())
    discordant = n10 + n01
    p_value = float(_scipy_stats.binomtest(n10, discordant, 0.5).pvalue) if discordant else 1.0

    pa, pb = (n11 + n10) / n, (n11 + n01) / n
    la, ua = wilson_interval(n11 + n10, n, confidence)
    lb, ub = wilson_interval(n11 + n01, n, confidence)
    margins = (n11 + n10) * (n01 + n00) * (n11 + n01) * (n10 + n00)
    cross = n11 * n00 - n10 * n01
    if cross > n / 2:
        cross -= n / 2
    elif cross >= 0:
        cross = 0
    phi = cross / math.sqrt(margins) if margins else 0.0
    diff = (n10 - n01) / n
    down = math.sqrt(max(0.0, (pa - la) ** 2 - 2 * phi * (pa - la) * (ub - pb) + (ub - pb) ** 2))
    up = math.sqrt(max(0.0, (ua - pa) ** 2 - 2 * phi * (ua - pa) * (pb - lb) + (pb - lb) ** 2))
    return PairedComparison(n=n, acc_a=pa, acc_b=pb, diff=diff, low=max(-1.0, diff - down),
                            high=min(1.0, diff + up), a_only=n10, b_only=n01, p_value=p_value,
                            confidence=confidence)


# ------------------------------------------------------------------------ several examples a source
@dataclass(frozen=True)
class _Estimate:
    """A ``mean`` and its interval ``low``, ``high`` at ``confidence`` (keyword-only, default 0.95)."""

    mean: float
    low: float
    high: float
    confidence: float = field(default=0.95, kw_only=True)

    def _text(self) -> str:
        """``"0.600 [0.483, 0.717]"``, with the level when it is not 95%."""
        level = "" if self.confidence == 0.95 else f" ({100 * self.confidence:g}% interval)"
        return f"{self.mean:.3f} [{self.low:.3f}, {self.high:.3f}]{level}"


@dataclass(frozen=True)
class ClusteredInterval(_Estimate):
    """What :func:`clustered_interval` found: the ``mean`` over ``n_examples`` examples from
    ``n_clusters`` sources, and its bootstrap interval ``low``, ``high`` at ``confidence``.
    ``str(ci)`` reads ``"0.600 [0.483, 0.717], n = 540 examples from 60 sources"``.
    """

    n_examples: int
    n_clusters: int

    def __str__(self) -> str:
        return f"{self._text()}, n = {self.n_examples} examples from {self.n_clusters} sources"


def clustered_interval(values, clusters, confidence: float = 0.95, n_resamples: int = 2000,
                       seed: int = 0) -> ClusteredInterval:
    r"""The mean of per-example ``values`` (bools such as "right under attack", or numbers) when
    several examples share a source, with a percentile bootstrap interval that resamples whole
    sources. ``clusters`` gives each example's source id (ints or strings, one per value). Returns a
    :class:`ClusteredInterval`.

    With sources :math:`j = 1, \dots, m` holding :math:`n_j` examples whose values add up to
    :math:`s_j`, the estimate is the pooled mean :math:`\bar x = \sum_j s_j / \sum_j n_j`. Each of the
    ``n_resamples`` resamples draws :math:`m` sources :math:`j_1, \dots, j_m` with replacement and
    takes the pooled mean :math:`\sum_k s_{j_k} / \sum_k n_{j_k}` over all their examples; the
    interval runs from the :math:`(1 - \text{confidence})/2` to the :math:`(1 + \text{confidence})/2`
    quantile of those means (``scipy.stats.bootstrap``, percentile method, seeded by ``seed``).

    When each source holds :math:`k` identical copies, the data hold only :math:`m` independent
    results and the interval is about :math:`\sqrt k` times wider than one that counts all
    :math:`mk` examples as independent; with one example per source it is close to the Wilson
    interval.

    ``values`` must be a non-empty 1-D tensor or array of finite numbers or bools, ``clusters`` a
    1-D tensor or array of the same length with at least 2 distinct ids, ``confidence`` in (0, 1),
    ``n_resamples`` an integer >= 100 and ``seed`` an integer >= 0; anything else raises
    ``ValueError``.
    """
    values = _as_numbers(values, "values")
    clusters = _as_1d(clusters, "clusters")
    if clusters.size != values.size:
        raise ValueError(f"clusters must give one source id per value ({values.size}), got {clusters.size}")
    confidence = _check_confidence(confidence)
    n_resamples = check_int(n_resamples, "n_resamples", minimum=100)
    seed = check_int(seed, "seed")
    _, which = np.unique(clusters, return_inverse=True)
    which = which.reshape(-1)
    sizes = np.bincount(which).astype(np.float64)
    sums = np.bincount(which, weights=values)
    m = sizes.size
    if m < 2:
        raise ValueError(f"clusters must hold at least 2 distinct source ids, got {m}")

    def pooled_mean(idx: np.ndarray, axis: int = -1) -> np.ndarray:
        return sums[idx].sum(axis=axis) / sizes[idx].sum(axis=axis)

    res = _scipy_stats.bootstrap((np.arange(m),), pooled_mean, n_resamples=n_resamples, vectorized=True,
                                 confidence_level=confidence, method="percentile",
                                 batch=max(1, 4_000_000 // m), rng=np.random.default_rng(seed))
    mean = float(sums.sum() / sizes.sum())
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return ClusteredInterval(mean=mean, low=low, high=high, n_examples=int(values.size),
                             n_clusters=int(m), confidence=confidence)


# ---------------------------------------------------------------------------------------- over seeds
@dataclass(frozen=True)
class SeedMean(_Estimate):
    """What :func:`seed_mean` found: the ``mean`` of ``n`` runs, their standard deviation ``sd``
    (with :math:`n - 1` in the denominator) and the Student-t interval ``low``, ``high`` at
    ``confidence``. ``str(m)`` reads ``"0.912 [0.901, 0.923], sd 0.004 over 5 seeds"``.
    """

    n: int
    sd: float

    def __str__(self) -> str:
        return f"{self._text()}, sd {self.sd:.3f} over {self.n} seeds"


def seed_mean(values, confidence: float = 0.95) -> SeedMean:
    r"""The mean of one result over several seeds (one value per run) with a Student-t interval,
    from ``scipy.stats.t``:

    .. math:: \bar x \pm t_{n-1,\,(1 + \text{confidence})/2} \, \frac{s}{\sqrt n}, \qquad
              s^2 = \frac{1}{n - 1} \sum_{i=1}^n (x_i - \bar x)^2.

    It treats the runs as independent draws from a roughly normal distribution; with few seeds the
    t quantile is large (12.7 for 2 seeds, 2.78 for 5, at 95%), so a handful of seeds gives a wide
    interval. Returns a :class:`SeedMean`.

    ``values`` must be a 1-D tensor, array or sequence of at least 2 finite numbers and
    ``confidence`` in (0, 1); anything else raises ``ValueError``.
    """
    values = _as_numbers(values, "values")
    if values.size < 2:
        raise ValueError(f"values must hold at least 2 runs (one per seed), got {values.size}")
    confidence = _check_confidence(confidence)
    n = int(values.size)
    mean, sd = float(values.mean()), float(values.std(ddof=1))
    half = float(_scipy_stats.t.ppf(0.5 + confidence / 2, df=n - 1)) * sd / math.sqrt(n)
    return SeedMean(mean=mean, low=mean - half, high=mean + half, n=n, sd=sd, confidence=confidence)
