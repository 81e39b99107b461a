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


# ------------------------------------------------------------------ chapter settings (advlib.settings)
def test_every_chapter_settings_module_lists_the_same_settings_at_every_budget():
    import json
    from pathlib import Path

    names = budget.chapter_names()
    assert "targeted_attacks" in names
    notebooks = "".join(p.read_text() for p in (Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
    for name in names:
        configs = [budget.chapter(name, b) for b in budget.BUDGETS]
        assert len({frozenset(c) for c in configs}) == 1, name
        assert [c.budget for c in configs] == list(budget.BUDGETS)
        assert json.dumps(f'budget.chapter("{name}")')[1:-1] in notebooks, f"no chapter loads advlib.settings.{name}"
        table = budget.chapter_table(name)
        assert list(table.columns) == list(budget.BUDGETS) and len(table) == len(configs[0]) - 1


def test_chapter_settings_errors_name_the_argument(monkeypatch):
    import sys
    import types

    with pytest.raises(ValueError, match=r"chapter must be one of \['fgsm', 'gan', 'preliminaries', 'targeted_attacks'\]"):
        budget.chapter("pig")
    with pytest.raises(ValueError, match="budget must be one of"):
        budget.chapter("targeted_attacks", "huge")
    fake = types.ModuleType("advlib.settings.uneven")
    fake.SETTINGS = dict(a=(1, 2, 3), b=(2, 3))
    monkeypatch.setitem(sys.modules, "advlib.settings.uneven", fake)
    monkeypatch.setattr(budget, "chapter_names", lambda: ["uneven"])
    with pytest.raises(ValueError, match=r"one value per budget .* not so: \['b'\]"):
        budget.chapter("uneven")
    fake.SETTINGS = dict(a=(1, 2, 3), b=(2, 3, 4))
    assert budget.chapter("uneven", "book") == dict(a=2, b=3, budget="book")
    del fake.SETTINGS
    with pytest.raises(ValueError, match="must define SETTINGS"):
        budget.chapter("uneven")
