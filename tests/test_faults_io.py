"""Faults at the library's edges: corrupt or missing results files, a NaN accuracy, orphaned temporary
files in the model cache, bad environment variables, a process group without peers, and degenerate
counts in the distributed helpers and the training loops."""
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from advlib import cache, distributed, loops, results, utils
from advlib.evaluate import Accuracy

ROOT = Path(__file__).resolve().parents[1]
ROWS = [{"claim": "clean accuracy", "paper": "98%", "ours": "97%"}]


# ------------------------------------------------------------------------------ advlib.results
def write_book_results(folder: Path, chapter: str = "10_large_perturbations") -> Path:
    results.paper_vs_ours(chapter, ROWS, budget="book", folder=folder)
    return folder / f"{chapter}{results.SUFFIX}"


@pytest.mark.parametrize("content, match", [
    pytest.param('{"chapter": "10_la'.encode(), "not valid JSON", id="S02-truncated"),
    pytest.param(json.dumps({"chapter": "09_fast", "budget": "book"}).encode(), "'rows'", id="S03-no-rows"),
    pytest.param(json.dumps([{"claim": "a", "paper": "b", "ours": "c"}]).encode(), "JSON object",
                 id="S04-top-level-list"),
    pytest.param(json.dumps({"chapter": "09_fast", "budget": "book", "rows": ROWS}).encode("utf-16"), "UTF-8",
                 id="S06-utf16"),
])
def test_a_corrupt_results_file_is_named(tmp_path, content, match):
    """reliability S02, S03, S04, S06: load_results names the file and what is wrong with it."""
    write_book_results(tmp_path)  # a good file beside the bad one
    bad = tmp_path / "09_fast.results.json"
    bad.write_bytes(content)
    with pytest.raises(ValueError, match=match) as err:
        results.load_results(tmp_path)
    assert str(bad) in str(err.value)


def test_rows_without_their_keys_are_named(tmp_path):
    """reliability S05: rows lacking 'paper'/'ours' are refused, naming the file and the missing keys."""
    bad = tmp_path / "09_fast.results.json"
    bad.write_text(json.dumps({"chapter": "09_fast", "budget": "book",
                               "rows": [{"claim": "PGD accuracy", "paper": "89%", "ours": "80%"},
                                        {"claim": "note"}]}))
    with pytest.raises(ValueError, match=r"rows\[1\] lacks the keys \['ours', 'paper'\]") as err:
        results.load_results(tmp_path)
    assert str(bad) in str(err.value)


@pytest.mark.parametrize("ours", [Accuracy(0, 0)], ids=["n=0"])
def test_an_accuracy_of_no_examples_is_refused_before_writing(tmp_path, ours):
    """reliability S12: ours=Accuracy(0, 0) is a ValueError (n must be >= 1); nothing is written."""
    with pytest.raises(ValueError, match=r"rows\[0\]\['ours'\].*n >= 1"):
        results.paper_vs_ours("10_x", [{"claim": "c", "paper": "p", "ours": ours}], budget="book", folder=tmp_path)
    assert not list(tmp_path.iterdir())


def test_results_files_are_strict_json(tmp_path):
    """reliability S12: what paper_vs_ours writes parses as strict JSON (no NaN or Infinity)."""
    rows = [{"claim": "a", "paper": "p", "ours": Accuracy(3, 4)}, {"claim": "b", "paper": "p", "ours": "x"}]
    results.paper_vs_ours("10_x", rows, budget="book", folder=tmp_path)

    def refuse(name):
        raise AssertionError(f"{name} in a results file")

    saved = json.loads((tmp_path / "10_x.results.json").read_text(), parse_constant=refuse)
    assert saved["rows"][0]["n"] == 4


def test_load_results_of_a_missing_folder_names_it(tmp_path):
    """reliability S14: a folder that does not exist (a typo) is an error naming it, not an empty table."""
    missing = tmp_path / "no" / "such" / "folder"
    with pytest.raises(FileNotFoundError, match="results folder") as err:
        results.load_results(missing)
    assert str(missing) in str(err.value)
    assert results.load_results(tmp_path).empty  # an existing folder without results is an empty table


# -------------------------------------------------------------------------------- advlib.cache
def test_temporary_files_of_killed_saves_are_removed_by_the_next_save(tmp_path):
    """reliability C13: '<key>.pt<8 chars>.tmp' files left by killed saves of a key are removed by the
    next successful save of that key, once they are over an hour old; a fresh one (perhaps another
    writer's, still being written), another key's and other files stay."""
    path = tmp_path / "toy-smoke-0123456789ab.pt"
    stale = [tmp_path / f"{path.name}{tag}.tmp" for tag in ("c9ghwxgc", "a_b1c2d3")]
    fresh = tmp_path / f"{path.name}zz9yx8w7.tmp"
    other_key = tmp_path / "toy-smoke-ba9876543210.ptc9ghwxgc.tmp"
    unrelated = [tmp_path / f"{path.name}.notes.tmp", tmp_path / "notes.txt"]
    old = time.time() - 2 * 3600
    for f in [*stale, fresh, other_key, *unrelated]:
        f.write_bytes(b"half a checkpoint")
        if f is not fresh:
            os.utime(f, (old, old))
    cache.save(nn.Linear(2, 2), path)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(p.name for p in [path, fresh, other_key, *unrelated]), left
    cache.load(nn.Linear(2, 2), path)


# ------------------------------------------------------------------------ environment variables
@pytest.mark.parametrize("value, shown", [("0", False), ("false", False), ("False", False), ("OFF", False),
                                          ("No", False), (" off ", False), ("1", True), ("x", True), ("", True)])
def test_progress_switch_ignores_case_and_spaces(monkeypatch, value, shown):
    """reliability V05: ADVLIB_PROGRESS = 0, false, no or off, in any case, turns the bars off."""
    monkeypatch.setenv("ADVLIB_PROGRESS", value)
    assert utils.show_progress() is shown
    assert utils.show_progress(True) is True and utils.show_progress(False) is False


@pytest.fixture
def fresh_device(monkeypatch):
    """get_device() chooses afresh (it keeps its first answer in utils._DEVICE)."""
    monkeypatch.setattr(utils, "_DEVICE", None)


def test_a_junk_device_names_the_variable(monkeypatch, fresh_device):
    """reliability V06: ADVLIB_DEVICE=junk is a ValueError naming ADVLIB_DEVICE and the allowed devices."""
    monkeypatch.setenv("ADVLIB_DEVICE", "junk")
    with pytest.raises(ValueError, match="ADVLIB_DEVICE .*'cpu'.*got 'junk'"):
        utils.get_device()
    assert utils._DEVICE is None


def test_cuda_without_cuda_names_the_variable(monkeypatch, fresh_device):
    """reliability V07: ADVLIB_DEVICE=cuda where CUDA is not available is a ValueError naming ADVLIB_DEVICE."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("ADVLIB_DEVICE", "cuda")
    with pytest.raises(ValueError, match="ADVLIB_DEVICE='cuda'.*CUDA is not available"):
        utils.get_device()


def test_device_variable_is_read_in_any_case(monkeypatch, fresh_device):
    monkeypatch.setenv("ADVLIB_DEVICE", " CPU ")
    assert utils.get_device() == torch.device("cpu")


# ---------------------------------------------------------------------------- advlib.distributed
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_process_group_without_peers_gives_up_naming_the_variables(tmp_path):
    """reliability V10: torchrun's variables set by hand with no second process: a message naming them
    before waiting, then an error naming them after ADVLIB_DIST_TIMEOUT seconds, not a silent 30-minute wait."""
    env = {k: v for k, v in os.environ.items() if k not in distributed.TORCHRUN_VARIABLES}
    port = free_port()
    env.update(PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), OMP_NUM_THREADS="1",
               WORLD_SIZE="2", RANK="0", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
               ADVLIB_DIST_TIMEOUT="1", ADVLIB_DEVICE="cpu")
    t0 = time.time()
    done = subprocess.run([sys.executable, "-c", "from advlib import distributed; distributed.init()"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert time.time() - t0 < 60
    assert done.returncode != 0
    before, _, error = done.stderr.partition("Traceback")
    for shown in (before, error):  # the message before waiting, and the error
        for name in ("WORLD_SIZE=2", "RANK=0", "MASTER_ADDR=127.0.0.1", f"MASTER_PORT={port}"):
            assert name in shown, done.stderr[-3000:]
    assert "ADVLIB_DIST_TIMEOUT" in error, done.stderr[-3000:]


def test_a_bad_join_timeout_is_named(monkeypatch):
    """reliability V10: ADVLIB_DIST_TIMEOUT must be a number of seconds > 0."""
    for name, value in [("WORLD_SIZE", "2"), ("RANK", "0"), ("LOCAL_RANK", "0"), ("MASTER_ADDR", "127.0.0.1"),
                        ("MASTER_PORT", "29999"), ("ADVLIB_DIST_TIMEOUT", "soon")]:
        monkeypatch.setenv(name, value)

    def forbidden(*args, **kwargs):
        raise AssertionError("the timeout must be checked before waiting for other processes")

    monkeypatch.setattr(torch.distributed, "init_process_group", forbidden)
    monkeypatch.setattr(torch.distributed, "rendezvous", forbidden)
    with pytest.raises(ValueError, match="ADVLIB_DIST_TIMEOUT"):
        distributed.init()
    assert not distributed.initialized()


@pytest.mark.parametrize("batch_size", [0, -4])
def test_per_rank_refuses_an_empty_batch(batch_size):
    """reliability D02: per_rank(0) and per_rank(-4) are ValueErrors naming batch_size."""
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        distributed.per_rank(batch_size)


def test_means_of_no_examples_are_refused():
    """reliability D04: mean_over_ranks(0, loss=1.0) is a ValueError naming n, not NaN."""
    with pytest.raises(ValueError, match="n must be"):
        distributed.mean_over_ranks(0, loss=1.0)
    with pytest.raises(ValueError, match="n must be"):
        distributed.mean_over_ranks(-2, loss=1.0)


# ---------------------------------------------------------------------------------- advlib.loops
def test_log_every_zero_is_refused():
    """reliability O05: log_every=0 is a ValueError naming log_every; None is the default (one epoch)."""
    with pytest.raises(ValueError, match="log_every must be an integer >= 1, got 0"):
        loops.log_steps(10, 0, 5)
    assert loops.log_steps(10, None, 5) == {5, 10}
    assert loops.log_steps(10, None, None) == set(range(1, 11))
    assert loops.log_steps(10, 4, 5) == {4, 8, 10}
