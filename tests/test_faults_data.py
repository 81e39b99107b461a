"""Faults of the data module: crafted, corrupt and truncated files, and a name lookup that hangs."""
import gzip
import pickle
import socket
import struct
import threading
import time

import numpy as np
import pytest

from advlib import data
from test_data import write_idx


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    """Only the folder under test is searched, and nothing is downloaded."""
    monkeypatch.delenv("ADVLIB_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def cifar_batch(n=4, labels=None, data_array=None):
    return {"batch_label": "testing batch 1 of 1", "labels": list(range(n)) if labels is None else labels,
            "data": np.arange(n * 3072, dtype=np.int64).reshape(n, 3072).astype(np.uint8)
            if data_array is None else data_array, "filenames": [f"{i}.png" for i in range(n)]}


def write_batch(root, blob, name="test_batch"):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(exist_ok=True)
    (folder / name).write_bytes(blob)
    return folder / name


# ------------------------------------------------------------------- no code run from a data file
class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_crafted_cifar_batch_runs_no_code(tmp_path):
    marker = tmp_path / "pwned"
    path = write_batch(tmp_path, pickle.dumps({"data": Evil(marker), "labels": [0]}))
    with pytest.raises(ValueError, match="refers to io.open") as err:
        data.cifar10(train=False, root=tmp_path, download=False)
    assert not marker.exists(), "loading the data file ran code from it"
    assert str(path) in str(err.value)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_genuine_cifar_batches_still_load(tmp_path, protocol):
    write_batch(tmp_path, pickle.dumps(cifar_batch(), protocol=protocol))
    ds = data.cifar10(train=False, root=tmp_path, download=False)
    assert ds.shape == (3, 32, 32) and ds.labels.tolist() == [0, 1, 2, 3]
    assert ds.images.flatten()[:5].tolist() == [0, 1, 2, 3, 4]


def test_a_batch_written_by_numpy_1_still_loads(tmp_path):
    # the real files name numpy.core (numpy 1); numpy 2 moved it to numpy._core
    blob = pickle.dumps(cifar_batch(), protocol=2).replace(b"numpy._core", b"numpy.core")
    write_batch(tmp_path, blob)
    assert len(data.cifar10(train=False, root=tmp_path, download=False)) == 4


@pytest.mark.parametrize("batch, match", [
    (cifar_batch(labels=[0, 1, 2, 10]), r"labels must be class indices in \[0, 9\]"),
    (cifar_batch(data_array=np.zeros((4, 3072), np.float32)), "images must be uint8"),
    (cifar_batch(labels=[0, 1]), "labels must be 4 integers"),
    ({"data": np.zeros((1, 3072), np.uint8)}, "not a CIFAR-10 batch"),
    (cifar_batch(data_array=np.zeros(4, object)), "images must be uint8"),
])
def test_a_malformed_cifar_batch_is_named(tmp_path, batch, match):
    path = write_batch(tmp_path, pickle.dumps(batch))
    with pytest.raises(ValueError, match=match) as err:
        data.cifar10(train=False, root=tmp_path, download=False)
    assert str(path) in str(err.value)


# -------------------------------------------------------------------------------- corrupt files
def write_npz(root, **arrays):
    (root / "cifar10").mkdir(exist_ok=True)
    np.savez(root / "cifar10" / "test.npz", **arrays)
    return root / "cifar10" / "test.npz"


def images_nhwc(n=3):
    return np.zeros((n, 32, 32, 3), np.uint8)


@pytest.mark.parametrize("arrays, match", [
    (dict(x=images_nhwc(), y=np.array([0, 1, 99])), r"labels must be class indices in \[0, 9\].*99"),
    (dict(x=images_nhwc(), y=np.array([0, -1, 2])), r"labels must be class indices .*-1"),
    (dict(x=images_nhwc(), y=np.array([0, 0.7, 2])), "labels must be 3 integers"),
    (dict(x=images_nhwc(), y=np.array([[0], [1], [2]])), "labels must be 3 integers"),
    (dict(x=np.zeros((3, 3, 32, 32), np.uint8), y=np.array([0, 1, 2])), r"images must be uint8 of shape \(N, 32, 32, 3\)"),
    (dict(x=images_nhwc().astype(np.float32), y=np.array([0, 1, 2])), "images must be uint8"),
    (dict(x=images_nhwc()), "cannot be read as a CIFAR-10 .npz"),
])
def test_a_bad_cifar_npz_is_named(tmp_path, arrays, match):
    path = write_npz(tmp_path, **arrays)
    with pytest.raises(ValueError, match=match) as err:
        data.cifar10(train=False, root=tmp_path, download=False)
    assert str(path) in str(err.value)


def test_a_garbage_npz_never_suggests_allow_pickle(tmp_path):
    (tmp_path / "cifar10").mkdir()
    for blob in (pickle.dumps({"x": 1}), b"\x00garbage" * 10):
        (tmp_path / "cifar10" / "test.npz").write_bytes(blob)
        with pytest.raises(ValueError, match="test.npz") as err:
            data.cifar10(train=False, root=tmp_path, download=False)
        assert "allow_pickle=True" not in str(err.value).replace("never load it with allow_pickle=True", "")


def test_an_npz_holding_pickled_objects_is_refused_without_numpys_advice(tmp_path):
    path = write_npz(tmp_path, x=np.array([object()] * 3, dtype=object), y=np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="pickled Python objects") as err:
        data.cifar10(train=False, root=tmp_path, download=False)
    assert str(path) in str(err.value) and "allow_pickle" not in str(err.value)


def mnist_root(tmp_path, images=None, labels=None):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    write_idx(raw / "t10k-images-idx3-ubyte", np.zeros((5, 28, 28)) if images is None else images)
    write_idx(raw / "t10k-labels-idx1-ubyte", np.arange(5) if labels is None else labels)
    return raw


@pytest.mark.parametrize("images, labels, match, bad", [
    (None, [0, 1, 200, 3, 4], r"labels must be class indices in \[0, 9\]", "labels"),
    (None, [0, 1, 2], "labels must be 5 integers", "labels"),
    (np.zeros((5, 28, 27)), None, r"images must be uint8 of shape \(N, 28, 28\)", "images"),
])
def test_a_bad_mnist_file_is_named(tmp_path, images, labels, match, bad):
    raw = mnist_root(tmp_path, images, labels)
    with pytest.raises(ValueError, match=match) as err:
        data.mnist(train=False, root=tmp_path, download=False)
    assert str(raw / f"t10k-{bad}-idx{3 if bad == 'images' else 1}-ubyte") in str(err.value)


def test_an_idx_file_cut_inside_its_header_is_named(tmp_path):
    raw = mnist_root(tmp_path)
    (raw / "t10k-images-idx3-ubyte").write_bytes(struct.pack(">HBB", 0, 8, 3) + struct.pack(">I", 5))
    with pytest.raises(ValueError, match="truncated inside its header") as err:
        data.mnist(train=False, root=tmp_path, download=False)
    assert "t10k-images-idx3-ubyte" in str(err.value)


def test_a_truncated_gz_is_named(tmp_path):
    raw = mnist_root(tmp_path)
    (raw / "t10k-labels-idx1-ubyte").unlink()
    gz = raw / "t10k-labels-idx1-ubyte.gz"
    write_idx(gz, np.arange(5))
    gz.write_bytes(gz.read_bytes()[:-12])
    with pytest.raises(ValueError, match="cannot be read as an IDX file") as err:
        data.mnist(train=False, root=tmp_path, download=False)
    assert str(gz) in str(err.value)


def test_a_non_image_for_sample_image_is_named(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "pig.jpg").write_text("<html>not found</html>")
    with pytest.raises(ValueError, match="cannot be read as an image") as err:
        data.sample_image("pig", root=tmp_path, download=False)
    assert str(tmp_path / "images" / "pig.jpg") in str(err.value)
    with pytest.raises(ValueError, match="name must be one of"):
        data.sample_image(["pig"], root=tmp_path)


# --------------------------------------------------------------------------- the offline check
def test_is_online_is_bounded_even_when_the_name_lookup_hangs(monkeypatch):
    release = threading.Event()

    def hanging_lookup(*args, **kwargs):
        release.wait(8)  # a resolver that never answers (released at the end of the test)
        raise socket.gaierror("no answer")

    monkeypatch.setattr(socket, "getaddrinfo", hanging_lookup)
    try:
        t = time.monotonic()
        assert data.is_online("example.invalid", timeout=0.5) is False
        assert time.monotonic() - t < 2
    finally:
        release.set()


def test_is_online_answers_at_once_when_refused(monkeypatch):
    def refused(*args, **kwargs):
        raise ConnectionRefusedError("refused")

    monkeypatch.setattr(socket, "create_connection", refused)
    t = time.monotonic()
    assert data.is_online("localhost", timeout=5) is False
    assert time.monotonic() - t < 1
