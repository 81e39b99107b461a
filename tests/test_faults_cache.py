"""Faults of the model cache: an unwritable folder, a corrupt checkpoint, inexact or unsafe keys."""
import tempfile
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from advlib import cache


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVLIB_CACHE", str(tmp_path / "models"))
    return tmp_path / "models"


def small():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


def set_weights(model):
    with torch.no_grad():
        model[0].weight.fill_(0.25)
    return {"loss": [1.0]}


def test_unwritable_cache_folder_fails_before_training(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("ADVLIB_CACHE", str(blocker / "models"))  # cannot be created, even by root
    calls = []
    with pytest.raises(PermissionError, match="ADVLIB_CACHE") as err:
        cache.load_or_train("toy", small, lambda m: calls.append(1), {}, "smoke", device="cpu", verbose=False)
    assert calls == [], "the model was trained although it could not be cached"
    assert str(blocker / "models") in str(err.value)


def test_a_failed_save_keeps_the_trained_model(cache_in_tmp, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    real_save = cache.save

    def save(model, path, meta=None):
        if cache_in_tmp in path.parents:
            raise PermissionError(13, "Permission denied", str(path) + ".tmp")
        return real_save(model, path, meta)

    monkeypatch.setattr(cache, "save", save)
    with pytest.warns(RuntimeWarning, match="saved at .*advlib-unsaved") as record:
        model = cache.load_or_train("toy", small, set_weights, {}, "smoke", device="cpu", verbose=False)
    assert torch.equal(model[0].weight, torch.full_like(model[0].weight, 0.25))
    assert model.meta["history"] == {"loss": [1.0]}
    fallback = tmp_path / "tmp" / "advlib-unsaved" / cache.path_for("toy", {}, "smoke").name
    assert str(fallback) in str(record[0].message) and "ADVLIB_CACHE" in str(record[0].message)
    other = small()
    cache.load(other, fallback)
    assert torch.equal(other[0].weight, model[0].weight)


def test_a_flipped_byte_in_a_checkpoint_is_detected(cache_in_tmp):
    model = small()
    with torch.no_grad():
        model[0].weight.copy_(torch.arange(12, dtype=torch.float32).view(3, 4) + 0.5)
    path = cache.save(model, cache_in_tmp / "m.pt", {"note": "x"})
    raw = bytearray(path.read_bytes())
    at = bytes(raw).find(model[0].weight.detach().numpy().tobytes())
    assert at > 0
    raw[at + 5] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(cache.CheckpointError, match="checksum") as err:
        cache.load(small(), path)
    assert str(path) in str(err.value)


def test_checkpoints_without_a_checksum_still_load(cache_in_tmp):
    model = small()
    cache_in_tmp.mkdir()
    torch.save({"state_dict": model.state_dict(), "meta": {"a": 1}}, cache_in_tmp / "old.pt")
    other = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    assert cache.load(other, cache_in_tmp / "old.pt") == {"a": 1}
    assert torch.equal(other[0].weight, model[0].weight)


def test_configs_that_differ_only_in_an_elided_tensor_middle_get_different_keys():
    a = torch.zeros(10_000)
    b = a.clone()
    b[5_000] = 1.0
    assert str(a) == str(b)  # what the old key hashed
    assert cache.key("m", {"w": a}, "book") != cache.key("m", {"w": b}, "book")
    assert cache.key("m", {"w": a}, "book") == cache.key("m", {"w": a.clone()}, "book")
    assert cache.key("m", {"w": a.numpy()}, "book") != cache.key("m", {"w": b.numpy()}, "book")
    assert cache.key("m", {"w": a}, "book") != cache.key("m", {"w": a.double()}, "book")


def test_json_configs_keep_their_keys():
    # the key of a plain JSON config is the SHA-256 of its sorted JSON, as before
    import hashlib
    import json

    cfg = {"lr": 1e-3, "hidden": [1200, 600], "amp": "auto", "warmup": None, "bn": True}
    digest = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:12]
    assert cache.key("m", cfg, "book") == f"m-book-{digest}"
    assert cache.key("m", {"n": np.int64(3)}, "book") == cache.key("m", {"n": 3}, "book")


def test_a_config_holding_a_function_or_object_is_refused():
    with pytest.raises(ValueError, match=r"config\['perturb'\] has type function"):
        cache.key("m", {"perturb": lambda m, x, y, p: x}, "book")
    with pytest.raises(ValueError, match=r"config\['opt'\]\[0\] has type object"):
        cache.key("m", {"opt": [object()]}, "book")
    with pytest.raises(ValueError, match="keys must be strings"):
        cache.key("m", {1: "a"}, "book")


@pytest.mark.parametrize("budget", ["../../escaped", "/tmp/x", "book/../..", "", "BOOK"])
def test_a_budget_string_cannot_escape_the_cache_folder(budget):
    with pytest.raises(ValueError, match="budget must be one of"):
        cache.path_for("m", {}, budget)


def test_a_config_holding_a_tensor_is_cached_and_found_again():
    cfg = {"mean": torch.tensor([0.5, 0.25]), "std": np.array([1.0, 2.0]), "n": np.int64(3)}
    calls = []

    def train(model):
        calls.append(1)
        return {"loss": torch.tensor([1.0, 0.5])}

    m1 = cache.load_or_train("toy", small, train, cfg, "smoke", device="cpu", verbose=False)
    m2 = cache.load_or_train("toy", small, train, dict(cfg), "smoke", device="cpu", verbose=False)
    assert calls == [1]
    assert m1.meta["config"] == m2.meta["config"] == {"mean": [0.5, 0.25], "std": [1.0, 2.0], "n": 3}
    assert m2.meta["history"] == {"loss": [1.0, 0.5]}
