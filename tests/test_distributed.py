"""Data-parallel training (advlib.distributed) on the CPU with gloo: two processes under torchrun
reproduce one process, keep identical weights, write the cache once; one process is unchanged."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

import advlib
from advlib import adversaries, cache, distributed, loops, models, train

import ddp_scenarios

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 900  # seconds; the runs take about 10 s on an idle 2-core CPU


def torchrun(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node=2 ARGS`` with this checkout's advlib, one thread per process."""
    environ = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               "OMP_NUM_THREADS": "1", "ADVLIB_PROGRESS": "0", "ADVLIB_AMP": "0", **env}
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        environ.pop(name, None)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args],
                          cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, f"torchrun failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    return done


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> dict:
    """The scenarios of tests/ddp_scenarios.py, run once by two processes: {scenario: [rank 0, rank 1]}."""
    out = tmp_path_factory.mktemp("ddp")
    torchrun([str(Path(ddp_scenarios.__file__)), str(out)], out)
    return {name: [torch.load(out / f"{name}-rank{r}.pt", weights_only=True) for r in (0, 1)]
            for name in ("equivalence", "random_start", "cached")} | {"folder": out}


@pytest.fixture(autouse=True)
def single_process_env(monkeypatch):
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ADVLIB_AMP", "0")


# ---------------------------------------------------------------------------------- two processes
def test_two_processes_with_half_the_batch_reproduce_one_process_with_all_of_it(two_ranks):
    ranks = two_ranks["equivalence"]
    assert [r["rank"] for r in ranks] == [0, 1] and {r["world_size"] for r in ranks} == {2}
    one = ddp_scenarios.equivalence()
    # each step, the two shards are disjoint halves of the batch that one process draws
    assert len(one["seen"]) == len(ranks[0]["seen"]) == len(ranks[1]["seen"]) == 8
    for step, (a, b) in enumerate(zip(ranks[0]["seen"], ranks[1]["seen"])):
        assert len(a["ids"]) == len(b["ids"]) == ddp_scenarios.BATCH // 2
        assert sorted(a["ids"] + b["ids"]) == sorted(one["seen"][step]["ids"]), step
    for key, w in one["state"].items():
        torch.testing.assert_close(ranks[0]["state"][key], w, rtol=0, atol=1e-5)
        assert torch.equal(ranks[0]["state"][key], ranks[1]["state"][key]), key
    # the history is of the global batch, and the same on both ranks
    assert ranks[0]["history"] == ranks[1]["history"]
    assert ranks[0]["history"]["step"] == one["history"]["step"] == [4, 8]
    for column in ("train_loss", "train_acc", "lr"):
        assert ranks[0]["history"][column] == pytest.approx(one["history"][column], abs=1e-5), column


def test_with_random_starts_the_ranks_draw_their_own_and_end_with_identical_weights(two_ranks):
    ranks = two_ranks["random_start"]
    assert ranks[0]["seen"][0]["draw"] != ranks[1]["seen"][0]["draw"]  # seeded by (seed, rank)
    assert set(ranks[0]["seen"][0]["ids"]).isdisjoint(ranks[1]["seen"][0]["ids"])
    torch.manual_seed(0)
    start = ddp_scenarios.BNNet().state_dict()  # the weights both ranks started from
    for key, w in ranks[0]["state"].items():  # weights and batch-norm statistics
        assert torch.equal(w, ranks[1]["state"][key]), key
    assert not torch.equal(ranks[0]["state"]["body.0.weight"], start["body.0.weight"])
    assert ranks[0]["history"] == ranks[1]["history"]  # rank 0's evaluation, sent to rank 1
    assert 0 <= ranks[0]["history"]["val_acc"][0] <= 1


def test_the_cache_is_written_once_by_rank_0_and_loaded_by_every_rank(two_ranks):
    ranks = two_ranks["cached"]
    assert [r["writes"] for r in ranks] == [[0], []]
    assert [r["trainings"] for r in ranks] == [[0], [1]]  # trained together once, then loaded
    files = sorted(p.name for p in (two_ranks["folder"] / "cache").iterdir())
    assert len(files) == 1 and files[0].startswith("ddp_test-smoke-") and files[0].endswith(".pt"), files
    for key, w in ranks[0]["state"].items():
        assert torch.equal(w, ranks[1]["state"][key]) and torch.equal(w, ranks[0]["again"][key]), key
    assert ranks[0]["history"] == ranks[1]["history"]


def test_the_command_line_trains_a_recipe_under_torchrun(tmp_path):
    data_root = os.environ.get("ADVLIB_DATA")
    if not (data_root and Path(data_root, "MNIST", "raw").is_dir()):
        pytest.skip("needs MNIST under $ADVLIB_DATA")
    folder = tmp_path / "cache"
    done = torchrun(["-m", "advlib.zoo", "train", "robust_mnist", "--budget", "smoke"], tmp_path,
                    ADVLIB_CACHE=str(folder))
    assert done.stdout.count("training robust_mnist (smoke)") == 1, done.stdout
    assert done.stdout.count("is cached at") == 1, done.stdout
    files = list(folder.iterdir())
    assert len(files) == 1 and files[0].name.startswith("robust_mnist-smoke-"), files
    model = models.mnist_cnn()
    meta = cache.load(model, files[0])  # weights_only
    assert meta["history"]["step"] and 0 <= meta["history"]["val_robust_acc"][-1] <= 1


# ------------------------------------------------------------------------------------ one process
def test_one_process_never_starts_a_process_group(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("a single process must not use torch.distributed")

    monkeypatch.setattr(dist, "init_process_group", forbidden)
    monkeypatch.setattr(distributed, "DistributedDataParallel", forbidden)
    x, y = ddp_scenarios.dataset()

    def run():
        torch.manual_seed(0)
        model = ddp_scenarios.BNNet()
        history = train.fit(model, (x, y), epochs=1, batch_size=ddp_scenarios.BATCH,
                            adversary=adversaries.pgd(0.1, steps=1), clean_weight=0.5, progress=False)
        return model.state_dict(), history.drop(columns="time_s")

    plain_state, plain_history = run()
    # torchrun --nproc_per_node=1 sets these; one process is one process
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    state, history = run()
    assert not distributed.initialized() and distributed.world_size() == 1 and distributed.is_main()
    assert all(torch.equal(plain_state[k], state[k]) for k in state)
    assert plain_history.equals(history)


def test_shards_split_every_batch_evenly():
    idx = torch.arange(10, 26)
    halves = [distributed.shard_indices(idx, r, 2) for r in (0, 1)]
    assert torch.equal(torch.cat(halves), idx)
    # a last partial batch of 5 over 2 ranks: 3 each, the first index repeated
    parts = [distributed.shard_indices(torch.arange(5), r, 2) for r in (0, 1)]
    assert [p.tolist() for p in parts] == [[0, 1, 2], [3, 4, 0]]
    assert [distributed.shard_indices(torch.arange(1), r, 3).tolist() for r in range(3)] == [[0], [0], [0]]
    with pytest.raises(ValueError, match="rank"):
        distributed.shard_indices(idx, 2, 2)
    stream, per_epoch = loops.batches((torch.rand(40, 1, 2, 2), torch.zeros(40, dtype=torch.long)), 16, seed=0,
                                      device="cpu", labels=True, shard=(1, 2))
    assert per_epoch == 3 and [next(stream)[0].shape[0] for _ in range(3)] == [8, 8, 4]
    with pytest.raises(ValueError, match="sampler"):
        loops.batches(lambda n: torch.rand(n, 2), 8, seed=0, device="cpu", shard=(0, 2))


def test_one_process_helpers_give_the_answers_of_rank_0_of_1():
    assert (distributed.rank(), distributed.world_size(), distributed.shard()) == (0, 1, None)
    assert distributed.per_rank(7) == 7 and distributed.broadcast_object({"a": 1}) == {"a": 1}
    n, means = distributed.mean_over_ranks(4, loss=torch.tensor(0.5), acc=0.25)
    assert n == 4 and means == {"loss": 0.5, "acc": 0.25}
    assert len({distributed.rank_seed(0, r) for r in range(4)} | {distributed.rank_seed(1, 0)}) == 5
    assert 0 <= distributed.rank_seed(0, 0) < 2**63
    state = torch.get_rng_state()
    with distributed.rank_random_state(0, "cpu"):  # one process: the global state is left alone
        assert torch.equal(torch.get_rng_state(), state)
    model = ddp_scenarios.MLP()
    assert distributed.wrap(model) is model
    assert distributed.init() is False


def test_the_global_batch_must_split_evenly(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 3)
    with pytest.raises(ValueError, match="batch_size .*multiple of 3"):
        distributed.per_rank(128)
    assert distributed.per_rank(129) == 43
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE"):
        distributed.launched()


def test_the_chapter_03_recipes_refuse_to_train_data_parallel(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    with pytest.raises(RuntimeError, match="one process only"):
        advlib.zoo._common._one_process_only("arae_sentiment", "advlib.arae.train_arae")
