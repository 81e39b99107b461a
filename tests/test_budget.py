import pytest

from advlib import budget


def test_pick_follows_env(monkeypatch):
    monkeypatch.setenv("ADVLIB_BUDGET", "smoke")
    cfg = budget.pick(smoke=dict(n=1), book=dict(n=2), paper=dict(n=3))
    assert cfg.n == 1 and cfg.budget == "smoke"
    monkeypatch.delenv("ADVLIB_BUDGET")
    assert budget.pick(smoke=dict(n=1), book=dict(n=2)).n == 2  # book is the default


def test_bad_budgets(monkeypatch):
    monkeypatch.setenv("ADVLIB_BUDGET", "huge")
    with pytest.raises(ValueError, match="ADVLIB_BUDGET"):
        budget.current()
    monkeypatch.setenv("ADVLIB_BUDGET", "paper")
    with pytest.raises(ValueError, match="paper"):
        budget.pick(smoke={}, book={})
    with pytest.raises(ValueError, match="unknown budget"):
        budget.pick(smoke={}, fast={})
    with pytest.raises(AttributeError, match="no key"):
        budget.pick(book=dict(a=1), budget="book").b
