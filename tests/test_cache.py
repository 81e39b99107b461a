"""The trained-model cache: keys, atomic round trip, corrupt files."""
import pytest
import torch
from torch import nn

from advlib import cache


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVLIB_CACHE", str(tmp_path))
    return tmp_path


def small():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


def test_key_depends_on_name_budget_and_config():
    k = cache.key("m", {"a": 1, "b": 2}, "book")
    assert k == cache.key("m", {"b": 2, "a": 1}, "book")  # order-free
    assert k != cache.key("m", {"a": 1, "b": 3}, "book")
    assert k != cache.key("m", {"a": 1, "b": 2}, "smoke")
    assert k.startswith("m-book-")
    with pytest.raises(ValueError, match="name"):
        cache.key("bad/name", {}, "book")


def test_load_or_train_trains_once_then_loads(cache_in_tmp):
    calls = []

    def train(model):
        calls.append(1)
        with torch.no_grad():
            model[0].weight.fill_(0.5)
        return {"loss": [1.0, 0.5]}

    m1 = cache.load_or_train("toy", small, train, {"lr": 1}, "smoke", device="cpu", verbose=False)
    m2 = cache.load_or_train("toy", small, train, {"lr": 1}, "smoke", device="cpu", verbose=False)
    assert calls == [1]
    assert torch.equal(m2[0].weight, torch.full_like(m2[0].weight, 0.5))
    assert m2.meta["history"] == {"loss": [1.0, 0.5]} and m2.meta["budget"] == "smoke"
    assert not m2.training
    assert [p.name for p in cache_in_tmp.iterdir()] == [cache.path_for("toy", {"lr": 1}, "smoke").name]  # no temp files left
    cache.load_or_train("toy", small, train, {"lr": 2}, "smoke", device="cpu", verbose=False)
    assert calls == [1, 1]


def test_records_holding_accuracies_load_with_weights_only(cache_in_tmp):
    """A record beside the history may hold an evaluate.Accuracy (a float subclass); it is stored as a
    plain float, so that the file loads with weights_only (it did not: the class is no allowed global)."""
    from advlib.evaluate import Accuracy

    def train(model):
        return {"history": {"loss": [1.0], "bf16": [True]}, "probes": [{"step": 1, "acc": Accuracy(3, 4)}]}

    cache.load_or_train("toy", small, train, {"lr": 1}, "smoke", device="cpu", verbose=False)
    m = cache.load_or_train("toy", small, train, {"lr": 1}, "smoke", device="cpu", verbose=False)
    assert m.meta["probes"] == [{"step": 1, "acc": 0.75}] and type(m.meta["probes"][0]["acc"]) is float
    assert m.meta["history"]["bf16"] == [True] and type(m.meta["history"]["bf16"][0]) is bool


def test_corrupt_checkpoint_is_a_clear_error(cache_in_tmp):
    path = cache.path_for("toy", {}, "smoke")
    path.write_bytes(b"this is not a checkpoint")
    with pytest.raises(cache.CheckpointError, match="corrupt"):
        cache.load_or_train("toy", small, lambda m: None, {}, "smoke", device="cpu", verbose=False)
    good = cache_in_tmp / "good.pt"
    cache.save(small(), good)
    good.write_bytes(good.read_bytes()[:100])  # truncated
    with pytest.raises(cache.CheckpointError, match=str(good.name)):
        cache.load(small(), good)


def test_checkpoint_of_another_model_is_rejected(cache_in_tmp):
    p = cache.save(nn.Linear(2, 2), cache_in_tmp / "other.pt")
    with pytest.raises(cache.CheckpointError, match="does not fit"):
        cache.load(small(), p)
    torch.save({"weights": 1}, cache_in_tmp / "foreign.pt")
    with pytest.raises(cache.CheckpointError, match="state_dict"):
        cache.load(small(), cache_in_tmp / "foreign.pt")


def test_pickled_objects_are_refused(cache_in_tmp):
    class Evil:
        def __reduce__(self):
            return (print, ("executed",))

    torch.save({"state_dict": {}, "meta": Evil()}, cache_in_tmp / "evil.pt")
    with pytest.raises(cache.CheckpointError):
        cache.load(small(), cache_in_tmp / "evil.pt")


def test_a_trained_model_records_the_machine_it_was_trained_on():
    """The training time in a model's history is read with the CPU kind that gave it (and kept on load)."""
    m1 = cache.load_or_train("toy_machine", small, lambda m: {"time_s": [1.0]}, {}, "smoke", device="cpu",
                             verbose=False)
    record = m1.meta["machine"]
    assert set(record) >= {"cpu", "cpu_bf16_native", "threads", "device"}
    assert isinstance(record["cpu_bf16_native"], bool) and record["device"] == "cpu" and record["cpu"]
    m2 = cache.load_or_train("toy_machine", small, lambda m: 1 / 0, {}, "smoke", device="cpu", verbose=False)
    assert m2.meta["machine"] == record
