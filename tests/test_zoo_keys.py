"""Recipes' cache keys do not move (a moved key orphans every cached model), and ``seed=`` trains
another run under another key while ``seed=None`` keeps the recipe's own."""
import json

import pytest

from cache_keys import CALLS, RECORD, record_keys


def test_every_recipe_keeps_its_recorded_cache_keys_at_every_budget():
    recorded = json.loads(RECORD.read_text())
    now = record_keys()
    assert set(now) == set(recorded)
    moved = {label: (recorded[label], now[label]) for label in now if now[label] != recorded[label]}
    assert not moved, f"cache keys moved (cached models would be retrained): {moved}"


@pytest.mark.parametrize("label, fn, args, kwargs", [c for c in CALLS if "seed" not in c[3]], ids=lambda v: str(v)[:30])
def test_seed_none_keeps_the_key_and_another_seed_moves_it(label, fn, args, kwargs):
    (default,) = [record_keys([(label, fn, args, kwargs)])[label]]
    assert record_keys([(label, fn, args, {**kwargs, "seed": None})])[label] == default
    other = record_keys([(label, fn, args, {**kwargs, "seed": 7})])[label]
    for budget, keys in other.items():
        if not keys[0].startswith("ValueError"):
            assert keys[-1] != default[budget][-1], (label, budget)
